/**
 * Typed errors of the relay's automatic certificates (./manager.ts). Their codes
 * are part of RelayErrorCode (../errors.ts) and listed in docs/errors.md.
 */
import { RelayError } from '../errors.js';

/**
 * A certificate was asked for a name the relay does not serve (or cannot get
 * by HTTP-01: a wildcard, an IP address). Nothing was sent to the CA.
 */
export class AcmeHostNotServedError extends RelayError {
  readonly host: string;

  constructor(host: string, message: string) {
    super('ERR_RELAY_ACME_NOT_SERVED', message);
    this.name = 'AcmeHostNotServedError';
    this.host = host;
  }
}

/**
 * An order for this name failed recently: the manager does not ask the CA again
 * before `retryAt` (ms since the epoch). The last failure is the `cause`.
 */
export class AcmeBackoffError extends RelayError {
  readonly host: string;
  readonly retryAt: number;

  constructor(host: string, retryAt: number, lastError: Error) {
    super(
      'ERR_RELAY_ACME_BACKOFF',
      `no certificate for ${host} before ${new Date(retryAt).toISOString()}: the last order failed (${lastError.message})`,
      { cause: lastError },
    );
    this.name = 'AcmeBackoffError';
    this.host = host;
    this.retryAt = retryAt;
  }
}

/**
 * The ACME CA could not be reached, refused the account or the order, or the
 * HTTP-01 validation failed.
 */
export class AcmeOrderError extends RelayError {
  readonly host: string;

  constructor(host: string, message: string, options?: { cause?: unknown }) {
    super('ERR_RELAY_ACME_ORDER', message, options);
    this.name = 'AcmeOrderError';
    this.host = host;
  }
}

/** The account key or a certificate under DATA_DIR/acme/ cannot be read or written. */
export class AcmeStorageError extends RelayError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_RELAY_ACME_STORAGE', message, options);
    this.name = 'AcmeStorageError';
  }
}
