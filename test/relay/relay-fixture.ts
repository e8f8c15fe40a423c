/**
 * Test fixture for the relay and agent: a relay on 127.0.0.1 (port 0
 * everywhere) with a dev CA in a temporary data directory, agents, local
 * services, and small HTTP/WebSocket clients written on raw sockets so the tests
 * see exactly the bytes on the wire. Everything made here is closed by close().
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer, request as httpRequest } from 'node:http';
import type {
  IncomingHttpHeaders,
  IncomingMessage,
  Server as HttpServer,
  ServerResponse,
} from 'node:http';
import { connect, createServer as createNetServer } from 'node:net';
import type { Server as NetServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as connectTls } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { Agent } from '../../src/relay/agent.js';
import type { AgentOptions, TunnelSpec } from '../../src/relay/agent.js';
import { ensureDevCertificate } from '../../src/relay/dev-ca.js';
import type { DevCertificate } from '../../src/relay/dev-ca.js';
import { Relay } from '../../src/relay/relay.js';
import type { RelayLimits, RelayOptions } from '../../src/relay/relay.js';
import { DEFAULT_ACCOUNT, createToken } from '../../src/relay/token.js';
import type { NewTokenGrant } from '../../src/relay/token.js';
import { loadOrCreateSecret } from '../../src/relay/secret.js';
import { openRelayStore } from '../../src/relay/store/open.js';

export const DOMAIN = 'tunnel.test';
const LOOPBACK = '127.0.0.1';

export interface RelayPorts {
  readonly agent: number;
  readonly http: number;
  readonly https: number;
}

export class RelayFixture {
  relay: Relay | null = null;
  /** The dev CA certificate agents and clients trust. */
  readonly ca: Buffer;
  private readonly closers: (() => Promise<void> | void)[] = [];

  private constructor(
    readonly dir: string,
    readonly cert: DevCertificate,
    readonly secret: Buffer,
  ) {
    this.ca = readFileSync(cert.caCertPath);
  }

  static async create(): Promise<RelayFixture> {
    const dir = await mkdtemp(join(tmpdir(), 'warren-relay-test-'));
    const cert = await ensureDevCertificate(dir, DOMAIN);
    const secret = await loadOrCreateSecret(dir);
    return new RelayFixture(dir, cert, secret);
  }

  /** Starts (or, after stopRelay, restarts) the relay; `ports` pins ports (0: any). */
  async startRelay(
    limits: Partial<RelayLimits> = {},
    ports: Partial<RelayPorts> = {},
    extra: Partial<RelayOptions> = {},
  ): Promise<Relay> {
    this.relay = await Relay.start({
      domain: DOMAIN,
      dataDir: this.dir,
      tls: { cert: this.cert.cert, key: this.cert.key },
      agentListen: { host: LOOPBACK, port: ports.agent ?? 0 },
      httpListen: { host: LOOPBACK, port: ports.http ?? 0 },
      httpsListen: { host: LOOPBACK, port: ports.https ?? 0 },
      tcpHost: LOOPBACK,
      tcpPorts: [42000, 42999],
      limits: { keepaliveIntervalMs: 0, ...limits },
      ...extra,
    });
    return this.relay;
  }

  async stopRelay(drainTimeoutMs = 1_000): Promise<void> {
    await this.relay?.close({ drainTimeoutMs });
    this.relay = null;
  }

  get ports(): RelayPorts {
    const relay = this.relay;
    if (relay === null) throw new Error('the relay is not running');
    const port = (listener: 'agent' | 'http' | 'https'): number => {
      const address = relay.address(listener);
      if (address === null) throw new Error(`no ${listener} listener`);
      return address.port;
    };
    return { agent: port('agent'), http: port('http'), https: port('https') };
  }

  /** A signed token, recorded in the relay's store (its account made if missing). */
  async token(grant: NewTokenGrant): Promise<string> {
    const { token, grant: issued } = createToken(this.secret, grant);
    const store = await openRelayStore({ dataDir: this.dir });
    try {
      await store.ensureAccount(grant.account ?? DEFAULT_ACCOUNT);
      await store.addToken(issued);
    } finally {
      await store.close();
    }
    return token;
  }

  /** An agent for this relay, started; closed by close(). */
  agent(token: string, tunnels: TunnelSpec[], options: Partial<AgentOptions> = {}): Agent {
    const agent = new Agent({
      relayHost: LOOPBACK,
      relayPort: this.ports.agent,
      servername: DOMAIN,
      ca: this.ca,
      token,
      tunnels,
      keepaliveIntervalMs: 0,
      reconnect: { initialDelayMs: 50, maxDelayMs: 400 },
      ...options,
    });
    this.closers.push(() => agent.close());
    agent.start();
    return agent;
  }

  /** A local HTTP server on 127.0.0.1; counts its TCP connections. */
  async httpServer(
    handler: (request: IncomingMessage, response: ServerResponse) => void,
  ): Promise<{ server: HttpServer; port: number; connections: () => number }> {
    const server = createHttpServer(handler);
    let connections = 0;
    server.on('connection', () => connections++);
    server.listen(0, LOOPBACK);
    await once(server, 'listening');
    this.closers.push(() => {
      server.closeAllConnections();
      server.close();
    });
    return { server, port: portOf(server), connections: () => connections };
  }

  /** A local TCP echo server. */
  async echoServer(): Promise<{ server: NetServer; port: number }> {
    const server = createNetServer({ allowHalfOpen: true }, (socket) => {
      socket.on('error', () => undefined);
      socket.pipe(socket);
    });
    server.listen(0, LOOPBACK);
    await once(server, 'listening');
    const sockets = new Set<Socket>();
    server.on('connection', (socket: Socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
    });
    this.closers.push(() => {
      for (const socket of sockets) socket.destroy();
      server.close();
    });
    return { server, port: portOf(server) };
  }

  /** Remembers a socket to destroy in close(). */
  track(socket: Socket): Socket {
    this.closers.push(() => {
      socket.destroy();
    });
    return socket;
  }

  async close(): Promise<void> {
    for (const closer of this.closers.reverse()) await closer();
    this.closers.length = 0;
    await this.stopRelay(0);
    await rm(this.dir, { recursive: true, force: true });
  }
}

export function portOf(server: NetServer): number {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('not listening');
  return address.port;
}

/** A TCP connection to 127.0.0.1:port, connected. */
export async function tcpConnect(port: number): Promise<Socket> {
  const socket = connect({ host: LOOPBACK, port, allowHalfOpen: true });
  await once(socket, 'connect');
  return socket;
}

/** A TLS connection to the relay's HTTPS port with SNI `servername`, verified against the dev CA. */
export async function tlsConnect(port: number, servername: string, ca: Buffer): Promise<Socket> {
  const socket = connectTls({ host: LOOPBACK, port, servername, ca, ALPNProtocols: ['http/1.1'] });
  await once(socket, 'secureConnect');
  return socket;
}

/** Reads from a socket until `predicate` holds on what arrived (or it closes / times out). */
export function readUntil(
  socket: Socket,
  predicate: (received: Buffer) => boolean,
  timeoutMs = 5_000,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const check = (): boolean => {
      const received = Buffer.concat(chunks);
      if (!predicate(received)) return false;
      cleanup();
      resolve(received);
      return true;
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      check();
    };
    const onClose = (): void => {
      cleanup();
      resolve(Buffer.concat(chunks));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(
        new Error(
          `timed out; received ${JSON.stringify(Buffer.concat(chunks).toString('latin1').slice(0, 300))}`,
        ),
      );
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('end', onClose);
    };
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('end', onClose);
  });
}

/** Counts complete HTTP responses (Content-Length framed) in `text`. */
export function completeResponses(text: string): string[] {
  const responses: string[] = [];
  let rest = text;
  for (;;) {
    const headEnd = rest.indexOf('\r\n\r\n');
    if (headEnd < 0) return responses;
    const headText = rest.slice(0, headEnd);
    const length = Number(/content-length: *(\d+)/i.exec(headText)?.[1] ?? '0');
    if (rest.length < headEnd + 4 + length) return responses;
    responses.push(rest.slice(0, headEnd + 4 + length));
    rest = rest.slice(headEnd + 4 + length);
  }
}

/** Sends raw request bytes and returns everything until `count` responses arrived or the socket closed. */
export async function exchange(
  socket: Socket,
  request: string | Buffer,
  count = 1,
): Promise<string[]> {
  socket.write(request);
  const received = await readUntil(
    socket,
    (bytes) => completeResponses(bytes.toString('latin1')).length >= count,
  );
  return completeResponses(received.toString('latin1'));
}

export function statusOf(response: string | undefined): number {
  return Number(/^HTTP\/1\.[01] (\d{3})/.exec(response ?? '')?.[1] ?? '0');
}

export function bodyOf(response: string | undefined): string {
  const text = response ?? '';
  return text.slice(text.indexOf('\r\n\r\n') + 4);
}

export async function waitFor(
  condition: () => boolean,
  what: string,
  timeoutMs = 5_000,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

// ---- a minimal WebSocket (RFC 6455) for the upgrade tests ---------------------------------------

const WEBSOCKET_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

/** RFC 6455 §4.2.2: Sec-WebSocket-Accept = base64(SHA-1(key + GUID)). */
export function websocketAccept(key: string): string {
  return createHash('sha1')
    .update(key + WEBSOCKET_GUID)
    .digest('base64');
}

/** A client text frame (FIN, opcode 1, masked as clients must: RFC 6455 §5.3). */
export function clientTextFrame(text: string): Buffer {
  const payload = Buffer.from(text);
  if (payload.length > 125) throw new Error('short frames only');
  const mask = randomBytes(4);
  const masked = Buffer.from(payload.map((byte, i) => byte ^ (mask[i % 4] ?? 0)));
  return Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]);
}

/** Decodes one unmasked server text frame (short frames only). */
export function serverTextFrame(bytes: Buffer): string | null {
  if (bytes.length < 2 || bytes[0] !== 0x81) return null;
  const length = (bytes[1] ?? 0) & 0x7f;
  if (bytes.length < 2 + length) return null;
  return bytes.subarray(2, 2 + length).toString();
}

/** Makes `server` a WebSocket echo server on upgrade (text frames, short). */
export function serveWebSocketEcho(server: HttpServer): void {
  server.on('upgrade', (request: IncomingMessage, socket: Socket, head: Buffer) => {
    const key = request.headers['sec-websocket-key'];
    if (typeof key !== 'string') {
      socket.end('HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
        `Sec-WebSocket-Accept: ${websocketAccept(key)}\r\n\r\n`,
    );
    let buffered = head;
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 6) {
        const length = (buffered[1] ?? 0) & 0x7f;
        if (buffered.length < 6 + length) return;
        const mask = buffered.subarray(2, 6);
        const payload = Buffer.from(
          buffered.subarray(6, 6 + length).map((byte, i) => byte ^ (mask[i % 4] ?? 0)),
        );
        buffered = buffered.subarray(6 + length);
        socket.write(Buffer.concat([Buffer.from([0x81, payload.length]), payload]));
      }
    };
    socket.on('data', onData);
    socket.on('error', () => undefined);
    if (head.length > 0) onData(Buffer.alloc(0));
  });
}

export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * One HTTP/1.1 request to 127.0.0.1:PORT on a fresh connection, with full control of
 * the headers: Host defaults to 127.0.0.1:PORT and `headers.host` overrides it.
 */
export function httpAsk(
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent: false,
        headers: { host: `127.0.0.1:${port}`, ...headers },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => {
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks).toString(),
          });
        });
      },
    );
    request.on('error', reject);
    request.end();
  });
}
