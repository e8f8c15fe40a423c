/**
 * How acme-client's HTTPS requests reach the CA: which roots are trusted
 * (`--acme-ca`, for a test CA such as pebble or a private ACME CA), a timeout
 * per request, and a stop once the manager is closed.
 *
 * acme-client sends every request through one module-wide axios instance, so
 * per-manager settings cannot be put on it. Instead each manager runs its ACME
 * calls inside an AsyncLocalStorage context, and one request interceptor
 * (installed once) applies the settings of the context the request was made
 * in. Requests made outside any manager's context are left untouched.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { Agent as HttpsAgent } from 'node:https';
import { rootCertificates } from 'node:tls';
import { axios as acmeAxios } from 'acme-client';

export interface AcmeTransportOptions {
  /** PEM certificates trusted besides Node's bundled roots; empty: the bundled roots only. */
  readonly extraRoots: readonly string[];
  /** Each HTTP request to the CA must complete within this (ms). */
  readonly requestTimeoutMs: number;
}

/** Thrown into acme-client when the manager was closed mid-order. */
export class AcmeTransportClosedError extends Error {
  constructor() {
    super('the certificate manager is closed');
    this.name = 'AcmeTransportClosedError';
  }
}

const contexts = new AsyncLocalStorage<AcmeTransport>();
let interceptorInstalled = false;

function installInterceptor(): void {
  if (interceptorInstalled) return;
  interceptorInstalled = true;
  acmeAxios.interceptors.request.use((config) => {
    const transport = contexts.getStore();
    if (transport === undefined) return config;
    // A plain error (no axios config on it) is not retried by acme-client's interceptor.
    if (transport.closed) throw new AcmeTransportClosedError();
    if (transport.agent !== null) config.httpsAgent = transport.agent;
    config.timeout = transport.requestTimeoutMs;
    return config;
  });
}

export class AcmeTransport {
  readonly requestTimeoutMs: number;
  readonly agent: HttpsAgent | null;
  closed = false;

  constructor(options: AcmeTransportOptions) {
    if (!Number.isFinite(options.requestTimeoutMs) || options.requestTimeoutMs <= 0) {
      throw new RangeError('requestTimeoutMs must be a positive number of ms');
    }
    this.requestTimeoutMs = options.requestTimeoutMs;
    this.agent =
      options.extraRoots.length === 0
        ? null
        : new HttpsAgent({ ca: [...rootCertificates, ...options.extraRoots] });
    installInterceptor();
  }

  /** Runs `operation` so that the ACME requests it makes use this transport. */
  run<T>(operation: () => Promise<T>): Promise<T> {
    return contexts.run(this, operation);
  }

  /** Later requests fail at once; idle connections to the CA are closed. */
  close(): void {
    this.closed = true;
    this.agent?.destroy();
  }
}
