/**
 * `warren relay`: the public side of the tunnel service (issue 4).
 *
 * Agents connect over TLS to the agent listener, open a yamux session (the
 * relay is the yamux server), authenticate with a capability token on the
 * control stream (./control.ts) and ask for tunnels. Public traffic comes in on
 * the HTTP/HTTPS listeners, routed by Host to `<name>.<domain>`
 * (./public-http.ts), and on one TCP port per TCP tunnel; each client
 * connection becomes one yamux stream towards the agent that owns the tunnel.
 *
 * When the agent and HTTPS listeners are given the same address (the default,
 * :443), one TLS port serves both: agents are told apart by ALPN
 * ("warren-relay/1"), as ngrok and others share 443.
 *
 * Robustness (the seed's "a tunnel that crashes on malformed input takes down
 * every customer on the same node"): every input, TLS garbage, a malformed
 * yamux frame or control message, a slowloris client, fails only its own
 * connection, with a typed error published on diagnostics_channel. Limits bound
 * handshakes, authentication time, sessions, tunnels, streams, buffered bytes,
 * header size and time, connections per IP and requests per tunnel. close()
 * drains: stop accepting, let requests in flight finish until a deadline, then
 * tell agents to reconnect later and close.
 */
import { randomBytes } from 'node:crypto';
import { BasicAuthVerifier, IpAllowlist } from './access.js';
import { once } from 'node:events';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo, Server as NetServer, Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { Server as TlsServer, TLSSocket } from 'node:tls';
import {
  CONTROL_PROTOCOL_VERSION,
  FrameDecoder,
  encodeFrame,
  parseAgentMessage,
} from './control.js';
import type {
  AgentMessage,
  HelloMessage,
  OpenHttpMessage,
  OpenTcpMessage,
  RelayMessage,
  StreamProto,
} from './control.js';
import type {
  AgentConnectedEvent,
  AgentDisconnectedEvent,
  AgentRejectedEvent,
  PublicRefusalEvent,
  TunnelEvent,
} from './diagnostics.js';
import { relayDiagnostics } from './diagnostics.js';
import {
  AccessDeniedError,
  AccountRemovedError,
  AgentUnavailableError,
  AuthTimeoutError,
  ControlProtocolError,
  DomainNotVerifiedError,
  HandshakeError,
  NameInUseError,
  NoPortAvailableError,
  NotPermittedError,
  RelayClosedError,
  RelayConfigError,
  RelayError,
  RelayLimitError,
  TokenExpiredError,
  TokenRevokedError,
  TokenStoreError,
  isRemoteErrorCode,
} from './errors.js';
import { DEFAULT_HTTP_LIMITS } from './http1.js';
import { Session, YamuxError } from './mux/index.js';
import type { Stream } from './mux/index.js';
import { PublicHttpConnection } from './public-http.js';
import { canonicalHost } from './acme/certificate.js';
import { interceptAcmeChallenge } from './acme/http-challenge.js';
// The manager (and the ACME client under it) is loaded only for options.acme.
import type { AcmeCertificateManager, AcmeHostStatus, AcmeManagerOptions } from './acme/manager.js';
import {
  HttpResponseCounters,
  addResponseCounts,
  emptyResponseCounts,
} from './dashboard/http-counters.js';
import type { HttpResponseCounts } from './dashboard/http-counters.js';
import type { HttpRoute, HttpTunnelTarget } from './public-http.js';
import { TokenBucket } from './rate-limit.js';
import { chooseSubdomain, isValidSubdomain, tcpPortAllowed, verifyToken } from './token.js';
import type { PortRange, TokenGrant } from './token.js';
import { loadOrCreateSecret } from './secret.js';
import { openRelayStore } from './store/open.js';
import type { DomainRecord, RelayStore, TokenStanding } from './store/types.js';

/** The ALPN protocol id agents offer; it tells them apart on a shared TLS port. */
export const AGENT_ALPN = 'warren-relay/1';

export interface ListenAddress {
  /** Undefined: all addresses (dual-stack). */
  readonly host?: string;
  readonly port: number;
}

export interface RelayLimits {
  /** An agent's or HTTPS client's TLS handshake must finish within this (ms). */
  readonly handshakeTimeoutMs: number;
  /** An agent must authenticate within this after its handshake (ms). */
  readonly authTimeoutMs: number;
  /** Authenticated agent sessions at once. */
  readonly maxSessions: number;
  /** Agent connections that have not authenticated yet, at once. */
  readonly maxUnauthenticated: number;
  readonly maxTunnelsPerSession: number;
  /** yamux streams per agent session: public connections to one agent at once. */
  readonly maxStreamsPerSession: number;
  /**
   * yamux receive-window budget per agent session, beyond the spec's 256 KiB
   * window of each stream (bytes): what auto-tuning may add so one busy stream is
   * not held to 256 KiB per round trip. At most maxStreamsPerSession × 256 KiB +
   * this is ever unread from one agent.
   */
  readonly maxBufferedBytesPerSession: number;
  /** yamux keepalive ping interval on agent sessions (ms; 0 off). */
  readonly keepaliveIntervalMs: number;
  /** Public connections (HTTP, HTTPS and TCP tunnels together) from one IP address. */
  readonly maxConnectionsPerIp: number;
  /** Public connections per listener. */
  readonly maxPublicConnections: number;
  readonly maxHeadBytes: number;
  readonly maxHeaderCount: number;
  /** Slowloris guard: a request head must be complete this soon after it starts (ms). */
  readonly headersTimeoutMs: number;
  /** A public connection with no traffic either way for this long is closed (ms). */
  readonly idleTimeoutMs: number;
  readonly maxPipelinedRequests: number;
  /** Requests per second per HTTP tunnel (token bucket rate), and its burst. */
  readonly requestsPerSecond: number;
  readonly requestBurst: number;
  /** New connections per second per TCP tunnel, and the burst. */
  readonly tcpConnectionsPerSecond: number;
  readonly tcpConnectionBurst: number;
  /** How long a tunnel whose agent dropped answers 502 (not 404), in ms. */
  readonly offlineMemoryMs: number;
  /** How often live sessions' tokens are checked again (expiry, revocation), in ms. */
  readonly tokenRecheckIntervalMs: number;
}

export const DEFAULT_RELAY_LIMITS: RelayLimits = {
  handshakeTimeoutMs: 10_000,
  authTimeoutMs: 10_000,
  maxSessions: 1000,
  maxUnauthenticated: 256,
  maxTunnelsPerSession: 32,
  maxStreamsPerSession: 1024,
  maxBufferedBytesPerSession: 32 * 1024 * 1024,
  keepaliveIntervalMs: 15_000,
  maxConnectionsPerIp: 256,
  maxPublicConnections: 10_000,
  maxHeadBytes: DEFAULT_HTTP_LIMITS.maxHeadBytes,
  maxHeaderCount: DEFAULT_HTTP_LIMITS.maxHeaderCount,
  headersTimeoutMs: 10_000,
  idleTimeoutMs: 120_000,
  maxPipelinedRequests: 16,
  requestsPerSecond: 200,
  requestBurst: 400,
  tcpConnectionsPerSecond: 50,
  tcpConnectionBurst: 100,
  offlineMemoryMs: 10 * 60_000,
  tokenRecheckIntervalMs: 60_000,
};

export interface RelayOptions {
  /** Tunnels are `<name>.<domain>`. */
  readonly domain: string;
  /** Holds the token secret and the token list. */
  readonly dataDir: string;
  /**
   * PEM certificate (chain) and key: for the agent listener and HTTPS (a wildcard for *.domain).
   * Give this or `acme`.
   */
  readonly tls?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /**
   * Certificates from an ACME CA instead of `tls` (./acme/): one per SNI name
   * (the domain, each tunnel's host, verified custom domains), ordered with
   * HTTP-01, so `httpListen` is required. No wildcards (they need DNS-01).
   */
  readonly acme?: RelayAcmeOptions;
  readonly agentListen: ListenAddress;
  readonly httpListen?: ListenAddress;
  readonly httpsListen?: ListenAddress;
  /** Where TCP tunnel ports listen (default: all addresses). */
  readonly tcpHost?: string;
  /** The ports TCP tunnels get (default 41000-41999). */
  readonly tcpPorts?: PortRange;
  /** Ports written in public URLs when they differ from the bound ones (behind NAT). */
  readonly publicHttpPort?: number;
  readonly publicHttpsPort?: number;
  /**
   * Accounts, token records and custom domains (./store/). Default: opened
   * from `database` (a postgres:// URL) or SQLite in dataDir. The relay closes it.
   */
  readonly store?: RelayStore;
  /** A postgres:// or postgresql:// URL for the store; undefined: SQLite in dataDir. */
  readonly database?: string;
  readonly limits?: Partial<RelayLimits>;
}

/** `acme` in RelayOptions: the certificate manager's options the relay does not fill in itself. */
export interface RelayAcmeOptions extends Omit<AcmeManagerOptions, 'dataDir' | 'isServedHost'> {
  /** More names to get certificates for, besides the domain, tunnels and verified custom domains. */
  readonly isServedHost?: (host: string) => boolean | Promise<boolean>;
}

export interface TunnelInfo {
  readonly id: string;
  readonly proto: 'http' | 'tcp';
  /** Subdomain, or the port as a string. */
  readonly name: string;
  readonly url: string;
  readonly sessionId: string;
  readonly tokenName: string;
  readonly openedAt: number;
  readonly requests: number;
  readonly connections: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** HTTP tunnels: responses by status class and source, and request durations. */
  readonly responses?: HttpResponseCounts;
}

export interface SessionInfo {
  readonly id: string;
  readonly remoteAddress: string;
  readonly tokenId: string;
  readonly tokenName: string;
  /** The account the token belongs to. */
  readonly account: string;
  readonly connectedAt: number;
  readonly tunnels: readonly string[];
}

/** Traffic of one tunnel name, summed over the tunnels that held it (for monotonic metrics). */
export interface TunnelTotals {
  readonly proto: 'http' | 'tcp';
  /** Subdomain, or the port as a string. */
  readonly name: string;
  requests: number;
  connections: number;
  bytesIn: number;
  bytesOut: number;
  /** HTTP tunnels: their response counts (a snapshot, replaced when another tunnel retires). */
  responses?: HttpResponseCounts;
}

/** The key tunnels' totals are kept under: one series per protocol and name. */
export function tunnelTotalsKey(tunnel: Pick<TunnelInfo, 'proto' | 'name'>): string {
  return `${tunnel.proto}:${tunnel.name}`;
}

/**
 * Adds one tunnel's counts to `totals` (a new record when undefined) and
 * returns it: what a retired tunnel leaves behind, and what /metrics sums over
 * the closed tunnels of a name and its live one.
 */
export function addTunnelCounts(
  totals: TunnelTotals | undefined,
  tunnel: TunnelInfo,
): TunnelTotals {
  const sum = totals ?? {
    proto: tunnel.proto,
    name: tunnel.name,
    requests: 0,
    connections: 0,
    bytesIn: 0,
    bytesOut: 0,
  };
  sum.requests += tunnel.requests;
  sum.connections += tunnel.connections;
  sum.bytesIn += tunnel.bytesIn;
  sum.bytesOut += tunnel.bytesOut;
  if (tunnel.responses !== undefined) {
    sum.responses = addResponseCounts(sum.responses ?? emptyResponseCounts(), tunnel.responses);
  }
  return sum;
}

/** How often the relay refused public traffic for one reason. */
export interface RefusalCount {
  readonly listener: 'http' | 'https' | 'tcp';
  /** The error code, or the access rule that refused ('basic-auth', 'ip-allowlist'). */
  readonly reason: string;
  /** HTTP status sent, 0 when the connection was just closed. */
  readonly status: number;
  count: number;
}

/**
 * Cumulative counters of a relay, for the dashboard and Prometheus
 * (./dashboard/). Counters only grow; per-tunnel totals of closed tunnels are
 * kept in `closedTunnels` so a tunnel name's series stays monotonic across
 * reconnects (the live tunnel's counts are added on top by the reader).
 */
export interface RelayStats {
  /** Agents that authenticated, since start. */
  readonly agentsConnectedTotal: number;
  /** Agent connections refused before or during authentication, by error code. */
  readonly agentsRejectedTotal: ReadonlyMap<string, number>;
  /** Failed TLS handshakes, by listener. */
  readonly handshakeFailuresTotal: Readonly<Record<'agent' | 'https', number>>;
  /** Tokens refused (invalid, expired, revoked), by error code. */
  readonly tokenRejectionsTotal: ReadonlyMap<string, number>;
  /** Public connections admitted, by listener (a shared agent port counts agents under https). */
  readonly publicConnectionsTotal: Readonly<Record<'http' | 'https' | 'tcp', number>>;
  /** Public requests/connections the relay refused itself. */
  readonly refusedTotal: readonly Readonly<RefusalCount>[];
  /** yamux sessions open (authenticated or not). */
  readonly yamuxSessions: number;
  /** yamux streams open over all sessions. */
  readonly yamuxStreams: number;
  /** Totals of tunnels already closed, keyed by `${proto}:${name}`. */
  readonly closedTunnels: ReadonlyMap<string, Readonly<TunnelTotals>>;
  /** The relay's own answers to HTTP requests that matched no tunnel (unknown host…), by status. */
  readonly unroutedResponses: HttpResponseCounts;
}

const DEFAULT_TCP_PORTS: PortRange = [41000, 41999];
/** Closed tunnel names whose totals are kept for metrics, at most (oldest dropped first). */
const MAX_CLOSED_TUNNEL_TOTALS = 10_000;
/** Control messages an agent may have in flight (waiting for the store) at once. */
const MAX_QUEUED_CONTROL_MESSAGES = 64;
/** After telling an agent why its session fails, how long until the connection is cut. */
const FAIL_CLOSE_DELAY_MS = 1_000;
/** Names remembered as offline, at most (oldest dropped first). */
const MAX_OFFLINE_NAMES = 10_000;

function resolveLimits(partial: Partial<RelayLimits> | undefined): RelayLimits {
  const limits = { ...DEFAULT_RELAY_LIMITS, ...(partial ?? {}) };
  for (const [key, value] of Object.entries(limits)) {
    const minimum = key === 'keepaliveIntervalMs' ? 0 : 1;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < minimum) {
      throw new RelayConfigError(
        `limits.${key} must be a number >= ${minimum}, got ${String(value)}`,
      );
    }
  }
  return limits;
}

function normalizeAddress(address: string | undefined): string {
  if (address === undefined) return 'unknown';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function asRelayError(error: unknown): RelayError {
  if (error instanceof RelayError) return error;
  if (error instanceof YamuxError) {
    return new ControlProtocolError(`multiplexing failed: ${error.message}`);
  }
  return new RelayError('ERR_RELAY_CONFIG', `unexpected failure: ${errorMessage(error)}`, {
    cause: error,
  });
}

function publish(
  channel: { hasSubscribers: boolean; publish(message: unknown): void },
  make: () => unknown,
): void {
  if (channel.hasSubscribers) channel.publish(make());
}

async function listen(server: NetServer, address: ListenAddress): Promise<void> {
  server.listen({
    port: address.port,
    ...(address.host === undefined ? {} : { host: address.host }),
  });
  const listening = once(server, 'listening');
  const failed = once(server, 'error').then(([error]) => {
    throw error;
  });
  await Promise.race([listening, failed]);
}

// ---- tunnels ------------------------------------------------------------------------------

interface TunnelBase {
  readonly id: string;
  readonly session: AgentSession;
  readonly openedAt: number;
  bytesIn: number;
  bytesOut: number;
  info(): TunnelInfo;
  close(): void;
}

/** A tunnel's access rules (./access.ts); null: no such rule. */
interface TunnelAccess {
  readonly allowlist: IpAllowlist | null;
  readonly basicAuth: BasicAuthVerifier | null;
}

function accessOf(message: OpenHttpMessage | OpenTcpMessage): TunnelAccess {
  return {
    allowlist: message.allowIps === undefined ? null : new IpAllowlist(message.allowIps),
    basicAuth:
      message.proto === 'http' && message.basicAuth !== undefined
        ? new BasicAuthVerifier(message.basicAuth)
        : null,
  };
}

class HttpTunnel implements HttpTunnelTarget, TunnelBase {
  readonly id = randomBytes(8).toString('hex');
  readonly openedAt = Date.now();
  bytesIn = 0;
  bytesOut = 0;
  requests = 0;
  readonly responses = new HttpResponseCounters();
  private readonly bucket: TokenBucket;

  constructor(
    readonly session: AgentSession,
    readonly name: string,
    readonly host: string,
    readonly url: string,
    limits: RelayLimits,
    private readonly access: TunnelAccess,
  ) {
    this.bucket = new TokenBucket(limits.requestsPerSecond, limits.requestBurst);
  }

  get requiresAuthorization(): boolean {
    return this.access.basicAuth !== null;
  }

  allowsAddress(remoteAddress: string): boolean {
    return this.access.allowlist?.allows(remoteAddress) ?? true;
  }

  authorize(authorization: string | undefined): boolean {
    return this.access.basicAuth?.verify(authorization) ?? true;
  }

  admitRequest(now: number): boolean {
    if (!this.bucket.take(now)) return false;
    this.requests++;
    return true;
  }

  openStream(proto: 'http' | 'https', remoteAddress: string, remotePort: number): Stream {
    return this.session.openDataStream(this.id, proto, remoteAddress, remotePort);
  }

  countBytes(bytesIn: number, bytesOut: number): void {
    this.bytesIn += bytesIn;
    this.bytesOut += bytesOut;
  }

  info(): TunnelInfo {
    return {
      id: this.id,
      proto: 'http',
      name: this.name,
      url: this.url,
      sessionId: this.session.id,
      tokenName: this.session.grant?.name ?? '',
      openedAt: this.openedAt,
      requests: this.requests,
      connections: 0,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      responses: this.responses.snapshot(),
    };
  }

  close(): void {
    // Public connections already routed here end with their stream (session close).
  }
}

class TcpTunnel implements TunnelBase {
  readonly id = randomBytes(8).toString('hex');
  readonly openedAt = Date.now();
  bytesIn = 0;
  bytesOut = 0;
  connectionsTotal = 0;
  /** Resolves when the listening socket is closed (its port free again). */
  readonly serverClosed: Promise<void>;
  private readonly bucket: TokenBucket;
  private readonly sockets = new Set<Socket>();

  constructor(
    readonly session: AgentSession,
    readonly port: number,
    readonly url: string,
    private readonly server: NetServer,
    private readonly relay: Relay,
    limits: RelayLimits,
    private readonly allowlist: IpAllowlist | null,
  ) {
    this.bucket = new TokenBucket(limits.tcpConnectionsPerSecond, limits.tcpConnectionBurst);
    this.serverClosed = new Promise((resolve) => {
      server.once('close', () => {
        resolve();
      });
    });
    server.on('connection', (socket) => {
      this.onConnection(socket);
    });
    server.on('error', () => {
      // Accept errors (EMFILE…): the listener goes on.
    });
  }

  get connectionCount(): number {
    return this.sockets.size;
  }

  private onConnection(socket: Socket): void {
    const remoteAddress = normalizeAddress(socket.remoteAddress);
    // The real source address, checked at accept: not one byte is read or forwarded.
    if (this.allowlist !== null && !this.allowlist.allows(socket.remoteAddress)) {
      this.relay.refusePublic(
        'tcp',
        remoteAddress,
        0,
        new AccessDeniedError('ip-allowlist', `${remoteAddress} may not use port ${this.port}`),
      );
      socket.destroy();
      return;
    }
    if (!this.relay.admitPublic(socket, 'tcp')) return;
    if (!this.bucket.take()) {
      this.relay.refusePublic(
        'tcp',
        remoteAddress,
        0,
        new RelayLimitError(`too many new connections to port ${this.port}`),
      );
      socket.destroy();
      return;
    }
    let stream: Stream;
    try {
      stream = this.session.openDataStream(this.id, 'tcp', remoteAddress, socket.remotePort ?? 0);
    } catch (error) {
      this.relay.refusePublic('tcp', remoteAddress, 0, asRelayError(error));
      socket.destroy();
      return;
    }
    this.connectionsTotal++;
    this.sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.bytesIn += chunk.length;
    });
    stream.on('data', (chunk: Buffer) => {
      this.bytesOut += chunk.length;
    });
    socket.pipe(stream);
    stream.pipe(socket);
    socket.on('error', () => {
      stream.destroy();
    });
    stream.on('error', () => {
      socket.destroy();
    });
    socket.on('close', () => {
      this.sockets.delete(socket);
      // A clean close leaves the stream to flush what it still holds.
      if (!socket.readableEnded) stream.destroy();
    });
  }

  /** Stops accepting; existing connections go on until drained or destroyed. */
  stopListening(): void {
    this.server.close();
  }

  close(): void {
    this.server.close();
    for (const socket of this.sockets) socket.destroy();
  }

  info(): TunnelInfo {
    return {
      id: this.id,
      proto: 'tcp',
      name: String(this.port),
      url: this.url,
      sessionId: this.session.id,
      tokenName: this.session.grant?.name ?? '',
      openedAt: this.openedAt,
      requests: 0,
      connections: this.connectionsTotal,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
    };
  }
}

type Tunnel = HttpTunnel | TcpTunnel;

// ---- agent sessions ---------------------------------------------------------------------

type SessionState = 'auth' | 'ready' | 'closed';

class AgentSession {
  readonly id = randomBytes(8).toString('hex');
  readonly connectedAt = Date.now();
  readonly remoteAddress: string;
  readonly tunnels = new Map<string, Tunnel>();
  grant: TokenGrant | null = null;
  private readonly relay: Relay;
  private readonly mux: Session;
  private readonly decoder = new FrameDecoder();
  private control: Stream | null = null;
  private state: SessionState = 'auth';
  private token = '';
  private work: Promise<void> = Promise.resolve();
  private queued = 0;
  private failure: RelayError | undefined;
  private authTimer: NodeJS.Timeout | null;

  constructor(socket: TLSSocket, relay: Relay, limits: RelayLimits) {
    this.relay = relay;
    this.remoteAddress = normalizeAddress(socket.remoteAddress);
    socket.setNoDelay(true);
    this.mux = Session.server(socket, {
      maxStreams: limits.maxStreamsPerSession,
      maxBufferedBytes: limits.maxBufferedBytesPerSession,
      keepaliveInterval: limits.keepaliveIntervalMs,
      openTimeout: 10_000,
    });
    this.mux.on('stream', this.onStream);
    this.mux.on('error', (error: YamuxError) => {
      // Garbage or a protocol violation: the session is over; 'close' follows
      // once the transport is closed (the peer's FIN, or yamux's close timeout).
      this.failure ??= asRelayError(error);
      this.markClosed();
    });
    this.mux.on('close', this.onClose);
    this.authTimer = setTimeout(() => {
      this.authTimer = null;
      this.fail(new AuthTimeoutError(`no authentication within ${limits.authTimeoutMs} ms`));
    }, limits.authTimeoutMs);
    this.authTimer.unref();
  }

  get authenticated(): boolean {
    return this.state === 'ready';
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  /** yamux streams open on this session (control stream included). */
  get streamCount(): number {
    return this.mux.streamCount;
  }

  info(): SessionInfo {
    return {
      id: this.id,
      remoteAddress: this.remoteAddress,
      tokenId: this.grant?.id ?? '',
      tokenName: this.grant?.name ?? '',
      account: this.grant?.account ?? '',
      connectedAt: this.connectedAt,
      tunnels: [...this.tunnels.keys()],
    };
  }

  /** Opens a data stream for a tunnel, its preamble written. */
  openDataStream(
    tunnelId: string,
    proto: StreamProto,
    remoteAddress: string,
    remotePort: number,
  ): Stream {
    if (this.state !== 'ready') {
      throw new AgentUnavailableError('the agent serving this tunnel is disconnected');
    }
    let stream: Stream;
    try {
      stream = this.mux.open();
    } catch (error) {
      if (error instanceof YamuxError && error.code === 'ERR_YAMUX_STREAM_LIMIT') {
        throw new RelayLimitError(`the agent has too many connections open (${error.message})`);
      }
      throw new AgentUnavailableError(`cannot open a stream to the agent: ${errorMessage(error)}`, {
        cause: error,
      });
    }
    stream.write(encodeFrame({ t: 'stream', tunnel: tunnelId, proto, remoteAddress, remotePort }));
    return stream;
  }

  send(message: RelayMessage): void {
    const control = this.control;
    if (control === null || control.destroyed || control.writableEnded) return;
    control.write(encodeFrame(message));
  }

  /** Ends the session because of `error`: the agent is told why, then the connection closes. */
  fail(error: RelayError): void {
    if (this.state === 'closed') return;
    this.failure ??= error;
    this.markClosed();
    const control = this.control;
    if (control !== null && !control.destroyed && !control.writableEnded) {
      const code = isRemoteErrorCode(error.code) ? error.code : 'ERR_RELAY_PROTOCOL';
      // Once the error frame is handed to the transport, the session ends; yamux
      // flushes the transport before closing it.
      control.end(encodeFrame({ t: 'error', code, message: error.message.slice(0, 1024) }), () => {
        this.mux.destroy();
      });
      // A peer that grants no window would hold the frame (and us) forever.
      setTimeout(() => {
        this.mux.destroy();
      }, FAIL_CLOSE_DELAY_MS).unref();
      return;
    }
    this.mux.destroy();
  }

  /** The relay is shutting down: tell the agent to come back later, close gracefully. */
  shutdown(message: string): Promise<void> {
    this.send({ t: 'shutdown', message });
    this.control?.end();
    this.markClosed();
    return this.mux.close();
  }

  destroy(): void {
    this.mux.destroy();
  }

  removeTunnel(tunnel: Tunnel, remember: boolean): void {
    if (this.tunnels.get(tunnel.id) !== tunnel) return;
    this.tunnels.delete(tunnel.id);
    this.relay.unregisterTunnel(tunnel, remember);
  }

  private markClosed(): void {
    if (this.state === 'closed') return;
    const wasReady = this.state === 'ready';
    this.state = 'closed';
    if (this.authTimer !== null) {
      clearTimeout(this.authTimer);
      this.authTimer = null;
    }
    for (const tunnel of [...this.tunnels.values()]) this.removeTunnel(tunnel, wasReady);
  }

  private readonly onStream = (stream: Stream): void => {
    if (this.control !== null || this.state === 'closed') {
      // Agents open the control stream only; data streams are the relay's to open.
      stream.reset();
      return;
    }
    this.control = stream;
    stream.on('data', this.onControlData);
    stream.on('end', () => {
      this.fail(new RelayClosedError('the agent closed its control stream'));
    });
    stream.on('error', (error: Error) => {
      this.fail(asRelayError(error));
    });
  };

  private readonly onControlData = (chunk: Buffer): void => {
    if (this.state === 'closed') return;
    let frames: Buffer[];
    try {
      frames = this.decoder.push(chunk);
    } catch (error) {
      this.fail(asRelayError(error));
      return;
    }
    for (const frame of frames) {
      let message: AgentMessage;
      try {
        message = parseAgentMessage(frame);
      } catch (error) {
        this.fail(asRelayError(error));
        return;
      }
      if (this.queued >= MAX_QUEUED_CONTROL_MESSAGES) {
        this.fail(new RelayLimitError('too many control messages in flight'));
        return;
      }
      this.queued++;
      // In order, one at a time: authentication and tunnel requests await the store.
      this.work = this.work
        .then(() => this.handle(message))
        .catch((error: unknown) => {
          this.fail(asRelayError(error));
        })
        .finally(() => {
          this.queued--;
        });
    }
  };

  private async handle(message: AgentMessage): Promise<void> {
    if (this.state === 'closed') return;
    switch (message.t) {
      case 'hello':
        if (this.state !== 'auth') throw new ControlProtocolError('a second hello');
        await this.authenticate(message);
        return;
      case 'open':
        if (this.state !== 'ready') throw new ControlProtocolError('open before hello');
        await this.open(message);
        return;
      case 'close': {
        if (this.state !== 'ready') throw new ControlProtocolError('close before hello');
        const tunnel = this.tunnels.get(message.tunnel);
        if (tunnel !== undefined) this.removeTunnel(tunnel, false);
        return;
      }
    }
  }

  private async authenticate(message: HelloMessage): Promise<void> {
    if (message.v !== CONTROL_PROTOCOL_VERSION) {
      throw new ControlProtocolError(
        `protocol version ${message.v} is not supported (this relay speaks ${CONTROL_PROTOCOL_VERSION})`,
      );
    }
    const grant = await this.relay.authorize(message.token);
    if (this.state !== 'auth') return;
    this.relay.admitSession();
    if (this.authTimer !== null) {
      clearTimeout(this.authTimer);
      this.authTimer = null;
    }
    this.grant = grant;
    this.token = message.token;
    this.state = 'ready';
    this.send({
      t: 'welcome',
      v: CONTROL_PROTOCOL_VERSION,
      session: this.id,
      domain: this.relay.domain,
      tokenName: grant.name,
      ...this.relay.advertisedPorts(),
    });
    this.relay.counters.agentsConnected++;
    publish(relayDiagnostics.agentConnected, (): AgentConnectedEvent => ({
      sessionId: this.id,
      remoteAddress: this.remoteAddress,
      tokenId: grant.id,
      tokenName: grant.name,
    }));
  }

  private async open(message: OpenHttpMessage | OpenTcpMessage): Promise<void> {
    // The token is checked again on every tunnel request: it may have expired
    // or been revoked since the session opened. That fails the whole session.
    const grant = await this.relay.authorize(this.token);
    if (this.state !== 'ready') return;
    this.grant = grant;
    try {
      if (this.tunnels.size >= this.relay.limits.maxTunnelsPerSession) {
        throw new RelayLimitError(
          `at most ${this.relay.limits.maxTunnelsPerSession} tunnels per agent connection`,
        );
      }
      const access = accessOf(message);
      const tunnel =
        message.proto === 'http'
          ? message.hostname !== undefined
            ? await this.relay.openCustomHostTunnel(this, grant, message.hostname, access)
            : this.relay.openHttpTunnel(this, grant, message.subdomain, access)
          : await this.relay.openTcpTunnel(this, grant, message.port, access.allowlist);
      if (this.closed) {
        this.relay.unregisterTunnel(tunnel, false);
        return;
      }
      this.tunnels.set(tunnel.id, tunnel);
      // Confirms the access rules are enforced (an older relay would not say so).
      const enforced =
        access.allowlist !== null || access.basicAuth !== null ? { access: true as const } : {};
      if (tunnel instanceof HttpTunnel) {
        this.send({
          t: 'opened',
          id: message.id,
          tunnel: tunnel.id,
          proto: 'http',
          name: tunnel.name,
          url: tunnel.url,
          ...enforced,
        });
      } else {
        this.send({
          t: 'opened',
          id: message.id,
          tunnel: tunnel.id,
          proto: 'tcp',
          port: tunnel.port,
          url: tunnel.url,
          ...enforced,
        });
      }
      publish(relayDiagnostics.tunnelOpened, (): TunnelEvent => ({
        sessionId: this.id,
        tunnelId: tunnel.id,
        proto: tunnel instanceof HttpTunnel ? 'http' : 'tcp',
        name: tunnel instanceof HttpTunnel ? tunnel.name : String(tunnel.port),
        url: tunnel.url,
      }));
    } catch (error) {
      if (!(error instanceof RelayError) || !isRemoteErrorCode(error.code)) throw error;
      this.send({ t: 'refused', id: message.id, code: error.code, message: error.message });
    }
  }

  private readonly onClose = (error: YamuxError | undefined): void => {
    const wasAuthenticated = this.grant !== null;
    this.markClosed();
    this.relay.sessionGone(this);
    const failure: Error | undefined = this.failure ?? error;
    if (wasAuthenticated) {
      publish(relayDiagnostics.agentDisconnected, (): AgentDisconnectedEvent => ({
        sessionId: this.id,
        error: failure,
      }));
    } else {
      const rejection = failure ?? new RelayClosedError('the agent left before authenticating');
      this.relay.countAgentRejected(rejection);
      publish(relayDiagnostics.agentRejected, (): AgentRejectedEvent => ({
        remoteAddress: this.remoteAddress,
        error: rejection,
      }));
    }
  };
}

// ---- the relay ------------------------------------------------------------------------------

type RelayState = 'running' | 'draining' | 'closed';

export class Relay {
  readonly domain: string;
  readonly limits: RelayLimits;
  private readonly options: RelayOptions;
  private readonly secret: Buffer;
  private readonly store: RelayStore;
  private readonly tcpPorts: PortRange;
  private readonly sharedAgentPort: boolean;
  private state: RelayState = 'running';
  private agentServer: TlsServer | null = null;
  private httpServer: NetServer | null = null;
  private httpsServer: TlsServer | null = null;
  private readonly sessions = new Set<AgentSession>();
  private readonly acceptedSockets = new Set<Socket>();
  private readonly httpTunnels = new Map<string, HttpTunnel>();
  /** HTTP tunnels on verified custom domains, by host name (their name is the host). */
  private readonly customHostTunnels = new Map<string, HttpTunnel>();
  private readonly tcpTunnels = new Map<number, TcpTunnel>();
  private readonly offlineNames = new Map<string, number>();
  private readonly publicConnections = new Set<PublicHttpConnection>();
  private readonly connectionsPerIp = new Map<string, number>();
  private recheckTimer: NodeJS.Timeout | null = null;
  private closePromise: Promise<void> | null = null;
  /** With options.acme: the certificates per SNI name. */
  private acme: AcmeCertificateManager | null = null;
  /** Mutable counters behind stats(); sessions and tunnels add to them. */
  readonly counters = {
    agentsConnected: 0,
    agentsRejected: new Map<string, number>(),
    handshakeFailures: { agent: 0, https: 0 },
    tokenRejections: new Map<string, number>(),
    publicConnections: { http: 0, https: 0, tcp: 0 },
    /** Keyed by `${listener} ${code} ${status}`. */
    refused: new Map<string, RefusalCount>(),
    closedTunnels: new Map<string, TunnelTotals>(),
    unroutedResponses: new HttpResponseCounters(),
  };

  private constructor(options: RelayOptions, secret: Buffer, store: RelayStore) {
    this.options = options;
    this.domain = options.domain.toLowerCase();
    this.limits = resolveLimits(options.limits);
    this.secret = secret;
    this.store = store;
    this.tcpPorts = options.tcpPorts ?? DEFAULT_TCP_PORTS;
    this.sharedAgentPort =
      options.httpsListen !== undefined &&
      options.httpsListen.port !== 0 &&
      options.httpsListen.port === options.agentListen.port &&
      options.httpsListen.host === options.agentListen.host;
  }

  /** Validates the options, loads the secret and the token store, and starts listening. */
  static async start(options: RelayOptions): Promise<Relay> {
    if (typeof options !== 'object') throw new TypeError('options must be an object');
    const domain = typeof options.domain === 'string' ? options.domain.toLowerCase() : '';
    if (
      domain.length === 0 ||
      domain.length > 200 ||
      !domain.split('.').every((label) => isValidSubdomain(label))
    ) {
      throw new RelayConfigError(`options.domain: '${domain}' is not a DNS name`);
    }
    if (typeof options.dataDir !== 'string' || options.dataDir.length === 0) {
      throw new RelayConfigError('options.dataDir must be a directory path');
    }
    if (options.tls !== undefined && options.acme !== undefined) {
      throw new RelayConfigError('give options.tls or options.acme, not both');
    }
    if (options.acme === undefined && typeof options.tls !== 'object') {
      throw new RelayConfigError('options.tls must hold a PEM cert and key (or give options.acme)');
    }
    if (options.acme !== undefined && options.httpListen === undefined) {
      // RFC 8555 §8.3: the CA fetches the HTTP-01 answer from port 80 of the name.
      throw new RelayConfigError(
        'options.acme needs options.httpListen (HTTP-01 comes in on port 80)',
      );
    }
    if (options.acme !== undefined && canonicalHost(domain) === null) {
      throw new RelayConfigError(`options.acme: an ACME CA cannot issue for '${domain}'`);
    }
    for (const [name, address] of Object.entries({
      agentListen: options.agentListen,
      httpListen: options.httpListen,
      httpsListen: options.httpsListen,
    })) {
      if (address === undefined && name !== 'agentListen') continue;
      if (
        typeof address !== 'object' ||
        !Number.isInteger(address.port) ||
        address.port < 0 ||
        address.port > 65535
      ) {
        throw new RelayConfigError(`options.${name} must be { host?, port } with a port 0-65535`);
      }
    }
    const range = options.tcpPorts ?? DEFAULT_TCP_PORTS;
    if (!(range[0] >= 1 && range[0] <= range[1] && range[1] <= 65535)) {
      throw new RelayConfigError(`options.tcpPorts: ${range.join('-')} is not a port range`);
    }
    const secret = await loadOrCreateSecret(options.dataDir);
    const store =
      options.store ??
      (await openRelayStore({ dataDir: options.dataDir, database: options.database }));
    const relay = new Relay(options, secret, store);
    try {
      if (options.acme !== undefined) {
        const { AcmeCertificateManager } = await import('./acme/manager.js');
        relay.acme = await AcmeCertificateManager.open({
          ...options.acme,
          dataDir: options.dataDir,
          isServedHost: (host) => relay.servesHost(host),
        }).catch((error: unknown) => {
          throw error instanceof RelayError
            ? error
            : new RelayConfigError(`options.acme: ${errorMessage(error)}`, { cause: error });
        });
      }
      await relay.listenAll();
      // Agents connect by the domain's name: have its certificate before the first one does.
      relay.acme?.prefetch(relay.domain);
    } catch (error) {
      await relay.close({ drainTimeoutMs: 0 });
      throw error instanceof RelayError
        ? error
        : new RelayConfigError(`cannot listen: ${errorMessage(error)}`, { cause: error });
    }
    return relay;
  }

  /** The bound address of a listener (null if not configured). */
  address(listener: 'agent' | 'http' | 'https'): AddressInfo | null {
    const server =
      listener === 'agent'
        ? this.agentServer
        : listener === 'http'
          ? this.httpServer
          : this.sharedAgentPort
            ? this.agentServer
            : this.httpsServer;
    const address = server?.address();
    return address === null || address === undefined || typeof address === 'string'
      ? null
      : address;
  }

  get closed(): boolean {
    return this.state === 'closed';
  }

  /** Read afresh (the state changes across awaits). */
  private get running(): boolean {
    return this.state === 'running';
  }

  sessionsInfo(): SessionInfo[] {
    return [...this.sessions].filter((session) => session.authenticated).map((s) => s.info());
  }

  /** With options.acme: each certificate name's state (held, ordering, failing); else undefined. */
  certificatesInfo(): AcmeHostStatus[] | undefined {
    return this.acme?.status();
  }

  tunnelsInfo(): TunnelInfo[] {
    return [
      ...this.httpTunnels.values(),
      ...this.customHostTunnels.values(),
      ...this.tcpTunnels.values(),
    ].map((tunnel) => tunnel.info());
  }

  /** A snapshot of the relay's counters (see RelayStats). */
  stats(): RelayStats {
    const counters = this.counters;
    let yamuxStreams = 0;
    for (const session of this.sessions) yamuxStreams += session.streamCount;
    const refusedTotal = [...counters.refused.values()].map((refusal) => ({ ...refusal }));
    return {
      agentsConnectedTotal: counters.agentsConnected,
      agentsRejectedTotal: new Map(counters.agentsRejected),
      handshakeFailuresTotal: { ...counters.handshakeFailures },
      tokenRejectionsTotal: new Map(counters.tokenRejections),
      publicConnectionsTotal: { ...counters.publicConnections },
      refusedTotal,
      yamuxSessions: this.sessions.size,
      yamuxStreams,
      closedTunnels: new Map(
        [...counters.closedTunnels].map(([key, totals]) => [key, { ...totals }]),
      ),
      unroutedResponses: counters.unroutedResponses.snapshot(),
    };
  }

  countAgentRejected(error: Error): void {
    const code = error instanceof RelayError ? error.code : 'ERR_RELAY_PROTOCOL';
    this.counters.agentsRejected.set(code, (this.counters.agentsRejected.get(code) ?? 0) + 1);
  }

  private countTokenRejected(error: unknown): void {
    if (!(error instanceof RelayError) || error instanceof TokenStoreError) return;
    const rejections = this.counters.tokenRejections;
    rejections.set(error.code, (rejections.get(error.code) ?? 0) + 1);
  }

  private retireTunnelTotals(tunnel: Tunnel): void {
    const info = tunnel.info();
    const key = tunnelTotalsKey(info);
    const closed = this.counters.closedTunnels;
    const totals = addTunnelCounts(closed.get(key), info);
    closed.delete(key);
    closed.set(key, totals);
    if (closed.size > MAX_CLOSED_TUNNEL_TOTALS) {
      const oldest = closed.keys().next();
      if (oldest.done !== true) closed.delete(oldest.value);
    }
  }

  /**
   * Graceful shutdown: stop accepting, let public connections finish their
   * requests until `drainTimeoutMs`, tell agents to reconnect later, close.
   */
  close(options: { drainTimeoutMs?: number } = {}): Promise<void> {
    this.closePromise ??= this.shutdown(options.drainTimeoutMs ?? 10_000);
    return this.closePromise;
  }

  // ---- used by sessions and tunnels -------------------------------------------------------

  /** Verifies a token: signature, expiry, revocation, and that its account still exists. */
  async authorize(token: string): Promise<TokenGrant> {
    let grant: TokenGrant;
    try {
      grant = verifyToken(this.secret, token);
    } catch (error) {
      this.countTokenRejected(error);
      throw error;
    }
    const refusal = await this.storeRefusal(grant);
    if (refusal !== null) {
      this.countTokenRejected(refusal);
      throw refusal;
    }
    return grant;
  }

  /**
   * What the store holds against a signed grant: revoked, or its account
   * removed (null: nothing). A store that cannot answer throws: fail closed.
   */
  private async storeRefusal(grant: TokenGrant): Promise<RelayError | null> {
    let standing: TokenStanding;
    try {
      standing = await this.store.checkToken(grant);
    } catch (error) {
      throw error instanceof TokenStoreError
        ? error
        : new TokenStoreError(`the token store failed: ${errorMessage(error)}`, { cause: error });
    }
    switch (standing) {
      case 'valid':
        return null;
      case 'revoked':
        return new TokenRevokedError(`the token '${grant.name}' was revoked`);
      case 'account-removed':
        return new AccountRemovedError(
          `the account '${grant.account}' of the token '${grant.name}' was removed`,
        );
    }
  }

  /**
   * Throws DomainNotVerifiedError unless `host` is a verified custom domain of
   * the grant's account (checked on every request for it, and periodically).
   */
  private async checkCustomHost(grant: TokenGrant, host: string): Promise<void> {
    let domain: DomainRecord | null;
    try {
      domain = await this.store.getDomain(host);
    } catch (error) {
      throw error instanceof TokenStoreError
        ? error
        : new TokenStoreError(`the store failed: ${errorMessage(error)}`, { cause: error });
    }
    if (domain?.account !== grant.account) {
      throw new DomainNotVerifiedError(
        `${host} is not a custom domain of the account '${grant.account}' (warren relay domain add --account ${grant.account} ${host})`,
      );
    }
    if (domain.verifiedAt === null) {
      throw new DomainNotVerifiedError(
        `${host} is not verified yet (create its TXT record, then: warren relay domain verify ${host})`,
      );
    }
  }

  /**
   * Whether the relay serves `host` (lower case): its domain, a registered HTTP
   * tunnel's host, a verified custom domain, or a name options.acme.isServedHost
   * accepts. ACME orders certificates for these names only.
   */
  async servesHost(host: string): Promise<boolean> {
    if (host === this.domain || this.customHostTunnels.has(host)) return true;
    const suffix = `.${this.domain}`;
    if (host.endsWith(suffix) && this.httpTunnels.has(host.slice(0, -suffix.length))) return true;
    const extra = this.options.acme?.isServedHost;
    if (extra !== undefined && (await extra(host))) return true;
    try {
      return await this.isVerifiedCustomDomain(host);
    } catch {
      return false; // the store failed: order nothing rather than anything
    }
  }

  /** True if `host` is a custom domain some account has verified. */
  async isVerifiedCustomDomain(host: string): Promise<boolean> {
    const domain = await this.store.getDomain(host);
    return domain !== null && domain.verifiedAt !== null;
  }

  /** Throws unless one more authenticated session fits. */
  admitSession(): void {
    if (this.state !== 'running') throw new RelayClosedError('the relay is shutting down');
    let authenticated = 0;
    for (const session of this.sessions) if (session.authenticated) authenticated++;
    if (authenticated >= this.limits.maxSessions) {
      throw new RelayLimitError(`the relay serves ${authenticated} agents, its limit`);
    }
  }

  sessionGone(session: AgentSession): void {
    this.sessions.delete(session);
  }

  advertisedPorts(): { httpPort?: number; httpsPort?: number } {
    const http = this.options.publicHttpPort ?? this.address('http')?.port;
    const https = this.options.publicHttpsPort ?? this.address('https')?.port;
    return {
      ...(http === undefined ? {} : { httpPort: http }),
      ...(https === undefined ? {} : { httpsPort: https }),
    };
  }

  private publicUrl(name: string): string {
    const { httpPort, httpsPort } = this.advertisedPorts();
    const host = `${name}.${this.domain}`;
    if (httpsPort !== undefined)
      return `https://${host}${httpsPort === 443 ? '' : `:${httpsPort}`}`;
    return `http://${host}${httpPort === 80 || httpPort === undefined ? '' : `:${httpPort}`}`;
  }

  openHttpTunnel(
    session: AgentSession,
    grant: TokenGrant,
    requested: string | undefined,
    access: TunnelAccess = { allowlist: null, basicAuth: null },
  ): HttpTunnel {
    if (this.state !== 'running') throw new RelayClosedError('the relay is shutting down');
    let name = chooseSubdomain(grant, requested);
    const existing = this.httpTunnels.get(name);
    if (existing !== undefined) {
      if (requested === undefined && !grant.subdomains.some((p) => p === name)) {
        // A random name that happens to be taken: draw again.
        for (let attempt = 0; attempt < 16 && this.httpTunnels.has(name); attempt++) {
          name = chooseSubdomain(grant, undefined);
        }
        if (this.httpTunnels.has(name)) throw new NameInUseError('no free random subdomain found');
      } else if (existing.session.grant?.id === grant.id) {
        // The same token reconnecting (its old session not yet seen dead) takes over.
        existing.session.removeTunnel(existing, false);
      } else {
        throw new NameInUseError(`${name}.${this.domain} is in use by another agent`);
      }
    }
    const tunnel = new HttpTunnel(
      session,
      name,
      `${name}.${this.domain}`,
      this.publicUrl(name),
      this.limits,
      access,
    );
    this.httpTunnels.set(name, tunnel);
    this.offlineNames.delete(name);
    this.acme?.prefetch(tunnel.host); // the certificate before the first public request
    return tunnel;
  }

  /**
   * An HTTP tunnel on a custom domain: `hostname` must be a verified domain of
   * the grant's account (DomainNotVerifiedError), not a name under the relay's
   * own domain (NotPermittedError). Public requests with that Host reach it.
   */
  async openCustomHostTunnel(
    session: AgentSession,
    grant: TokenGrant,
    hostname: string,
    access: TunnelAccess = { allowlist: null, basicAuth: null },
  ): Promise<HttpTunnel> {
    if (this.state !== 'running') throw new RelayClosedError('the relay is shutting down');
    const host = hostname.toLowerCase();
    if (host === this.domain || host.endsWith(`.${this.domain}`)) {
      throw new NotPermittedError(
        `${host} is under the relay's own domain: ask for a subdomain instead of a hostname`,
      );
    }
    await this.checkCustomHost(grant, host);
    if (!this.running) throw new RelayClosedError('the relay is shutting down');
    const existing = this.customHostTunnels.get(host);
    if (existing !== undefined) {
      if (existing.session.grant?.id !== grant.id) {
        throw new NameInUseError(`${host} is in use by another agent`);
      }
      // The same token reconnecting (its old session not yet seen dead) takes over.
      existing.session.removeTunnel(existing, false);
    }
    const { httpPort, httpsPort } = this.advertisedPorts();
    const url =
      httpsPort !== undefined
        ? `https://${host}${httpsPort === 443 ? '' : `:${httpsPort}`}`
        : `http://${host}${httpPort === 80 || httpPort === undefined ? '' : `:${httpPort}`}`;
    const tunnel = new HttpTunnel(session, host, host, url, this.limits, access);
    this.customHostTunnels.set(host, tunnel);
    this.offlineNames.delete(host);
    this.acme?.prefetch(host); // the certificate before the first public request
    return tunnel;
  }

  async openTcpTunnel(
    session: AgentSession,
    grant: TokenGrant,
    requested: number | undefined,
    allowlist: IpAllowlist | null = null,
  ): Promise<TcpTunnel> {
    if (this.state !== 'running') throw new RelayClosedError('the relay is shutting down');
    if (grant.tcp === false) {
      throw new NotPermittedError(`the token '${grant.name}' does not allow TCP tunnels`);
    }
    const [first, last] = this.tcpPorts;
    const candidates: number[] = [];
    if (requested !== undefined) {
      if (requested < first || requested > last) {
        throw new NotPermittedError(
          `port ${requested} is outside this relay's range ${first}-${last}`,
        );
      }
      if (!tcpPortAllowed(grant, requested)) {
        throw new NotPermittedError(`the token '${grant.name}' does not allow port ${requested}`);
      }
      const existing = this.tcpTunnels.get(requested);
      if (existing !== undefined) {
        if (existing.session.grant?.id !== grant.id) {
          throw new NameInUseError(`port ${requested} is in use by another agent`);
        }
        existing.session.removeTunnel(existing, false);
        await existing.serverClosed;
      }
      candidates.push(requested);
    } else {
      const size = last - first + 1;
      const start = Math.floor(Math.random() * size);
      for (let i = 0; i < size && candidates.length < 64; i++) {
        const port = first + ((start + i) % size);
        if (!this.tcpTunnels.has(port) && tcpPortAllowed(grant, port)) candidates.push(port);
      }
    }
    for (const port of candidates) {
      const server = createNetServer({ allowHalfOpen: true, noDelay: true });
      server.maxConnections = this.limits.maxPublicConnections;
      try {
        await listen(server, {
          port,
          ...(this.options.tcpHost === undefined ? {} : { host: this.options.tcpHost }),
        });
      } catch {
        server.close();
        continue; // in use by something else on this host
      }
      if (!this.running || this.tcpTunnels.has(port)) {
        server.close();
        throw new RelayClosedError('the relay is shutting down');
      }
      const tunnel = new TcpTunnel(
        session,
        port,
        `tcp://${this.domain}:${port}`,
        server,
        this,
        this.limits,
        allowlist,
      );
      this.tcpTunnels.set(port, tunnel);
      this.offlineNames.delete(`:${port}`);
      return tunnel;
    }
    throw new NoPortAvailableError(
      requested === undefined
        ? `no free port in ${first}-${last} that the token allows`
        : `port ${requested} is not free on the relay`,
    );
  }

  unregisterTunnel(tunnel: Tunnel, remember: boolean): void {
    if (tunnel instanceof HttpTunnel) {
      // A custom-domain tunnel is named by its host; a subdomain's host is longer than its name.
      const tunnels = tunnel.name === tunnel.host ? this.customHostTunnels : this.httpTunnels;
      if (tunnels.get(tunnel.name) !== tunnel) return;
      tunnels.delete(tunnel.name);
      if (remember) this.rememberOffline(tunnel.name);
    } else {
      if (this.tcpTunnels.get(tunnel.port) !== tunnel) return;
      this.tcpTunnels.delete(tunnel.port);
    }
    this.retireTunnelTotals(tunnel);
    tunnel.close();
    publish(relayDiagnostics.tunnelClosed, (): TunnelEvent => ({
      sessionId: tunnel.session.id,
      tunnelId: tunnel.id,
      proto: tunnel instanceof HttpTunnel ? 'http' : 'tcp',
      name: tunnel instanceof HttpTunnel ? tunnel.name : String(tunnel.port),
      url: tunnel instanceof HttpTunnel ? tunnel.url : tunnel.url,
    }));
  }

  private rememberOffline(name: string): void {
    this.offlineNames.delete(name);
    this.offlineNames.set(name, Date.now() + this.limits.offlineMemoryMs);
    if (this.offlineNames.size > MAX_OFFLINE_NAMES) {
      const oldest = this.offlineNames.keys().next();
      if (oldest.done !== true) this.offlineNames.delete(oldest.value);
    }
  }

  /** Routes a request's Host to a tunnel. */
  route(host: string): HttpRoute {
    const suffix = `.${this.domain}`;
    const custom = this.customHostTunnels.get(host);
    if (custom !== undefined) return { kind: 'tunnel', tunnel: custom };
    const customOfflineUntil = host.endsWith(suffix) ? undefined : this.offlineNames.get(host);
    if (customOfflineUntil !== undefined && customOfflineUntil > Date.now()) {
      return {
        kind: 'offline',
        message: `the agent for ${host} is offline (it may be reconnecting)`,
      };
    }
    if (host === this.domain) {
      return {
        kind: 'unknown',
        message: `this is a warren relay: tunnels are <name>.${this.domain}`,
      };
    }
    const name = host.endsWith(suffix) ? host.slice(0, -suffix.length) : '';
    const tunnel = name.length > 0 ? this.httpTunnels.get(name) : undefined;
    if (tunnel !== undefined) return { kind: 'tunnel', tunnel };
    if (name.length === 0 || name.includes('.')) {
      return { kind: 'unknown', message: `${host} is not served by this relay` };
    }
    const offlineUntil = this.offlineNames.get(name);
    if (offlineUntil !== undefined) {
      if (offlineUntil > Date.now()) {
        return {
          kind: 'offline',
          message: `the agent for ${host} is offline (it may be reconnecting)`,
        };
      }
      this.offlineNames.delete(name);
    }
    return { kind: 'unknown', message: `no tunnel is registered for ${host}` };
  }

  /** Counts a public connection against its IP's limit; false (and destroyed) when over. */
  admitPublic(socket: Socket, listener: 'http' | 'https' | 'tcp'): boolean {
    const address = normalizeAddress(socket.remoteAddress);
    const count = this.connectionsPerIp.get(address) ?? 0;
    if (count >= this.limits.maxConnectionsPerIp || this.state !== 'running') {
      this.refusePublic(
        listener,
        address,
        0,
        this.state !== 'running'
          ? new RelayClosedError('the relay is shutting down')
          : new RelayLimitError(
              `more than ${this.limits.maxConnectionsPerIp} connections from ${address}`,
            ),
      );
      socket.destroy();
      return false;
    }
    this.connectionsPerIp.set(address, count + 1);
    this.counters.publicConnections[listener]++;
    socket.once('close', () => {
      const left = (this.connectionsPerIp.get(address) ?? 1) - 1;
      if (left <= 0) this.connectionsPerIp.delete(address);
      else this.connectionsPerIp.set(address, left);
    });
    return true;
  }

  refusePublic(
    listener: 'http' | 'https' | 'tcp',
    remoteAddress: string,
    status: number,
    error: RelayError,
  ): void {
    // Access refusals count by rule ('basic-auth', 'ip-allowlist'), the rest by error code.
    const reason = error instanceof AccessDeniedError ? error.reason : error.code;
    const key = `${listener} ${reason} ${status}`;
    const refusal = this.counters.refused.get(key);
    if (refusal === undefined) {
      this.counters.refused.set(key, { listener, reason, status, count: 1 });
    } else {
      refusal.count++;
    }
    publish(relayDiagnostics.publicRefused, (): PublicRefusalEvent => ({
      listener,
      remoteAddress,
      status,
      error,
    }));
  }

  // ---- listeners -----------------------------------------------------------------------------

  /**
   * Every socket any listener accepted and that is still open, whatever became
   * of it: shutdown destroys the ones nothing else closed (a TLS handshake in
   * progress, a half-closed client), else server.close() would wait for them.
   */
  private trackAccepted(server: NetServer): void {
    server.on('connection', (socket: Socket) => {
      this.acceptedSockets.add(socket);
      socket.once('close', () => {
        this.acceptedSockets.delete(socket);
      });
    });
  }

  private async listenAll(): Promise<void> {
    const limits = this.limits;
    const tlsOptions = {
      ...this.certificateOptions(),
      minVersion: 'TLSv1.2' as const,
      handshakeTimeout: limits.handshakeTimeoutMs,
      allowHalfOpen: true,
    };
    this.agentServer = createTlsServer({
      ...tlsOptions,
      ALPNProtocols: this.sharedAgentPort ? [AGENT_ALPN, 'http/1.1'] : [AGENT_ALPN],
    });
    this.trackAccepted(this.agentServer);
    this.agentServer.maxConnections =
      limits.maxSessions +
      limits.maxUnauthenticated +
      (this.sharedAgentPort ? limits.maxPublicConnections : 0);
    this.agentServer.on('secureConnection', (socket: TLSSocket) => {
      if (this.sharedAgentPort && socket.alpnProtocol !== AGENT_ALPN) {
        this.onPublicSocket(socket, 'https');
        return;
      }
      this.onAgentSocket(socket);
    });
    if (this.sharedAgentPort) {
      // One port for agents and HTTPS clients: all count against the per-IP limit.
      this.agentServer.on('connection', (socket: Socket) => {
        this.admitPublic(socket, 'https');
      });
    }
    this.agentServer.on('tlsClientError', (error: Error, socket: TLSSocket) => {
      this.counters.handshakeFailures.agent++;
      publish(relayDiagnostics.agentRejected, (): AgentRejectedEvent => ({
        remoteAddress: normalizeAddress(socket.remoteAddress),
        error: new HandshakeError(`TLS handshake failed: ${error.message}`, { cause: error }),
      }));
      // Node reports a failed or timed-out handshake but leaves the socket open.
      socket.destroy();
    });
    this.agentServer.on('error', () => {
      // Accept errors (EMFILE…) after listening: the listener goes on.
    });
    await listen(this.agentServer, this.options.agentListen);

    if (this.options.httpListen !== undefined) {
      this.httpServer = createNetServer({ allowHalfOpen: true, noDelay: true });
      this.httpServer.maxConnections = limits.maxPublicConnections;
      this.trackAccepted(this.httpServer);
      this.httpServer.on('connection', (socket: Socket) => {
        if (this.admitPublic(socket, 'http')) this.onPublicHttpSocket(socket);
      });
      this.httpServer.on('error', () => undefined);
      await listen(this.httpServer, this.options.httpListen);
    }
    if (this.options.httpsListen !== undefined && !this.sharedAgentPort) {
      this.httpsServer = createTlsServer({ ...tlsOptions, ALPNProtocols: ['http/1.1'] });
      this.httpsServer.maxConnections = limits.maxPublicConnections;
      this.trackAccepted(this.httpsServer);
      this.httpsServer.on('connection', (socket: Socket) => {
        this.admitPublic(socket, 'https');
      });
      this.httpsServer.on('secureConnection', (socket: TLSSocket) => {
        this.onPublicSocket(socket, 'https');
      });
      this.httpsServer.on('tlsClientError', (error: Error, socket: TLSSocket) => {
        this.counters.handshakeFailures.https++;
        this.refusePublic(
          'https',
          normalizeAddress(socket.remoteAddress),
          0,
          new HandshakeError(`TLS handshake failed: ${error.message}`, { cause: error }),
        );
        socket.destroy();
      });
      this.httpsServer.on('error', () => undefined);
      await listen(this.httpsServer, this.options.httpsListen);
    }
    this.recheckTimer = setInterval(() => {
      void this.recheckTokens();
    }, limits.tokenRecheckIntervalMs);
    this.recheckTimer.unref();
  }

  /** The listeners' certificate: per SNI name from ACME, or the static one. */
  private certificateOptions(): {
    cert?: string | Buffer;
    key?: string | Buffer;
    SNICallback?: AcmeCertificateManager['SNICallback'];
  } {
    if (this.acme !== null) return { SNICallback: this.acme.SNICallback };
    const tls = this.options.tls;
    if (tls === undefined) throw new RelayConfigError('options.tls must hold a PEM cert and key');
    return { cert: tls.cert, key: tls.key };
  }

  /** Public HTTP: with ACME, HTTP-01 challenges (RFC 8555 §8.3) are answered before routing. */
  private onPublicHttpSocket(socket: Socket): void {
    const acme = this.acme;
    if (acme === null) {
      this.onPublicSocket(socket, 'http');
      return;
    }
    interceptAcmeChallenge(
      socket,
      {
        lookup: (token, host) => acme.challengeResponse(token, host),
        maxHeadBytes: this.limits.maxHeadBytes,
        timeoutMs: this.limits.headersTimeoutMs,
      },
      (passed) => {
        this.onPublicSocket(passed, 'http');
      },
    );
  }

  private onAgentSocket(socket: TLSSocket): void {
    if (this.state !== 'running') {
      socket.destroy();
      return;
    }
    let unauthenticated = 0;
    for (const session of this.sessions) if (!session.authenticated) unauthenticated++;
    if (unauthenticated >= this.limits.maxUnauthenticated) {
      const error = new RelayLimitError(`${unauthenticated} agents are authenticating already`);
      this.countAgentRejected(error);
      publish(relayDiagnostics.agentRejected, (): AgentRejectedEvent => ({
        remoteAddress: normalizeAddress(socket.remoteAddress),
        error,
      }));
      socket.destroy();
      return;
    }
    this.sessions.add(new AgentSession(socket, this, this.limits));
  }

  private onPublicSocket(socket: Socket, proto: 'http' | 'https'): void {
    const remoteAddress = normalizeAddress(socket.remoteAddress);
    const connection = new PublicHttpConnection(socket, {
      proto,
      remoteAddress,
      remotePort: socket.remotePort ?? 0,
      router: this,
      limits: {
        maxHeadBytes: this.limits.maxHeadBytes,
        maxHeaderCount: this.limits.maxHeaderCount,
      },
      headersTimeoutMs: this.limits.headersTimeoutMs,
      idleTimeoutMs: this.limits.idleTimeoutMs,
      maxPipelinedRequests: this.limits.maxPipelinedRequests,
      onRefused: (status, error) => {
        this.refusePublic(proto, remoteAddress, status, error);
      },
      unroutedResponses: this.counters.unroutedResponses,
    });
    this.publicConnections.add(connection);
    connection.onClosed(() => {
      this.publicConnections.delete(connection);
    });
    if (this.state !== 'running') connection.drain();
  }

  private async recheckTokens(): Promise<void> {
    for (const session of [...this.sessions]) {
      if (!session.authenticated || session.grant === null) continue;
      try {
        await this.authorizeGrant(session.grant);
        // A custom domain removed (or its account's) since the tunnel opened ends the session.
        for (const tunnel of session.tunnels.values()) {
          if (tunnel instanceof HttpTunnel && tunnel.name === tunnel.host) {
            await this.checkCustomHost(session.grant, tunnel.host);
          }
        }
      } catch (error) {
        // A domain gone is not a token refusal (the token is fine): not counted as one.
        if (!(error instanceof DomainNotVerifiedError)) this.countTokenRejected(error);
        session.fail(asRelayError(error));
      }
    }
  }

  private async authorizeGrant(grant: TokenGrant): Promise<void> {
    if (grant.expiresAt !== null && Date.now() / 1000 >= grant.expiresAt) {
      throw new TokenExpiredError(`the token '${grant.name}' expired`);
    }
    const refusal = await this.storeRefusal(grant);
    if (refusal !== null) throw refusal;
  }

  private async shutdown(drainTimeoutMs: number): Promise<void> {
    this.state = 'draining';
    if (this.recheckTimer !== null) clearInterval(this.recheckTimer);
    const servers = [this.agentServer, this.httpServer, this.httpsServer].filter(
      (server): server is NetServer => server !== null,
    );
    const serversClosed = servers.map(
      (server) =>
        new Promise<void>((resolve) => {
          if (!server.listening) {
            resolve();
            return;
          }
          server.close(() => {
            resolve();
          });
        }),
    );
    for (const tunnel of this.tcpTunnels.values()) tunnel.stopListening();
    for (const connection of this.publicConnections) connection.drain();

    const deadline = performance.now() + drainTimeoutMs;
    const tcpConnections = (): number => {
      let count = 0;
      for (const tunnel of this.tcpTunnels.values()) count += tunnel.connectionCount;
      return count;
    };
    const httpBusy = (): boolean => {
      for (const connection of this.publicConnections) if (!connection.finished) return true;
      return false;
    };
    while (performance.now() < deadline && (httpBusy() || tcpConnections() > 0)) {
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    for (const connection of this.publicConnections) connection.destroy();
    for (const tunnel of [...this.tcpTunnels.values()]) tunnel.close();

    const sessions = [...this.sessions];
    const closing = sessions.map((session) =>
      session.shutdown('the relay is shutting down; reconnect later'),
    );
    const graceful = Promise.allSettled(closing);
    const timeout = new Promise((resolve) =>
      setTimeout(resolve, Math.min(2_000, drainTimeoutMs + 100)).unref(),
    );
    await Promise.race([graceful, timeout]);
    for (const session of sessions) session.destroy();
    for (const socket of this.acceptedSockets) socket.destroy();
    await Promise.all(serversClosed);
    this.state = 'closed';
    await this.acme?.close();
    await this.store.close();
  }
}
