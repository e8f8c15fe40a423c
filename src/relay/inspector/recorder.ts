/**
 * The agent's traffic recorder for the local inspector (ngrok's "inspect"):
 * every HTTP exchange that passes through an http tunnel of the agent, kept in
 * a bounded in-memory ring.
 *
 * The recorder only observes: the agent pipes bytes between the yamux stream
 * and the local service exactly as before, and hands a copy of each chunk to a
 * StreamTap. Requests are framed with the relay's own RequestReader (../http1.ts,
 * RFC 9112) and responses with a small observer here that also captures their
 * bodies (the relay's ResponseReader only tells where a response ends). Bodies
 * are captured de-chunked up to a limit (64 KiB by default) and marked
 * truncated beyond it. Anything the recorder cannot parse is recorded as
 * "unparseable" and the rest of that stream is ignored: traffic is never
 * altered or stopped because the inspector did not understand it.
 */
import { EventEmitter } from 'node:events';
import { DEFAULT_HTTP_LIMITS, RequestReader, parseChunkSizeLine } from '../http1.js';
import type { HeaderField, RequestHandler, RequestHead } from '../http1.js';

export const DEFAULT_BODY_LIMIT = 64 * 1024;
export const DEFAULT_RING_SIZE = 500;
/** Bytes of an unparseable stream kept to show what it was. */
const UNPARSEABLE_SAMPLE = 1024;
/** Client bytes held while an upgrade request waits for its answer. */
const MAX_UPGRADE_STASH = 64 * 1024;
const MAX_CHUNK_LINE = 4096;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');

/** Where the tunnel's traffic goes: the local service (replays go there too). */
export interface TunnelTarget {
  /** The relay's tunnel id. */
  readonly tunnelId: string;
  /** The public URL, when known. */
  readonly url: string | undefined;
  readonly localHost: string;
  readonly localPort: number;
}

/** A body as captured: its full (de-chunked) size and at most the limit's first bytes. */
export interface CapturedBody {
  readonly size: number;
  readonly bytes: Buffer;
  readonly truncated: boolean;
}

export interface RecordedRequest {
  readonly method: string;
  readonly target: string;
  readonly httpVersion: string;
  readonly headers: readonly HeaderField[];
  readonly body: CapturedBody;
}

export interface RecordedResponse {
  readonly status: number;
  readonly reason: string;
  readonly httpVersion: string;
  readonly headers: readonly HeaderField[];
  readonly body: CapturedBody;
}

/**
 * - pending: the request (or its response) is still on the way;
 * - complete: request and response seen whole (for an upgrade: the 101);
 * - incomplete: the connection closed before the exchange finished;
 * - unparseable: the bytes were not HTTP/1.x the recorder could frame.
 */
export type ExchangeState = 'pending' | 'complete' | 'incomplete' | 'unparseable';

export interface RecordedExchange {
  readonly id: number;
  readonly target: TunnelTarget;
  /** Wall-clock time (ms since the epoch) of the request's first byte. */
  readonly startedAt: number;
  state: ExchangeState;
  request: RecordedRequest | null;
  response: RecordedResponse | null;
  /** ms from the request's first byte to the response head / to the end of the response. */
  timeToHeadMs: number | null;
  durationMs: number | null;
  /** The request asked to switch protocols (WebSocket): later bytes are not recorded. */
  upgrade: boolean;
  /** The exchange this one replays. */
  replayOf: number | null;
  /** Why the exchange is unparseable or incomplete. */
  error: string | null;
  /** For an unparseable stream: its first bytes. */
  rawSample: Buffer | null;
}

export interface RecorderEvents {
  /** An exchange was added or changed. */
  exchange: [exchange: RecordedExchange];
}

export interface RecorderOptions {
  /** Exchanges kept (oldest dropped first; default 500). */
  readonly ringSize?: number;
  /** Body bytes kept per request and per response (default 64 KiB). */
  readonly bodyLimit?: number;
}

/** What the agent feeds: a copy of each chunk in either direction, then close(). */
export interface StreamTap {
  /** Bytes from the public client (via the relay) to the local service. */
  fromClient(chunk: Buffer): void;
  /** Bytes from the local service back to the client. */
  fromService(chunk: Buffer): void;
  /** Both sides are done (closed or ended): pending exchanges end here. */
  close(): void;
}

/** The agent's hook: called once per stream of an http tunnel. */
export interface HttpTrafficObserver {
  openStream(target: TunnelTarget): StreamTap;
}

function checkCount(value: unknown, what: string, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`${what} must be an integer >= ${min}, got ${String(value)}`);
  }
  return value;
}

/** Keeps a body's first `limit` bytes and counts the rest. */
class BodyCapture {
  private readonly parts: Buffer[] = [];
  private kept = 0;
  size = 0;

  constructor(private readonly limit: number) {}

  add(bytes: Buffer): void {
    this.size += bytes.length;
    if (this.kept >= this.limit) return;
    const take = Math.min(bytes.length, this.limit - this.kept);
    // Copied: the agent's chunk buffers may be reused once forwarded.
    this.parts.push(Buffer.from(bytes.subarray(0, take)));
    this.kept += take;
  }

  result(): CapturedBody {
    return { size: this.size, bytes: Buffer.concat(this.parts), truncated: this.size > this.kept };
  }
}

class FramingError extends Error {}

/**
 * Decodes the chunked transfer coding (RFC 9112 §7.1) incrementally: data goes
 * to `onData`; push() returns how much of the input belonged to the message.
 */
export class ChunkedDecoder {
  private state: 'size' | 'data' | 'data-end' | 'trailers' | 'done' = 'size';
  private line: Buffer[] = [];
  private lineLength = 0;
  private remaining = 0;
  private trailerBytes = 0;

  constructor(private readonly onData: (bytes: Buffer) => void) {}

  get done(): boolean {
    return this.state === 'done';
  }

  /** Consumes input from `offset`; returns the offset where this message's bytes end. */
  push(chunk: Buffer, offset = 0): number {
    let at = offset;
    while (at < chunk.length && this.state !== 'done') {
      switch (this.state) {
        case 'size': {
          const line = this.takeLine(chunk, at, MAX_CHUNK_LINE);
          if (line === null) return chunk.length;
          at = line.end;
          let size: number;
          try {
            size = parseChunkSizeLine(line.bytes);
          } catch {
            throw new FramingError('malformed chunk-size line');
          }
          if (size === 0) this.state = 'trailers';
          else {
            this.state = 'data';
            this.remaining = size;
          }
          break;
        }
        case 'data': {
          const take = Math.min(this.remaining, chunk.length - at);
          this.onData(chunk.subarray(at, at + take));
          at += take;
          this.remaining -= take;
          if (this.remaining === 0) {
            this.state = 'data-end';
            this.remaining = 2;
          }
          break;
        }
        case 'data-end':
          if (chunk[at] !== (this.remaining === 2 ? 0x0d : 0x0a)) {
            throw new FramingError('chunk data not followed by CRLF');
          }
          at++;
          if (--this.remaining === 0) this.state = 'size';
          break;
        case 'trailers': {
          const line = this.takeLine(chunk, at, DEFAULT_HTTP_LIMITS.maxHeadBytes);
          if (line === null) return chunk.length;
          at = line.end;
          this.trailerBytes += line.bytes.length;
          if (this.trailerBytes > DEFAULT_HTTP_LIMITS.maxHeadBytes) {
            throw new FramingError('trailer section too large');
          }
          if (line.bytes.length <= 2) this.state = 'done';
          break;
        }
      }
    }
    return at;
  }

  private takeLine(chunk: Buffer, at: number, max: number): { bytes: Buffer; end: number } | null {
    const lf = chunk.indexOf(0x0a, at);
    const piece = chunk.subarray(at, lf < 0 ? chunk.length : lf + 1);
    this.lineLength += piece.length;
    if (this.lineLength > max) throw new FramingError(`a framing line longer than ${max} bytes`);
    this.line.push(Buffer.from(piece));
    if (lf < 0) return null;
    const bytes = this.line.length === 1 ? (this.line[0] ?? piece) : Buffer.concat(this.line);
    this.line = [];
    this.lineLength = 0;
    return { bytes, end: lf + 1 };
  }
}

/** The in-memory ring of exchanges; makes taps for the agent. */
export class TrafficRecorder extends EventEmitter<RecorderEvents> implements HttpTrafficObserver {
  readonly ringSize: number;
  readonly bodyLimit: number;
  private readonly ring = new Map<number, RecordedExchange>();
  private nextId = 1;

  constructor(options: RecorderOptions = {}) {
    super();
    if (typeof options !== 'object') throw new TypeError('options must be an object');
    this.ringSize = checkCount(options.ringSize ?? DEFAULT_RING_SIZE, 'options.ringSize', 1);
    this.bodyLimit = checkCount(options.bodyLimit ?? DEFAULT_BODY_LIMIT, 'options.bodyLimit', 0);
  }

  /** The exchanges kept, oldest first. */
  list(): RecordedExchange[] {
    return [...this.ring.values()];
  }

  get(id: number): RecordedExchange | undefined {
    return this.ring.get(id);
  }

  openStream(target: TunnelTarget): StreamTap {
    return new StreamObserver(this, target, null);
  }

  /** A tap whose first exchange is marked as a replay of `replayOf`. */
  openReplayStream(target: TunnelTarget, replayOf: number): StreamObserver {
    return new StreamObserver(this, target, replayOf);
  }

  /** @internal A new exchange, added to the ring (dropping the oldest beyond its size). */
  add(target: TunnelTarget, replayOf: number | null): RecordedExchange {
    const exchange: RecordedExchange = {
      id: this.nextId++,
      target,
      startedAt: Date.now(),
      state: 'pending',
      request: null,
      response: null,
      timeToHeadMs: null,
      durationMs: null,
      upgrade: false,
      replayOf,
      error: null,
      rawSample: null,
    };
    this.ring.set(exchange.id, exchange);
    if (this.ring.size > this.ringSize) {
      const oldest = this.ring.keys().next();
      if (oldest.done !== true) this.ring.delete(oldest.value);
    }
    return exchange;
  }

  /** @internal Tells listeners an exchange changed. */
  changed(exchange: RecordedExchange): void {
    if (this.listenerCount('exchange') > 0) this.emit('exchange', exchange);
  }
}

interface InFlight {
  readonly exchange: RecordedExchange;
  readonly startedAt: number;
  readonly isHead: boolean;
  readonly upgrade: boolean;
  requestBody: BodyCapture | null;
  requestDecoder: ChunkedDecoder | null;
  requestHead: RequestHead | null;
}

type ResponseState = 'head' | 'length' | 'chunked' | 'until-close';

/** Observes one stream: frames requests and responses, records each exchange. */
export class StreamObserver implements StreamTap {
  private readonly requests = new RequestReader();
  /** Exchanges whose request was seen, oldest first, awaiting (the end of) a response. */
  private readonly inFlight: InFlight[] = [];
  /** The request being received (its head seen, its body maybe not). */
  private receiving: InFlight | null = null;
  /** Set once the stream can no longer be followed (upgrade, garbage, closed). */
  private stopped = false;
  /** Client bytes held while an upgrade request awaits its response. */
  private upgradeStash: Buffer[] | null = null;
  private upgradeStashBytes = 0;
  private headStartedAt = 0;
  private replayOf: number | null;
  /** The first exchange seen on this stream (a replay's result). */
  firstExchange: RecordedExchange | null = null;

  private responseState: ResponseState = 'head';
  private responseHead: Buffer[] = [];
  private responseHeadBytes = 0;
  private responseRemaining = 0;
  private responseDecoder: ChunkedDecoder | null = null;
  private responseBody: BodyCapture | null = null;
  private responseMeta: Omit<RecordedResponse, 'body'> | null = null;

  private readonly handler: RequestHandler = {
    headStart: () => {
      this.headStartedAt = performance.now();
    },
    head: (head) => {
      this.onRequestHead(head);
      return true;
    },
    body: (bytes) => {
      const current = this.receiving;
      if (current === null) return;
      if (current.requestDecoder !== null) current.requestDecoder.push(bytes);
      else current.requestBody?.add(bytes);
    },
    end: () => this.onRequestEnd(),
  };

  constructor(
    private readonly recorder: TrafficRecorder,
    readonly target: TunnelTarget,
    replayOf: number | null,
  ) {
    this.replayOf = replayOf;
  }

  fromClient(chunk: Buffer): void {
    if (this.stopped || chunk.length === 0) return;
    if (this.upgradeStash !== null) {
      this.upgradeStashBytes += chunk.length;
      if (this.upgradeStashBytes > MAX_UPGRADE_STASH) this.stop();
      else this.upgradeStash.push(Buffer.from(chunk));
      return;
    }
    this.pushRequests(chunk);
  }

  fromService(chunk: Buffer): void {
    if (this.stopped || chunk.length === 0) return;
    try {
      this.consumeResponse(chunk);
    } catch (error) {
      this.unparseable(this.inFlight[0]?.exchange ?? null, error, chunk);
    }
  }

  close(): void {
    if (this.responseState === 'until-close' && !this.stopped) this.finishResponse();
    this.stop();
  }

  /** Ends observation: whatever is still pending is incomplete. */
  private stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    this.upgradeStash = null;
    const pending = new Set(this.inFlight.map((entry) => entry.exchange));
    if (this.receiving !== null) pending.add(this.receiving.exchange);
    this.inFlight.length = 0;
    this.receiving = null;
    for (const exchange of pending) {
      if (exchange.state !== 'pending') continue;
      exchange.state = 'incomplete';
      exchange.error ??= 'the connection closed before the exchange completed';
      this.recorder.changed(exchange);
    }
  }

  private pushRequests(chunk: Buffer): void {
    let input: Buffer | null = chunk;
    try {
      while (input !== null && !this.stopped && this.upgradeStash === null) {
        input = this.requests.push(input, this.handler);
        // end() stopped the reader at an upgrade request: hold what follows.
        if (input !== null) this.holdForUpgrade(input);
      }
    } catch (error) {
      this.unparseable(this.receiving?.exchange ?? null, error, chunk);
    }
  }

  private holdForUpgrade(input: Buffer): void {
    this.upgradeStash?.push(Buffer.from(input));
    this.upgradeStashBytes += input.length;
  }

  private onRequestHead(head: RequestHead): void {
    const exchange = this.recorder.add(this.target, this.replayOf);
    this.replayOf = null;
    this.firstExchange ??= exchange;
    const startedAt = this.headStartedAt === 0 ? performance.now() : this.headStartedAt;
    const capture = head.body.kind === 'none' ? null : new BodyCapture(this.recorder.bodyLimit);
    const entry: InFlight = {
      exchange,
      startedAt,
      isHead: head.method === 'HEAD',
      upgrade: head.upgrade,
      requestBody: capture,
      requestDecoder:
        head.body.kind === 'chunked' && capture !== null
          ? new ChunkedDecoder((bytes) => {
              capture.add(bytes);
            })
          : null,
      requestHead: head,
    };
    exchange.upgrade = head.upgrade;
    exchange.request = {
      method: head.method,
      target: head.target,
      httpVersion: `HTTP/1.${head.minorVersion}`,
      headers: head.headers,
      body: { size: 0, bytes: Buffer.alloc(0), truncated: false },
    };
    this.receiving = entry;
    this.inFlight.push(entry);
    this.recorder.changed(exchange);
  }

  private onRequestEnd(): boolean {
    const entry = this.receiving;
    this.receiving = null;
    if (entry === null) return true;
    const request = entry.exchange.request;
    if (request !== null && entry.requestBody !== null) {
      entry.exchange.request = { ...request, body: entry.requestBody.result() };
    }
    entry.requestBody = null;
    entry.requestDecoder = null;
    entry.requestHead = null;
    this.maybeComplete(entry);
    if (entry.upgrade) {
      // What follows may be another protocol: hold it until the response says.
      this.upgradeStash = [];
      this.upgradeStashBytes = 0;
      return false;
    }
    return true;
  }

  private consumeResponse(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.stopped) {
      switch (this.responseState) {
        case 'head': {
          if (this.inFlight.length === 0) {
            throw new FramingError('the service sent bytes that answer no request');
          }
          const end = this.headEnd(chunk, at);
          if (end < 0) return;
          at = end;
          this.onResponseHead();
          break;
        }
        case 'length': {
          const take = Math.min(this.responseRemaining, chunk.length - at);
          this.responseBody?.add(chunk.subarray(at, at + take));
          at += take;
          this.responseRemaining -= take;
          if (this.responseRemaining === 0) this.finishResponse();
          break;
        }
        case 'chunked': {
          const decoder = this.responseDecoder;
          if (decoder === null) throw new FramingError('no chunked decoder');
          at = decoder.push(chunk, at);
          if (decoder.done) this.finishResponse();
          break;
        }
        case 'until-close':
          this.responseBody?.add(chunk.subarray(at));
          return;
      }
    }
  }

  /** Collects a response head; returns the offset just past it, or -1 (stashed). */
  private headEnd(chunk: Buffer, at: number): number {
    const previous = this.responseHead[this.responseHead.length - 1];
    // The terminator may straddle chunks: look at the stashed tail too.
    const tail =
      previous === undefined
        ? Buffer.alloc(0)
        : previous.length >= 3
          ? previous.subarray(-3)
          : Buffer.concat(this.responseHead).subarray(-3);
    const window = Buffer.concat([tail, chunk.subarray(at, at + 3)]);
    let end = -1;
    const straddle = tail.length > 0 ? window.indexOf(HEAD_END) : -1;
    if (straddle >= 0) end = at + straddle + 4 - tail.length;
    else {
      const found = chunk.indexOf(HEAD_END, at);
      if (found >= 0) end = found + 4;
    }
    const piece = chunk.subarray(at, end < 0 ? chunk.length : end);
    this.responseHeadBytes += piece.length;
    if (this.responseHeadBytes > DEFAULT_HTTP_LIMITS.maxHeadBytes) {
      throw new FramingError('response head too large');
    }
    this.responseHead.push(Buffer.from(piece));
    return end;
  }

  private onResponseHead(): void {
    const bytes = Buffer.concat(this.responseHead);
    this.responseHead = [];
    this.responseHeadBytes = 0;
    const lines = bytes.toString('latin1', 0, bytes.length - 4).split('\r\n');
    // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ].
    const match = /^(HTTP\/1\.[01]) ([1-9]\d\d)(?: ([^\r\n]*))?$/.exec(lines[0] ?? '');
    if (match === null) throw new FramingError('malformed response status line');
    const headers: HeaderField[] = [];
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      if (colon <= 0) throw new FramingError('malformed response header line');
      headers.push([line.slice(0, colon), line.slice(colon + 1).trim()]);
    }
    const status = Number(match[2]);
    const entry = this.inFlight[0];
    if (entry === undefined) throw new FramingError('a response to no request');
    if (status < 200 && status !== 101) return; // interim (100 Continue, 103): the final one follows
    const exchange = entry.exchange;
    exchange.timeToHeadMs = performance.now() - entry.startedAt;
    this.responseMeta = {
      status,
      reason: match[3] ?? '',
      httpVersion: match[1] ?? 'HTTP/1.1',
      headers,
    };
    this.responseBody = new BodyCapture(this.recorder.bodyLimit);
    if (status === 101) {
      // Switching protocols (WebSocket): the exchange is the upgrade; later bytes are opaque.
      this.finishResponse();
      this.stop();
      return;
    }
    let contentLength: string | undefined;
    let transferEncoding: string | undefined;
    for (const [name, value] of headers) {
      const lower = name.toLowerCase();
      if (lower === 'content-length') contentLength = value;
      else if (lower === 'transfer-encoding') {
        transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
      }
    }
    // RFC 9112 §6.3, in its order.
    if (entry.isHead || status === 204 || status === 304) {
      this.finishResponse();
    } else if (transferEncoding !== undefined) {
      const codings = transferEncoding.split(',').map((coding) => coding.trim().toLowerCase());
      if (codings[codings.length - 1] === 'chunked') {
        const capture = this.responseBody;
        this.responseDecoder = new ChunkedDecoder((data) => {
          capture.add(data);
        });
        this.responseState = 'chunked';
      } else {
        this.responseState = 'until-close';
      }
    } else if (contentLength !== undefined) {
      if (!/^\d{1,15}$/.test(contentLength)) throw new FramingError('invalid Content-Length');
      this.responseRemaining = Number(contentLength);
      if (this.responseRemaining === 0) this.finishResponse();
      else this.responseState = 'length';
    } else {
      this.responseState = 'until-close';
    }
  }

  private finishResponse(): void {
    const entry = this.inFlight.shift();
    const meta = this.responseMeta;
    const body = this.responseBody;
    this.responseState = 'head';
    this.responseDecoder = null;
    this.responseMeta = null;
    this.responseBody = null;
    if (entry === undefined || meta === null || body === null) return;
    entry.exchange.response = { ...meta, body: body.result() };
    entry.exchange.durationMs = performance.now() - entry.startedAt;
    this.maybeComplete(entry);
    if (entry.upgrade && meta.status !== 101 && this.upgradeStash !== null) {
      // The upgrade was declined: the connection stays HTTP; resume with what was held.
      const held = Buffer.concat(this.upgradeStash);
      this.upgradeStash = null;
      if (held.length > 0) this.pushRequests(held);
    }
  }

  /** An exchange is complete once its request and its response are both whole. */
  private maybeComplete(entry: InFlight): void {
    const exchange = entry.exchange;
    if (this.receiving === entry || exchange.response === null) {
      this.recorder.changed(exchange);
      return;
    }
    if (exchange.state === 'pending') exchange.state = 'complete';
    this.recorder.changed(exchange);
  }

  private unparseable(exchange: RecordedExchange | null, error: unknown, sample: Buffer): void {
    const target = exchange ?? this.recorder.add(this.target, this.replayOf);
    this.firstExchange ??= target;
    target.state = 'unparseable';
    target.error = error instanceof Error ? error.message : String(error);
    target.rawSample = Buffer.from(sample.subarray(0, UNPARSEABLE_SAMPLE));
    this.recorder.changed(target);
    this.stop();
  }
}
