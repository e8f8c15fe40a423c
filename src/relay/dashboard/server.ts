/**
 * The relay's admin listener: GET /metrics (Prometheus), GET /api/status
 * (JSON) and GET / (the dashboard page).
 *
 * Security, since the data names customers and their addresses:
 * - With a token, /metrics and /api/status need `Authorization: Bearer TOKEN`
 *   (compared in constant time). The page itself is static and holds no data;
 *   it asks for the token and sends it with its fetches.
 * - Without a token the listener must be on a loopback address, and each
 *   connection is checked to come from loopback too.
 * - The Host header must name this listener itself (its bound address, or
 *   `localhost` on loopback, or a configured name) with its port: a page on
 *   another site that rebinds its DNS name to 127.0.0.1 cannot read the API
 *   (DNS rebinding).
 * - nosniff, a strict Content-Security-Policy, no framing, no caching.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isIP } from 'node:net';
import { RelayConfigError } from '../errors.js';
import type { ListenAddress, Relay } from '../relay.js';
import { relayMetrics, relayStatus } from './metrics.js';
import { DASHBOARD_CSP, DASHBOARD_HTML } from './page.js';
import { PROMETHEUS_CONTENT_TYPE } from './prometheus.js';

export interface AdminServerOptions {
  readonly relay: Relay;
  readonly listen: ListenAddress;
  /** The bearer token the API requires; undefined: no auth, loopback only. */
  readonly token?: string;
  /** Host names (besides the bound address) a request's Host may name, e.g. a DNS name for this port. */
  readonly allowedHosts?: readonly string[];
}

/** Shorter tokens are refused: the admin API is worth more than a guessable secret. */
export const MIN_ADMIN_TOKEN_LENGTH = 16;

const COMMON_HEADERS = {
  'x-content-type-options': 'nosniff',
  'cache-control': 'no-store',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
};
/** For everything but the page: nothing may run or load. */
const API_CSP = "default-src 'none'; frame-ancestors 'none'";

function stripMapped(address: string): string {
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

/** True for 127.0.0.0/8, ::1 (and v4-mapped loopback) and the name localhost. */
export function isLoopbackHost(host: string): boolean {
  const bare = stripMapped(host.toLowerCase());
  if (bare === 'localhost' || bare === '::1') return true;
  return isIP(bare) === 4 && bare.startsWith('127.');
}

/** Splits a Host header into host name and port; null when malformed. */
export function parseHostHeader(value: string): { host: string; port: number | null } | null {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([a-zA-Z0-9.-]+))(?::(\d{1,5}))?$/.exec(value);
  if (match === null) return null;
  const host = (match[1] ?? match[2] ?? '').toLowerCase();
  const port = match[3] === undefined ? null : Number(match[3]);
  if (port !== null && port > 65535) return null;
  return { host, port };
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

export class AdminServer {
  private readonly server: Server;
  private readonly relay: Relay;
  /** SHA-256 of the token: equal-length inputs for timingSafeEqual whatever the presented length. */
  private readonly tokenDigest: Buffer | null;
  private readonly allowedHosts: ReadonlySet<string>;

  private constructor(options: AdminServerOptions) {
    this.relay = options.relay;
    this.tokenDigest = options.token === undefined ? null : digest(options.token);
    this.allowedHosts = new Set((options.allowedHosts ?? []).map((host) => host.toLowerCase()));
    this.server = createServer(
      { maxHeaderSize: 8192, requestTimeout: 10_000, headersTimeout: 5_000 },
      (request, response) => {
        this.handle(request, response);
      },
    );
    this.server.keepAliveTimeout = 5_000;
    this.server.maxConnections = 64;
    this.server.on('clientError', (_error, socket) => {
      socket.destroy();
    });
  }

  /** Validates the options and listens. */
  static async start(options: AdminServerOptions): Promise<AdminServer> {
    if (typeof options !== 'object') throw new TypeError('options must be an object');
    if (typeof options.relay !== 'object') throw new TypeError('options.relay must be a Relay');
    const listen = options.listen as ListenAddress | undefined;
    if (
      typeof listen !== 'object' ||
      !Number.isInteger(listen.port) ||
      listen.port < 0 ||
      listen.port > 65535
    ) {
      throw new RelayConfigError('options.listen must be { host?, port } with a port 0-65535');
    }
    if (options.token !== undefined) {
      if (
        typeof options.token !== 'string' ||
        options.token.length < MIN_ADMIN_TOKEN_LENGTH ||
        /\s/.test(options.token)
      ) {
        throw new RelayConfigError(
          `options.token must be at least ${MIN_ADMIN_TOKEN_LENGTH} characters without spaces`,
        );
      }
    } else if (listen.host === undefined || !isLoopbackHost(listen.host)) {
      throw new RelayConfigError(
        `options.listen: without an admin token the admin listener must be on loopback, not '${listen.host ?? 'all addresses'}'`,
      );
    }
    if (options.allowedHosts !== undefined && !Array.isArray(options.allowedHosts)) {
      throw new TypeError('options.allowedHosts must be an array of host names');
    }
    const admin = new AdminServer(options);
    admin.server.listen({
      port: listen.port,
      ...(listen.host === undefined ? {} : { host: listen.host }),
    });
    try {
      await Promise.race([
        once(admin.server, 'listening'),
        once(admin.server, 'error').then(([error]) => {
          throw error;
        }),
      ]);
    } catch (error) {
      admin.server.close();
      throw new RelayConfigError(
        `cannot listen for the admin API: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    }
    admin.server.on('error', () => undefined);
    return admin;
  }

  /** True when the API needs a bearer token. */
  get authenticated(): boolean {
    return this.tokenDigest !== null;
  }

  address(): AddressInfo {
    const address = this.server.address();
    if (address === null || typeof address === 'string') throw new Error('not listening');
    return address;
  }

  async close(): Promise<void> {
    if (!this.server.listening) return;
    const closed = once(this.server, 'close');
    this.server.close();
    this.server.closeAllConnections();
    await closed;
  }

  private hostAllowed(request: IncomingMessage): boolean {
    const header = request.headers.host;
    if (header === undefined) return false;
    const parsed = parseHostHeader(header);
    if (parsed === null) return false;
    const localPort = request.socket.localPort;
    if ((parsed.port ?? 80) !== localPort) return false;
    if (this.allowedHosts.has(parsed.host)) return true;
    const local = stripMapped(request.socket.localAddress ?? '').toLowerCase();
    if (stripMapped(parsed.host) === local) return true;
    return parsed.host === 'localhost' && isLoopbackHost(local);
  }

  private authorized(request: IncomingMessage): boolean {
    if (this.tokenDigest === null) {
      return isLoopbackHost(request.socket.remoteAddress ?? '');
    }
    const header = request.headers.authorization ?? '';
    const match = /^Bearer +(\S+) *$/i.exec(header);
    const presented = digest(match?.[1] ?? '');
    // Always compare (also for a missing header) so the timing says nothing.
    return timingSafeEqual(presented, this.tokenDigest) && match !== null;
  }

  private send(
    response: ServerResponse,
    status: number,
    contentType: string,
    body: string,
    headers: Record<string, string> = {},
    headOnly = false,
  ): void {
    const payload = Buffer.from(body);
    response.writeHead(status, {
      ...COMMON_HEADERS,
      'content-security-policy': API_CSP,
      'content-type': contentType,
      'content-length': String(payload.length),
      ...headers,
    });
    response.end(headOnly ? undefined : payload);
  }

  private handle(request: IncomingMessage, response: ServerResponse): void {
    const text = 'text/plain; charset=utf-8';
    if (!this.hostAllowed(request)) {
      this.send(response, 421, text, 'this Host is not the admin listener\n');
      return;
    }
    const method = request.method ?? '';
    if (method !== 'GET' && method !== 'HEAD') {
      this.send(response, 405, text, 'only GET\n', { allow: 'GET, HEAD' });
      return;
    }
    const headOnly = method === 'HEAD';
    const path = (request.url ?? '').split('?')[0] ?? '';
    if (path === '/' || path === '/index.html') {
      // Static and data-free: it asks for the token itself when the API answers 401.
      this.send(
        response,
        200,
        'text/html; charset=utf-8',
        DASHBOARD_HTML,
        {
          'content-security-policy': DASHBOARD_CSP,
        },
        headOnly,
      );
      return;
    }
    if (path !== '/metrics' && path !== '/api/status') {
      this.send(response, 404, text, 'not found\n', {}, headOnly);
      return;
    }
    if (!this.authorized(request)) {
      this.send(
        response,
        401,
        text,
        'an admin bearer token is required\n',
        {
          'www-authenticate': 'Bearer realm="warren relay"',
        },
        headOnly,
      );
      return;
    }
    if (path === '/metrics') {
      this.send(response, 200, PROMETHEUS_CONTENT_TYPE, relayMetrics(this.relay), {}, headOnly);
      return;
    }
    this.send(
      response,
      200,
      'application/json; charset=utf-8',
      JSON.stringify(relayStatus(this.relay)),
      {},
      headOnly,
    );
  }
}
