/**
 * The cryptographic primitives of WireGuard (whitepaper §5.4 "Messages", first
 * table): HASH, MAC, HMAC, KDF1..3, AEAD, XAEAD and DH over Curve25519.
 *
 * node:crypto supplies ChaCha20-Poly1305, X25519, BLAKE2s-256 and HMAC-BLAKE2s.
 * It has no keyed BLAKE2s with a 16-byte output (MAC) and no XChaCha20-Poly1305,
 * so those two come from @noble/hashes and @noble/ciphers.
 *
 * X25519 keys reach OpenSSL as JWK: measured on Node 20 / OpenSSL 3.0, importing a
 * raw private key through a PKCS8 DER wrapper costs ~570 µs (OpenSSL 3's decoder
 * machinery) against ~46 µs through JWK, and a public key ~125 µs against ~9 µs.
 * The DER path stays as a fallback should a future Node reject the JWK form.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  randomBytes,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { blake2s } from '@noble/hashes/blake2.js';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { AEAD_TAG_SIZE, COOKIE_NONCE_SIZE, KEY_SIZE, MAC_SIZE } from './constants.js';

const CHACHA_NONCE_SIZE = 12;
const MAX_COUNTER = 2n ** 64n - 1n;
const BLAKE2S_MAX_KEY_SIZE = 32;

function checkBytes(value: unknown, name: string, length?: number): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new TypeError(`${name} must be a Uint8Array`);
  }
  if (length !== undefined && value.length !== length) {
    throw new RangeError(`${name} must be ${length} bytes, got ${value.length}`);
  }
}

function checkCounter(counter: unknown, name: string): asserts counter is bigint {
  if (typeof counter !== 'bigint' || counter < 0n || counter > MAX_COUNTER) {
    throw new RangeError(`${name} must be a bigint in [0, 2^64 - 1]`);
  }
}

/**
 * A plain Uint8Array view of a Node Buffer, without copying. Everything this
 * module returns is a plain Uint8Array: Buffer#slice does not copy, so a Buffer
 * handed to code that expects Uint8Array semantics is a trap.
 */
function plain(buffer: Uint8Array): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.length);
}

/** True when every byte is zero; runs in time independent of the contents. */
export function isAllZero(bytes: Uint8Array): boolean {
  let accumulated = 0;
  for (const byte of bytes) accumulated |= byte;
  return accumulated === 0;
}

/** Constant-time equality (for MACs and keys). Different lengths compare unequal. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  checkBytes(a, 'a');
  checkBytes(b, 'b');
  if (a.length !== b.length) return false;
  return timingSafeEqual(a, b);
}

// ---------------------------------------------------------------------------
// Hashing (whitepaper §5.4: HASH, MAC, HMAC, KDFn)
// ---------------------------------------------------------------------------

/** HASH(input) = BLAKE2s(input, 32): the parts are hashed as one concatenation. */
export function hash(...parts: Uint8Array[]): Uint8Array {
  const hasher = createHash('blake2s256');
  for (let i = 0; i < parts.length; i++) {
    checkBytes(parts[i], `hash part ${i}`);
    hasher.update(parts[i]);
  }
  return plain(hasher.digest());
}

/**
 * MAC(key, input) = Keyed-BLAKE2s(key, input, 16) (RFC 7693 keyed mode with a
 * 16-byte digest; NOT a truncated 32-byte digest: the length is in the parameter
 * block). Keys of 1..32 bytes: mac1 uses a 32-byte key, mac2 a 16-byte cookie.
 */
export function mac(key: Uint8Array, data: Uint8Array): Uint8Array {
  checkBytes(key, 'mac key');
  checkBytes(data, 'mac data');
  if (key.length === 0 || key.length > BLAKE2S_MAX_KEY_SIZE) {
    throw new RangeError(`mac key must be 1..32 bytes, got ${key.length}`);
  }
  return blake2s(data, { key, dkLen: MAC_SIZE });
}

/**
 * A MAC with its key fixed, for keys used over and over (the mac1 key of a
 * local or peer public key, §5.4.4): the keyed BLAKE2s state is set up once and
 * cloned for each message.
 */
export class KeyedMac {
  readonly #keyed: ReturnType<typeof blake2s.create>;

  constructor(key: Uint8Array) {
    checkBytes(key, 'KeyedMac key');
    if (key.length === 0 || key.length > BLAKE2S_MAX_KEY_SIZE) {
      throw new RangeError(`KeyedMac key must be 1..32 bytes, got ${key.length}`);
    }
    this.#keyed = blake2s.create({ key, dkLen: MAC_SIZE });
  }

  /** MAC of `data`, written into `out` at `outOffset` when given. */
  compute(data: Uint8Array, out?: Uint8Array, outOffset = 0): Uint8Array {
    const hasher = this.#keyed.clone();
    hasher.update(data);
    const digest = hasher.digest();
    hasher.destroy(); // wipes the clone's copy of the key block
    if (out === undefined) return digest;
    out.set(digest, outOffset);
    return out.subarray(outOffset, outOffset + MAC_SIZE);
  }

  destroy(): void {
    this.#keyed.destroy();
  }
}

/** HMAC(key, input) = HMAC-BLAKE2s(key, input, 32) (RFC 2104 over BLAKE2s-256). */
export function hmac(key: Uint8Array, data: Uint8Array): Uint8Array {
  checkBytes(key, 'hmac key');
  checkBytes(data, 'hmac data');
  return plain(createHmac('blake2s256', key).update(data).digest());
}

const ONE = Uint8Array.of(1);
const TWO = Uint8Array.of(2);
const THREE = Uint8Array.of(3);

/**
 * HKDF over HMAC-BLAKE2s as the whitepaper §5.4 defines KDFn: τ0 = HMAC(key, input),
 * τ1 = HMAC(τ0, 0x1), τi = HMAC(τ0, τ(i-1) || i). Returns τ1..τn.
 */
function kdf(key: Uint8Array, input: Uint8Array, outputs: 1 | 2 | 3): Uint8Array[] {
  checkBytes(key, 'kdf key');
  checkBytes(input, 'kdf input');
  const pseudoRandomKey = createHmac('blake2s256', key).update(input).digest();
  const results: Uint8Array[] = [];
  let previous = plain(createHmac('blake2s256', pseudoRandomKey).update(ONE).digest());
  results.push(previous);
  if (outputs >= 2) {
    previous = plain(
      createHmac('blake2s256', pseudoRandomKey).update(previous).update(TWO).digest(),
    );
    results.push(previous);
  }
  if (outputs === 3) {
    previous = plain(
      createHmac('blake2s256', pseudoRandomKey).update(previous).update(THREE).digest(),
    );
    results.push(previous);
  }
  pseudoRandomKey.fill(0);
  return results;
}

export function kdf1(key: Uint8Array, input: Uint8Array): [Uint8Array] {
  const [t1] = kdf(key, input, 1);
  return [t1];
}

export function kdf2(key: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array] {
  const [t1, t2] = kdf(key, input, 2);
  return [t1, t2];
}

export function kdf3(key: Uint8Array, input: Uint8Array): [Uint8Array, Uint8Array, Uint8Array] {
  const [t1, t2, t3] = kdf(key, input, 3);
  return [t1, t2, t3];
}

// ---------------------------------------------------------------------------
// AEAD (whitepaper §5.4: AEAD = ChaCha20-Poly1305 per RFC 8439, XAEAD = XChaCha20-Poly1305)
// ---------------------------------------------------------------------------

/** ChaCha20-Poly1305 (RFC 8439 §2.8) with an explicit 12-byte nonce: ciphertext || tag. */
export function chachaPolySeal(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  ad: Uint8Array,
): Uint8Array {
  checkBytes(key, 'key', KEY_SIZE);
  checkBytes(nonce, 'nonce', CHACHA_NONCE_SIZE);
  checkBytes(plaintext, 'plaintext');
  checkBytes(ad, 'ad');
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_SIZE });
  cipher.setAAD(ad, { plaintextLength: plaintext.length });
  const encrypted = cipher.update(plaintext);
  cipher.final();
  const out = new Uint8Array(plaintext.length + AEAD_TAG_SIZE);
  out.set(encrypted, 0);
  out.set(cipher.getAuthTag(), plaintext.length);
  return out;
}

/** Opens what chachaPolySeal made; null when the tag does not verify or the input is short. */
export function chachaPolyOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  ad: Uint8Array,
): Uint8Array | null {
  checkBytes(key, 'key', KEY_SIZE);
  checkBytes(nonce, 'nonce', CHACHA_NONCE_SIZE);
  checkBytes(ciphertext, 'ciphertext');
  checkBytes(ad, 'ad');
  if (ciphertext.length < AEAD_TAG_SIZE) return null;
  const bodyLength = ciphertext.length - AEAD_TAG_SIZE;
  const decipher = createDecipheriv('chacha20-poly1305', key, nonce, {
    authTagLength: AEAD_TAG_SIZE,
  });
  decipher.setAAD(ad, { plaintextLength: bodyLength });
  decipher.setAuthTag(ciphertext.subarray(bodyLength));
  const plaintext = decipher.update(ciphertext.subarray(0, bodyLength));
  try {
    decipher.final();
  } catch {
    plaintext.fill(0);
    return null;
  }
  return plain(plaintext);
}

/**
 * Writes WireGuard's AEAD nonce: 32 zero bits then the 64-bit counter little-endian
 * (§5.4.6). `nonce` is a caller-owned 12-byte buffer so the data path can reuse it.
 */
export function writeCounterNonce(nonce: Uint8Array, counter: bigint): Uint8Array {
  checkBytes(nonce, 'nonce', CHACHA_NONCE_SIZE);
  checkCounter(counter, 'counter');
  nonce[0] = nonce[1] = nonce[2] = nonce[3] = 0;
  const low = Number(counter & 0xffffffffn);
  const high = Number(counter >> 32n);
  nonce[4] = low & 0xff;
  nonce[5] = (low >>> 8) & 0xff;
  nonce[6] = (low >>> 16) & 0xff;
  nonce[7] = low >>> 24;
  nonce[8] = high & 0xff;
  nonce[9] = (high >>> 8) & 0xff;
  nonce[10] = (high >>> 16) & 0xff;
  nonce[11] = high >>> 24;
  return nonce;
}

/** AEAD(key, counter, plaintext, ad) of §5.4: ChaCha20-Poly1305 with the counter nonce. */
export function aeadSeal(
  key: Uint8Array,
  counter: bigint,
  plaintext: Uint8Array,
  ad: Uint8Array,
): Uint8Array {
  return chachaPolySeal(key, writeCounterNonce(new Uint8Array(12), counter), plaintext, ad);
}

/** Inverse of aeadSeal; null when authentication fails. */
export function aeadOpen(
  key: Uint8Array,
  counter: bigint,
  ciphertext: Uint8Array,
  ad: Uint8Array,
): Uint8Array | null {
  return chachaPolyOpen(key, writeCounterNonce(new Uint8Array(12), counter), ciphertext, ad);
}

/** XAEAD(key, nonce, plaintext, ad) of §5.4: XChaCha20-Poly1305, 24-byte nonce. */
export function xaeadSeal(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  ad: Uint8Array,
): Uint8Array {
  checkBytes(key, 'key', KEY_SIZE);
  checkBytes(nonce, 'nonce', COOKIE_NONCE_SIZE);
  checkBytes(plaintext, 'plaintext');
  checkBytes(ad, 'ad');
  return xchacha20poly1305(key, nonce, ad).encrypt(plaintext);
}

/** Inverse of xaeadSeal; null when authentication fails. */
export function xaeadOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  ciphertext: Uint8Array,
  ad: Uint8Array,
): Uint8Array | null {
  checkBytes(key, 'key', KEY_SIZE);
  checkBytes(nonce, 'nonce', COOKIE_NONCE_SIZE);
  checkBytes(ciphertext, 'ciphertext');
  checkBytes(ad, 'ad');
  if (ciphertext.length < AEAD_TAG_SIZE) return null;
  try {
    return xchacha20poly1305(key, nonce, ad).decrypt(ciphertext);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------
// Curve25519 (whitepaper §5.4: DH, DH-Generate, DH-Pubkey)
// ---------------------------------------------------------------------------

// RFC 8410 DER wrappers for raw X25519 keys (the slow fallback path, see top).
const PKCS8_X25519_PREFIX = Uint8Array.of(
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x6e,
  0x04,
  0x22,
  0x04,
  0x20,
);
const SPKI_X25519_PREFIX = Uint8Array.of(
  0x30,
  0x2a,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x6e,
  0x03,
  0x21,
  0x00,
);

function toBase64Url(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('base64url');
}

function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** Makes an OpenSSL private KeyObject from a raw 32-byte X25519 scalar. */
export function privateKeyObject(privateKey: Uint8Array): KeyObject {
  checkBytes(privateKey, 'privateKey', KEY_SIZE);
  try {
    // Node 20 derives the public half from `d` itself; `x` only has to be a string.
    return createPrivateKey({
      key: { kty: 'OKP', crv: 'X25519', d: toBase64Url(privateKey), x: '' },
      format: 'jwk',
    });
  } catch {
    const der = concatBytes(PKCS8_X25519_PREFIX, privateKey);
    try {
      return createPrivateKey({ key: Buffer.from(der.buffer), format: 'der', type: 'pkcs8' });
    } finally {
      der.fill(0);
    }
  }
}

/** Makes an OpenSSL public KeyObject from a raw 32-byte X25519 u-coordinate. */
export function publicKeyObject(publicKey: Uint8Array): KeyObject {
  checkBytes(publicKey, 'publicKey', KEY_SIZE);
  try {
    return createPublicKey({
      key: { kty: 'OKP', crv: 'X25519', x: toBase64Url(publicKey) },
      format: 'jwk',
    });
  } catch {
    const der = concatBytes(SPKI_X25519_PREFIX, publicKey);
    return createPublicKey({ key: Buffer.from(der.buffer), format: 'der', type: 'spki' });
  }
}

/** The raw 32-byte public key of an X25519 KeyObject (private or public). */
export function rawPublicKey(key: KeyObject): Uint8Array {
  const jwk = key.export({ format: 'jwk' });
  if (typeof jwk.x !== 'string') throw new Error('X25519 key has no public part');
  const raw = Buffer.from(jwk.x, 'base64url');
  if (raw.length !== KEY_SIZE) throw new Error('X25519 public key is not 32 bytes');
  return Uint8Array.from(raw);
}

interface CachedPrivateKey {
  readonly copy: Uint8Array;
  readonly key: KeyObject;
}

/**
 * Private KeyObjects by the identity of the caller's array. Static private keys
 * are long-lived arrays used for every handshake; importing one costs as much as
 * a DH. A hit is re-checked byte for byte, so a caller that rewrites (or wipes)
 * its array never gets a stale key.
 */
const privateKeyCache = new WeakMap<Uint8Array, CachedPrivateKey>();

/** A cached private KeyObject for a raw private key (see privateKeyCache). */
export function cachedPrivateKeyObject(privateKey: Uint8Array): KeyObject {
  checkBytes(privateKey, 'privateKey', KEY_SIZE);
  const cached = privateKeyCache.get(privateKey);
  if (cached !== undefined && timingSafeEqual(cached.copy, privateKey)) return cached.key;
  const key = privateKeyObject(privateKey);
  privateKeyCache.set(privateKey, { copy: Uint8Array.from(privateKey), key });
  return key;
}

/** DH-Generate(): 32 random bytes clamped as RFC 7748 §5 decodeScalar25519 does. */
export function generatePrivateKey(): Uint8Array {
  const privateKey = new Uint8Array(randomBytes(KEY_SIZE));
  privateKey[0] &= 248;
  privateKey[31] &= 127;
  privateKey[31] |= 64;
  return privateKey;
}

/**
 * A fresh X25519 key pair for an ephemeral: a private KeyObject and the raw public key.
 *
 * Not crypto.generateKeyPairSync: on Node 20.20 exporting a key it generated can
 * deadlock the process (seen here within ~12,000 calls): the export holds the key's
 * mutex while allocating, the allocation runs the garbage collector, and the
 * collected KeyGenJob's destructor takes the same mutex (gdb:
 * ~KeyGenJob -> uv_mutex_lock under ExportJWKEdKey). Importing random bytes costs
 * the same (~50 µs, the public key is derived once either way) and shares nothing.
 */
export function generateKeyPair(): { privateKey: KeyObject; publicKey: Uint8Array } {
  const scalar = generatePrivateKey();
  const privateKey = privateKeyObject(scalar);
  scalar.fill(0);
  return { privateKey, publicKey: rawPublicKey(privateKey) };
}

/** DH-Pubkey(private): the X25519 public key of a raw private key. */
export function publicKeyFrom(privateKey: Uint8Array): Uint8Array {
  return rawPublicKey(cachedPrivateKeyObject(privateKey));
}

/**
 * DH with a private KeyObject. Null when the peer's key is a low-order point: the
 * shared secret would be all zero, which OpenSSL refuses (and which WireGuard
 * rejects, as wireguard-go's sharedSecret does via isZero).
 */
export function dhWithKeyObject(privateKey: KeyObject, publicKey: Uint8Array): Uint8Array | null {
  checkBytes(publicKey, 'publicKey', KEY_SIZE);
  let shared: Uint8Array;
  try {
    shared = plain(diffieHellman({ privateKey, publicKey: publicKeyObject(publicKey) }));
  } catch {
    return null;
  }
  if (shared.length !== KEY_SIZE || isAllZero(shared)) return null;
  return shared;
}

/** DH(private, public) = X25519 (RFC 7748); null on a low-order public key. */
export function dh(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array | null {
  checkBytes(privateKey, 'privateKey', KEY_SIZE);
  checkBytes(publicKey, 'publicKey', KEY_SIZE);
  return dhWithKeyObject(cachedPrivateKeyObject(privateKey), publicKey);
}
