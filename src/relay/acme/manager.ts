/**
 * Automatic certificates for `warren relay --acme` (issue 4): certificates from
 * an ACME CA (RFC 8555; Let's Encrypt by default) for the relay's domain and
 * for each tunnel's host, obtained on demand with HTTP-01 (RFC 8555 §8.3) and
 * renewed in the background. The ACME protocol itself is acme-client's; this
 * module decides when to order, for which names, and keeps the results.
 *
 * - Storage (./store.ts): the account key and certificates live in
 *   DATA_DIR/acme/, keys 0600, and are reused across restarts.
 * - Only served names: every order first asks `isServedHost(host)` (the relay:
 *   its domain, registered tunnels, verified custom domains); anything else is
 *   refused before the CA is contacted, so a client sending random SNI names
 *   cannot spend the relay's CA rate limits.
 * - One order per name at a time (concurrent callers share it), at most
 *   `maxConcurrentOrders` orders at once, and after a failure the name backs
 *   off exponentially (./schedule.ts) before the CA is asked again.
 * - Renewal when less than a third of the lifetime is left, checked by a
 *   jittered background timer; a name no longer served is not renewed.
 * - Wildcards need DNS-01, which this module does not do: a wildcard
 *   certificate for *.DOMAIN comes from --tls-cert instead.
 *
 * Progress and failures are published on diagnostics_channel (../diagnostics.ts).
 */
import { randomInt } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import type { SecureContext } from 'node:tls';
import { Client as AcmeClient, crypto as acmeCrypto } from 'acme-client';
import type {
  AcmeCertificateEvent,
  AcmeHostRefusedEvent,
  AcmeOrderFailedEvent,
  AcmeOrderReason,
  AcmeOrderStartedEvent,
} from '../diagnostics.js';
import { relayDiagnostics } from '../diagnostics.js';
import { RelayClosedError, RelayError } from '../errors.js';
import { canonicalHost, inspectCertificate, newPrivateKeyPem } from './certificate.js';
import type { CertificateMaterial } from './certificate.js';
import {
  AcmeBackoffError,
  AcmeHostNotServedError,
  AcmeOrderError,
  AcmeStorageError,
} from './errors.js';
import { checkRenewalPolicy, DEFAULT_RENEWAL_POLICY, renewalTime, retryDelay } from './schedule.js';
import type { RenewalPolicy, RetryPolicy } from './schedule.js';
import { AcmeStore } from './store.js';
import { AcmeTransport } from './transport.js';
import { LETS_ENCRYPT_DIRECTORY_URL } from './directory.js';

/** Let's Encrypt's production ACME directory: the default CA. */
export { LETS_ENCRYPT_DIRECTORY_URL } from './directory.js';

export interface AcmeManagerOptions {
  /** The relay's data directory: the account key and certificates go to DATA_DIR/acme/. */
  readonly dataDir: string;
  /**
   * Whether the relay serves this (canonical, lower-case) host name. Asked
   * before every order and renewal; false refuses with AcmeHostNotServedError.
   */
  readonly isServedHost: (host: string) => boolean | Promise<boolean>;
  /** The ACME directory URL (default LETS_ENCRYPT_DIRECTORY_URL). */
  readonly directoryUrl?: string;
  /** Contact address given to the CA (expiry and policy mail). */
  readonly email?: string;
  /** PEM roots trusted, besides Node's bundled ones, for HTTPS to the ACME server. */
  readonly directoryCa?: string | Buffer | readonly (string | Buffer)[];
  /** When to renew (default: a third of the lifetime left, 5 % jitter). */
  readonly renewal?: Partial<RenewalPolicy>;
  /** How often stored certificates are checked for renewal (ms, ±10 %; default 6 h). */
  readonly renewCheckIntervalMs?: number;
  /** The first check after start (ms; default 60 s). */
  readonly firstRenewCheckMs?: number;
  /** Back-off after failed orders for one name (default 5 min doubling to 6 h). */
  readonly retry?: Partial<RetryPolicy>;
  /** Orders in progress at once, over all names (default 4). */
  readonly maxConcurrentOrders?: number;
  /** Polling of pending challenges and orders: first wait (ms, default 1000; it backs off). */
  readonly pollIntervalMs?: number;
  /** Polls before an order is given up (default 10). */
  readonly pollAttempts?: number;
  /** Each request to the CA must complete within this (ms, default 30 s). */
  readonly requestTimeoutMs?: number;
  /** The clock (ms since the epoch); tests move it to reach renewal times. */
  readonly now?: () => number;
}

/** A certificate the manager serves. */
export interface AcmeCertificate extends CertificateMaterial {
  /** When it will be renewed (ms since the epoch). */
  readonly renewAt: number;
  /** A TLS context with this chain and key, for SNICallback. */
  readonly secureContext: SecureContext;
}

/** What the manager knows about one name, for status pages. */
export interface AcmeHostStatus {
  readonly host: string;
  readonly notAfter: number | null;
  readonly renewAt: number | null;
  readonly ordering: boolean;
  readonly failures: number;
  readonly retryAt: number | null;
  readonly lastError: string | null;
}

interface Failure {
  readonly count: number;
  readonly retryAt: number;
  readonly error: RelayError;
}

interface PendingChallenge {
  readonly host: string;
  readonly keyAuthorization: string;
}

type SniCallback = (error: Error | null, context?: SecureContext) => void;

const DEFAULT_RETRY: RetryPolicy = { retryMinMs: 5 * 60_000, retryMaxMs: 6 * 3600_000 };

function publish(
  channel: { hasSubscribers: boolean; publish(message: unknown): void },
  make: () => unknown,
): void {
  if (channel.hasSubscribers) channel.publish(make());
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function positive(name: string, value: number | undefined, fallback: number): number {
  const chosen = value ?? fallback;
  if (typeof chosen !== 'number' || !Number.isFinite(chosen) || chosen <= 0) {
    throw new RangeError(`options.${name} must be a positive number, got ${String(value)}`);
  }
  return chosen;
}

function draw(): number {
  return randomInt(1_000_000) / 1_000_000;
}

function pemList(value: AcmeManagerOptions['directoryCa']): string[] {
  if (value === undefined) return [];
  const items: readonly (string | Buffer)[] =
    typeof value === 'string' || Buffer.isBuffer(value) ? [value] : value;
  return items.map((item, index) => {
    const text = Buffer.isBuffer(item) ? item.toString('utf8') : item;
    if (typeof text !== 'string' || !text.includes('-----BEGIN CERTIFICATE-----')) {
      throw new TypeError(`options.directoryCa[${index}] is not a PEM certificate`);
    }
    return text;
  });
}

/** Waits for a free order slot; `release` gives it back. */
class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(count: number) {
    this.free = count;
  }

  async acquire(): Promise<void> {
    if (this.free > 0) {
      this.free--;
      return;
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  release(): void {
    const next = this.waiting.shift();
    if (next === undefined) this.free++;
    else next();
  }
}

export class AcmeCertificateManager {
  readonly directoryUrl: string;
  /** DATA_DIR/acme/DIRECTORY-ID: where this CA's account and certificates are kept. */
  readonly storageDir: string;
  private readonly options: AcmeManagerOptions;
  private readonly store: AcmeStore;
  private readonly accountKey: string;
  private readonly transport: AcmeTransport;
  private readonly renewal: RenewalPolicy;
  private readonly retry: RetryPolicy;
  private readonly now: () => number;
  private readonly slots: Slots;
  private readonly certificates = new Map<string, AcmeCertificate>();
  private readonly inFlight = new Map<string, Promise<AcmeCertificate>>();
  private readonly failures = new Map<string, Failure>();
  private readonly challenges = new Map<string, PendingChallenge>();
  private client: AcmeClient | null = null;
  private account: Promise<void> | null = null;
  private renewTimer: NodeJS.Timeout | null = null;
  private renewing: Promise<void> | null = null;
  private closed = false;

  private constructor(
    options: AcmeManagerOptions,
    directoryUrl: string,
    store: AcmeStore,
    accountKey: string,
    transport: AcmeTransport,
  ) {
    this.options = options;
    this.directoryUrl = directoryUrl;
    this.store = store;
    this.storageDir = store.root;
    this.accountKey = accountKey;
    this.transport = transport;
    this.renewal = { ...DEFAULT_RENEWAL_POLICY, ...(options.renewal ?? {}) };
    this.retry = { ...DEFAULT_RETRY, ...(options.retry ?? {}) };
    this.now = options.now ?? Date.now;
    this.slots = new Slots(positive('maxConcurrentOrders', options.maxConcurrentOrders, 4));
  }

  /**
   * Loads (or makes) the account key, reads the stored certificates and starts
   * the renewal timer. Nothing is sent to the CA until a certificate is needed.
   */
  static async open(options: AcmeManagerOptions): Promise<AcmeCertificateManager> {
    if (typeof options !== 'object') throw new TypeError('options must be an object');
    if (typeof options.dataDir !== 'string' || options.dataDir.length === 0) {
      throw new TypeError('options.dataDir must be a directory path');
    }
    if (typeof options.isServedHost !== 'function') {
      throw new TypeError('options.isServedHost must be a function');
    }
    const directoryUrl = options.directoryUrl ?? LETS_ENCRYPT_DIRECTORY_URL;
    let parsed: URL;
    try {
      parsed = new URL(directoryUrl);
    } catch {
      throw new TypeError(`options.directoryUrl: '${directoryUrl}' is not a URL`);
    }
    // RFC 8555 §6.1: ACME runs over HTTPS only.
    if (parsed.protocol !== 'https:') {
      throw new TypeError(`options.directoryUrl must be an https:// URL, got '${directoryUrl}'`);
    }
    if (
      options.email !== undefined &&
      (typeof options.email !== 'string' || !/^[^\s@]+@[^\s@]+$/.test(options.email))
    ) {
      throw new TypeError(`options.email: '${options.email}' is not an e-mail address`);
    }
    const renewal = { ...DEFAULT_RENEWAL_POLICY, ...(options.renewal ?? {}) };
    checkRenewalPolicy(renewal);
    const retry = { ...DEFAULT_RETRY, ...(options.retry ?? {}) };
    retryDelay(1, retry, 0); // validates the policy
    for (const name of [
      'renewCheckIntervalMs',
      'firstRenewCheckMs',
      'pollIntervalMs',
      'pollAttempts',
    ] as const) {
      positive(name, options[name], 1);
    }
    const transport = new AcmeTransport({
      extraRoots: pemList(options.directoryCa),
      requestTimeoutMs: positive('requestTimeoutMs', options.requestTimeoutMs, 30_000),
    });
    const store = await AcmeStore.open(options.dataDir, directoryUrl);
    const accountKey = await store.accountKey();
    const manager = new AcmeCertificateManager(options, directoryUrl, store, accountKey, transport);
    await manager.loadStored();
    manager.scheduleRenewCheck(options.firstRenewCheckMs ?? 60_000);
    return manager;
  }

  // ---- serving --------------------------------------------------------------------------

  /**
   * The key authorization for an HTTP-01 token this manager is waiting on
   * (RFC 8555 §8.3), or null. With `host`, only for the name the token is for.
   */
  challengeResponse(token: string, host?: string): string | null {
    if (typeof token !== 'string') return null;
    const pending = this.challenges.get(token);
    if (pending === undefined) return null;
    if (host !== undefined && canonicalHost(host) !== pending.host) return null;
    return pending.keyAuthorization;
  }

  /** A valid (not expired) certificate for `host` already in hand, or null. */
  certificateFor(host: string): AcmeCertificate | null {
    const name = canonicalHost(host);
    if (name === null) return null;
    const certificate = this.certificates.get(name);
    if (certificate === undefined || certificate.notAfter <= this.now()) return null;
    return certificate;
  }

  /**
   * A certificate for `host`: the one in hand while it is valid (starting a
   * background renewal when it is due), else a new order. Throws
   * AcmeHostNotServedError, AcmeBackoffError, AcmeOrderError,
   * AcmeStorageError or RelayClosedError.
   */
  async obtain(host: string): Promise<AcmeCertificate> {
    const name = canonicalHost(host);
    if (name === null) {
      throw this.refuse(
        host,
        `'${host}' cannot get a certificate by HTTP-01 (wildcards need DNS-01: use --tls-cert)`,
      );
    }
    const current = this.certificateFor(name);
    if (current !== null) {
      if (current.renewAt <= this.now()) this.prefetch(name);
      return current;
    }
    return this.order(name, this.certificates.has(name) ? 'expired' : 'new');
  }

  /** Starts getting a certificate for `host` ahead of its first request; failures are only published. */
  prefetch(host: string): void {
    this.obtain(host).catch(() => {
      // Published on diagnostics_channel by order(); the next request tries again after the back-off.
    });
  }

  /**
   * For tls.createServer's SNICallback: the certificate for the name the client
   * asked for, ordered on demand. An error fails the handshake.
   */
  readonly SNICallback = (servername: string, callback: SniCallback): void => {
    const cached = this.certificateFor(servername);
    if (cached !== null) {
      if (cached.renewAt <= this.now()) this.prefetch(servername);
      callback(null, cached.secureContext);
      return;
    }
    this.obtain(servername).then(
      (certificate) => {
        callback(null, certificate.secureContext);
      },
      (error: unknown) => {
        callback(error instanceof Error ? error : new Error(describe(error)));
      },
    );
  };

  /** What is known about each name (certificates in hand, orders, failures). */
  status(): AcmeHostStatus[] {
    const hosts = new Set([...this.certificates.keys(), ...this.failures.keys()]);
    for (const host of this.inFlight.keys()) hosts.add(host);
    return [...hosts].sort().map((host) => {
      const certificate = this.certificates.get(host);
      const failure = this.failures.get(host);
      return {
        host,
        notAfter: certificate?.notAfter ?? null,
        renewAt: certificate?.renewAt ?? null,
        ordering: this.inFlight.has(host),
        failures: failure?.count ?? 0,
        retryAt: failure?.retryAt ?? null,
        lastError: failure?.error.message ?? null,
      };
    });
  }

  /**
   * Renews every certificate whose renewal time has come, for names still
   * served and not backing off. The background timer calls this; it resolves
   * when those orders have finished (failures are published, not thrown).
   */
  async renewDue(): Promise<void> {
    if (this.closed) return;
    this.renewing ??= this.renewDueOnce().finally(() => {
      this.renewing = null;
    });
    await this.renewing;
  }

  /**
   * Stops the timer; orders in progress fail with RelayClosedError at their
   * next request to the CA. Waits for them at most `waitMs` (an order may be
   * sleeping between polls, which cannot be cut short).
   */
  async close(waitMs = 2_000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.renewTimer !== null) clearTimeout(this.renewTimer);
    this.renewTimer = null;
    this.transport.close();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.inFlight.values()]),
      new Promise((resolve) => {
        timer = setTimeout(resolve, waitMs);
      }),
    ]);
    clearTimeout(timer);
    this.challenges.clear();
  }

  /** Read afresh (close() may run across an await). */
  private get stopped(): boolean {
    return this.closed;
  }

  // ---- ordering ---------------------------------------------------------------------------

  private refuse(host: string, message: string): AcmeHostNotServedError {
    const error = new AcmeHostNotServedError(host, message);
    publish(relayDiagnostics.acmeHostRefused, (): AcmeHostRefusedEvent => ({ host, error }));
    return error;
  }

  /** One order per name at a time: concurrent callers share it. */
  private order(host: string, reason: AcmeOrderReason): Promise<AcmeCertificate> {
    const existing = this.inFlight.get(host);
    if (existing !== undefined) return existing;
    const ordering = this.orderOnce(host, reason).finally(() => {
      this.inFlight.delete(host);
    });
    this.inFlight.set(host, ordering);
    return ordering;
  }

  private async orderOnce(host: string, reason: AcmeOrderReason): Promise<AcmeCertificate> {
    if (this.closed) throw new RelayClosedError('the certificate manager is closed');
    const failure = this.failures.get(host);
    if (failure !== undefined && failure.retryAt > this.now()) {
      throw new AcmeBackoffError(host, failure.retryAt, failure.error);
    }
    let served: boolean;
    try {
      served = await this.options.isServedHost(host);
    } catch (error) {
      throw this.refuse(host, `cannot tell whether ${host} is served: ${describe(error)}`);
    }
    if (!served) {
      throw this.refuse(host, `${host} is not served by this relay: no certificate is ordered`);
    }
    await this.slots.acquire();
    const started = performance.now();
    try {
      if (this.stopped) throw new RelayClosedError('the certificate manager is closed');
      publish(relayDiagnostics.acmeOrderStarted, (): AcmeOrderStartedEvent => ({ host, reason }));
      const material = await this.transport.run(() => this.issue(host));
      await this.store.saveCertificate(material);
      const certificate = this.remember(material);
      this.failures.delete(host);
      publish(relayDiagnostics.acmeCertificateIssued, (): AcmeCertificateEvent => ({
        host,
        notBefore: certificate.notBefore,
        notAfter: certificate.notAfter,
        renewAt: certificate.renewAt,
        reason,
        durationMs: Math.round(performance.now() - started),
      }));
      return certificate;
    } catch (caught) {
      const error = this.stopped
        ? new RelayClosedError('the certificate manager is closed')
        : caught instanceof RelayError
          ? caught
          : new AcmeOrderError(
              host,
              `ordering a certificate for ${host} failed: ${describe(caught)}`,
              {
                cause: caught,
              },
            );
      if (!(error instanceof RelayClosedError)) this.recordFailure(host, reason, error);
      throw error;
    } finally {
      this.slots.release();
    }
  }

  private recordFailure(host: string, reason: AcmeOrderReason, error: RelayError): void {
    const count = (this.failures.get(host)?.count ?? 0) + 1;
    const retryAt = this.now() + retryDelay(count, this.retry, draw());
    this.failures.set(host, { count, retryAt, error });
    publish(relayDiagnostics.acmeOrderFailed, (): AcmeOrderFailedEvent => ({
      host,
      reason,
      error,
      failures: count,
      retryAt,
    }));
  }

  private acmeClient(): AcmeClient {
    this.client ??= new AcmeClient({
      directoryUrl: this.directoryUrl,
      accountKey: this.accountKey,
      backoffAttempts: positive('pollAttempts', this.options.pollAttempts, 10),
      backoffMin: positive('pollIntervalMs', this.options.pollIntervalMs, 1_000),
      backoffMax: 30_000,
    });
    return this.client;
  }

  /** Registers the account once (RFC 8555 §7.3; an existing key finds its account again). */
  private async ensureAccount(client: AcmeClient, host: string): Promise<void> {
    this.account ??= client
      .createAccount({
        // Using --acme is the operator's agreement to the CA's terms (documented in --help).
        termsOfServiceAgreed: true,
        ...(this.options.email === undefined ? {} : { contact: [`mailto:${this.options.email}`] }),
      })
      .then(() => undefined);
    try {
      await this.account;
    } catch (error) {
      this.account = null;
      throw new AcmeOrderError(
        host,
        `the ACME CA at ${this.directoryUrl} refused the account: ${describe(error)}`,
        { cause: error },
      );
    }
  }

  /** RFC 8555 §7.4: order, prove control of the name by HTTP-01, finalize, download. */
  private async issue(host: string): Promise<CertificateMaterial> {
    const client = this.acmeClient();
    await this.ensureAccount(client, host);
    const order = await client.createOrder({ identifiers: [{ type: 'dns', value: host }] });
    const authorizations = await client.getAuthorizations(order);
    for (const authorization of authorizations) {
      if (authorization.status === 'valid') continue; // the CA remembers an earlier proof
      const challenge = authorization.challenges.find((offered) => offered.type === 'http-01');
      if (challenge === undefined) {
        throw new AcmeOrderError(
          host,
          `the ACME CA offers no http-01 challenge for ${authorization.identifier.value}`,
        );
      }
      const keyAuthorization = await client.getChallengeKeyAuthorization(challenge);
      this.challenges.set(challenge.token, { host, keyAuthorization });
      try {
        await client.completeChallenge(challenge);
        await client.waitForValidStatus(authorization);
      } catch (error) {
        throw new AcmeOrderError(
          host,
          `the HTTP-01 validation of ${host} failed: ${describe(error)}`,
          { cause: error },
        );
      } finally {
        this.challenges.delete(challenge.token);
      }
    }
    const privateKeyPem = newPrivateKeyPem();
    const [, csr] = await acmeCrypto.createCsr({ commonName: host }, privateKeyPem);
    const finalized = await client.finalizeOrder(order, csr);
    const chain = await client.getCertificate(finalized);
    try {
      return inspectCertificate(host, chain, privateKeyPem);
    } catch (error) {
      throw new AcmeOrderError(host, `the CA sent an unusable certificate: ${describe(error)}`, {
        cause: error,
      });
    }
  }

  private remember(material: CertificateMaterial): AcmeCertificate {
    const certificate: AcmeCertificate = {
      ...material,
      renewAt: renewalTime(material.notBefore, material.notAfter, this.renewal, draw()),
      secureContext: createSecureContext({
        cert: material.certificatePem,
        key: material.privateKeyPem,
        minVersion: 'TLSv1.2',
      }),
    };
    this.certificates.set(material.host, certificate);
    return certificate;
  }

  // ---- storage and renewal --------------------------------------------------------------

  private async loadStored(): Promise<void> {
    const { certificates } = await this.store.loadCertificates();
    for (const material of certificates) {
      let certificate: AcmeCertificate;
      try {
        certificate = this.remember(material);
      } catch (error) {
        throw new AcmeStorageError(
          `the stored certificate for ${material.host} cannot be used: ${describe(error)}`,
          { cause: error },
        );
      }
      publish(relayDiagnostics.acmeCertificateLoaded, (): AcmeCertificateEvent => ({
        host: certificate.host,
        notBefore: certificate.notBefore,
        notAfter: certificate.notAfter,
        renewAt: certificate.renewAt,
        reason: undefined,
        durationMs: 0,
      }));
    }
  }

  private scheduleRenewCheck(delayMs: number): void {
    if (this.closed) return;
    this.renewTimer = setTimeout(() => {
      this.renewTimer = null;
      void this.renewDue().finally(() => {
        const interval = positive(
          'renewCheckIntervalMs',
          this.options.renewCheckIntervalMs,
          6 * 3600_000,
        );
        // ±10 %: many relays started together do not poll the CA in step.
        this.scheduleRenewCheck(interval * (0.9 + 0.2 * draw()));
      });
    }, delayMs);
    this.renewTimer.unref();
  }

  private async renewDueOnce(): Promise<void> {
    const now = this.now();
    const due = [...this.certificates.values()].filter(
      (certificate) =>
        certificate.renewAt <= now &&
        !this.inFlight.has(certificate.host) &&
        (this.failures.get(certificate.host)?.retryAt ?? 0) <= now,
    );
    await Promise.allSettled(
      due.map(async (certificate) => {
        // A name no longer served (a tunnel gone) is not renewed; it is ordered again when needed.
        if (!(await this.isServed(certificate.host))) return;
        await this.order(certificate.host, certificate.notAfter <= now ? 'expired' : 'renewal');
      }),
    );
  }

  private async isServed(host: string): Promise<boolean> {
    try {
      return await this.options.isServedHost(host);
    } catch {
      return false;
    }
  }
}
