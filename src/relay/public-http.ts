/**
 * One public HTTP(S) client connection on the relay, forwarded to an agent.
 *
 * One client connection ↔ one yamux stream ↔ (on the agent) one connection to
 * the local service, so HTTP/1.1 keep-alive and pipelining work end to end.
 * Every request on the connection is framed (./http1.ts): its Host must name
 * the tunnel the first request was routed to (else 421 and close), it passes
 * the tunnel's rate limit (else 429), and its head is re-written with
 * X-Forwarded-For/-Proto/-Host from the real connection before it is
 * forwarded. A tunnel's access rules (./access.ts) are checked on every
 * request too: the real source address against its IP allowlist (403), the
 * Authorization header against its basic-auth credentials (401 with
 * WWW-Authenticate); that header is then removed, so the local service never
 * sees the tunnel's password. Responses are forwarded verbatim and only observed, to know when
 * each ends: errors the relay itself answers (404, 421, 429, 408…) are sent
 * after the responses to earlier requests, never in the middle of one.
 *
 * A request with Upgrade (WebSocket) is the last one framed until the backend
 * answers it: a 101 turns the connection into an opaque byte pipe both ways;
 * any other answer resumes framing (so a refused upgrade cannot smuggle
 * unframed requests past the relay).
 */
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers';
import { AccessDeniedError, AgentUnavailableError, HttpParseError, RelayError } from './errors.js';
import { RequestReader, ResponseReader, serializeForwardedHead } from './http1.js';
import type { HttpLimits, RequestHandler, RequestHead, ResponseHandler } from './http1.js';
import type { Stream } from './mux/index.js';
import { RequestStartTimes } from './dashboard/http-counters.js';
import type { HttpResponseCounters } from './dashboard/http-counters.js';

/** The part of a tunnel a public connection uses. */
export interface HttpTunnelTarget {
  /** The tunnel's full host name ("app.tunnel.example.com"). */
  readonly host: string;
  /**
   * Takes one request from the tunnel's rate limit at `now` (performance.now(),
   * read once per request and also its start time); false: over the limit.
   */
  admitRequest(now: number): boolean;
  /** The tunnel has basic-auth credentials: every request needs Authorization. */
  readonly requiresAuthorization: boolean;
  /** The tunnel's IP allowlist admits this (real) client address. */
  allowsAddress(remoteAddress: string): boolean;
  /** The Authorization header value (undefined: none) carries a valid credential. */
  authorize(authorization: string | undefined): boolean;
  /**
   * Opens a stream to the agent with its preamble written. Throws
   * AgentUnavailableError (agent gone) or RelayLimitError (too many streams).
   */
  openStream(proto: 'http' | 'https', remoteAddress: string, remotePort: number): Stream;
  /** Traffic accounting: bytes from the client (in) and to the client (out). */
  countBytes(bytesIn: number, bytesOut: number): void;
  /** Response accounting: the app's responses by class, the relay's own by status, durations. */
  readonly responses: HttpResponseCounters;
}

export type HttpRoute =
  | { readonly kind: 'tunnel'; readonly tunnel: HttpTunnelTarget }
  | { readonly kind: 'unknown'; readonly message: string }
  | { readonly kind: 'offline'; readonly message: string };

export interface HttpRouter {
  route(host: string): HttpRoute;
}

export interface PublicHttpOptions {
  readonly proto: 'http' | 'https';
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly router: HttpRouter;
  readonly limits: HttpLimits;
  /** A request head must arrive within this many ms of its first byte (the first: of connecting). */
  readonly headersTimeoutMs: number;
  /** No byte either way for this long closes the connection. */
  readonly idleTimeoutMs: number;
  /** Requests forwarded and not yet answered, at most; more wait (are not read). */
  readonly maxPipelinedRequests: number;
  /** The relay refused a request itself (status 0: closed without a response). */
  readonly onRefused?: (status: number, error: RelayError) => void;
  /** Counts the relay's own answers on connections routed to no tunnel (unknown host…). */
  readonly unroutedResponses?: HttpResponseCounters;
}

/** Why the client socket is paused (it reads only when no reason is left). */
const PAUSED_BY_BACKPRESSURE = 1;
const PAUSED_BY_FRAMING = 2;
const PAUSED_BY_FAILURE = 4;

/** How long a client may keep its side open after the relay closed its own and flushed. */
const LINGER_AFTER_CLOSE_MS = 5_000;

type Mode = 'http' | 'raw' | 'failing' | 'done';

/** A complete response the relay sends itself, always closing the connection. */
export function errorResponse(status: number, message: string, extraHeaders = ''): Buffer {
  const reason = STATUS_CODES[status] ?? 'Error';
  // Only our own text and validated host names end up here; still, no control bytes.
  const body = `${status} ${reason}\n\n${message.replace(/[^\x20-\x7e]/g, '?')}\n\n-- warren relay\n`;
  return Buffer.from(
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n` +
      `Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n${extraHeaders}\r\n${body}`,
    'latin1',
  );
}

/** The Authorization value when the request has exactly one (several: none is valid). */
function singleAuthorization(head: RequestHead): string | undefined {
  let found: string | undefined;
  for (const [name, value] of head.headers) {
    if (name.length !== 13 || name.toLowerCase() !== 'authorization') continue;
    if (found !== undefined) return undefined;
    found = value;
  }
  return found;
}

function withoutAuthorization(head: RequestHead): RequestHead {
  return {
    ...head,
    headers: head.headers.filter(([name]) => name.toLowerCase() !== 'authorization'),
  };
}

export class PublicHttpConnection {
  private readonly socket: Socket;
  private readonly options: PublicHttpOptions;
  private readonly requests: RequestReader;
  private readonly responses: ResponseReader;
  /** When each request awaiting its response was forwarded (for the duration histogram). */
  private readonly startTimes = new RequestStartTimes();
  private mode: Mode = 'http';
  private tunnel: HttpTunnelTarget | null = null;
  private routedHost = '';
  private stream: Stream | null = null;
  /** Client bytes read but not framed yet (framing is paused). */
  private held: Buffer | null = null;
  private framingPaused = false;
  private waitingForUpgrade = false;
  private forwardingBody = false;
  private pauseReasons = 0;
  private pendingFailure: HttpParseError | RelayError | null = null;
  private pendingFailureStatus = 0;
  private headersTimer: NodeJS.Timeout | null = null;
  private lingerTimer: NodeJS.Timeout | null = null;
  private lingerStarted = false;
  private clientEnded = false;
  private draining = false;
  private closedCallbacks: (() => void)[] = [];

  constructor(socket: Socket, options: PublicHttpOptions) {
    this.socket = socket;
    this.options = options;
    this.requests = new RequestReader(options.limits);
    this.responses = new ResponseReader(options.limits);
    socket.on('data', this.onClientData);
    socket.on('end', this.onClientEnd);
    socket.on('error', this.onClientError);
    socket.on('close', this.onClientClose);
    socket.on('drain', this.onClientDrain);
    socket.setTimeout(options.idleTimeoutMs, this.onIdle);
    this.startHeadersTimer();
  }

  /** Calls `callback` once the client connection is closed. */
  onClosed(callback: () => void): void {
    if (this.socket.destroyed) {
      callback();
      return;
    }
    this.closedCallbacks.push(callback);
  }

  /**
   * The relay is shutting down: close now if idle, else after the responses in
   * flight; requests that arrive meanwhile get 503.
   */
  drain(): void {
    this.draining = true;
    if (this.mode === 'http' && this.isIdle()) this.closeGracefully();
  }

  /**
   * True once the relay closed its side and flushed its last bytes: nothing
   * is left to drain (the client may still have to close its side).
   */
  get finished(): boolean {
    return this.socket.destroyed || (this.mode === 'done' && this.socket.writableFinished);
  }

  /** Closes at once, both ways. */
  destroy(): void {
    this.stream?.destroy();
    this.socket.destroy();
  }

  /** Read afresh: framing callbacks may have paused framing or failed the connection. */
  private framingFlows(): boolean {
    return this.mode === 'http' && !this.framingPaused;
  }

  private isIdle(): boolean {
    return (
      this.requests.idle &&
      this.responses.outstanding === 0 &&
      this.held === null &&
      !this.forwardingBody
    );
  }

  private closeGracefully(): void {
    this.mode = 'done';
    this.clearHeadersTimer();
    this.pause(PAUSED_BY_FAILURE);
    this.socket.end();
    this.endStream();
    this.startLinger();
  }

  // ---- client → agent ----------------------------------------------------------------

  private readonly onClientData = (chunk: Buffer): void => {
    switch (this.mode) {
      case 'raw':
        this.writeToStream(chunk);
        return;
      case 'http':
        if (this.framingPaused) {
          this.held = this.held === null ? chunk : Buffer.concat([this.held, chunk]);
          return;
        }
        this.frame(chunk);
        return;
      case 'failing':
      case 'done':
        return; // the relay answers and closes: the rest is not read
    }
  };

  private frame(chunk: Buffer): void {
    let rest: Buffer | null;
    try {
      rest = this.requests.push(chunk, this.requestHandler);
    } catch (error) {
      if (error instanceof HttpParseError) {
        this.fail(error.status, error, this.forwardingBody);
        return;
      }
      throw error;
    }
    if (this.mode !== 'http') return;
    if (this.framingPaused) {
      this.held = rest;
      this.pause(PAUSED_BY_FRAMING);
    }
  }

  private resumeFraming(): void {
    if (!this.framingPaused || this.mode !== 'http' || this.waitingForUpgrade) return;
    this.framingPaused = false;
    const held = this.held;
    this.held = null;
    if (held !== null) this.frame(held);
    if (this.framingFlows()) {
      this.unpause(PAUSED_BY_FRAMING);
      if (this.clientEnded) this.endStream();
    }
  }

  private readonly requestHandler: RequestHandler = {
    headStart: () => {
      this.startHeadersTimer();
    },
    head: (head: RequestHead): boolean => {
      this.clearHeadersTimer();
      if (this.draining) {
        this.fail(503, new RelayError('ERR_RELAY_CLOSED', 'the relay is shutting down'), false);
        return false;
      }
      let tunnel = this.tunnel;
      if (tunnel === null) {
        const route = this.options.router.route(head.host);
        switch (route.kind) {
          case 'unknown':
            this.fail(404, new RelayError('ERR_RELAY_CONFIG', route.message), false);
            return false;
          case 'offline':
            this.fail(502, new AgentUnavailableError(route.message), false);
            return false;
          case 'tunnel':
            tunnel = route.tunnel;
            this.tunnel = tunnel;
            this.routedHost = head.host;
            break;
        }
      } else if (head.host !== this.routedHost) {
        this.fail(
          421,
          new HttpParseError(
            421,
            `this connection serves ${this.routedHost}, not ${head.host}: open a new connection`,
          ),
          false,
        );
        return false;
      }
      if (!tunnel.allowsAddress(this.options.remoteAddress)) {
        this.fail(
          403,
          new AccessDeniedError(
            'ip-allowlist',
            `${this.options.remoteAddress} may not use ${this.routedHost}`,
          ),
          false,
        );
        return false;
      }
      let forwarded = head;
      if (tunnel.requiresAuthorization) {
        if (!tunnel.authorize(singleAuthorization(head))) {
          this.fail(
            401,
            new AccessDeniedError(
              'basic-auth',
              `${this.routedHost} needs a user name and password`,
            ),
            false,
          );
          return false;
        }
        forwarded = withoutAuthorization(head);
      }
      // One clock read per request: the rate limit's and the duration's start.
      const startedAt = performance.now();
      if (!tunnel.admitRequest(startedAt)) {
        this.fail(
          429,
          new RelayError('ERR_RELAY_LIMIT', `too many requests for ${this.routedHost}`),
          false,
        );
        return false;
      }
      if (this.stream === null) {
        try {
          this.attachStream(
            tunnel.openStream(
              this.options.proto,
              this.options.remoteAddress,
              this.options.remotePort,
            ),
          );
        } catch (error) {
          const relayError =
            error instanceof RelayError
              ? error
              : new AgentUnavailableError(`cannot reach the agent: ${String(error)}`, {
                  cause: error,
                });
          this.fail(relayError.code === 'ERR_RELAY_LIMIT' ? 503 : 502, relayError, false);
          return false;
        }
      }
      this.responses.expect({ isHead: head.method === 'HEAD', upgrade: head.upgrade });
      this.startTimes.push(startedAt);
      this.waitingForUpgrade = head.upgrade;
      this.forwardingBody = head.body.kind !== 'none';
      this.writeToStream(
        serializeForwardedHead(forwarded, {
          clientAddress: this.options.remoteAddress,
          proto: this.options.proto,
        }),
      );
      return true;
    },
    body: (bytes: Buffer) => {
      this.writeToStream(bytes);
    },
    end: (): boolean => {
      this.forwardingBody = false;
      if (
        this.waitingForUpgrade ||
        this.responses.outstanding >= this.options.maxPipelinedRequests
      ) {
        this.framingPaused = true;
        return false;
      }
      return true;
    },
  };

  private writeToStream(bytes: Buffer): void {
    const stream = this.stream;
    if (stream === null || stream.destroyed || stream.writableEnded) return;
    this.tunnel?.countBytes(bytes.length, 0);
    if (!stream.write(bytes)) this.pause(PAUSED_BY_BACKPRESSURE);
  }

  private endStream(): void {
    const stream = this.stream;
    if (stream !== null && !stream.destroyed && !stream.writableEnded) stream.end();
  }

  private readonly onClientEnd = (): void => {
    this.clientEnded = true;
    this.clearHeadersTimer();
    switch (this.mode) {
      case 'raw':
        this.endStream();
        return;
      case 'http':
        if (this.framingPaused) return; // after the held bytes (resumeFraming)
        if (this.stream === null) {
          this.closeGracefully();
          return;
        }
        // The responses still come back; the stream's end then ends the socket.
        this.endStream();
        return;
      case 'failing':
      case 'done':
        return;
    }
  };

  private readonly onClientError = (): void => {
    // ECONNRESET and friends: 'close' follows and cleans up.
  };

  private readonly onClientClose = (): void => {
    this.clearHeadersTimer();
    if (this.lingerTimer !== null) {
      clearTimeout(this.lingerTimer);
      this.lingerTimer = null;
    }
    this.stream?.destroy();
    const callbacks = this.closedCallbacks;
    this.closedCallbacks = [];
    for (const callback of callbacks) callback();
  };

  private readonly onClientDrain = (): void => {
    this.stream?.resume();
  };

  private readonly onIdle = (): void => {
    this.destroy();
  };

  // ---- agent → client ----------------------------------------------------------------

  private attachStream(stream: Stream): void {
    this.stream = stream;
    stream.on('data', this.onStreamData);
    stream.on('end', this.onStreamEnd);
    stream.on('error', this.onStreamError);
    stream.on('drain', () => {
      this.unpause(PAUSED_BY_BACKPRESSURE);
    });
  }

  private readonly onStreamData = (chunk: Buffer): void => {
    if (this.mode === 'done' || this.socket.destroyed || this.socket.writableEnded) return;
    this.tunnel?.countBytes(0, chunk.length);
    if (!this.socket.write(chunk)) this.stream?.pause();
    if (this.mode === 'raw' || this.responses.switched) return;
    try {
      this.responses.push(chunk, this.responseHandler);
    } catch (error) {
      // The backend broke HTTP framing: the bytes went out, the connection cannot go on.
      this.options.onRefused?.(
        0,
        error instanceof RelayError ? error : new HttpParseError(502, String(error)),
      );
      this.destroy();
    }
  };

  private readonly responseHandler: ResponseHandler = {
    head: (status: number, final: boolean) => {
      this.tunnel?.responses.countApp(status);
      if (status === 101) {
        // A 101 answers its request: what follows is another protocol, not its duration.
        this.requestAnswered();
        this.switchToRaw();
        return;
      }
      if (final && this.waitingForUpgrade && this.responses.outstanding === 1) {
        // The upgrade was refused: the connection stays HTTP.
        this.waitingForUpgrade = false;
        this.resumeFraming();
      }
    },
    complete: () => {
      this.requestAnswered();
      if (this.responses.outstanding > 0) {
        if (this.responses.outstanding < this.options.maxPipelinedRequests) this.resumeFraming();
        return;
      }
      switch (this.mode) {
        case 'failing':
          this.answerAndClose();
          return;
        case 'http':
          if (this.draining && this.isIdle()) {
            this.closeGracefully();
            return;
          }
          this.resumeFraming();
          return;
        case 'raw':
        case 'done':
          return;
      }
    },
  };

  /** The oldest request in flight got its whole response: observe how long it took. */
  private requestAnswered(): void {
    const startedAt = this.startTimes.shift();
    this.tunnel?.responses.observeDuration(startedAt, performance.now());
  }

  private switchToRaw(): void {
    this.mode = 'raw';
    this.waitingForUpgrade = false;
    this.framingPaused = false;
    this.clearHeadersTimer();
    const held = this.held;
    this.held = null;
    if (held !== null) this.writeToStream(held);
    this.unpause(PAUSED_BY_FRAMING);
    if (this.clientEnded) this.endStream();
  }

  private readonly onStreamEnd = (): void => {
    if (this.mode !== 'raw') this.responses.end(this.responseHandler);
    if (this.mode === 'done' || this.socket.destroyed) return;
    if (this.mode !== 'raw' && this.responses.outstanding > 0 && !this.responses.responseStarted) {
      this.answerNow(
        502,
        new AgentUnavailableError(`the service behind ${this.routedHost} closed without answering`),
      );
      return;
    }
    if (this.mode === 'raw') {
      this.socket.end();
      return;
    }
    if (this.mode === 'failing' && this.responses.outstanding === 0) return; // answered already
    this.mode = 'done';
    this.socket.end();
    this.startLinger();
  };

  private readonly onStreamError = (error: Error): void => {
    if (this.socket.destroyed || this.mode === 'done') return;
    if (this.mode !== 'raw' && this.responses.outstanding > 0 && !this.responses.responseStarted) {
      this.answerNow(
        502,
        new AgentUnavailableError(`the agent for ${this.routedHost} failed: ${error.message}`, {
          cause: error,
        }),
      );
      return;
    }
    if (this.mode !== 'raw' && this.responses.outstanding === 0 && this.requests.idle) {
      this.closeGracefully();
      return;
    }
    this.socket.destroy();
  };

  // ---- refusing -----------------------------------------------------------------------

  /**
   * The relay refuses the current request. `dirty` means part of it already
   * went to the agent: the stream cannot carry another request.
   */
  private fail(status: number, error: HttpParseError | RelayError, dirty: boolean): void {
    if (this.mode === 'failing' || this.mode === 'done') return;
    this.clearHeadersTimer();
    this.pause(PAUSED_BY_FAILURE);
    this.held = null;
    if (this.mode === 'raw') {
      this.options.onRefused?.(0, error);
      this.destroy();
      return;
    }
    if (dirty) {
      this.stream?.destroy();
      if (this.responses.outstanding <= 1 && !this.responses.responseStarted) {
        this.answerNow(status, error);
      } else {
        this.options.onRefused?.(0, error);
        this.socket.destroy();
      }
      return;
    }
    this.mode = 'failing';
    this.pendingFailure = error;
    this.pendingFailureStatus = status;
    if (this.responses.outstanding === 0) this.answerAndClose();
  }

  private answerAndClose(): void {
    const error = this.pendingFailure;
    if (error === null) return;
    this.pendingFailure = null;
    this.answerNow(this.pendingFailureStatus, error);
  }

  private answerNow(status: number, error: HttpParseError | RelayError): void {
    this.mode = 'done';
    this.clearHeadersTimer();
    this.pause(PAUSED_BY_FAILURE);
    this.options.onRefused?.(status, error);
    if (!this.socket.destroyed && !this.socket.writableEnded) {
      // RFC 7617 §2: the challenge names the protection space, here the tunnel's host.
      const challenge =
        status === 401 && error instanceof AccessDeniedError
          ? `WWW-Authenticate: Basic realm="${this.routedHost}", charset="UTF-8"\r\n`
          : '';
      this.socket.end(errorResponse(status, error.message, challenge));
      (this.tunnel?.responses ?? this.options.unroutedResponses)?.countRelay(status);
    }
    this.endStream();
    this.startLinger();
  }

  // ---- flow control and timers ------------------------------------------------------------

  private pause(reason: number): void {
    if (this.pauseReasons === 0) this.socket.pause();
    this.pauseReasons |= reason;
  }

  private unpause(reason: number): void {
    if ((this.pauseReasons & reason) === 0) return;
    this.pauseReasons &= ~reason;
    if (this.pauseReasons === 0) this.socket.resume();
  }

  private startHeadersTimer(): void {
    if (this.headersTimer !== null || this.mode !== 'http') return;
    const timeoutMs = this.options.headersTimeoutMs;
    this.headersTimer = delay(() => {
      this.headersTimer = null;
      // Slowloris: a head that trickles in holds a connection; it gets 408.
      this.fail(
        408,
        new HttpParseError(408, `no complete request head within ${timeoutMs} ms`),
        false,
      );
    }, timeoutMs);
    this.headersTimer.unref();
  }

  private clearHeadersTimer(): void {
    if (this.headersTimer !== null) {
      clearTimeout(this.headersTimer);
      this.headersTimer = null;
    }
  }

  /**
   * After the relay closed its side and everything was flushed to the kernel,
   * the client gets a little while to close its side too.
   */
  private startLinger(): void {
    if (this.lingerStarted || this.socket.destroyed) return;
    this.lingerStarted = true;
    const arm = (): void => {
      if (this.socket.destroyed) return;
      this.lingerTimer = delay(() => {
        this.lingerTimer = null;
        this.destroy();
      }, LINGER_AFTER_CLOSE_MS);
      this.lingerTimer.unref();
    };
    if (this.socket.writableFinished) arm();
    else this.socket.once('finish', arm);
  }
}
