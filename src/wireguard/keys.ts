/**
 * Text forms of 32-byte WireGuard keys: base64 as `wg genkey` prints and config
 * files carry (44 characters ending in one '='), and lowercase hex as the UAPI
 * protocol uses (https://www.wireguard.com/xplatform/, "set=1").
 */
import { KEY_SIZE } from './constants.js';

const BASE64_KEY_LENGTH = 44;
const HEX_KEY_LENGTH = 64;
const BASE64_PATTERN = /^[A-Za-z0-9+/]{43}=$/;
const HEX_PATTERN = /^[0-9A-Fa-f]{64}$/;

function checkKey(key: unknown, name: string): asserts key is Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== KEY_SIZE) {
    throw new RangeError(`${name} must be a ${KEY_SIZE}-byte Uint8Array`);
  }
}

/**
 * Parses a key written as base64 (44 characters) or hex (64 digits).
 * Like wireguard-tools' key_from_base64, base64 must be canonical: the unused low
 * bits of the last character must be zero, so each key has exactly one spelling.
 * The error names `what` but never echoes the text, which may be a private key.
 */
export function parseKey(text: string, what: string): Uint8Array {
  if (typeof text !== 'string') {
    throw new TypeError(`${what}: a key must be given as text`);
  }
  if (text.length === BASE64_KEY_LENGTH && BASE64_PATTERN.test(text)) {
    const decoded = Buffer.from(text, 'base64');
    const canonical = decoded.length === KEY_SIZE && decoded.toString('base64') === text;
    const key = canonical ? Uint8Array.from(decoded) : null;
    decoded.fill(0); // Buffer.from may use Node's shared pool: leave no key bytes there.
    if (key !== null) return key;
  } else if (text.length === HEX_KEY_LENGTH && HEX_PATTERN.test(text)) {
    const decoded = Buffer.from(text, 'hex');
    const key = Uint8Array.from(decoded);
    decoded.fill(0);
    return key;
  }
  throw new Error(
    `${what}: not a valid key (expected 32 bytes as 44 base64 characters or 64 hex digits, got ${text.length} characters)`,
  );
}

export function keyToBase64(key: Uint8Array): string {
  checkKey(key, 'key');
  return Buffer.from(key.buffer, key.byteOffset, key.length).toString('base64');
}

export function keyToHex(key: Uint8Array): string {
  checkKey(key, 'key');
  return Buffer.from(key.buffer, key.byteOffset, key.length).toString('hex');
}

/** True for the all-zero key (UAPI's way of saying "no key"); constant time. */
export function isZeroKey(key: Uint8Array): boolean {
  checkKey(key, 'key');
  let accumulated = 0;
  for (let i = 0; i < KEY_SIZE; i++) accumulated |= key[i];
  return accumulated === 0;
}
