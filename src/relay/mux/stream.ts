/**
 * One yamux stream: a Node Duplex whose writes become Data frames bounded by the
 * peer's receive window, and whose readable side is fed by the session with the
 * Data frames the peer sends, bounded by our receive window.
 *
 * Flow control (hashicorp/yamux spec.md "Flow Control"): both sides start with a
 * 256 KiB window per stream; the receiver grants more with Window Update frames
 * as the application consumes data. Granting only for data that was read (not
 * merely received) is what carries backpressure end to end: a reader that stops
 * reading stops the sender within one window.
 */
import { Duplex } from 'node:stream';
import { YamuxError, YamuxProtocolError, YamuxStreamResetError } from './errors.js';
import { Flag, FrameType, INITIAL_STREAM_WINDOW, MAX_UINT32 } from './frame.js';

/** What a stream needs from its session. The session implements it privately. */
export interface StreamHost {
  /** False once the session can no longer send frames. */
  readonly writable: boolean;
  /** The most recent round-trip time measured by a ping, in ms. */
  readonly rttMs: number | undefined;
  /** Upper bound of one stream's receive window. */
  readonly maxWindow: number;
  /** Writes one frame (header + optional payload) to the transport. */
  writeFrame(
    type: FrameType,
    flags: number,
    streamId: number,
    length: number,
    payload?: Buffer,
  ): void;
  /** The stream has data and window: put it in the send queue. */
  scheduleSend(stream: Stream): void;
  /** Asks for up to `bytes` more receive-window budget; returns what was granted. */
  reserveWindow(bytes: number): number;
  /** The stream is finished or destroyed; `sendReset` says whether to RST it. */
  streamGone(stream: Stream, sendReset: boolean): void;
}

/**
 * Window auto-tuning, the scheme of libp2p/go-yamux (a hashicorp/yamux fork):
 * when two window updates of a stream come less than this many round trips
 * apart, the reader drains the window faster than the sender can refill it over
 * one RTT, i.e. the window (not the reader) limits the stream, so the window
 * doubles, up to `maxWindow` and within the session's `maxBufferedBytes`.
 */
const AUTOTUNE_RTT_FACTOR = 4;
/** A floor under the measured RTT: event-loop scheduling dwarfs loopback RTTs. */
const AUTOTUNE_MIN_RTT_MS = 1;

export class Stream extends Duplex {
  /** The stream id: odd when the client opened it, even when the server did. */
  readonly id: number;

  private readonly host: StreamHost;
  /** Bytes we may still send before the peer grants more. */
  private sendWindowBytes = INITIAL_STREAM_WINDOW;
  /**
   * Bytes the peer may still send us (granted and not yet used). It starts at
   * the full initial window: the session announces anything above the spec's
   * 256 KiB in the Window Update that carries SYN or ACK (spec.md "Flow Control").
   */
  private receiveCredit: number;
  /** The window we aim to keep granted (received-but-unread + credit); it grows. */
  private receiveTarget: number;
  /** When the last window update was sent (for auto-tuning). */
  private windowEpochStart = performance.now();

  private pendingChunk: Buffer | null = null;
  private pendingOffset = 0;
  private pendingCallback: ((error?: Error | null) => void) | null = null;

  private openTimer: NodeJS.Timeout | null = null;
  private peerAcknowledged: boolean;
  private localFinSent = false;
  private remoteFinReceived = false;
  private resetReceived = false;
  private goneFromSession = false;
  /** @internal The session's send queue bookkeeping. */
  queuedForSend = false;

  /** @internal Streams are made by Session.open() and by the session for accepted streams. */
  constructor(host: StreamHost, id: number, initialWindow: number, acknowledged: boolean) {
    super({
      allowHalfOpen: true,
      readableHighWaterMark: 64 * 1024,
      writableHighWaterMark: 64 * 1024,
    });
    this.host = host;
    this.id = id;
    this.receiveTarget = initialWindow;
    this.receiveCredit = initialWindow;
    this.peerAcknowledged = acknowledged;
  }

  /** The receive window this stream currently grants (grows with auto-tuning). */
  get receiveWindow(): number {
    return this.receiveTarget;
  }

  /** Bytes the peer currently lets us send. */
  get sendWindow(): number {
    return this.sendWindowBytes;
  }

  /** True once the peer has accepted (ACKed) a stream we opened; always true for accepted streams. */
  get acknowledged(): boolean {
    return this.peerAcknowledged;
  }

  /** Resets the stream (RST): both directions stop at once and unsent data is dropped. */
  reset(): void {
    this.destroy();
  }

  // ---- Duplex implementation ------------------------------------------------

  override _write(
    chunk: unknown,
    _encoding: BufferEncoding,
    callback: (error?: Error | null) => void,
  ): void {
    if (!Buffer.isBuffer(chunk)) {
      callback(new TypeError('yamux streams carry bytes: write Buffers or strings'));
      return;
    }
    if (!this.host.writable || this.goneFromSession) {
      callback(
        new YamuxError('ERR_YAMUX_SESSION_CLOSED', `stream ${this.id}: the session is closed`),
      );
      return;
    }
    if (chunk.length === 0) {
      callback();
      return;
    }
    this.pendingChunk = chunk;
    this.pendingOffset = 0;
    this.pendingCallback = callback;
    this.host.scheduleSend(this);
  }

  override _final(callback: (error?: Error | null) => void): void {
    // spec.md "Closing a stream": a frame with FIN half-closes; we send it as a
    // Window Update, as hashicorp/yamux does (stream.go sendClose).
    if (this.host.writable && !this.goneFromSession) {
      this.host.writeFrame(FrameType.WindowUpdate, Flag.FIN, this.id, 0);
      this.localFinSent = true;
    }
    callback();
  }

  override _read(): void {
    this.maybeSendWindowUpdate();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.clearOpenTimer();
    const pending = this.pendingCallback;
    this.pendingCallback = null;
    this.pendingChunk = null;
    if (pending !== null) {
      pending(
        error ?? new YamuxError('ERR_YAMUX_SESSION_CLOSED', `stream ${this.id} was destroyed`),
      );
    }
    // A stream destroyed before both halves closed cleanly is aborted: tell the
    // peer with RST (spec.md "Closing a stream": "if an error occurs, the RST flag
    // can be used to hard close a stream immediately").
    // Until now the stream stayed in its session even after both FINs: Node
    // destroys a Duplex by itself once both directions ended and its data was
    // read, so unread data stays counted against maxStreams and the budget.
    const cleanlyClosed = this.localFinSent && this.remoteFinReceived;
    this.leaveSession(!cleanlyClosed && !this.resetReceived);
    callback(error);
  }

  // ---- called by the session -------------------------------------------------

  /** @internal Arms the open timeout of a stream we opened. */
  startOpenTimer(timeoutMs: number): void {
    if (timeoutMs <= 0) return;
    this.openTimer = setTimeout(() => {
      this.openTimer = null;
      if (!this.peerAcknowledged && !this.destroyed) {
        this.destroy(
          new YamuxError(
            'ERR_YAMUX_TIMEOUT',
            `stream ${this.id}: no ACK from the peer within ${timeoutMs} ms`,
          ),
        );
      }
    }, timeoutMs);
    this.openTimer.unref();
  }

  /** @internal Sends one Data frame of at most `maxFrame` bytes; true if more can be sent now. */
  sendSome(maxFrame: number): boolean {
    const chunk = this.pendingChunk;
    if (chunk === null || this.destroyed) return false;
    const size = Math.min(this.sendWindowBytes, chunk.length - this.pendingOffset, maxFrame);
    if (size === 0) return false;
    const start = this.pendingOffset;
    this.pendingOffset += size;
    this.sendWindowBytes -= size;
    this.host.writeFrame(FrameType.Data, 0, this.id, size, chunk.subarray(start, start + size));
    if (this.pendingOffset === chunk.length) {
      const callback = this.pendingCallback;
      this.pendingChunk = null;
      this.pendingCallback = null;
      // May synchronously hand us the next chunk (_write re-enters scheduleSend).
      if (callback !== null) callback();
    }
    return this.pendingChunk !== null && this.sendWindowBytes > 0;
  }

  /** @internal The peer accepted the stream we opened. */
  onAck(): void {
    this.peerAcknowledged = true;
    this.clearOpenTimer();
  }

  /** @internal A Window Update for this stream: the peer grants `delta` more bytes. */
  onWindowUpdate(delta: number): void {
    if (this.sendWindowBytes + delta > MAX_UINT32) {
      throw new YamuxProtocolError(`stream ${this.id}: window update overflows the 32-bit window`);
    }
    this.sendWindowBytes += delta;
    if (delta > 0 && this.pendingChunk !== null) this.host.scheduleSend(this);
  }

  /**
   * @internal A Data header of `length` bytes arrived; checks and debits our
   * receive window before a single payload byte is taken.
   */
  onDataHeader(length: number): void {
    if (this.remoteFinReceived) {
      throw new YamuxProtocolError(`stream ${this.id}: data after the peer's FIN`);
    }
    if (length > this.receiveCredit) {
      throw new YamuxProtocolError(
        `stream ${this.id}: ${length} bytes of data exceed the receive window of ${this.receiveCredit}`,
      );
    }
    this.receiveCredit -= length;
  }

  /** @internal A piece of payload for this stream. */
  onData(piece: Buffer): void {
    if (!this.destroyed && !this.readableEnded) this.push(piece);
  }

  /** @internal The end of a Data frame: grant more window if the reader keeps up. */
  onDataFrameEnd(): void {
    this.maybeSendWindowUpdate();
  }

  /** @internal FIN from the peer: it will send no more data. */
  onFin(): void {
    if (this.remoteFinReceived) {
      // hashicorp/yamux stream.go processFlags: a FIN in a closed state is ErrUnexpectedFlag.
      throw new YamuxProtocolError(`stream ${this.id}: a second FIN`);
    }
    this.remoteFinReceived = true;
    if (!this.destroyed) this.push(null);
  }

  /** @internal RST from the peer. */
  onReset(): void {
    this.resetReceived = true;
    this.destroy(new YamuxStreamResetError(this.id, !this.peerAcknowledged));
  }

  /**
   * @internal The session ended under the stream. A stream whose peer already
   * finished sending keeps its unread data (the reader may still drain it);
   * any other stream fails with `error`.
   */
  onSessionGone(error: Error, peerEndedCleanly: boolean): void {
    this.goneFromSession = true;
    this.clearOpenTimer();
    if (peerEndedCleanly && this.remoteFinReceived) {
      const pending = this.pendingCallback;
      this.pendingCallback = null;
      this.pendingChunk = null;
      if (pending !== null) pending(error);
      return;
    }
    this.destroy(error);
  }

  // ---- internals ---------------------------------------------------------------

  private maybeSendWindowUpdate(): void {
    if (this.remoteFinReceived || this.goneFromSession || this.destroyed || !this.host.writable)
      return;
    const buffered = this.readableLength;
    let delta = this.receiveTarget - buffered - this.receiveCredit;
    // hashicorp/yamux stream.go sendWindowUpdate: skip updates below half a window,
    // so a busy stream sends one update per half window, not one per frame.
    if (delta < this.receiveTarget / 2) return;
    const now = performance.now();
    const rtt = this.host.rttMs;
    if (
      rtt !== undefined &&
      this.receiveTarget < this.host.maxWindow &&
      now - this.windowEpochStart < AUTOTUNE_RTT_FACTOR * Math.max(rtt, AUTOTUNE_MIN_RTT_MS)
    ) {
      const wanted = Math.min(this.receiveTarget, this.host.maxWindow - this.receiveTarget);
      const granted = this.host.reserveWindow(wanted);
      this.receiveTarget += granted;
      delta += granted;
    }
    this.windowEpochStart = now;
    this.receiveCredit += delta;
    this.host.writeFrame(FrameType.WindowUpdate, 0, this.id, delta);
  }

  private leaveSession(sendReset: boolean): void {
    if (this.goneFromSession) return;
    this.goneFromSession = true;
    this.host.streamGone(this, sendReset);
  }

  private clearOpenTimer(): void {
    if (this.openTimer !== null) {
      clearTimeout(this.openTimer);
      this.openTimer = null;
    }
  }
}
