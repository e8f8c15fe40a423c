/**
 * Typed errors of the yamux multiplexer. Every error carries a stable `code`
 * that callers (the relay, the agent, metrics) switch on; messages are for people.
 *
 * - ERR_YAMUX_PROTOCOL: the peer sent a frame the spec forbids (bad version,
 *   unknown type, data beyond the receive window, a frame for a stream that was
 *   never opened…). The session answers with GoAway(protocol error) and ends.
 * - ERR_YAMUX_REMOTE_ERROR: the peer ended the session with GoAway(protocol error
 *   or internal error), or with a GoAway code the spec does not define.
 * - ERR_YAMUX_GOAWAY: a stream cannot be opened because the peer sent GoAway(normal).
 * - ERR_YAMUX_SESSION_CLOSED: the session is closing or closed (open/ping after
 *   close; a stream cut short because the session ended under it).
 * - ERR_YAMUX_STREAM_RESET: the peer reset (RST) the stream, or refused to open it.
 * - ERR_YAMUX_STREAM_LIMIT: opening a stream would exceed `maxStreams` (or, with an
 *   `initialWindow` above 256 KiB, `maxBufferedBytes`), or the 32-bit stream ids
 *   of this side are used up.
 * - ERR_YAMUX_TIMEOUT: a ping, a keepalive or a stream open got no answer in time.
 * - ERR_YAMUX_BUFFER_LIMIT: the peer does not read and our unsent frames pile up.
 * - ERR_YAMUX_TRANSPORT: the underlying connection failed (`cause` has its error).
 * - ERR_YAMUX_INTERNAL: an unexpected exception inside the session (a bug, or an
 *   exception thrown by a 'stream' listener); the session ends with GoAway(internal).
 */
export type YamuxErrorCode =
  | 'ERR_YAMUX_PROTOCOL'
  | 'ERR_YAMUX_REMOTE_ERROR'
  | 'ERR_YAMUX_GOAWAY'
  | 'ERR_YAMUX_SESSION_CLOSED'
  | 'ERR_YAMUX_STREAM_RESET'
  | 'ERR_YAMUX_STREAM_LIMIT'
  | 'ERR_YAMUX_TIMEOUT'
  | 'ERR_YAMUX_BUFFER_LIMIT'
  | 'ERR_YAMUX_TRANSPORT'
  | 'ERR_YAMUX_INTERNAL';

export class YamuxError extends Error {
  readonly code: YamuxErrorCode;

  constructor(code: YamuxErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'YamuxError';
    this.code = code;
  }
}

/** The peer broke the protocol; the session sent GoAway(protocol error). */
export class YamuxProtocolError extends YamuxError {
  constructor(message: string) {
    super('ERR_YAMUX_PROTOCOL', message);
    this.name = 'YamuxProtocolError';
  }
}

/** The peer reset the stream (RST), or refused it before accepting it. */
export class YamuxStreamResetError extends YamuxError {
  /** The stream's id. */
  readonly streamId: number;
  /** True when the RST came before the peer accepted (ACKed) the stream. */
  readonly refused: boolean;

  constructor(streamId: number, refused: boolean) {
    super(
      'ERR_YAMUX_STREAM_RESET',
      refused ? `stream ${streamId} refused by the peer` : `stream ${streamId} reset by the peer`,
    );
    this.name = 'YamuxStreamResetError';
    this.streamId = streamId;
    this.refused = refused;
  }
}

/** The peer ended the session with GoAway carrying an error code. */
export class YamuxRemoteError extends YamuxError {
  /** The GoAway code as received (1 protocol error, 2 internal error, others undefined). */
  readonly goAwayCode: number;

  constructor(goAwayCode: number) {
    const what =
      goAwayCode === 1
        ? 'a protocol error'
        : goAwayCode === 2
          ? 'an internal error'
          : `an unknown code ${goAwayCode}`;
    super('ERR_YAMUX_REMOTE_ERROR', `the peer ended the session with GoAway (${what})`);
    this.name = 'YamuxRemoteError';
    this.goAwayCode = goAwayCode;
  }
}
