/**
 * Typed errors of the relay (`warren relay`) and the agent (`warren expose`).
 * One class per failure, each with a stable `code` that callers switch on and that
 * travels over the control channel (the agent rebuilds the class from the code);
 * messages are for people.
 *
 * The yamux layer has its own errors (./mux/errors.ts, ERR_YAMUX_*).
 */

export type RelayErrorCode =
  | 'ERR_RELAY_CONFIG'
  | 'ERR_RELAY_SECRET'
  | 'ERR_RELAY_STORE'
  | 'ERR_RELAY_TLS_SETUP'
  | 'ERR_RELAY_TOKEN_INVALID'
  | 'ERR_RELAY_TOKEN_EXPIRED'
  | 'ERR_RELAY_TOKEN_REVOKED'
  | 'ERR_RELAY_NOT_PERMITTED'
  | 'ERR_RELAY_NAME_IN_USE'
  | 'ERR_RELAY_NO_PORT'
  | 'ERR_RELAY_LIMIT'
  | 'ERR_RELAY_PROTOCOL'
  | 'ERR_RELAY_AUTH_TIMEOUT'
  | 'ERR_RELAY_HANDSHAKE'
  | 'ERR_RELAY_HTTP_PARSE'
  | 'ERR_RELAY_AGENT_UNAVAILABLE'
  | 'ERR_RELAY_CONNECT'
  | 'ERR_RELAY_CERTIFICATE'
  | 'ERR_RELAY_CLOSED'
  | 'ERR_RELAY_ACCESS_DENIED'
  // Accounts, tokens and custom domains in the relay's store (./store/):
  | 'ERR_RELAY_STORE_CONNECT'
  | 'ERR_RELAY_ACCOUNT_EXISTS'
  | 'ERR_RELAY_ACCOUNT_NOT_FOUND'
  | 'ERR_RELAY_ACCOUNT_REMOVED'
  | 'ERR_RELAY_DOMAIN_EXISTS'
  | 'ERR_RELAY_DOMAIN_NOT_FOUND'
  | 'ERR_RELAY_DOMAIN_NOT_VERIFIED'
  | 'ERR_RELAY_DOMAIN_VERIFY'
  // Automatic certificates (./acme/errors.ts):
  | 'ERR_RELAY_ACME_NOT_SERVED'
  | 'ERR_RELAY_ACME_BACKOFF'
  | 'ERR_RELAY_ACME_ORDER'
  | 'ERR_RELAY_ACME_STORAGE';

export class RelayError extends Error {
  readonly code: RelayErrorCode;

  constructor(code: RelayErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'RelayError';
    this.code = code;
  }
}

/** A bad option, flag or configuration file. */
export class RelayConfigError extends RelayError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_RELAY_CONFIG', message, options);
    this.name = 'RelayConfigError';
  }
}

/** The token-signing secret cannot be read or created, or its file is readable by others. */
export class RelaySecretError extends RelayError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_RELAY_SECRET', message, options);
    this.name = 'RelaySecretError';
  }
}

/** The token store cannot be read or written (the relay then refuses agents: it fails closed). */
export class TokenStoreError extends RelayError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_RELAY_STORE', message, options);
    this.name = 'TokenStoreError';
  }
}

/** Certificates could not be loaded or made (--tls-cert/--tls-key, --dev-ca). */
export class RelayTlsSetupError extends RelayError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_RELAY_TLS_SETUP', message, options);
    this.name = 'RelayTlsSetupError';
  }
}

/** The token is malformed, or its signature does not verify. */
export class TokenInvalidError extends RelayError {
  constructor(message: string) {
    super('ERR_RELAY_TOKEN_INVALID', message);
    this.name = 'TokenInvalidError';
  }
}

/** The token's expiry has passed. */
export class TokenExpiredError extends RelayError {
  constructor(message: string) {
    super('ERR_RELAY_TOKEN_EXPIRED', message);
    this.name = 'TokenExpiredError';
  }
}

/** The token was revoked. */
export class TokenRevokedError extends RelayError {
  constructor(message: string) {
    super('ERR_RELAY_TOKEN_REVOKED', message);
    this.name = 'TokenRevokedError';
  }
}

/** A valid token that does not allow this subdomain, this port or TCP at all. */
export class NotPermittedError extends RelayError {
  constructor(message: string) {
    super('ERR_RELAY_NOT_PERMITTED', message);
    this.name = 'NotPermittedError';
  }
}

/** The subdomain or port is held by another agent (with another token). */
export class NameInUseError extends RelayError {
  constructor(message: string) {
    super('ERR_RELAY_NAME_IN_USE', message);
    this.name = 'NameInUseError';
  }
}

/** No free port in the relay's TCP range (and the token's) is left. */
export class NoPortAvailableError extends RelayError {
  constructor(message: string) {
    super('ERR_RELAY_NO_PORT', message);
    this.name = 'NoPortAvailableError';
  }
}

/** A configured limit was reached (sessions, tunnels per session, connections per IP…). */
export class RelayLimitError extends RelayError {
  constructor(message: string) {
    super('ERR_RELAY_LIMIT', message);
    this.name = 'RelayLimitError';
  }
}

/** A malformed or unexpected control message, or a malformed stream preamble. */
export class ControlProtocolError extends RelayError {
  constructor(message: string) {
    super('ERR_RELAY_PROTOCOL', message);
    this.name = 'ControlProtocolError';
  }
}

/** The agent did not authenticate in time after its TLS handshake. */
export class AuthTimeoutError extends RelayError {
  constructor(message: string) {
    super('ERR_RELAY_AUTH_TIMEOUT', message);
    this.name = 'AuthTimeoutError';
  }
}

/** The TLS handshake with an agent failed or timed out. */
export class HandshakeError extends RelayError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_RELAY_HANDSHAKE', message, options);
    this.name = 'HandshakeError';
  }
}

/**
 * An HTTP message the relay refuses to forward. `status` is what the client is
 * told (400 malformed, 408 too slow, 431 head too large, 501/505 unsupported).
 */
export class HttpParseError extends RelayError {
  readonly status: number;

  constructor(status: number, message: string) {
    super('ERR_RELAY_HTTP_PARSE', message);
    this.name = 'HttpParseError';
    this.status = status;
  }
}

/** The agent serving a tunnel is gone or refused the stream. */
export class AgentUnavailableError extends RelayError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_RELAY_AGENT_UNAVAILABLE', message, options);
    this.name = 'AgentUnavailableError';
  }
}

/** The agent could not connect to, or lost, the relay. */
export class RelayConnectError extends RelayError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_RELAY_CONNECT', message, options);
    this.name = 'RelayConnectError';
  }
}

/**
 * Why the agent refused the relay's certificate: it does not chain to a trusted CA
 * ('untrusted': a private or dev CA the agent was not given), it is not for the name
 * the agent expects ('name'), or it is outside its validity period ('expired').
 */
export type CertificateFailure = 'untrusted' | 'name' | 'expired';

/** The agent reached the relay but refused its certificate (it retries with backoff). */
export class RelayCertificateError extends RelayError {
  readonly reason: CertificateFailure;

  constructor(reason: CertificateFailure, message: string, options?: { cause?: unknown }) {
    super('ERR_RELAY_CERTIFICATE', message, options);
    this.name = 'RelayCertificateError';
    this.reason = reason;
  }
}

/** The relay or agent is closed or shutting down. */
export class RelayClosedError extends RelayError {
  constructor(message: string) {
    super('ERR_RELAY_CLOSED', message);
    this.name = 'RelayClosedError';
  }
}

/** Why a public client was turned away by a tunnel's access rules (./access.ts). */
export type AccessDeniedReason = 'basic-auth' | 'ip-allowlist';

/** A public request or connection the tunnel's basic auth or IP allowlist refused. */
export class AccessDeniedError extends RelayError {
  readonly reason: AccessDeniedReason;

  constructor(reason: AccessDeniedReason, message: string) {
    super('ERR_RELAY_ACCESS_DENIED', message);
    this.name = 'AccessDeniedError';
    this.reason = reason;
  }
}

/** The store's database (PostgreSQL, or the SQLite file) cannot be reached or opened. */
export class StoreConnectError extends RelayError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_RELAY_STORE_CONNECT', message, options);
    this.name = 'StoreConnectError';
  }
}

/** `account create`: an account of that name exists already. */
export class AccountExistsError extends RelayError {
  constructor(message: string) {
    super('ERR_RELAY_ACCOUNT_EXISTS', message);
    this.name = 'AccountExistsError';
  }
}

/** No account of that name (creating a token or a domain for it, removing it). */
export class AccountNotFoundError extends RelayError {
  constructor(message: string) {
    super('ERR_RELAY_ACCOUNT_NOT_FOUND', message);
    this.name = 'AccountNotFoundError';
  }
}

/** The token's account was removed: the relay refuses the token (like a revoked one). */
export class AccountRemovedError extends RelayError {
  constructor(message: string) {
    super('ERR_RELAY_ACCOUNT_REMOVED', message);
    this.name = 'AccountRemovedError';
  }
}

/** `domain add`: another account has that host name already. */
export class DomainExistsError extends RelayError {
  constructor(message: string) {
    super('ERR_RELAY_DOMAIN_EXISTS', message);
    this.name = 'DomainExistsError';
  }
}

/** No custom domain of that host name in the store. */
export class DomainNotFoundError extends RelayError {
  constructor(message: string) {
    super('ERR_RELAY_DOMAIN_NOT_FOUND', message);
    this.name = 'DomainNotFoundError';
  }
}

/** An agent asked for a host name that is not a verified custom domain of its token's account. */
export class DomainNotVerifiedError extends RelayError {
  constructor(message: string) {
    super('ERR_RELAY_DOMAIN_NOT_VERIFIED', message);
    this.name = 'DomainNotVerifiedError';
  }
}

/**
 * Why `domain verify` failed: no TXT record (NXDOMAIN or no data), a TXT
 * record with another value, or the DNS lookup itself failed (timeout, refused).
 */
export type DomainVerificationFailure = 'no-record' | 'mismatch' | 'dns-failure';

/** The DNS challenge of a custom domain did not check out (`reason` says how). */
export class DomainVerificationError extends RelayError {
  readonly reason: DomainVerificationFailure;

  constructor(reason: DomainVerificationFailure, message: string, options?: { cause?: unknown }) {
    super('ERR_RELAY_DOMAIN_VERIFY', message, options);
    this.name = 'DomainVerificationError';
    this.reason = reason;
  }
}

const REMOTE_CODES: ReadonlySet<string> = new Set<RelayErrorCode>([
  'ERR_RELAY_TOKEN_INVALID',
  'ERR_RELAY_TOKEN_EXPIRED',
  'ERR_RELAY_TOKEN_REVOKED',
  'ERR_RELAY_NOT_PERMITTED',
  'ERR_RELAY_NAME_IN_USE',
  'ERR_RELAY_NO_PORT',
  'ERR_RELAY_LIMIT',
  'ERR_RELAY_PROTOCOL',
  'ERR_RELAY_AUTH_TIMEOUT',
  'ERR_RELAY_CLOSED',
  'ERR_RELAY_STORE',
  'ERR_RELAY_ACCOUNT_REMOVED',
  'ERR_RELAY_DOMAIN_NOT_VERIFIED',
]);

/** True for the codes a relay may send an agent in a control `error` message. */
export function isRemoteErrorCode(code: string): code is RelayErrorCode {
  return REMOTE_CODES.has(code);
}

/** Rebuilds, on the agent, the error class the relay reported by its code. */
export function errorFromCode(code: RelayErrorCode, message: string): RelayError {
  switch (code) {
    case 'ERR_RELAY_TOKEN_INVALID':
      return new TokenInvalidError(message);
    case 'ERR_RELAY_TOKEN_EXPIRED':
      return new TokenExpiredError(message);
    case 'ERR_RELAY_TOKEN_REVOKED':
      return new TokenRevokedError(message);
    case 'ERR_RELAY_NOT_PERMITTED':
      return new NotPermittedError(message);
    case 'ERR_RELAY_NAME_IN_USE':
      return new NameInUseError(message);
    case 'ERR_RELAY_NO_PORT':
      return new NoPortAvailableError(message);
    case 'ERR_RELAY_LIMIT':
      return new RelayLimitError(message);
    case 'ERR_RELAY_PROTOCOL':
      return new ControlProtocolError(message);
    case 'ERR_RELAY_AUTH_TIMEOUT':
      return new AuthTimeoutError(message);
    case 'ERR_RELAY_CLOSED':
      return new RelayClosedError(message);
    case 'ERR_RELAY_STORE':
      return new TokenStoreError(message);
    case 'ERR_RELAY_ACCOUNT_REMOVED':
      return new AccountRemovedError(message);
    case 'ERR_RELAY_DOMAIN_NOT_VERIFIED':
      return new DomainNotVerifiedError(message);
    default:
      return new RelayError(code, message);
  }
}
