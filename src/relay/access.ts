/**
 * Per-tunnel access control: HTTP basic auth and IP allowlists.
 *
 * Basic auth: the agent never sends passwords. For each tunnel it draws a
 * random 16-byte salt and sends HMAC-SHA-256(salt, "user:password") for every
 * credential; the relay computes the same HMAC over the `user:password` of a
 * request's `Authorization: Basic` header (RFC 7617) and compares it with each
 * hash in constant time (crypto.timingSafeEqual, and always against every hash,
 * so timing tells nothing about which user matched).
 *
 * Why a fast hash and not scrypt: the check runs on every request (each
 * keep-alive request is checked), synchronously, on the relay's one event loop;
 * a slow KDF there lets a flood of wrong passwords stall every tunnel. What the
 * salted hash buys is that the relay (its memory, its logs, a compromised
 * relay operator) never holds the plaintext and cannot reuse it elsewhere
 * without a brute-force search; it does not make weak passwords strong. Pick
 * long random tunnel passwords.
 *
 * IP allowlists match the real TCP source address of the public connection
 * (never X-Forwarded-For). IPv4-mapped IPv6 addresses (::ffff:a.b.c.d, what a
 * dual-stack listener reports for IPv4 clients) are matched as IPv4, and so are
 * ::ffff:0:0/96-or-longer entries.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { parseCidr, parseIpAddress } from '../wireguard/allowed-ips.js';
import { RelayConfigError } from './errors.js';

/** At most this many credentials per tunnel. */
export const MAX_BASIC_AUTH_CREDENTIALS = 32;
/** At most this many CIDRs per tunnel. */
export const MAX_ALLOWED_IPS = 64;
/** Longest user name and password (bytes of UTF-8) accepted on the agent. */
export const MAX_CREDENTIAL_PART = 256;
export const BASIC_AUTH_SALT_BYTES = 16;
export const BASIC_AUTH_HASH_BYTES = 32;
/** An Authorization header longer than this is not even decoded. */
const MAX_AUTHORIZATION_LENGTH = 2048;

/** What travels in the tunnel request: base64url salt and hashes. */
export interface BasicAuthHashes {
  readonly salt: string;
  readonly hashes: readonly string[];
}

function credentialHash(salt: Buffer, userPassword: Buffer): Buffer {
  return createHmac('sha256', salt).update(userPassword).digest();
}

function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

function isList(value: unknown): value is readonly unknown[] {
  return Array.isArray(value);
}

/**
 * Parses "user:password" (RFC 7617: the user may not contain ':'; the password
 * may). Throws RelayConfigError naming `what`.
 */
export function parseCredential(text: string, what: string): { user: string; password: string } {
  if (typeof text !== 'string') throw new TypeError(`${what} must be a string`);
  const colon = text.indexOf(':');
  if (colon <= 0 || colon === text.length - 1) {
    throw new RelayConfigError(`${what} must be USER:PASSWORD with both non-empty`);
  }
  const user = text.slice(0, colon);
  const password = text.slice(colon + 1);
  if (
    Buffer.byteLength(user) > MAX_CREDENTIAL_PART ||
    Buffer.byteLength(password) > MAX_CREDENTIAL_PART
  ) {
    throw new RelayConfigError(
      `${what}: user and password must be at most ${MAX_CREDENTIAL_PART} bytes`,
    );
  }
  // Control characters cannot be typed into a browser's login prompt.
  if (hasControlCharacter(text)) {
    throw new RelayConfigError(`${what} must not contain control characters`);
  }
  return { user, password };
}

/** Checks a list of "user:password" credentials (agent side). Throws RelayConfigError. */
export function checkCredentials(credentials: readonly string[], what: string): void {
  if (!isList(credentials)) throw new RelayConfigError(`${what} must be a list`);
  if (credentials.length === 0 || credentials.length > MAX_BASIC_AUTH_CREDENTIALS) {
    throw new RelayConfigError(`${what} must list 1-${MAX_BASIC_AUTH_CREDENTIALS} USER:PASSWORD`);
  }
  for (const [index, credential] of credentials.entries()) {
    parseCredential(credential, `${what}[${index}]`);
  }
}

/** Hashes "user:password" credentials with a fresh random salt (agent side). */
export function hashCredentials(credentials: readonly string[]): BasicAuthHashes {
  checkCredentials(credentials, 'credentials');
  const salt = randomBytes(BASIC_AUTH_SALT_BYTES);
  const hashes = credentials.map((credential) => {
    const plain = Buffer.from(credential, 'utf8');
    const hash = credentialHash(salt, plain).toString('base64url');
    plain.fill(0);
    return hash;
  });
  return { salt: salt.toString('base64url'), hashes };
}

/** Checks a list of CIDR strings (agent side and relay side). Throws RelayConfigError. */
export function checkAllowedIps(cidrs: readonly string[], what: string): void {
  if (!isList(cidrs)) throw new RelayConfigError(`${what} must be a list`);
  if (cidrs.length === 0 || cidrs.length > MAX_ALLOWED_IPS) {
    throw new RelayConfigError(`${what} must list 1-${MAX_ALLOWED_IPS} addresses or CIDRs`);
  }
  for (const [index, cidr] of cidrs.entries()) {
    if (typeof cidr !== 'string' || cidr.length > 64) {
      throw new RelayConfigError(`${what}[${index}] must be an address or CIDR`);
    }
    try {
      parseCidr(cidr);
    } catch (error) {
      throw new RelayConfigError(
        `${what}[${index}]: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }
}

/** 16 IPv6 bytes ::ffff:a.b.c.d → the 4 IPv4 bytes; anything else unchanged. */
function unmapV4(address: Uint8Array): Uint8Array {
  if (address.length !== 16 || address[10] !== 0xff || address[11] !== 0xff) return address;
  for (let i = 0; i < 10; i++) if (address[i] !== 0) return address;
  return address.subarray(12);
}

interface Prefix {
  readonly bytes: Uint8Array;
  readonly bits: number;
}

/** A set of CIDRs that an address is checked against. */
export class IpAllowlist {
  private readonly v4: Prefix[] = [];
  private readonly v6: Prefix[] = [];
  readonly entries: readonly string[];

  /** Throws RelayConfigError naming the bad entry. */
  constructor(cidrs: readonly string[]) {
    checkAllowedIps(cidrs, 'allowIps');
    this.entries = [...cidrs];
    for (const text of cidrs) {
      const { address, cidr } = parseCidr(text);
      const unmapped = unmapV4(address);
      if (unmapped !== address && cidr >= 96) {
        this.v4.push({ bytes: Uint8Array.from(unmapped), bits: cidr - 96 });
      } else if (address.length === 4) {
        this.v4.push({ bytes: address, bits: cidr });
      } else {
        this.v6.push({ bytes: address, bits: cidr });
      }
    }
  }

  /** True when `address` (a socket's remoteAddress, v4, v6 or v4-mapped) is in the list. */
  allows(address: string | undefined): boolean {
    if (typeof address !== 'string') return false;
    const percent = address.indexOf('%'); // a link-local zone: the address is what counts
    let bytes: Uint8Array;
    try {
      bytes = parseIpAddress(percent === -1 ? address : address.slice(0, percent)).address;
    } catch {
      return false;
    }
    bytes = unmapV4(bytes);
    for (const prefix of bytes.length === 4 ? this.v4 : this.v6) {
      if (prefixContains(prefix, bytes)) return true;
    }
    return false;
  }
}

function prefixContains(prefix: Prefix, address: Uint8Array): boolean {
  const whole = prefix.bits >>> 3;
  for (let i = 0; i < whole; i++) if (prefix.bytes[i] !== address[i]) return false;
  const rest = prefix.bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return ((prefix.bytes[whole] ?? 0) & mask) === ((address[whole] ?? 0) & mask);
}

/** The relay's side of basic auth for one tunnel. */
export class BasicAuthVerifier {
  private readonly salt: Buffer;
  private readonly hashes: readonly Buffer[];

  /** Throws RelayConfigError for a malformed salt or hash. */
  constructor(material: BasicAuthHashes) {
    const salt = Buffer.from(material.salt, 'base64url');
    if (salt.length !== BASIC_AUTH_SALT_BYTES) {
      throw new RelayConfigError(`basicAuth.salt must be ${BASIC_AUTH_SALT_BYTES} bytes`);
    }
    if (material.hashes.length === 0 || material.hashes.length > MAX_BASIC_AUTH_CREDENTIALS) {
      throw new RelayConfigError(`basicAuth.hashes must list 1-${MAX_BASIC_AUTH_CREDENTIALS}`);
    }
    this.salt = salt;
    this.hashes = material.hashes.map((text, index) => {
      const hash = Buffer.from(text, 'base64url');
      if (hash.length !== BASIC_AUTH_HASH_BYTES) {
        throw new RelayConfigError(
          `basicAuth.hashes[${index}] must be ${BASIC_AUTH_HASH_BYTES} bytes`,
        );
      }
      return hash;
    });
  }

  /** True when the Authorization header value carries one of the credentials. */
  verify(authorization: string | undefined): boolean {
    if (authorization === undefined || authorization.length > MAX_AUTHORIZATION_LENGTH)
      return false;
    const match = /^basic[ \t]+([A-Za-z0-9+/]+=*)[ \t]*$/i.exec(authorization);
    if (match?.[1] === undefined) return false;
    const plain = Buffer.from(match[1], 'base64');
    const hash = credentialHash(this.salt, plain);
    plain.fill(0);
    let matched = false;
    for (const expected of this.hashes) {
      // No early exit: every hash is compared.
      if (timingSafeEqual(hash, expected)) matched = true;
    }
    return matched;
  }
}
