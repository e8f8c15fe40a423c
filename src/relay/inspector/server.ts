/**
 * The inspector's web server (http://127.0.0.1:4040 by default, as ngrok's):
 *
 *   GET  /                          the page (./page.ts)
 *   GET  /api/requests              summaries of the recorded exchanges, oldest first
 *   GET  /api/requests/:id          one exchange with headers and bodies
 *   POST /api/requests/:id/replay   re-sends the request to the local service
 *   GET  /api/events                Server-Sent Events: `exchange` with a summary
 *
 * It binds to loopback unless told otherwise, and defends against the web
 * pages the user visits:
 * - DNS rebinding: a request whose Host is not `localhost` or an IP literal
 *   with the inspector's port is refused (a rebinding attacker's page carries
 *   its own domain name in Host);
 * - CSRF: replay needs the non-simple header X-Warren-Inspector, which a
 *   cross-origin page cannot send without a CORS preflight (never granted
 *   here), and Origin / Sec-Fetch-Site, when present, must be this origin;
 * - XSS: the page renders recorded data from JSON with textContent, under a
 *   Content-Security-Policy allowing only its own inline script (by hash), and
 *   every answer carries X-Content-Type-Options: nosniff.
 */
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { connect, isIP } from 'node:net';
import type { AddressInfo } from 'node:net';
import { INSPECTOR_CSP, INSPECTOR_PAGE } from './page.js';
import type { CapturedBody, RecordedExchange, TrafficRecorder } from './recorder.js';

export const DEFAULT_INSPECTOR_PORT = 4040;
/** The header a replay must carry (CSRF: not CORS-safelisted, so it forces a preflight). */
export const REPLAY_HEADER = 'x-warren-inspector';

export interface InspectorServerOptions {
  readonly recorder: TrafficRecorder;
  /** Address to bind (default 127.0.0.1). */
  readonly host?: string;
  /** Port (default 4040; 0 for any). */
  readonly port?: number;
  /** How many following ports to try when `port` is taken (default 0). */
  readonly fallbackPorts?: number;
  /** A replay's response must be complete within this (ms, default 30 000). */
  readonly replayTimeoutMs?: number;
}

export interface BodyJson {
  readonly size: number;
  readonly capturedSize: number;
  readonly truncated: boolean;
  readonly encoding: 'text' | 'base64';
  readonly data: string;
}

export interface ExchangeSummary {
  readonly id: number;
  readonly state: RecordedExchange['state'];
  readonly replayOf: number | null;
  readonly tunnel: string | null;
  readonly startedAt: number;
  readonly method: string | null;
  readonly target: string | null;
  readonly status: number | null;
  readonly timeToHeadMs: number | null;
  readonly durationMs: number | null;
  readonly requestSize: number | null;
  readonly responseSize: number | null;
  readonly upgrade: boolean;
  readonly error: string | null;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function bodyJson(body: CapturedBody): BodyJson {
  let text: string | null;
  try {
    text = utf8.decode(body.bytes);
  } catch {
    text = null;
  }
  return {
    size: body.size,
    capturedSize: body.bytes.length,
    truncated: body.truncated,
    encoding: text === null ? 'base64' : 'text',
    data: text ?? body.bytes.toString('base64'),
  };
}

export function summarize(exchange: RecordedExchange): ExchangeSummary {
  return {
    id: exchange.id,
    state: exchange.state,
    replayOf: exchange.replayOf,
    tunnel: exchange.target.url ?? null,
    startedAt: exchange.startedAt,
    method: exchange.request?.method ?? null,
    target: exchange.request?.target ?? null,
    status: exchange.response?.status ?? null,
    timeToHeadMs: exchange.timeToHeadMs,
    durationMs: exchange.durationMs,
    requestSize: exchange.request?.body.size ?? null,
    responseSize: exchange.response?.body.size ?? null,
    upgrade: exchange.upgrade,
    error: exchange.error,
  };
}

export function exchangeDetails(exchange: RecordedExchange): Record<string, unknown> {
  const { request, response } = exchange;
  return {
    ...summarize(exchange),
    service: `${exchange.target.localHost}:${exchange.target.localPort}`,
    request:
      request === null
        ? null
        : {
            method: request.method,
            target: request.target,
            httpVersion: request.httpVersion,
            headers: request.headers,
            body: bodyJson(request.body),
          },
    response:
      response === null
        ? null
        : {
            status: response.status,
            reason: response.reason,
            httpVersion: response.httpVersion,
            headers: response.headers,
            body: bodyJson(response.body),
          },
    rawSample:
      exchange.rawSample === null
        ? null
        : bodyJson({
            size: exchange.rawSample.length,
            bytes: exchange.rawSample,
            truncated: false,
          }),
  };
}

/** Fields not replayed as recorded: framing and connection management are redone. */
const REPLAY_DROPPED = new Set([
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'proxy-connection',
  'upgrade',
  'te',
]);

/** Why a replay was refused, with the HTTP status to answer. */
export class ReplayError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ReplayError';
  }
}

/** The bytes of a replay: the recorded head, the de-chunked body with a Content-Length. */
export function serializeReplay(exchange: RecordedExchange): Buffer {
  const request = exchange.request;
  if (request === null) throw new ReplayError(409, 'the exchange has no complete request head');
  if (exchange.upgrade) throw new ReplayError(409, 'protocol upgrades cannot be replayed');
  if (request.body.truncated) {
    throw new ReplayError(409, 'the request body was truncated: it cannot be replayed exactly');
  }
  let head = `${request.method} ${request.target} HTTP/1.1\r\n`;
  for (const [name, value] of request.headers) {
    if (REPLAY_DROPPED.has(name.toLowerCase())) continue;
    head += `${name}: ${value}\r\n`;
  }
  const body = request.body.bytes;
  if (body.length > 0 || !['GET', 'HEAD', 'DELETE', 'OPTIONS'].includes(request.method)) {
    head += `Content-Length: ${body.length}\r\n`;
  }
  head += 'Connection: close\r\n\r\n';
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

function portOf(server: Server): number {
  const address = server.address() as AddressInfo | null;
  if (address === null) throw new Error('the inspector is not listening');
  return address.port;
}

export class InspectorServer {
  readonly recorder: TrafficRecorder;
  readonly host: string;
  private readonly server: Server;
  private readonly replayTimeoutMs: number;
  private readonly eventStreams = new Set<ServerResponse>();
  private readonly onExchange: (exchange: RecordedExchange) => void;
  private heartbeat: NodeJS.Timeout | null = null;

  private constructor(server: Server, options: InspectorServerOptions, host: string) {
    this.server = server;
    this.recorder = options.recorder;
    this.host = host;
    this.replayTimeoutMs = options.replayTimeoutMs ?? 30_000;
    this.onExchange = (exchange) => {
      if (this.eventStreams.size === 0) return;
      const message = `event: exchange\ndata: ${JSON.stringify(summarize(exchange))}\n\n`;
      for (const stream of this.eventStreams) stream.write(message);
    };
  }

  /** Binds and serves; with fallbackPorts, tries port+1… when a port is taken. */
  static async start(options: InspectorServerOptions): Promise<InspectorServer> {
    if (typeof options !== 'object') throw new TypeError('options must be an object');
    const host = options.host ?? '127.0.0.1';
    const port = options.port ?? DEFAULT_INSPECTOR_PORT;
    const fallback = options.fallbackPorts ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new RangeError(`options.port must be a port number 0-65535, got ${String(port)}`);
    }
    if (!Number.isInteger(fallback) || fallback < 0) {
      throw new RangeError(
        `options.fallbackPorts must be an integer >= 0, got ${String(fallback)}`,
      );
    }
    let lastError: unknown;
    for (let attempt = 0; attempt <= fallback && port + attempt <= 65535; attempt++) {
      const server = createServer();
      const inspector = new InspectorServer(server, options, host);
      server.on('request', (request: IncomingMessage, response: ServerResponse) => {
        inspector.handle(request, response);
      });
      try {
        server.listen(port === 0 ? 0 : port + attempt, host);
        await once(server, 'listening');
      } catch (error) {
        lastError = error;
        if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') continue;
        throw error;
      }
      inspector.recorder.on('exchange', inspector.onExchange);
      inspector.heartbeat = setInterval(() => {
        for (const stream of inspector.eventStreams) stream.write(': keepalive\n\n');
      }, 15_000);
      inspector.heartbeat.unref();
      return inspector;
    }
    throw lastError instanceof Error ? lastError : new Error('no port to bind');
  }

  get port(): number {
    return portOf(this.server);
  }

  get url(): string {
    const host = isIP(this.host) === 6 ? `[${this.host}]` : this.host;
    const shown = this.host === '0.0.0.0' || this.host === '::' ? '127.0.0.1' : host;
    return `http://${shown}:${this.port}`;
  }

  async close(): Promise<void> {
    this.recorder.off('exchange', this.onExchange);
    if (this.heartbeat !== null) clearInterval(this.heartbeat);
    for (const stream of this.eventStreams) stream.end();
    this.eventStreams.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => {
      this.server.close(() => {
        resolve();
      });
    });
  }

  /**
   * Re-sends a recorded request to its local service (not through the relay)
   * and resolves with the new exchange, recorded as a replay of `id`.
   */
  replay(id: number): Promise<RecordedExchange> {
    const original = this.recorder.get(id);
    if (original === undefined) return Promise.reject(new ReplayError(404, `no exchange ${id}`));
    let bytes: Buffer;
    try {
      bytes = serializeReplay(original);
    } catch (error) {
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    const target = original.target;
    const tap = this.recorder.openReplayStream(target, id);
    return new Promise((resolve, reject) => {
      const socket = connect({ host: target.localHost, port: target.localPort, noDelay: true });
      let settled = false;
      const finish = (error: Error | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.recorder.off('exchange', onExchange);
        socket.destroy();
        tap.close();
        const exchange = tap.firstExchange;
        if (error !== null && exchange === null) reject(error);
        else if (exchange !== null) resolve(exchange);
        else reject(new ReplayError(502, 'the local service answered nothing'));
      };
      const onExchange = (exchange: RecordedExchange): void => {
        if (exchange === tap.firstExchange && exchange.state !== 'pending') finish(null);
      };
      this.recorder.on('exchange', onExchange);
      const timer = setTimeout(() => {
        finish(new ReplayError(504, `no response within ${this.replayTimeoutMs} ms`));
      }, this.replayTimeoutMs);
      socket.on('connect', () => {
        tap.fromClient(bytes);
        socket.write(bytes);
      });
      socket.on('data', (chunk: Buffer) => {
        tap.fromService(chunk);
      });
      socket.on('error', (error: Error) => {
        finish(
          new ReplayError(
            502,
            `the local service at ${target.localHost}:${target.localPort} is not reachable: ${(error as NodeJS.ErrnoException).code ?? error.message}`,
          ),
        );
      });
      socket.on('close', () => {
        finish(null);
      });
    });
  }

  /** Host must be localhost or an IP literal, with our port (DNS-rebinding protection). */
  private hostAllowed(hostHeader: string | undefined): boolean {
    if (hostHeader === undefined) return false;
    const match = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(hostHeader);
    if (match === null || Number(match[2]) !== this.port) return false;
    const host = (match[1] ?? '').toLowerCase();
    if (host === 'localhost') return true;
    return isIP(host.startsWith('[') ? host.slice(1, -1) : host) !== 0;
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    response.setHeader('X-Content-Type-Options', 'nosniff');
    response.setHeader('Cache-Control', 'no-store');
    response.setHeader('Referrer-Policy', 'no-referrer');
    const hostHeader = request.headers.host;
    if (!this.hostAllowed(hostHeader)) {
      this.text(response, 403, 'the inspector answers only to localhost or an IP address\n');
      return;
    }
    const path = (request.url ?? '/').split('?')[0] ?? '/';
    const method = request.method ?? 'GET';
    const detail = /^\/api\/requests\/(\d{1,15})$/.exec(path);
    const replay = /^\/api\/requests\/(\d{1,15})\/replay$/.exec(path);
    if (replay !== null) {
      if (method !== 'POST') {
        this.text(response, 405, 'use POST\n', { Allow: 'POST' });
        return;
      }
      if (!this.sameOrigin(request, hostHeader ?? '')) {
        this.text(response, 403, `replay needs the ${REPLAY_HEADER} header from this origin\n`);
        return;
      }
      request.resume();
      this.replay(Number(replay[1])).then(
        (exchange) => {
          this.json(response, 200, exchangeDetails(exchange));
        },
        (error: unknown) => {
          const status = error instanceof ReplayError ? error.status : 500;
          this.text(
            response,
            status,
            `${error instanceof Error ? error.message : String(error)}\n`,
          );
        },
      );
      return;
    }
    if (method !== 'GET' && method !== 'HEAD') {
      this.text(response, 405, 'use GET\n', { Allow: 'GET, HEAD' });
      return;
    }
    if (path === '/') {
      response.writeHead(200, {
        'Content-Type': 'text/html; charset=utf-8',
        'Content-Security-Policy': INSPECTOR_CSP,
        'X-Frame-Options': 'DENY',
      });
      response.end(method === 'HEAD' ? undefined : INSPECTOR_PAGE);
      return;
    }
    if (path === '/api/requests') {
      this.json(response, 200, this.recorder.list().map(summarize));
      return;
    }
    if (detail !== null) {
      const exchange = this.recorder.get(Number(detail[1]));
      if (exchange === undefined) this.text(response, 404, 'no such exchange\n');
      else this.json(response, 200, exchangeDetails(exchange));
      return;
    }
    if (path === '/api/events') {
      response.writeHead(200, {
        'Content-Type': 'text/event-stream; charset=utf-8',
        Connection: 'keep-alive',
      });
      response.write('retry: 2000\n\n');
      this.eventStreams.add(response);
      response.on('close', () => {
        this.eventStreams.delete(response);
      });
      return;
    }
    this.text(response, 404, 'not found\n');
  }

  /** CSRF: the custom header, and Origin / Sec-Fetch-Site (when sent) naming this origin. */
  private sameOrigin(request: IncomingMessage, hostHeader: string): boolean {
    if (request.headers[REPLAY_HEADER] === undefined) return false;
    const origin = request.headers.origin;
    if (origin !== undefined && origin !== `http://${hostHeader}`) return false;
    const site = request.headers['sec-fetch-site'];
    return site === undefined || site === 'same-origin' || site === 'none';
  }

  private json(response: ServerResponse, status: number, value: unknown): void {
    response.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8' });
    response.end(JSON.stringify(value));
  }

  private text(
    response: ServerResponse,
    status: number,
    body: string,
    headers: Record<string, string> = {},
  ): void {
    response.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', ...headers });
    response.end(body);
  }
}
