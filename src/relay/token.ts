/**
 * Capability tokens: what an agent may claim on a relay, signed by the relay.
 *
 *   token = "wrn1." base64url(payload JSON) "." base64url(HMAC-SHA256(secret, "wrn1." payload))
 *
 * The payload names the token (for people) and its account (`a`; a token made
 * before accounts existed has none and belongs to the account "default"), lists
 * the subdomains it may claim (exact labels, "*" for any, or a prefix pattern
 * "dev-*"), whether it may open TCP tunnels (any port of the relay's range, or
 * only some port ranges) and when it expires. The relay checks a token when a session opens and again on every
 * tunnel request; revocation and accounts live in the relay's store
 * (./store/), keyed by the token's random id and its account's name.
 *
 * The HMAC (RFC 2104 with SHA-256) is compared in constant time; the secret is
 * 32 random bytes kept in the relay's data directory.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { NotPermittedError, TokenExpiredError, TokenInvalidError } from './errors.js';

const TOKEN_PREFIX = 'wrn1.';
const MAX_TOKEN_LENGTH = 4096;
export const MIN_SECRET_BYTES = 32;
/** The account of tokens made without one (and of every token made before accounts). */
export const DEFAULT_ACCOUNT = 'default';

export type PortRange = readonly [first: number, last: number];

/** What a token allows. */
export interface TokenGrant {
  /** Random id (32 hex digits): what revocation names. */
  readonly id: string;
  /** A label for people ("laptop"). */
  readonly name: string;
  /** The account the token belongs to (DEFAULT_ACCOUNT for tokens made without one). */
  readonly account: string;
  /** Subdomain patterns; empty: only names the relay picks at random. */
  readonly subdomains: readonly string[];
  /** TCP tunnels: not allowed, any port of the relay's range, or these ranges. */
  readonly tcp: boolean | readonly PortRange[];
  /** Unix seconds. */
  readonly issuedAt: number;
  /** Unix seconds, or null for a token that does not expire. */
  readonly expiresAt: number | null;
}

export interface NewTokenGrant {
  readonly name: string;
  /** Default DEFAULT_ACCOUNT. */
  readonly account?: string;
  readonly subdomains?: readonly string[];
  readonly tcp?: boolean | readonly PortRange[];
  /** Unix seconds; default now. */
  readonly issuedAt?: number;
  /** Unix seconds or null (never). */
  readonly expiresAt?: number | null;
}

/** A DNS label (RFC 1035 §2.3.1, lower case): what one tunnel's subdomain is. */
const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** "*", an exact label, or a prefix of a label followed by "*". */
const PATTERN = /^(\*|[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?|[a-z0-9][a-z0-9-]{0,61}\*)$/;
const TOKEN_NAME = /^[\x21-\x7e]([\x20-\x7e]{0,62}[\x21-\x7e])?$/;
/** An account name: 1-64 of lower-case letters, digits, '.', '_' and '-', starting with a letter or digit. */
const ACCOUNT_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** What a subdomain pattern is, for error messages ("'x!' is not …"). */
export const SUBDOMAIN_PATTERN_RULE =
  "a subdomain pattern (a DNS label, '*', or a prefix followed by '*')";
/** What a token name is, for error messages. */
export const TOKEN_NAME_RULE =
  'a token name (1-64 printable ASCII characters, no leading or trailing space)';

/** True for a valid token name: 1-64 printable ASCII characters, no leading or trailing space. */
export function isValidTokenName(name: string): boolean {
  return typeof name === 'string' && TOKEN_NAME.test(name);
}

/** True for a valid account name ("default", "acme-corp"). */
export function isValidAccountName(name: string): boolean {
  return typeof name === 'string' && ACCOUNT_NAME.test(name);
}

/** True for a valid subdomain label. */
export function isValidSubdomain(name: string): boolean {
  return typeof name === 'string' && LABEL.test(name);
}

/**
 * The longest custom host name: 253 (RFC 1035 §2.3.4, in text form) less the
 * 18 characters of the "_warren-challenge." label its DNS challenge goes under.
 */
export const MAX_HOST_NAME_LENGTH = 253 - '_warren-challenge.'.length;

/**
 * True for a custom domain's host name: lower case, two or more DNS labels,
 * no trailing dot, and not an IPv4 address (its last label is not all digits).
 */
export function isValidHostName(host: string): boolean {
  if (typeof host !== 'string' || host.length > MAX_HOST_NAME_LENGTH) return false;
  const labels = host.split('.');
  return (
    labels.length >= 2 &&
    labels.every((label) => LABEL.test(label)) &&
    !/^\d+$/.test(labels[labels.length - 1] ?? '')
  );
}

/** True for a valid subdomain pattern ("app", "*", "dev-*"). */
export function isValidSubdomainPattern(pattern: string): boolean {
  return typeof pattern === 'string' && PATTERN.test(pattern);
}

function isPortRange(value: unknown): value is PortRange {
  return (
    Array.isArray(value) &&
    value.length === 2 &&
    Number.isInteger(value[0]) &&
    Number.isInteger(value[1]) &&
    (value[0] as number) >= 1 &&
    (value[0] as number) <= (value[1] as number) &&
    (value[1] as number) <= 65535
  );
}

/** Parses "41000-41999" or "5432" into a port range. */
export function parsePortRange(text: string): PortRange {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  const match = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(text.trim());
  const range = match === null ? null : [Number(match[1]), Number(match[2] ?? match[1])];
  if (!isPortRange(range)) {
    throw new RangeError(`'${text}' is not a port or port range (1-65535, FIRST-LAST)`);
  }
  return range;
}

/** Parses a duration like "30d", "12h", "45m", "90s" or "2w" into seconds. */
export function parseDuration(text: string): number {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  const match = /^(\d{1,6})([smhdw])$/.exec(text.trim());
  if (match === null)
    throw new RangeError(`'${text}' is not a duration (e.g. 90s, 45m, 12h, 30d, 2w)`);
  const units: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };
  return Number(match[1]) * (units[match[2] ?? 's'] ?? 1);
}

function validateGrant(grant: TokenGrant): void {
  if (!/^[0-9a-f]{32}$/.test(grant.id)) throw new RangeError('grant.id must be 32 hex digits');
  if (!isValidTokenName(grant.name)) {
    throw new RangeError(`grant.name: ${JSON.stringify(grant.name)} is not ${TOKEN_NAME_RULE}`);
  }
  if (!isValidAccountName(grant.account)) {
    throw new RangeError(
      `grant.account must be 1-64 of a-z, 0-9, '.', '_', '-' (starting with a letter or digit), got ${JSON.stringify(grant.account)}`,
    );
  }
  if (!Array.isArray(grant.subdomains) || grant.subdomains.length > 64) {
    throw new RangeError('grant.subdomains must be an array of at most 64 patterns');
  }
  for (const pattern of grant.subdomains as readonly unknown[]) {
    if (typeof pattern !== 'string' || !isValidSubdomainPattern(pattern)) {
      throw new RangeError(
        `grant.subdomains: '${String(pattern)}' is not ${SUBDOMAIN_PATTERN_RULE}`,
      );
    }
  }
  if (typeof grant.tcp !== 'boolean') {
    if (!Array.isArray(grant.tcp) || grant.tcp.length > 64 || !grant.tcp.every(isPortRange)) {
      throw new RangeError('grant.tcp must be a boolean or at most 64 [first, last] port ranges');
    }
  }
  if (!Number.isSafeInteger(grant.issuedAt) || grant.issuedAt < 0) {
    throw new RangeError('grant.issuedAt must be a non-negative integer (unix seconds)');
  }
  if (grant.expiresAt !== null && (!Number.isSafeInteger(grant.expiresAt) || grant.expiresAt < 0)) {
    throw new RangeError('grant.expiresAt must be null or a non-negative integer (unix seconds)');
  }
}

function checkSecret(secret: Buffer): void {
  if (!Buffer.isBuffer(secret) || secret.length < MIN_SECRET_BYTES) {
    throw new TypeError(`secret must be a Buffer of at least ${MIN_SECRET_BYTES} bytes`);
  }
}

function sign(secret: Buffer, signed: string): Buffer {
  return createHmac('sha256', secret).update(signed, 'latin1').digest();
}

/** Makes a new grant (fresh random id) and its signed token. */
export function createToken(
  secret: Buffer,
  request: NewTokenGrant,
  nowSeconds = Math.floor(Date.now() / 1000),
): { token: string; grant: TokenGrant } {
  checkSecret(secret);
  if (typeof request !== 'object') throw new TypeError('request must be an object');
  const grant: TokenGrant = {
    id: randomBytes(16).toString('hex'),
    name: request.name,
    account: request.account ?? DEFAULT_ACCOUNT,
    subdomains: [...(request.subdomains ?? [])],
    tcp: request.tcp ?? false,
    issuedAt: request.issuedAt ?? nowSeconds,
    expiresAt: request.expiresAt ?? null,
  };
  validateGrant(grant);
  const payload = Buffer.from(
    JSON.stringify({
      v: 1,
      id: grant.id,
      n: grant.name,
      a: grant.account,
      s: grant.subdomains,
      t: grant.tcp,
      iat: grant.issuedAt,
      exp: grant.expiresAt,
    }),
    'utf8',
  ).toString('base64url');
  const signed = TOKEN_PREFIX + payload;
  return { token: `${signed}.${sign(secret, signed).toString('base64url')}`, grant };
}

/**
 * Verifies a token's signature and expiry and returns its grant. Throws
 * TokenInvalidError (malformed, bad signature) or TokenExpiredError. Revocation
 * is the TokenStore's business.
 */
export function verifyToken(
  secret: Buffer,
  token: string,
  nowSeconds = Math.floor(Date.now() / 1000),
): TokenGrant {
  checkSecret(secret);
  if (
    typeof token !== 'string' ||
    token.length > MAX_TOKEN_LENGTH ||
    !token.startsWith(TOKEN_PREFIX)
  ) {
    throw new TokenInvalidError('the token is malformed (it does not start with wrn1.)');
  }
  const dot = token.lastIndexOf('.');
  const signed = token.slice(0, dot);
  const signatureText = token.slice(dot + 1);
  // 32 bytes are 43 base64url characters, the last carrying 4 bits and 2 pad bits.
  // The pad bits must be zero (RFC 4648 §3.5): otherwise one signature would have
  // four spellings, and an altered token could still verify.
  if (dot <= TOKEN_PREFIX.length || !/^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$/.test(signatureText)) {
    throw new TokenInvalidError('the token is malformed (no signature)');
  }
  const signature = Buffer.from(signatureText, 'base64url');
  const expected = sign(secret, signed);
  if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) {
    throw new TokenInvalidError('the token signature does not verify (another relay, or altered)');
  }
  // Signed by us: the payload is ours, but it is still checked, field by field.
  let payload: unknown;
  try {
    payload = JSON.parse(
      Buffer.from(signed.slice(TOKEN_PREFIX.length), 'base64url').toString('utf8'),
    );
  } catch {
    throw new TokenInvalidError('the token payload is not JSON');
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) {
    throw new TokenInvalidError('the token payload is not an object');
  }
  const fields = payload as Record<string, unknown>;
  if (fields.v !== 1) throw new TokenInvalidError('unsupported token version');
  const grant = {
    id: fields.id,
    name: fields.n,
    // Tokens issued before accounts existed carry no `a`: they belong to "default".
    account: fields.a === undefined ? DEFAULT_ACCOUNT : fields.a,
    subdomains: fields.s,
    tcp: fields.t,
    issuedAt: fields.iat,
    expiresAt: fields.exp,
  } as TokenGrant;
  try {
    validateGrant(grant);
  } catch (error) {
    throw new TokenInvalidError(
      `the token payload is invalid: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  if (grant.expiresAt !== null && nowSeconds >= grant.expiresAt) {
    throw new TokenExpiredError(
      `the token '${grant.name}' expired at ${new Date(grant.expiresAt * 1000).toISOString()}`,
    );
  }
  return grant;
}

function patternMatches(pattern: string, name: string): boolean {
  if (pattern === '*') return true;
  if (pattern.endsWith('*')) {
    const prefix = pattern.slice(0, -1);
    return name.length > prefix.length && name.startsWith(prefix);
  }
  return pattern === name;
}

/** True if the grant lets its holder claim subdomain `name` by asking for it. */
export function subdomainAllowed(grant: TokenGrant, name: string): boolean {
  if (!isValidSubdomain(name)) return false;
  return grant.subdomains.some((pattern) => patternMatches(pattern, name));
}

/**
 * The subdomain a tunnel request gets: the requested one if the grant allows
 * it; without a request, the grant's only exact name, a random name under its
 * prefix pattern, or a random name (empty list or "*"). `randomLabel` makes
 * random labels (8 hex digits by default). Throws NotPermittedError.
 */
export function chooseSubdomain(
  grant: TokenGrant,
  requested: string | undefined,
  randomLabel: () => string = () => randomBytes(4).toString('hex'),
): string {
  if (requested !== undefined) {
    const name = requested.toLowerCase();
    if (!isValidSubdomain(name)) {
      throw new NotPermittedError(`'${requested}' is not a valid subdomain (a DNS label)`);
    }
    if (!subdomainAllowed(grant, name)) {
      throw new NotPermittedError(
        grant.subdomains.length === 0
          ? `the token '${grant.name}' allows only random subdomains, not '${name}'`
          : `the token '${grant.name}' does not allow the subdomain '${name}' (allowed: ${grant.subdomains.join(', ')})`,
      );
    }
    return name;
  }
  if (grant.subdomains.length === 0 || grant.subdomains.includes('*')) return randomLabel();
  const exact = grant.subdomains.filter((pattern) => !pattern.endsWith('*'));
  if (exact.length === 1 && exact[0] !== undefined) return exact[0];
  const prefix = grant.subdomains.find((pattern) => pattern.endsWith('*'));
  if (prefix !== undefined) return `${prefix.slice(0, -1)}${randomLabel()}`.slice(0, 63);
  throw new NotPermittedError(
    `the token '${grant.name}' allows several subdomains (${grant.subdomains.join(', ')}): ask for one`,
  );
}

/** True if the grant allows a TCP tunnel on `port`. */
export function tcpPortAllowed(grant: TokenGrant, port: number): boolean {
  if (grant.tcp === false) return false;
  if (grant.tcp === true) return true;
  return grant.tcp.some(([first, last]) => port >= first && port <= last);
}
