/**
 * `warren expose`: the agent. It connects to a relay over TLS (verifying the
 * relay's certificate), opens a yamux session as the client, authenticates with
 * its token, registers its tunnels and serves the streams the relay opens: each
 * stream starts with a preamble naming the tunnel, then carries one public
 * connection, which the agent pipes to the local service.
 *
 * The connection to the relay is kept up: when it drops (or the relay restarts
 * or shuts down) the agent reconnects with exponential backoff and jitter
 * ("equal jitter": half the delay fixed, half random, capped), and registers
 * its tunnels again, asking for the same subdomains and ports it had, so public
 * URLs survive a relay restart (bore's most requested feature). A token the
 * relay refuses (invalid, expired, revoked) is fatal: retrying cannot help.
 */
import { EventEmitter } from 'node:events';
import { connect as connectTcp, isIP } from 'node:net';
import type { Socket } from 'node:net';
import { checkServerIdentity, connect as connectTls } from 'node:tls';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import {
  CONTROL_PROTOCOL_VERSION,
  FrameDecoder,
  MAX_CONTROL_MESSAGE,
  encodeFrame,
  parseRelayMessage,
  parseStreamPreamble,
} from './control.js';
import type { AgentMessage, RelayMessage, StreamPreamble } from './control.js';
import { agentDiagnostics } from './diagnostics.js';
import type { AgentStreamErrorEvent } from './diagnostics.js';
import {
  ControlProtocolError,
  NotPermittedError,
  RelayCertificateError,
  RelayClosedError,
  RelayConfigError,
  RelayConnectError,
  RelayError,
  errorFromCode,
} from './errors.js';
import type { CertificateFailure } from './errors.js';
import { Session } from './mux/index.js';
import type { Stream } from './mux/index.js';
import type { HttpTrafficObserver, StreamTap } from './inspector/recorder.js';
import { errorResponse } from './public-http.js';
import { AGENT_ALPN } from './relay.js';
import { isValidHostName, isValidSubdomain } from './token.js';
import { checkAllowedIps, checkCredentials, hashCredentials } from './access.js';
import type { BasicAuthHashes } from './access.js';

export type TunnelSpec =
  | {
      readonly proto: 'http';
      readonly localPort: number;
      readonly localHost?: string;
      readonly subdomain?: string;
      /**
       * A verified custom domain of the token's account ("app.example.org"),
       * instead of a subdomain: `warren relay domain add/verify`.
       */
      readonly hostname?: string;
      /**
       * "user:password" credentials the relay demands of every public request
       * (HTTP basic auth). Only salted hashes leave this process (./access.ts).
       */
      readonly basicAuth?: readonly string[];
      /** CIDRs (v4 or v6) the public client's real address must be in. */
      readonly allowIps?: readonly string[];
    }
  | {
      readonly proto: 'tcp';
      readonly localPort: number;
      readonly localHost?: string;
      readonly remotePort?: number;
      /** CIDRs (v4 or v6) the public client's real address must be in. */
      readonly allowIps?: readonly string[];
    };

export interface ReconnectOptions {
  /** The first retry waits about this long (ms, default 500). */
  readonly initialDelayMs?: number;
  /** Retries wait at most this long (ms, default 30 000). */
  readonly maxDelayMs?: number;
  /** A connection that lasted this long resets the backoff (ms, default 10 000). */
  readonly stableAfterMs?: number;
}

export interface AgentOptions {
  /** The relay's host name (or address) and agent port (default 443). */
  readonly relayHost: string;
  readonly relayPort?: number;
  /** The name the relay's certificate must carry (default relayHost). */
  readonly servername?: string;
  readonly token: string;
  /** PEM CA certificate(s) to trust instead of the system's (a private or dev CA). */
  readonly ca?: string | Buffer;
  readonly tunnels: readonly TunnelSpec[];
  /** TCP + TLS handshake + welcome must complete within this (ms, default 10 000). */
  readonly connectTimeoutMs?: number;
  readonly reconnect?: ReconnectOptions;
  /** yamux keepalive interval (ms, default 15 000; 0 off). */
  readonly keepaliveIntervalMs?: number;
  /** The relay must send a stream's preamble within this (ms, default 10 000). */
  readonly preambleTimeoutMs?: number;
  /** Software name/version told to the relay (default "warren"). */
  readonly agentName?: string;
  /**
   * Sees a copy of the bytes of every http-tunnel stream (the local inspector,
   * ./inspector/); the forwarded bytes are not changed or delayed.
   */
  readonly inspector?: HttpTrafficObserver;
}

export type TunnelState = 'pending' | 'open' | 'refused';

export interface TunnelStatus {
  readonly spec: TunnelSpec;
  readonly state: TunnelState;
  /** The public URL (https://name.domain, tcp://domain:port) once open. */
  readonly url?: string;
  /** The subdomain (http) the relay gave. */
  readonly name?: string;
  /** The public port (tcp) the relay gave. */
  readonly port?: number;
  /** Why the relay refused the tunnel (state 'refused'), or the last temporary refusal. */
  readonly error?: RelayError;
}

export interface AgentEvents {
  /** Authenticated with the relay. */
  connected: [info: { session: string; domain: string; tokenName: string }];
  /** A tunnel opened (again, after a reconnect). */
  tunnel: [status: TunnelStatus];
  /** The relay refused a tunnel; `permanent` when retrying cannot help (not permitted). */
  'tunnel-refused': [status: TunnelStatus, permanent: boolean];
  /** The connection to the relay ended; the agent retries in `retryInMs`. */
  disconnected: [error: Error | undefined, retryInMs: number];
  /** The agent gave up (bad token, every tunnel refused): it is closed. */
  fatal: [error: RelayError];
}

const FATAL_CODES = new Set([
  'ERR_RELAY_TOKEN_INVALID',
  'ERR_RELAY_TOKEN_EXPIRED',
  'ERR_RELAY_TOKEN_REVOKED',
  'ERR_RELAY_ACCOUNT_REMOVED',
]);

interface TunnelSlot {
  readonly spec: TunnelSpec;
  state: TunnelState;
  url?: string;
  name?: string;
  port?: number;
  error?: RelayError;
  /** What the relay gave last time: asked for again after a reconnect. */
  rememberedName?: string;
  rememberedPort?: number;
  retryTimer: NodeJS.Timeout | null;
  retryDelayMs: number;
  /** The credentials' salted hashes, made once: the same on every (re)request. */
  readonly basicAuth?: BasicAuthHashes;
}

function statusOf(slot: TunnelSlot): TunnelStatus {
  return {
    spec: slot.spec,
    state: slot.state,
    ...(slot.url === undefined ? {} : { url: slot.url }),
    ...(slot.name === undefined ? {} : { name: slot.name }),
    ...(slot.port === undefined ? {} : { port: slot.port }),
    ...(slot.error === undefined ? {} : { error: slot.error }),
  };
}

function describe(value: unknown): string {
  return typeof value === 'number' || typeof value === 'string' ? String(value) : typeof value;
}

function isArray(value: unknown): value is readonly unknown[] {
  return Array.isArray(value);
}

function checkPort(value: unknown, what: string): void {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new RelayConfigError(`${what} must be a port number 1-65535, got ${describe(value)}`);
  }
}

function checkDelay(value: unknown, what: string, min: number): void {
  if (
    value !== undefined &&
    (typeof value !== 'number' || !Number.isFinite(value) || value < min)
  ) {
    throw new RelayConfigError(`${what} must be a number >= ${min}, got ${describe(value)}`);
  }
}

/** OpenSSL's and Node's codes for a peer certificate that failed verification. */
const UNTRUSTED_CERTIFICATE_CODES: ReadonlySet<string> = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
]);
const EXPIRED_CERTIFICATE_CODES: ReadonlySet<string> = new Set([
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
]);

/** Which way a TLS connection error refused the relay's certificate; null for any other error. */
function certificateFailureOf(error: Error): CertificateFailure | null {
  const code = (error as NodeJS.ErrnoException).code ?? '';
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return 'name';
  if (EXPIRED_CERTIFICATE_CODES.has(code)) return 'expired';
  if (UNTRUSTED_CERTIFICATE_CODES.has(code)) return 'untrusted';
  return null;
}

/** One connection to the relay: TLS socket, yamux session, control stream. */
class RelayLink {
  readonly mux: Session;
  readonly control: Stream;
  readonly openedAt = performance.now();
  welcomed = false;
  failure: Error | undefined;
  /** Tunnel request id → slot. */
  readonly pendingOpens = new Map<number, TunnelSlot>();
  /** Relay tunnel id → slot. */
  readonly tunnels = new Map<string, TunnelSlot>();
  private readonly decoder = new FrameDecoder();

  constructor(
    socket: TLSSocket,
    keepaliveIntervalMs: number,
    onMessage: (link: RelayLink, message: RelayMessage) => void,
    onStream: (link: RelayLink, stream: Stream) => void,
  ) {
    this.mux = Session.client(socket, {
      keepaliveInterval: keepaliveIntervalMs,
      maxStreams: 4096,
    });
    this.mux.on('error', () => {
      // Reported with 'close'.
    });
    this.mux.on('stream', (stream) => {
      onStream(this, stream);
    });
    this.control = this.mux.open();
    this.control.on('error', (error: Error) => {
      this.failure ??= error;
      this.mux.destroy();
    });
    this.control.on('end', () => {
      this.mux.destroy();
    });
    this.control.on('data', (chunk: Buffer) => {
      let messages: RelayMessage[];
      try {
        messages = this.decoder.push(chunk).map(parseRelayMessage);
      } catch (error) {
        this.failure ??= error instanceof Error ? error : new Error(String(error));
        this.mux.destroy();
        return;
      }
      for (const message of messages) onMessage(this, message);
    });
  }

  send(message: AgentMessage): void {
    if (this.control.destroyed || this.control.writableEnded) return;
    this.control.write(encodeFrame(message));
  }
}

export class Agent extends EventEmitter<AgentEvents> {
  private readonly options: AgentOptions;
  private readonly slots: TunnelSlot[];
  private readonly servername: string;
  private link: RelayLink | null = null;
  /** The TLS socket of a connection attempt not yet established. */
  private connecting: TLSSocket | null = null;
  private started = false;
  private closing = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private nextRequestId = 0;
  private readonly localSockets = new Set<Socket>();
  private fatalError: RelayError | null = null;
  private readyWaiters: {
    resolve: (tunnels: TunnelStatus[]) => void;
    reject: (error: RelayError) => void;
  }[] = [];
  private closedWaiters: (() => void)[] = [];

  constructor(options: AgentOptions) {
    super();
    if (typeof options !== 'object') throw new TypeError('options must be an object');
    if (typeof options.relayHost !== 'string' || options.relayHost.length === 0) {
      throw new RelayConfigError('options.relayHost must be a host name or address');
    }
    if (options.relayPort !== undefined) checkPort(options.relayPort, 'options.relayPort');
    if (typeof options.token !== 'string' || options.token.length === 0) {
      throw new RelayConfigError('options.token must be a token string');
    }
    if (!isArray(options.tunnels) || options.tunnels.length === 0) {
      throw new RelayConfigError('options.tunnels must list at least one tunnel');
    }
    for (const [index, spec] of options.tunnels.entries()) {
      const what = `options.tunnels[${index}]`;
      const proto: unknown = spec.proto;
      if (proto !== 'http' && proto !== 'tcp') {
        throw new RelayConfigError(`${what}.proto must be 'http' or 'tcp'`);
      }
      checkPort(spec.localPort, `${what}.localPort`);
      if (
        spec.proto === 'http' &&
        spec.subdomain !== undefined &&
        !isValidSubdomain(spec.subdomain)
      ) {
        throw new RelayConfigError(`${what}.subdomain: '${spec.subdomain}' is not a DNS label`);
      }
      if (spec.proto === 'http' && spec.hostname !== undefined) {
        if (!isValidHostName(spec.hostname)) {
          throw new RelayConfigError(
            `${what}.hostname: '${spec.hostname}' is not a lower-case host name`,
          );
        }
        if (spec.subdomain !== undefined) {
          throw new RelayConfigError(`${what}: give a subdomain or a hostname, not both`);
        }
      }
      if (spec.proto === 'tcp' && spec.remotePort !== undefined) {
        checkPort(spec.remotePort, `${what}.remotePort`);
      }
      if (spec.proto === 'http' && spec.basicAuth !== undefined) {
        checkCredentials(spec.basicAuth, `${what}.basicAuth`);
      }
      if (spec.proto === 'tcp' && (spec as { basicAuth?: unknown }).basicAuth !== undefined) {
        throw new RelayConfigError(`${what}.basicAuth is for http tunnels`);
      }
      if (spec.allowIps !== undefined) checkAllowedIps(spec.allowIps, `${what}.allowIps`);
    }
    checkDelay(options.connectTimeoutMs, 'options.connectTimeoutMs', 1);
    checkDelay(options.reconnect?.initialDelayMs, 'options.reconnect.initialDelayMs', 1);
    checkDelay(options.reconnect?.maxDelayMs, 'options.reconnect.maxDelayMs', 1);
    checkDelay(options.reconnect?.stableAfterMs, 'options.reconnect.stableAfterMs', 0);
    checkDelay(options.keepaliveIntervalMs, 'options.keepaliveIntervalMs', 0);
    checkDelay(options.preambleTimeoutMs, 'options.preambleTimeoutMs', 1);
    this.options = options;
    this.servername = options.servername ?? options.relayHost;
    this.slots = options.tunnels.map((spec) => ({
      spec,
      state: 'pending',
      retryTimer: null,
      retryDelayMs: 0,
      ...(spec.proto === 'http' && spec.basicAuth !== undefined
        ? { basicAuth: hashCredentials(spec.basicAuth) }
        : {}),
    }));
  }

  /** The tunnels and their state. */
  get tunnels(): TunnelStatus[] {
    return this.slots.map(statusOf);
  }

  /** Starts connecting (and reconnecting) until close(). */
  start(): this {
    if (this.started) return this;
    this.started = true;
    this.connect();
    return this;
  }

  /**
   * Resolves once every tunnel is open or permanently refused (with their
   * status); rejects if the agent gives up (fatal). Keeps waiting while the
   * relay is unreachable.
   */
  ready(): Promise<TunnelStatus[]> {
    if (this.fatalError !== null) return Promise.reject(this.fatalError);
    if (this.settled()) return Promise.resolve(this.tunnels);
    return new Promise((resolve, reject) => {
      this.readyWaiters.push({ resolve, reject });
    });
  }

  /** Closes the connection and every local connection; no more reconnects. */
  async close(): Promise<void> {
    if (this.closing && this.link === null) return;
    this.closing = true;
    if (this.reconnectTimer !== null) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
    for (const slot of this.slots) this.clearRetry(slot);
    for (const socket of this.localSockets) socket.destroy();
    this.connecting?.destroy();
    this.connecting = null;
    const link = this.link;
    if (link === null) return;
    const closed = new Promise<void>((resolve) => {
      this.closedWaiters.push(resolve);
    });
    link.control.end();
    const timer = setTimeout(() => {
      link.mux.destroy();
    }, 1_000);
    void link.mux.close();
    await closed;
    clearTimeout(timer);
  }

  private settled(): boolean {
    return this.slots.every((slot) => slot.state !== 'pending');
  }

  private checkReady(): void {
    if (!this.settled()) return;
    const waiters = this.readyWaiters;
    this.readyWaiters = [];
    for (const waiter of waiters) waiter.resolve(this.tunnels);
  }

  private giveUp(error: RelayError): void {
    if (this.fatalError !== null) return;
    this.fatalError = error;
    const waiters = this.readyWaiters;
    this.readyWaiters = [];
    for (const waiter of waiters) waiter.reject(error);
    if (this.listenerCount('fatal') > 0) this.emit('fatal', error);
    void this.close();
  }

  // ---- connecting --------------------------------------------------------------------------

  private connect(): void {
    if (this.closing) return;
    const timeoutMs = this.options.connectTimeoutMs ?? 10_000;
    const socket = connectTls({
      host: this.options.relayHost,
      port: this.options.relayPort ?? 443,
      // SNI carries host names only (RFC 6066 §3): a relay named by its IP address gets
      // none, and its certificate is checked against that address.
      ...(isIP(this.servername) === 0
        ? { servername: this.servername }
        : {
            checkServerIdentity: (_host: string, certificate: PeerCertificate) =>
              checkServerIdentity(this.servername, certificate),
          }),
      ALPNProtocols: [AGENT_ALPN],
      minVersion: 'TLSv1.2',
      ...(this.options.ca === undefined ? {} : { ca: this.options.ca }),
    });
    socket.setNoDelay(true);
    this.connecting = socket;
    let link: RelayLink | null = null;
    const timer = setTimeout(() => {
      const error = new RelayConnectError(
        `no connection to ${this.options.relayHost}:${this.options.relayPort ?? 443} within ${timeoutMs} ms`,
      );
      if (link === null) socket.destroy(error);
      else {
        link.failure ??= error;
        link.mux.destroy();
      }
    }, timeoutMs);
    timer.unref();
    const onEarlyError = (error: Error): void => {
      clearTimeout(timer);
      if (this.connecting === socket) this.connecting = null;
      const where = `${this.options.relayHost}:${String(this.options.relayPort ?? 443)}`;
      const certificate = certificateFailureOf(error);
      this.scheduleReconnect(
        certificate === null
          ? new RelayConnectError(`cannot connect to ${where}: ${error.message}`, { cause: error })
          : new RelayCertificateError(
              certificate,
              `the certificate of the relay at ${where} was refused: ${error.message}`,
              { cause: error },
            ),
        false,
      );
    };
    socket.once('error', onEarlyError);
    socket.once('secureConnect', () => {
      socket.off('error', onEarlyError);
      if (this.connecting === socket) this.connecting = null;
      if (this.closing) {
        clearTimeout(timer);
        socket.destroy();
        return;
      }
      socket.on('error', () => {
        // The yamux session reports transport failures.
      });
      const current = new RelayLink(
        socket,
        this.options.keepaliveIntervalMs ?? 15_000,
        (from, message) => {
          this.onRelayMessage(from, message, timer);
        },
        (from, stream) => {
          this.onStream(from, stream);
        },
      );
      link = current;
      this.link = current;
      current.mux.once('close', (error) => {
        clearTimeout(timer);
        this.onLinkClosed(current, current.failure ?? error);
      });
      current.send({
        t: 'hello',
        v: CONTROL_PROTOCOL_VERSION,
        token: this.options.token,
        agent: this.options.agentName ?? 'warren',
      });
    });
  }

  private onLinkClosed(link: RelayLink, error: Error | undefined): void {
    if (this.link === link) this.link = null;
    for (const slot of this.slots) {
      this.clearRetry(slot);
      if (slot.state === 'open') slot.state = 'pending';
    }
    if (this.closing) {
      const waiters = this.closedWaiters;
      this.closedWaiters = [];
      for (const waiter of waiters) waiter();
      return;
    }
    if (error instanceof RelayError && FATAL_CODES.has(error.code)) {
      this.giveUp(error);
      return;
    }
    const stable =
      link.welcomed &&
      performance.now() - link.openedAt >= (this.options.reconnect?.stableAfterMs ?? 10_000);
    this.scheduleReconnect(error, stable);
  }

  private scheduleReconnect(error: Error | undefined, resetBackoff: boolean): void {
    if (this.closing) {
      const waiters = this.closedWaiters;
      this.closedWaiters = [];
      for (const waiter of waiters) waiter();
      return;
    }
    if (resetBackoff) this.attempt = 0;
    const delayMs = this.backoffDelay(this.attempt++);
    this.emit('disconnected', error, delayMs);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delayMs);
  }

  /** Exponential backoff with equal jitter: half of the capped delay, plus up to as much at random. */
  private backoffDelay(attempt: number): number {
    const initial = this.options.reconnect?.initialDelayMs ?? 500;
    const max = this.options.reconnect?.maxDelayMs ?? 30_000;
    const capped = Math.min(max, initial * 2 ** Math.min(attempt, 30));
    return Math.round(capped / 2 + Math.random() * (capped / 2));
  }

  // ---- control messages ----------------------------------------------------------------------

  private onRelayMessage(
    link: RelayLink,
    message: RelayMessage,
    connectTimer: NodeJS.Timeout,
  ): void {
    switch (message.t) {
      case 'welcome':
        if (link.welcomed) {
          link.failure ??= new ControlProtocolError('a second welcome');
          link.mux.destroy();
          return;
        }
        clearTimeout(connectTimer);
        link.welcomed = true;
        this.emit('connected', {
          session: message.session,
          domain: message.domain,
          tokenName: message.tokenName,
        });
        for (const slot of this.slots) {
          if (slot.state !== 'refused') this.requestTunnel(link, slot);
        }
        return;
      case 'opened': {
        const slot = link.pendingOpens.get(message.id);
        if (slot?.spec.proto !== message.proto) {
          link.failure ??= new ControlProtocolError(`'opened' for unknown request ${message.id}`);
          link.mux.destroy();
          return;
        }
        link.pendingOpens.delete(message.id);
        if (
          (slot.basicAuth !== undefined || slot.spec.allowIps !== undefined) &&
          message.access !== true
        ) {
          // A relay that ignored the rules: never leave the service exposed without them.
          link.send({ t: 'close', tunnel: message.tunnel });
          this.onTunnelRefused(
            link,
            slot,
            new NotPermittedError(
              'the relay does not enforce basic auth or IP allowlists (too old?): tunnel closed',
            ),
          );
          return;
        }
        link.tunnels.set(message.tunnel, slot);
        slot.state = 'open';
        slot.url = message.url;
        slot.retryDelayMs = 0;
        delete slot.error;
        if (message.proto === 'http') {
          slot.name = message.name;
          slot.rememberedName = message.name;
        } else {
          slot.port = message.port;
          slot.rememberedPort = message.port;
        }
        this.emit('tunnel', statusOf(slot));
        this.checkReady();
        return;
      }
      case 'refused': {
        const slot = link.pendingOpens.get(message.id);
        if (slot === undefined) return;
        link.pendingOpens.delete(message.id);
        this.onTunnelRefused(link, slot, errorFromCode(message.code, message.message));
        return;
      }
      case 'error':
        link.failure = errorFromCode(message.code, message.message);
        return; // the relay closes the connection
      case 'shutdown':
        link.failure = new RelayClosedError(message.message);
        return;
    }
  }

  private requestTunnel(link: RelayLink, slot: TunnelSlot): void {
    const id = (this.nextRequestId = (this.nextRequestId % 0x7fffffff) + 1);
    link.pendingOpens.set(id, slot);
    const spec = slot.spec;
    if (spec.proto === 'http') {
      const subdomain =
        spec.hostname === undefined ? (spec.subdomain ?? slot.rememberedName) : undefined;
      link.send({
        t: 'open',
        id,
        proto: 'http',
        ...(subdomain === undefined ? {} : { subdomain }),
        ...(spec.hostname === undefined ? {} : { hostname: spec.hostname }),
        ...(slot.basicAuth === undefined ? {} : { basicAuth: slot.basicAuth }),
        ...(spec.allowIps === undefined ? {} : { allowIps: spec.allowIps }),
      });
    } else {
      const port = spec.remotePort ?? slot.rememberedPort;
      link.send({
        t: 'open',
        id,
        proto: 'tcp',
        ...(port === undefined ? {} : { port }),
        ...(spec.allowIps === undefined ? {} : { allowIps: spec.allowIps }),
      });
    }
  }

  private onTunnelRefused(link: RelayLink, slot: TunnelSlot, error: RelayError): void {
    const spec = slot.spec;
    const usedRemembered =
      spec.proto === 'http'
        ? spec.subdomain === undefined &&
          spec.hostname === undefined &&
          slot.rememberedName !== undefined
        : spec.remotePort === undefined && slot.rememberedPort !== undefined;
    if (
      usedRemembered &&
      (error.code === 'ERR_RELAY_NAME_IN_USE' ||
        error.code === 'ERR_RELAY_NO_PORT' ||
        error.code === 'ERR_RELAY_NOT_PERMITTED')
    ) {
      // What we had is gone (taken, or the relay's range changed): take a new one.
      delete slot.rememberedName;
      delete slot.rememberedPort;
      this.requestTunnel(link, slot);
      return;
    }
    slot.error = error;
    const permanent =
      error.code === 'ERR_RELAY_NOT_PERMITTED' || error.code === 'ERR_RELAY_DOMAIN_NOT_VERIFIED';
    if (permanent) {
      slot.state = 'refused';
      this.emit('tunnel-refused', statusOf(slot), true);
      if (this.slots.every((other) => other.state === 'refused')) {
        this.giveUp(error);
        return;
      }
      this.checkReady();
      return;
    }
    this.emit('tunnel-refused', statusOf(slot), false);
    const max = this.options.reconnect?.maxDelayMs ?? 30_000;
    slot.retryDelayMs = Math.min(max, Math.max(1_000, slot.retryDelayMs * 2));
    const delayMs = Math.round(slot.retryDelayMs / 2 + Math.random() * (slot.retryDelayMs / 2));
    slot.retryTimer = setTimeout(() => {
      slot.retryTimer = null;
      if (this.link === link && !link.mux.closed) this.requestTunnel(link, slot);
    }, delayMs);
  }

  private clearRetry(slot: TunnelSlot): void {
    if (slot.retryTimer !== null) {
      clearTimeout(slot.retryTimer);
      slot.retryTimer = null;
    }
  }

  // ---- data streams ----------------------------------------------------------------------------

  private onStream(link: RelayLink, stream: Stream): void {
    stream.on('error', () => {
      // Resets by the relay are normal (the public client left).
    });
    readPreamble(stream, this.options.preambleTimeoutMs ?? 10_000).then(
      ({ preamble, rest }) => {
        const slot = link.tunnels.get(preamble.tunnel);
        if (slot?.state !== 'open') {
          this.streamError(
            preamble.tunnel,
            new ControlProtocolError(`a stream for unknown tunnel ${preamble.tunnel}`),
          );
          stream.reset();
          return;
        }
        this.serve(stream, slot, preamble, rest);
      },
      (error: unknown) => {
        this.streamError('', error instanceof Error ? error : new Error(String(error)));
        stream.reset();
      },
    );
  }

  private serve(stream: Stream, slot: TunnelSlot, preamble: StreamPreamble, rest: Buffer): void {
    const host = slot.spec.localHost ?? '127.0.0.1';
    const port = slot.spec.localPort;
    const local = connectTcp({ host, port, allowHalfOpen: true, noDelay: true });
    this.localSockets.add(local);
    let connected = false;
    let tap: StreamTap | null = null;
    local.once('connect', () => {
      connected = true;
      if (rest.length > 0) local.write(rest);
      stream.pipe(local);
      local.pipe(stream);
      tap = this.openTap(slot, preamble, host, port);
      if (tap !== null) {
        const observed = tap;
        // Extra 'data' listeners see the same chunks the pipes forward.
        if (rest.length > 0) observed.fromClient(rest);
        stream.on('data', (chunk: Buffer) => {
          observed.fromClient(chunk);
        });
        local.on('data', (chunk: Buffer) => {
          observed.fromService(chunk);
        });
      }
    });
    local.on('error', (error: Error) => {
      if (connected) {
        stream.destroy();
        return;
      }
      this.streamError(preamble.tunnel, error);
      if (slot.spec.proto === 'http') {
        // The public client gets an answer that says what went wrong, as ngrok does.
        stream.resume();
        stream.end(
          errorResponse(
            502,
            `warren expose: the local service at ${host}:${port} is not reachable (${(error as NodeJS.ErrnoException).code ?? error.message})`,
          ),
        );
      } else {
        stream.reset();
      }
    });
    local.on('close', () => {
      this.localSockets.delete(local);
      tap?.close();
      // A clean close (both directions ended) leaves the stream to flush what it
      // still holds; anything else aborts it.
      if (!local.readableEnded) stream.destroy();
    });
    stream.on('error', () => {
      local.destroy();
    });
    stream.on('close', () => {
      if (!stream.readableEnded) local.destroy();
    });
  }

  /** A tap for the inspector on an http stream; the inspector's failures never reach the tunnel. */
  private openTap(
    slot: TunnelSlot,
    preamble: StreamPreamble,
    host: string,
    port: number,
  ): StreamTap | null {
    const inspector = this.options.inspector;
    if (inspector === undefined || slot.spec.proto !== 'http') return null;
    try {
      const tap = inspector.openStream({
        tunnelId: preamble.tunnel,
        url: slot.url,
        localHost: host,
        localPort: port,
      });
      const guard =
        (feed: (chunk: Buffer) => void) =>
        (chunk: Buffer): void => {
          try {
            feed(chunk);
          } catch (error) {
            this.streamError(
              preamble.tunnel,
              error instanceof Error ? error : new Error(String(error)),
            );
          }
        };
      return {
        fromClient: guard((chunk) => {
          tap.fromClient(chunk);
        }),
        fromService: guard((chunk) => {
          tap.fromService(chunk);
        }),
        close: () => {
          guard(() => {
            tap.close();
          })(Buffer.alloc(0));
        },
      };
    } catch (error) {
      this.streamError(preamble.tunnel, error instanceof Error ? error : new Error(String(error)));
      return null;
    }
  }

  private streamError(tunnelId: string, error: Error): void {
    if (agentDiagnostics.streamError.hasSubscribers) {
      const event: AgentStreamErrorEvent = { tunnelId, error };
      agentDiagnostics.streamError.publish(event);
    }
  }
}

/**
 * Reads the preamble frame at the start of a data stream; the stream is left
 * paused with the bytes after the preamble returned in `rest`.
 */
function readPreamble(
  stream: Stream,
  timeoutMs: number,
): Promise<{ preamble: StreamPreamble; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0);
    const finish = (
      error: Error | null,
      result?: { preamble: StreamPreamble; rest: Buffer },
    ): void => {
      clearTimeout(timer);
      stream.pause();
      stream.off('data', onData);
      stream.off('end', onEnd);
      if (error !== null || result === undefined)
        reject(error ?? new ControlProtocolError('no preamble'));
      else resolve(result);
    };
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      if (buffered.length < 4) return;
      const length = buffered.readUInt32BE(0);
      if (length > MAX_CONTROL_MESSAGE) {
        finish(new ControlProtocolError(`stream preamble of ${length} bytes is too large`));
        return;
      }
      if (buffered.length < 4 + length) return;
      try {
        const preamble = parseStreamPreamble(buffered.subarray(4, 4 + length));
        finish(null, { preamble, rest: buffered.subarray(4 + length) });
      } catch (error) {
        finish(error instanceof Error ? error : new Error(String(error)));
      }
    };
    const onEnd = (): void => {
      finish(new ControlProtocolError('the stream ended before its preamble'));
    };
    const timer = setTimeout(() => {
      finish(new ControlProtocolError(`no stream preamble within ${timeoutMs} ms`));
    }, timeoutMs);
    timer.unref();
    stream.on('data', onData);
    stream.on('end', onEnd);
  });
}
