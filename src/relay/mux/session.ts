/**
 * A yamux session over any Node Duplex (a TLS socket in production, TCP or an
 * in-memory pair in tests), interoperable with hashicorp/yamux.
 *
 * Spec: hashicorp/yamux spec.md. The client opens odd stream ids, the server even
 * ones ("StreamID Field"); a stream opens with SYN and is accepted with ACK or
 * refused with RST ("Opening a stream"); FIN half-closes, RST aborts ("Closing a
 * stream"); Ping measures RTT and keeps the connection alive; Go Away ends the
 * session with a code ("Session termination").
 *
 * Robustness: a malformed or illegal frame fails only this session, with a
 * YamuxProtocolError (code ERR_YAMUX_PROTOCOL), a GoAway(protocol error) to the
 * peer and the transport closed. Nothing is thrown at the transport's event
 * handlers, and no promise is left rejected without a handler by the session.
 *
 * Memory is bounded: a peer can only send what the receive windows allow. Every
 * stream has the spec's 256 KiB window, so those come to at most `maxStreams` ×
 * 256 KiB; what windows hold beyond that (a larger `initialWindow`, auto-tuned
 * growth) comes out of `maxBufferedBytes`. Growth therefore never keeps a new
 * stream out: only `maxStreams` limits how many are open.
 */
import { channel } from 'node:diagnostics_channel';
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { YamuxError, YamuxProtocolError, YamuxRemoteError } from './errors.js';
import {
  Flag,
  FrameReader,
  FrameType,
  GoAwayCode,
  HEADER_LENGTH,
  INITIAL_STREAM_WINDOW,
  MAX_UINT32,
  encodeHeader,
} from './frame.js';
import type { FrameHandler, FrameHeader } from './frame.js';
import { Stream } from './stream.js';
import type { StreamHost } from './stream.js';

export interface SessionOptions {
  /**
   * Streams open at once, both directions together (default 256). A SYN beyond it
   * is refused with RST; open() beyond it throws ERR_YAMUX_STREAM_LIMIT.
   */
  maxStreams?: number;
  /**
   * The receive window a stream starts with (default and minimum 256 KiB, the
   * spec's initial window; more is announced with the SYN/ACK).
   */
  initialWindow?: number;
  /**
   * How far a stream's receive window may grow by auto-tuning (default 16 MiB), so
   * one stream on a long fat link is not held to 256 KiB per round trip.
   */
  maxWindow?: number;
  /**
   * What all streams' receive windows may hold beyond the spec's 256 KiB each
   * (default 64 MiB): the budget for a larger `initialWindow` and for auto-tuned
   * growth. Windows stop growing when it is used up; with `initialWindow` above
   * 256 KiB, a stream whose extra window does not fit is refused. The most the
   * peer may have unread towards us is `maxStreams` × 256 KiB + this. Also bounds
   * the frames we queue towards a peer that does not read.
   */
  maxBufferedBytes?: number;
  /** Largest Data frame we send (default 64 KiB): bounds how long one stream holds the line. */
  maxFrameSize?: number;
  /** Ping the peer this often, in ms; 0 turns keepalives off (default 30 000). */
  keepaliveInterval?: number;
  /** A ping (keepalive or ping()) unanswered this long fails, in ms (default 10 000). */
  pingTimeout?: number;
  /**
   * A stream we open that the peer neither accepts (ACK) nor refuses (RST) within
   * this many ms is reset with ERR_YAMUX_TIMEOUT; 0 turns it off (default 30 000).
   * Yamux has no session handshake: this is its stream-level equivalent.
   */
  openTimeout?: number;
  /** After close()/destroy()/an error, how long to wait for the transport to flush, in ms (default 2 000). */
  closeTimeout?: number;
}

export interface SessionEvents {
  /** The peer opened a stream (already accepted with ACK). */
  stream: [stream: Stream];
  /** The peer sent GoAway(normal): it accepts no new streams; existing ones go on. */
  goaway: [];
  /** The session failed. Emitted only when a listener is attached; 'close' always follows. */
  error: [error: YamuxError];
  /** The session and its transport are closed; `error` is why, if it failed. */
  close: [error: YamuxError | undefined];
}

/** diagnostics_channel events, for logging and metrics (library code never logs). */
export const diagnostics = {
  /** Published once per session when it closes: { session, error }. */
  sessionClose: channel('warren:yamux:session-close'),
};
export interface SessionCloseEvent {
  readonly session: Session;
  readonly error: YamuxError | undefined;
}

const DEFAULTS = {
  maxStreams: 256,
  initialWindow: INITIAL_STREAM_WINDOW,
  maxWindow: 16 * 1024 * 1024,
  maxBufferedBytes: 64 * 1024 * 1024,
  maxFrameSize: 64 * 1024,
  keepaliveInterval: 30_000,
  pingTimeout: 10_000,
  openTimeout: 30_000,
  closeTimeout: 2_000,
} as const;

type ResolvedOptions = { -readonly [K in keyof typeof DEFAULTS]: number };

/** Stop feeding Data frames to the transport while it holds this much unsent. */
const MIN_WRITE_BUFFER_LIMIT = 512 * 1024;
/** Frames of one turn are gathered into buffers of this size (see writeFrame). */
const BATCH_BUFFER_BYTES = 64 * 1024;
/** Payloads up to this size are copied next to their header; larger ones go as they are. */
const COPY_PAYLOAD_MAX_BYTES = 8 * 1024;

interface PendingPing {
  readonly startedAt: number;
  readonly resolve: (rttMs: number) => void;
  readonly reject: (error: YamuxError) => void;
  readonly timer: NodeJS.Timeout;
}

type SessionState = 'open' | 'closing' | 'closed';

function resolveOptions(options: SessionOptions): ResolvedOptions {
  if (typeof options !== 'object') throw new TypeError('options must be an object');
  const resolved: ResolvedOptions = { ...DEFAULTS };
  const integer = (name: keyof ResolvedOptions, min: number, max: number): void => {
    const value = options[name];
    if (value === undefined) return;
    if (!Number.isSafeInteger(value) || value < min || value > max) {
      throw new RangeError(
        `options.${name} must be an integer in [${min}, ${max}], got ${String(value)}`,
      );
    }
    resolved[name] = value;
  };
  integer('maxStreams', 1, 1 << 30);
  integer('initialWindow', INITIAL_STREAM_WINDOW, MAX_UINT32);
  integer('maxWindow', INITIAL_STREAM_WINDOW, MAX_UINT32);
  integer('maxBufferedBytes', 0, Number.MAX_SAFE_INTEGER);
  integer('maxFrameSize', 1, 16 * 1024 * 1024);
  integer('keepaliveInterval', 0, 2 ** 31 - 1);
  integer('pingTimeout', 1, 2 ** 31 - 1);
  integer('openTimeout', 0, 2 ** 31 - 1);
  integer('closeTimeout', 0, 2 ** 31 - 1);
  if (options.maxWindow === undefined && resolved.maxWindow < resolved.initialWindow) {
    resolved.maxWindow = resolved.initialWindow;
  }
  if (resolved.maxWindow < resolved.initialWindow) {
    throw new RangeError(
      `options.maxWindow (${resolved.maxWindow}) must be at least options.initialWindow (${resolved.initialWindow})`,
    );
  }
  if (resolved.maxBufferedBytes < resolved.initialWindow - INITIAL_STREAM_WINDOW) {
    throw new RangeError(
      `options.maxBufferedBytes (${resolved.maxBufferedBytes}) must hold at least one stream's window beyond 256 KiB (options.initialWindow ${resolved.initialWindow})`,
    );
  }
  return resolved;
}

function isDuplex(value: unknown): value is Duplex {
  if (typeof value !== 'object' || value === null) return false;
  const candidate = value as Partial<Duplex>;
  return (
    typeof candidate.write === 'function' &&
    typeof candidate.on === 'function' &&
    typeof candidate.end === 'function' &&
    typeof candidate.destroy === 'function'
  );
}

export class Session extends EventEmitter<SessionEvents> {
  /** True for the side that opens odd stream ids. */
  readonly isClient: boolean;

  private readonly transport: Duplex;
  private readonly options: ResolvedOptions;
  /**
   * How far a new stream's window starts above the spec's 256 KiB: announced in
   * the SYN/ACK Window Update, and the part of it taken from maxBufferedBytes.
   */
  private readonly extraInitialWindow: number;
  private readonly reader: FrameReader;
  private readonly streams = new Map<number, Stream>();
  private state: SessionState = 'open';
  private failure: YamuxError | undefined;
  private closeEmitted = false;
  private closePromise: Promise<void> | null = null;

  private nextLocalStreamId: number;
  private highestRemoteStreamId = 0;
  private remoteGoAway = false;
  private windowBudgetUsed = 0;

  private nextPingId = 0;
  private readonly pings = new Map<number, PendingPing>();
  private lastRttMs: number | undefined;
  private keepaliveTimer: NodeJS.Timeout | null = null;
  private closeTimer: NodeJS.Timeout | null = null;

  private readonly sendQueue: (Stream | undefined)[] = [];
  private sendQueueHead = 0;
  private pumping = false;
  private waitingForDrain = false;
  /**
   * The frames of the current event-loop turn, not yet handed to the transport:
   * headers and small payloads packed into `batch` (from `batchStart` to
   * `batchEnd`), earlier packed regions and large payloads in `outgoing`.
   */
  private batch: Buffer = Buffer.allocUnsafeSlow(BATCH_BUFFER_BYTES);
  private batchStart = 0;
  private batchEnd = 0;
  private readonly outgoing: Buffer[] = [];
  private outgoingBytes = 0;
  private flushScheduled = false;
  private readonly writeBufferLimit: number;
  private readonly controlBacklogLimit: number;

  /** The stream the current frame belongs to (null: a session frame or a discarded one). */
  private frameStream: Stream | null = null;

  private readonly host: StreamHost;

  /** Starts the client side of a session over `transport` (opens odd stream ids). */
  static client(transport: Duplex, options: SessionOptions = {}): Session {
    return new Session(transport, true, options);
  }

  /** Starts the server side of a session over `transport` (opens even stream ids). */
  static server(transport: Duplex, options: SessionOptions = {}): Session {
    return new Session(transport, false, options);
  }

  private constructor(transport: Duplex, isClient: boolean, options: SessionOptions) {
    super();
    if (!isDuplex(transport)) throw new TypeError('transport must be a Duplex stream');
    this.options = resolveOptions(options);
    this.extraInitialWindow = this.options.initialWindow - INITIAL_STREAM_WINDOW;
    this.transport = transport;
    this.isClient = isClient;
    this.nextLocalStreamId = isClient ? 1 : 2;
    this.reader = new FrameReader(this.options.maxWindow);
    this.writeBufferLimit = Math.max(transport.writableHighWaterMark, MIN_WRITE_BUFFER_LIMIT);
    // Data frames stop at writeBufferLimit (+ one frame); what piles up beyond is
    // control frames (ping replies, window updates, RSTs) a peer provokes while
    // not reading. Past this, the peer is abusive or dead.
    this.controlBacklogLimit =
      this.writeBufferLimit +
      this.options.maxFrameSize +
      Math.min(this.options.maxBufferedBytes, 4 * 1024 * 1024);

    // eslint-disable-next-line @typescript-eslint/no-this-alias -- the host closes over the session
    const session = this;
    this.host = {
      get writable(): boolean {
        return session.state !== 'closed';
      },
      get rttMs(): number | undefined {
        return session.lastRttMs;
      },
      get maxWindow(): number {
        return session.options.maxWindow;
      },
      writeFrame: (type, flags, streamId, length, payload) => {
        this.writeFrame(type, flags, streamId, length, payload);
      },
      scheduleSend: (stream) => {
        this.scheduleSend(stream);
      },
      reserveWindow: (bytes) => this.reserveWindow(bytes),
      streamGone: (stream, sendReset) => {
        this.streamGone(stream, sendReset);
      },
    };

    transport.on('data', this.onTransportData);
    transport.on('end', this.onTransportEnd);
    transport.on('error', this.onTransportError);
    transport.on('close', this.onTransportClose);
    transport.on('drain', this.onTransportDrain);
    if (transport.destroyed) {
      process.nextTick(this.onTransportClose);
      return;
    }

    if (this.options.keepaliveInterval > 0) {
      this.keepaliveTimer = setInterval(this.keepalive, this.options.keepaliveInterval);
      this.keepaliveTimer.unref();
    }
    // Auto-tuning needs an RTT: measure one now, as libp2p/go-yamux does at start.
    // A failure here is the keepalive's business, not this probe's.
    if (this.options.maxWindow > this.options.initialWindow) {
      this.ping().catch(() => undefined);
    }
  }

  // ---- public API -----------------------------------------------------------------

  /** Streams currently open (opened or accepted, not yet fully closed). */
  get streamCount(): number {
    return this.streams.size;
  }

  /** The last RTT measured by a ping, in ms (undefined before the first answer). */
  get rtt(): number | undefined {
    return this.lastRttMs;
  }

  /** True once the session no longer carries streams (after close, destroy or failure). */
  get closed(): boolean {
    return this.state === 'closed';
  }

  /** Why the session failed, if it did. */
  get error(): YamuxError | undefined {
    return this.failure;
  }

  /** True once the peer sent GoAway(normal): open() will refuse. */
  get goneAway(): boolean {
    return this.remoteGoAway;
  }

  /**
   * Opens a stream. The SYN goes out at once and data may be written right away:
   * the peer's ACK is not awaited (spec.md "Opening a stream"). A refusal shows up
   * as an 'error' on the stream (YamuxStreamResetError with `refused`).
   *
   * Throws ERR_YAMUX_SESSION_CLOSED after close/destroy, ERR_YAMUX_GOAWAY after the
   * peer's GoAway, ERR_YAMUX_STREAM_LIMIT at maxStreams (or when an
   * initialWindow above 256 KiB no longer fits maxBufferedBytes).
   */
  open(): Stream {
    if (this.state !== 'open') {
      throw new YamuxError(
        'ERR_YAMUX_SESSION_CLOSED',
        'cannot open a stream: the session is closed',
      );
    }
    if (this.remoteGoAway) {
      throw new YamuxError('ERR_YAMUX_GOAWAY', 'cannot open a stream: the peer sent GoAway');
    }
    if (this.streams.size >= this.options.maxStreams) {
      throw new YamuxError(
        'ERR_YAMUX_STREAM_LIMIT',
        `cannot open a stream: ${this.streams.size} streams open (maxStreams ${this.options.maxStreams})`,
      );
    }
    const id = this.nextLocalStreamId;
    if (id > MAX_UINT32) {
      throw new YamuxError(
        'ERR_YAMUX_STREAM_LIMIT',
        'cannot open a stream: stream ids are used up',
      );
    }
    const reserved = this.reserveWindow(this.extraInitialWindow);
    if (reserved < this.extraInitialWindow) {
      this.releaseWindow(reserved);
      throw new YamuxError(
        'ERR_YAMUX_STREAM_LIMIT',
        `cannot open a stream: the receive windows would exceed maxBufferedBytes (${this.options.maxBufferedBytes})`,
      );
    }
    this.nextLocalStreamId += 2;
    const stream = new Stream(this.host, id, this.options.initialWindow, false);
    this.streams.set(id, stream);
    this.writeFrame(FrameType.WindowUpdate, Flag.SYN, id, this.extraInitialWindow);
    stream.startOpenTimer(this.options.openTimeout);
    return stream;
  }

  /** Measures the round-trip time with a Ping frame; resolves with it in ms. */
  ping(): Promise<number> {
    if (this.state === 'closed') {
      return Promise.reject(
        new YamuxError('ERR_YAMUX_SESSION_CLOSED', 'cannot ping: the session is closed'),
      );
    }
    const id = this.nextPingId;
    this.nextPingId = id === MAX_UINT32 ? 0 : id + 1;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pings.delete(id);
        reject(
          new YamuxError(
            'ERR_YAMUX_TIMEOUT',
            `no ping answer within ${this.options.pingTimeout} ms`,
          ),
        );
      }, this.options.pingTimeout);
      timer.unref();
      this.pings.set(id, { startedAt: performance.now(), resolve, reject, timer });
      this.writeFrame(FrameType.Ping, Flag.SYN, 0, id);
    });
  }

  /**
   * Closes gracefully: sends GoAway(normal), refuses new streams both ways, waits
   * for the open streams to finish, then ends the transport. Resolves once the
   * transport is closed. Use destroy() to cut it short.
   */
  close(): Promise<void> {
    this.closePromise ??= new Promise<void>((resolve) => {
      if (this.closeEmitted) {
        resolve();
        return;
      }
      this.once('close', () => {
        resolve();
      });
    });
    if (this.state === 'open') {
      this.state = 'closing';
      this.writeFrame(FrameType.GoAway, 0, 0, GoAwayCode.Normal);
      if (this.streams.size === 0) this.shutdown(undefined, undefined);
    }
    return this.closePromise;
  }

  /**
   * Closes at once: open streams fail with `error` (or ERR_YAMUX_SESSION_CLOSED),
   * the peer gets GoAway (normal, or internal error when `error` is given).
   */
  destroy(error?: YamuxError): void {
    if (error !== undefined && !(error instanceof YamuxError)) {
      throw new TypeError('error must be a YamuxError');
    }
    if (this.state === 'closed') return;
    this.shutdown(error, error === undefined ? GoAwayCode.Normal : GoAwayCode.InternalError);
  }

  // ---- receiving ------------------------------------------------------------------

  private readonly onTransportData = (chunk: unknown): void => {
    if (this.state === 'closed') return; // after a failure the framing is not trusted: drop
    if (!Buffer.isBuffer(chunk)) {
      this.shutdown(
        new YamuxError(
          'ERR_YAMUX_TRANSPORT',
          'the transport delivered a non-Buffer chunk (setEncoding?)',
        ),
        GoAwayCode.InternalError,
      );
      return;
    }
    try {
      this.reader.push(chunk, this.frameHandler);
    } catch (error) {
      this.frameStream = null;
      if (error instanceof YamuxProtocolError) {
        this.shutdown(error, GoAwayCode.ProtocolError);
      } else {
        this.shutdown(
          new YamuxError(
            'ERR_YAMUX_INTERNAL',
            `unexpected failure handling a frame: ${String(error)}`,
            {
              cause: error,
            },
          ),
          GoAwayCode.InternalError,
        );
      }
    }
  };

  private readonly frameHandler: FrameHandler = {
    header: (header) => {
      if (this.state === 'closed') return;
      switch (header.type) {
        case FrameType.Data:
        case FrameType.WindowUpdate:
          this.onStreamFrameHeader(header);
          return;
        case FrameType.Ping:
          this.onPing(header);
          return;
        case FrameType.GoAway:
          this.onGoAway(header.length);
          return;
      }
    },
    payload: (piece) => {
      const stream = this.frameStream;
      if (stream !== null && this.state !== 'closed') stream.onData(piece);
    },
    end: (header) => {
      const stream = this.frameStream;
      this.frameStream = null;
      if (stream === null || this.state === 'closed') return;
      // Flags that end a stream take effect after its payload was delivered.
      if ((header.flags & Flag.RST) !== 0) {
        stream.onReset();
        return;
      }
      if ((header.flags & Flag.FIN) !== 0) stream.onFin();
      if (header.type === FrameType.Data) stream.onDataFrameEnd();
    },
  };

  private onStreamFrameHeader(header: FrameHeader): void {
    const id = header.streamId;
    let stream = this.streams.get(id);
    let opened = false;
    if ((header.flags & Flag.SYN) !== 0) {
      if (stream !== undefined) {
        throw new YamuxProtocolError(`SYN for stream ${id}, which is already open`);
      }
      if (this.isLocalId(id)) {
        throw new YamuxProtocolError(`the peer opened stream ${id}, an id of our side`);
      }
      if (id > this.highestRemoteStreamId) this.highestRemoteStreamId = id;
      const accepted = this.acceptStream(id);
      if (accepted === null) {
        this.frameStream = null;
        return;
      }
      stream = accepted;
      opened = true;
    } else if (stream === undefined) {
      if (this.isClosedStreamId(id)) {
        // A stream we reset or closed: frames may still be in flight (hashicorp/yamux
        // session.go handleStreamMessage: "If we do not have a stream, likely we sent a RST").
        this.frameStream = null;
        return;
      }
      throw new YamuxProtocolError(`frame for stream ${id}, which was never opened`);
    }
    try {
      if ((header.flags & Flag.ACK) !== 0) stream.onAck();
      if (header.type === FrameType.Data) {
        if (header.length > 0) stream.onDataHeader(header.length);
      } else {
        stream.onWindowUpdate(header.length);
      }
    } catch (error) {
      // A stream this very frame opened has no listener yet ('stream' is emitted
      // below): end it quietly, or the session's failure would reach it as an
      // 'error' nobody handles, an uncaught exception that kills the process.
      if (opened) stream.destroy();
      throw error;
    }
    this.frameStream = stream;
    // Listeners get a new stream before its first byte, so they can attach
    // their handlers (and an 'error' handler) before anything happens on it.
    if (opened) this.emit('stream', stream);
  }

  /** Creates and ACKs a stream the peer opened, or refuses it with RST (null). */
  private acceptStream(id: number): Stream | null {
    const refuse =
      this.state !== 'open' ||
      this.streams.size >= this.options.maxStreams ||
      this.listenerCount('stream') === 0 ||
      this.windowBudgetUsed + this.extraInitialWindow > this.options.maxBufferedBytes;
    if (refuse) {
      this.writeFrame(FrameType.WindowUpdate, Flag.RST, id, 0);
      return null;
    }
    this.reserveWindow(this.extraInitialWindow);
    const stream = new Stream(this.host, id, this.options.initialWindow, true);
    this.streams.set(id, stream);
    this.writeFrame(FrameType.WindowUpdate, Flag.ACK, id, this.extraInitialWindow);
    return stream;
  }

  private isLocalId(id: number): boolean {
    return (id % 2 === 1) === this.isClient;
  }

  private isClosedStreamId(id: number): boolean {
    return this.isLocalId(id) ? id < this.nextLocalStreamId : id <= this.highestRemoteStreamId;
  }

  private onPing(header: FrameHeader): void {
    if ((header.flags & Flag.SYN) !== 0) {
      // spec.md "Length Field": a Ping's value is opaque and echoed back with ACK.
      this.writeFrame(FrameType.Ping, Flag.ACK, 0, header.length);
      return;
    }
    if ((header.flags & Flag.ACK) === 0) return;
    const pending = this.pings.get(header.length);
    if (pending === undefined) return; // late answer to a ping that timed out
    this.pings.delete(header.length);
    clearTimeout(pending.timer);
    const rtt = performance.now() - pending.startedAt;
    this.lastRttMs = rtt;
    pending.resolve(rtt);
  }

  private onGoAway(code: number): void {
    if (code === GoAwayCode.Normal) {
      if (!this.remoteGoAway) {
        this.remoteGoAway = true;
        this.emit('goaway');
      }
      return;
    }
    this.shutdown(new YamuxRemoteError(code), undefined);
  }

  private readonly onTransportEnd = (): void => {
    // The peer closed its side. Streams it finished cleanly keep their unread data;
    // the others were cut short.
    if (this.state === 'closed') return;
    this.shutdown(undefined, undefined, true);
  };

  private readonly onTransportError = (error: Error): void => {
    // After the session closed, a late socket error (say ECONNRESET while the
    // transport drains) changes nothing; the listener stays so it is not unhandled.
    if (this.state === 'closed') return;
    this.shutdown(
      new YamuxError('ERR_YAMUX_TRANSPORT', `the transport failed: ${error.message}`, {
        cause: error,
      }),
      undefined,
    );
  };

  private readonly onTransportClose = (): void => {
    if (this.state !== 'closed') this.shutdown(undefined, undefined, true);
    if (this.closeTimer !== null) {
      clearTimeout(this.closeTimer);
      this.closeTimer = null;
    }
    if (this.closeEmitted) return;
    this.closeEmitted = true;
    this.transport.off('data', this.onTransportData);
    this.transport.off('drain', this.onTransportDrain);
    if (diagnostics.sessionClose.hasSubscribers) {
      const event: SessionCloseEvent = { session: this, error: this.failure };
      diagnostics.sessionClose.publish(event);
    }
    this.emit('close', this.failure);
  };

  // ---- sending --------------------------------------------------------------------

  /**
   * Queues one frame for the transport. Frames written in one event-loop turn
   * leave together at the end of it (flushOutgoing): headers and small payloads
   * are packed side by side in one buffer, so a turn that frames fifty small
   * requests hands the transport one or a few buffers (over TLS: few records,
   * one encryption call) instead of a hundred writes. setImmediate, not
   * nextTick: under load one turn runs many callbacks (one per public
   * connection with data) and all their frames should share the write; the
   * check phase comes right after the poll phase that delivered the data, so
   * nothing waits longer than the current turn.
   */
  private writeFrame(
    type: FrameType,
    flags: number,
    streamId: number,
    length: number,
    payload?: Buffer,
  ): void {
    const transport = this.transport;
    if (transport.destroyed || transport.writableEnded) return;
    const copied = payload !== undefined && payload.length <= COPY_PAYLOAD_MAX_BYTES;
    const packedBytes = HEADER_LENGTH + (copied ? payload.length : 0);
    if (this.batchEnd + packedBytes > this.batch.length) {
      this.sealBatch();
      this.batch = Buffer.allocUnsafeSlow(Math.max(BATCH_BUFFER_BYTES, packedBytes));
      this.batchStart = 0;
      this.batchEnd = 0;
    }
    encodeHeader(type, flags, streamId, length, this.batch, this.batchEnd);
    this.batchEnd += HEADER_LENGTH;
    if (payload !== undefined) {
      if (copied) {
        this.batchEnd += payload.copy(this.batch, this.batchEnd);
      } else {
        this.sealBatch();
        this.outgoing.push(payload);
      }
    }
    this.outgoingBytes += HEADER_LENGTH + (payload?.length ?? 0);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushOutgoing);
    }
    if (
      transport.writableLength + this.outgoingBytes > this.controlBacklogLimit &&
      this.state !== 'closed'
    ) {
      const limit = this.controlBacklogLimit;
      process.nextTick(() => {
        if (this.state === 'closed') return;
        this.shutdown(
          new YamuxError(
            'ERR_YAMUX_BUFFER_LIMIT',
            `more than ${limit} bytes of frames wait to be sent: the peer does not read`,
          ),
          undefined,
        );
      });
    }
  }

  /** Moves the packed, not yet queued part of `batch` to `outgoing`. */
  private sealBatch(): void {
    if (this.batchEnd === this.batchStart) return;
    // The transport may keep this region until it is sent; later frames are
    // packed after it, never over it.
    this.outgoing.push(this.batch.subarray(this.batchStart, this.batchEnd));
    this.batchStart = this.batchEnd;
  }

  /** Hands the frames gathered in this turn to the transport. */
  private readonly flushOutgoing = (): void => {
    this.flushScheduled = false;
    this.sealBatch();
    const outgoing = this.outgoing;
    const transport = this.transport;
    if (outgoing.length === 0) return;
    if (transport.destroyed || transport.writableEnded) {
      outgoing.length = 0;
      this.outgoingBytes = 0;
      return;
    }
    if (outgoing.length === 1) {
      transport.write(outgoing[0]);
    } else {
      transport.cork();
      for (const buffer of outgoing) transport.write(buffer);
      transport.uncork();
    }
    outgoing.length = 0;
    this.outgoingBytes = 0;
    // pump() stopped at writeBufferLimit counting what was still gathered here;
    // if the transport took it all without asking for a drain, go on now.
    if (this.waitingForDrain && !transport.writableNeedDrain) {
      this.waitingForDrain = false;
      this.pump();
    }
  };

  private scheduleSend(stream: Stream): void {
    if (this.state === 'closed') return;
    this.enqueue(stream);
    this.pump();
  }

  private enqueue(stream: Stream): void {
    if (stream.queuedForSend) return;
    stream.queuedForSend = true;
    this.sendQueue.push(stream);
  }

  /**
   * Sends queued Data frames, one frame per stream in turn (round robin, so one
   * busy stream cannot starve the others), until the transport holds
   * writeBufferLimit unsent bytes; 'drain' resumes it. This is where transport
   * backpressure reaches the streams: their write callbacks wait here.
   */
  private pump(): void {
    if (this.pumping || this.waitingForDrain) return;
    this.pumping = true;
    try {
      const queue = this.sendQueue;
      while (this.sendQueueHead < queue.length) {
        if (this.transport.writableLength + this.outgoingBytes >= this.writeBufferLimit) {
          this.waitingForDrain = true;
          break;
        }
        const stream = queue[this.sendQueueHead];
        queue[this.sendQueueHead] = undefined;
        this.sendQueueHead++;
        if (stream === undefined) continue;
        stream.queuedForSend = false;
        if (this.state === 'closed') continue;
        // sendSome may re-enter scheduleSend (a write callback hands over the next
        // chunk), which queues the stream itself; enqueue() does not queue it twice.
        if (stream.sendSome(this.options.maxFrameSize)) this.enqueue(stream);
      }
      if (this.sendQueueHead === queue.length) {
        queue.length = 0;
        this.sendQueueHead = 0;
      } else if (this.sendQueueHead > 1024) {
        queue.splice(0, this.sendQueueHead);
        this.sendQueueHead = 0;
      }
    } finally {
      this.pumping = false;
    }
  }

  private readonly onTransportDrain = (): void => {
    if (!this.waitingForDrain) return;
    this.waitingForDrain = false;
    this.pump();
  };

  // ---- streams and budget ---------------------------------------------------------

  private reserveWindow(bytes: number): number {
    const granted = Math.max(
      0,
      Math.min(bytes, this.options.maxBufferedBytes - this.windowBudgetUsed),
    );
    this.windowBudgetUsed += granted;
    return granted;
  }

  private releaseWindow(bytes: number): void {
    this.windowBudgetUsed = Math.max(0, this.windowBudgetUsed - bytes);
  }

  private streamGone(stream: Stream, sendReset: boolean): void {
    if (this.streams.get(stream.id) !== stream) return;
    this.streams.delete(stream.id);
    // The spec's 256 KiB every stream has was never taken from the budget.
    this.releaseWindow(stream.receiveWindow - INITIAL_STREAM_WINDOW);
    if (sendReset && this.state !== 'closed') {
      this.writeFrame(FrameType.WindowUpdate, Flag.RST, stream.id, 0);
    }
    if (this.state === 'closing' && this.streams.size === 0) this.shutdown(undefined, undefined);
  }

  // ---- shutdown -------------------------------------------------------------------

  private readonly keepalive = (): void => {
    this.ping().catch((error: unknown) => {
      if (this.state === 'closed') return;
      if (error instanceof YamuxError && error.code === 'ERR_YAMUX_TIMEOUT') {
        this.shutdown(
          new YamuxError('ERR_YAMUX_TIMEOUT', `keepalive: ${error.message}`, { cause: error }),
          undefined,
        );
      }
    });
  };

  /**
   * Ends the session: optionally a GoAway, then streams, pings and timers are
   * released and the transport is ended (flushed) and destroyed. `peerEnded`
   * marks a clean EOF from the peer, after which streams the peer finished keep
   * their unread data.
   */
  private shutdown(
    error: YamuxError | undefined,
    goAwayCode: number | undefined,
    peerEnded = false,
  ): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.failure = error;
    if (goAwayCode !== undefined) this.writeFrame(FrameType.GoAway, 0, 0, goAwayCode);
    if (this.keepaliveTimer !== null) {
      clearInterval(this.keepaliveTimer);
      this.keepaliveTimer = null;
    }
    const streamError =
      error ??
      new YamuxError('ERR_YAMUX_SESSION_CLOSED', 'the session closed before the stream finished');
    for (const pending of this.pings.values()) {
      clearTimeout(pending.timer);
      pending.reject(
        error ??
          new YamuxError(
            'ERR_YAMUX_SESSION_CLOSED',
            'the session closed before the ping was answered',
          ),
      );
    }
    this.pings.clear();
    this.sendQueue.length = 0;
    this.sendQueueHead = 0;
    const streams = [...this.streams.values()];
    this.streams.clear();
    this.windowBudgetUsed = 0;
    for (const stream of streams)
      stream.onSessionGone(streamError, peerEnded && error === undefined);

    const transport = this.transport;
    if (!transport.destroyed) {
      if (this.options.closeTimeout === 0) {
        transport.destroy();
      } else {
        this.flushOutgoing();
        // end() flushes what is queued (the GoAway last) and sends EOF; the
        // transport closes when the peer answers with its own EOF, or at the
        // timeout if it does not (destroying at once could turn our unread
        // input into a TCP RST that makes the peer drop the GoAway).
        transport.end();
        this.closeTimer = setTimeout(() => transport.destroy(), this.options.closeTimeout);
        this.closeTimer.unref();
      }
    }
    if (error !== undefined && this.listenerCount('error') > 0) this.emit('error', error);
  }
}
