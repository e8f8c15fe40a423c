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
 * truncated beyond it; chunked bodies are decoded by the relay's own chunked
 * decoder (../http1-chunked.ts), so the inspector and the relay agree on where
 * every message ends. Anything the recorder cannot parse is recorded as
 * "unparseable" and the rest of that stream is ignored: traffic is never
 * altered or stopped because the inspector did not understand it.
 */
import { EventEmitter } from 'node:events';
import {
  ChunkedBodyDecoder,
  DEFAULT_HTTP_LIMITS,
  REQUEST_CHUNKED,
  RESPONSE_CHUNKED,
  RequestReader,
} from '../http1.js';
import type {
  ChunkedProfile,
  ChunkedSink,
  HeaderField,
  RequestHandler,
  RequestHead,
} from '../http1.js';
import { LineBuffer } from '../http1-chunked.js';

export const DEFAULT_BODY_LIMIT = 64 * 1024;
export const DEFAULT_RING_SIZE = 500;
/** Bytes of an unparseable stream kept to show what it was. */
const UNPARSEABLE_SAMPLE = 1024;
/** Client bytes held while an upgrade request waits for its answer. */
const MAX_UPGRADE_STASH = 64 * 1024;

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

/** Keeps a body's first `limit` bytes and counts the rest (a sink for decoded chunked bodies). */
class BodyCapture implements ChunkedSink {
  private readonly parts: Buffer[] = [];
  private kept = 0;
  size = 0;

  constructor(private readonly limit: number) {}

  body(bytes: Buffer): void {
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
 * A convenience wrapper around the relay's ChunkedBodyDecoder (../http1-chunked.ts),
 * with its checks and errors (HttpParseError); `profile` picks how strictly
 * trailers are checked (default: as the relay checks responses).
 */
export class ChunkedDecoder {
  private readonly decoder: ChunkedBodyDecoder;
  private readonly sink: ChunkedSink;

  constructor(onData: (bytes: Buffer) => void, profile: ChunkedProfile = RESPONSE_CHUNKED) {
    if (typeof onData !== 'function') throw new TypeError('onData must be a function');
    this.decoder = new ChunkedBodyDecoder(profile, DEFAULT_HTTP_LIMITS, 'decoded');
    this.sink = { body: onData };
  }

  get done(): boolean {
    return this.decoder.done;
  }

  /** Consumes input from `offset`; returns the offset where this message's bytes end. */
  push(chunk: Buffer, offset = 0): number {
    return this.decoder.push(chunk, offset, this.sink);
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
  /** The body is chunked: it goes through the observer's request decoder. */
  requestChunked: boolean;
  requestHead: RequestHead | null;
}

type ResponseState = 'head' | 'length' | 'chunked' | 'until-close';

/** Observes one stream: frames requests and responses, records each exchange. */
export class StreamObserver implements StreamTap {
  private readonly requests = new RequestReader();
  /**
   * De-chunks the request being received; RequestReader has validated (and
   * hands over) the encoding, so this only strips the framing.
   */
  private readonly requestDecoder = new ChunkedBodyDecoder(
    REQUEST_CHUNKED,
    DEFAULT_HTTP_LIMITS,
    'decoded',
  );
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
  /** An incomplete response head or chunked framing line. */
  private readonly responseLines = new LineBuffer();
  private readonly responseDecoder = new ChunkedBodyDecoder(
    RESPONSE_CHUNKED,
    DEFAULT_HTTP_LIMITS,
    'decoded',
    this.responseLines,
  );
  private responseRemaining = 0;
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
      if (current.requestChunked) this.requestDecoder.push(bytes, 0, current.requestBody);
      else current.requestBody?.body(bytes);
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
      requestChunked: head.body.kind === 'chunked',
      requestHead: head,
    };
    if (entry.requestChunked) this.requestDecoder.reset();
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
    entry.requestChunked = false;
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
          const end = this.responseLines.headEnd(chunk, at);
          const max = DEFAULT_HTTP_LIMITS.maxHeadBytes;
          if (end < 0) {
            if (!this.responseLines.stash(chunk.subarray(at), max)) {
              throw new FramingError('response head too large');
            }
            return;
          }
          const head = this.responseLines.take(chunk.subarray(at, end), max);
          if (head === null) throw new FramingError('response head too large');
          at = end;
          this.onResponseHead(head);
          break;
        }
        case 'length': {
          const take = Math.min(this.responseRemaining, chunk.length - at);
          this.responseBody?.body(chunk.subarray(at, at + take));
          at += take;
          this.responseRemaining -= take;
          if (this.responseRemaining === 0) this.finishResponse();
          break;
        }
        case 'chunked':
          at = this.responseDecoder.push(chunk, at, this.responseBody);
          if (this.responseDecoder.done) this.finishResponse();
          break;
        case 'until-close':
          this.responseBody?.body(chunk.subarray(at));
          return;
      }
    }
  }

  private onResponseHead(bytes: Buffer): void {
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
        this.responseDecoder.reset();
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
