/**
 * The Noise_IKpsk2 handshake exactly as the whitepaper §5.4.2–§5.4.5 writes it,
 * step for step as wireguard-go's device/noise-protocol.go runs it:
 *
 *   initiator                                        responder
 *   createInitiation  ── initiation (148 bytes) ──▶  consumeInitiation
 *   consumeResponse   ◀── response (92 bytes) ────  createResponse
 *
 * Pure functions over bytes. Index tables, timestamp replay checks, the
 * initiation rate limit and the cookie MACs are the caller's business (the
 * messages leave here with mac1/mac2 zero; cookie.ts fills them in).
 *
 * Every consume* returns null on any failure and leaves the state it was given
 * untouched, so a forged packet can never spoil a handshake in progress. On
 * success the state's secrets are wiped and the state can not be used again.
 */
import type { KeyObject } from 'node:crypto';
import {
  CONSTRUCTION,
  IDENTIFIER,
  KEY_SIZE,
  MESSAGE_INITIATION,
  MESSAGE_INITIATION_SIZE,
  MESSAGE_RESPONSE,
  MESSAGE_RESPONSE_SIZE,
  TIMESTAMP_SIZE,
} from './constants.js';
import {
  aeadOpen,
  aeadSeal,
  cachedPrivateKeyObject,
  constantTimeEqual,
  dhWithKeyObject,
  generateKeyPair,
  hash,
  isAllZero,
  kdf1,
  kdf2,
  kdf3,
  privateKeyObject,
  rawPublicKey,
} from './crypto.js';
import {
  INITIATION_OFFSET_EPHEMERAL,
  INITIATION_OFFSET_MAC1,
  INITIATION_OFFSET_SENDER,
  INITIATION_OFFSET_STATIC,
  INITIATION_OFFSET_TIMESTAMP,
  RESPONSE_OFFSET_EMPTY,
  RESPONSE_OFFSET_EPHEMERAL,
  RESPONSE_OFFSET_MAC1,
  RESPONSE_OFFSET_RECEIVER,
  RESPONSE_OFFSET_SENDER,
  readUint32LE,
  writeUint32LE,
} from './messages.js';

const textEncoder = new TextEncoder();

/** C_i = HASH(CONSTRUCTION) (§5.4.2). */
export const INITIAL_CHAINING_KEY: Uint8Array = hash(textEncoder.encode(CONSTRUCTION));
/** H_i = HASH(C_i || IDENTIFIER) (§5.4.2), before the responder's static key is mixed in. */
export const INITIAL_HASH: Uint8Array = hash(INITIAL_CHAINING_KEY, textEncoder.encode(IDENTIFIER));

const EMPTY = new Uint8Array(0);
const ZERO_COUNTER = 0n;

interface CachedHash {
  readonly publicKey: Uint8Array;
  readonly hash: Uint8Array;
}
/**
 * HASH(H_i || S_r^pub) depends only on the responder's static key: cached per
 * key array (the local identity's, or a peer's), re-checked byte for byte.
 */
const responderHashCache = new WeakMap<Uint8Array, CachedHash>();

function initialResponderHash(responderPublicKey: Uint8Array): Uint8Array {
  const cached = responderHashCache.get(responderPublicKey);
  if (cached !== undefined && constantTimeEqual(cached.publicKey, responderPublicKey)) {
    return cached.hash;
  }
  const computed = hash(INITIAL_HASH, responderPublicKey);
  responderHashCache.set(responderPublicKey, {
    publicKey: Uint8Array.from(responderPublicKey),
    hash: computed,
  });
  return computed;
}

export interface StaticIdentity {
  readonly privateKey: Uint8Array;
  readonly publicKey: Uint8Array;
}

export interface TransportKeys {
  sendKey: Uint8Array;
  receiveKey: Uint8Array;
}

/** What the initiator keeps between sending the initiation and receiving the response. */
export interface InitiatorState {
  readonly peerPublicKey: Uint8Array;
  readonly localIndex: number;
  /** H_i after the initiation (§5.4.2); zeroed once consumed. */
  readonly hash: Uint8Array;
  /** C_i after the initiation (§5.4.2); zeroed once consumed. */
  readonly chainingKey: Uint8Array;
  /** E_i^priv; dropped once consumed. */
  ephemeralPrivate: KeyObject | null;
  consumed: boolean;
}

/** What the responder keeps between consuming an initiation and creating the response. */
export interface ResponderState {
  readonly peerPublicKey: Uint8Array;
  readonly remoteIndex: number;
  readonly remoteEphemeral: Uint8Array;
  /** H_r after the initiation (§5.4.2); zeroed once the response is created. */
  readonly hash: Uint8Array;
  /** C_r after the initiation (§5.4.2); zeroed once the response is created. */
  readonly chainingKey: Uint8Array;
  consumed: boolean;
}

function checkBytes(value: unknown, name: string, length: number): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array) || value.length !== length) {
    throw new RangeError(`${name} must be a ${length}-byte Uint8Array`);
  }
}

function checkIdentity(local: unknown): asserts local is StaticIdentity {
  if (typeof local !== 'object' || local === null) {
    throw new TypeError('local must be a StaticIdentity { privateKey, publicKey }');
  }
  const identity = local as Partial<StaticIdentity>;
  checkBytes(identity.privateKey, 'local.privateKey', KEY_SIZE);
  checkBytes(identity.publicKey, 'local.publicKey', KEY_SIZE);
}

function checkIndex(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`${name} must be an integer in [0, 2^32 - 1]`);
  }
}

function wipe(...secrets: (Uint8Array | null)[]): void {
  for (const secret of secrets) secret?.fill(0);
}

/**
 * The initiation, §5.4.2. Returns null when a DH result is zero (a low-order
 * peer public key).
 */
export function createInitiation(a: {
  local: StaticIdentity;
  peerPublicKey: Uint8Array;
  /** DH(S_i^priv, S_r^pub), precomputed per peer as wireguard-go does. */
  staticStatic?: Uint8Array;
  localIndex: number;
  /** TAI64N timestamp (tai64n.ts). */
  timestamp: Uint8Array;
  /** E_i^priv; only tests pass one, to get reproducible messages. */
  ephemeralPrivateKey?: Uint8Array;
}): { message: Uint8Array; state: InitiatorState } | null {
  checkIdentity(a.local);
  checkBytes(a.peerPublicKey, 'peerPublicKey', KEY_SIZE);
  if (a.staticStatic !== undefined) checkBytes(a.staticStatic, 'staticStatic', KEY_SIZE);
  checkIndex(a.localIndex, 'localIndex');
  checkBytes(a.timestamp, 'timestamp', TIMESTAMP_SIZE);
  if (a.ephemeralPrivateKey !== undefined) {
    checkBytes(a.ephemeralPrivateKey, 'ephemeralPrivateKey', KEY_SIZE);
  }

  let ephemeralPrivate: KeyObject;
  let ephemeralPublic: Uint8Array;
  if (a.ephemeralPrivateKey === undefined) {
    ({ privateKey: ephemeralPrivate, publicKey: ephemeralPublic } = generateKeyPair());
  } else {
    ephemeralPrivate = privateKeyObject(a.ephemeralPrivateKey);
    ephemeralPublic = rawPublicKey(ephemeralPrivate);
  }

  const message = new Uint8Array(MESSAGE_INITIATION_SIZE);
  message[0] = MESSAGE_INITIATION;
  writeUint32LE(message, INITIATION_OFFSET_SENDER, a.localIndex);

  // H_i = HASH(H_i || S_r^pub); C_i = KDF1(C_i, E_i^pub); H_i = HASH(H_i || msg.ephemeral)
  let h = hash(initialResponderHash(a.peerPublicKey), ephemeralPublic);
  let [ck] = kdf1(INITIAL_CHAINING_KEY, ephemeralPublic);
  message.set(ephemeralPublic, INITIATION_OFFSET_EPHEMERAL);

  // (C_i, κ) = KDF2(C_i, DH(E_i^priv, S_r^pub)); msg.static = AEAD(κ, 0, S_i^pub, H_i)
  const ephemeralStatic = dhWithKeyObject(ephemeralPrivate, a.peerPublicKey);
  if (ephemeralStatic === null) {
    wipe(ck);
    return null;
  }
  let key: Uint8Array;
  let previousCk = ck;
  [ck, key] = kdf2(ck, ephemeralStatic);
  wipe(previousCk, ephemeralStatic);
  const encryptedStatic = aeadSeal(key, ZERO_COUNTER, a.local.publicKey, h);
  wipe(key);
  message.set(encryptedStatic, INITIATION_OFFSET_STATIC);
  h = hash(h, encryptedStatic);

  // (C_i, κ) = KDF2(C_i, DH(S_i^priv, S_r^pub)); msg.timestamp = AEAD(κ, 0, TAI64N, H_i)
  const staticStatic =
    a.staticStatic ?? dhWithKeyObject(cachedPrivateKeyObject(a.local.privateKey), a.peerPublicKey);
  if (staticStatic === null || isAllZero(staticStatic)) {
    wipe(ck);
    return null;
  }
  previousCk = ck;
  [ck, key] = kdf2(ck, staticStatic);
  wipe(previousCk);
  if (a.staticStatic === undefined) wipe(staticStatic);
  const encryptedTimestamp = aeadSeal(key, ZERO_COUNTER, a.timestamp, h);
  wipe(key);
  message.set(encryptedTimestamp, INITIATION_OFFSET_TIMESTAMP);
  h = hash(h, encryptedTimestamp);

  return {
    message,
    state: {
      peerPublicKey: Uint8Array.from(a.peerPublicKey),
      localIndex: a.localIndex,
      hash: h,
      chainingKey: ck,
      ephemeralPrivate,
      consumed: false,
    },
  };
}

/**
 * Consumes an initiation as its responder (§5.4.2). The caller must still check
 * that `peerPublicKey` is a configured peer, that `timestamp` is greater than the
 * greatest seen from it (compareTai64n) and the initiation rate limit — then it
 * calls createResponse. The PSK is not needed yet: IKpsk2 mixes it in the response.
 *
 * `staticStaticFor` lets the caller supply the peer's precomputed DH(S_r, S_i)
 * (and say "unknown peer" with null before any further DH is spent, as
 * wireguard-go does); without it the DH is computed here.
 */
export function consumeInitiation(
  local: StaticIdentity,
  message: Uint8Array,
  staticStaticFor?: (peerPublicKey: Uint8Array) => Uint8Array | null,
): {
  peerPublicKey: Uint8Array;
  timestamp: Uint8Array;
  remoteIndex: number;
  state: ResponderState;
} | null {
  checkIdentity(local);
  if (!(message instanceof Uint8Array)) throw new TypeError('message must be a Uint8Array');
  if (
    message.length !== MESSAGE_INITIATION_SIZE ||
    message[0] !== MESSAGE_INITIATION ||
    (message[1] | message[2] | message[3]) !== 0
  ) {
    return null;
  }
  const localPrivate = cachedPrivateKeyObject(local.privateKey);
  const ephemeral = message.subarray(INITIATION_OFFSET_EPHEMERAL, INITIATION_OFFSET_STATIC);
  const encryptedStatic = message.subarray(INITIATION_OFFSET_STATIC, INITIATION_OFFSET_TIMESTAMP);
  const encryptedTimestamp = message.subarray(INITIATION_OFFSET_TIMESTAMP, INITIATION_OFFSET_MAC1);

  // H_r = HASH(HASH(H_i || S_r^pub) || msg.ephemeral); C_r = KDF1(C_i, msg.ephemeral)
  let h = hash(initialResponderHash(local.publicKey), ephemeral);
  let [ck] = kdf1(INITIAL_CHAINING_KEY, ephemeral);

  // (C_r, κ) = KDF2(C_r, DH(S_r^priv, E_i^pub)); S_i^pub = AEAD-open(κ, 0, msg.static, H_r)
  const ephemeralStatic = dhWithKeyObject(localPrivate, ephemeral);
  if (ephemeralStatic === null) {
    wipe(ck);
    return null;
  }
  let key: Uint8Array;
  let previousCk = ck;
  [ck, key] = kdf2(ck, ephemeralStatic);
  wipe(previousCk, ephemeralStatic);
  const peerPublicKey = aeadOpen(key, ZERO_COUNTER, encryptedStatic, h);
  wipe(key);
  if (peerPublicKey === null) {
    wipe(ck);
    return null;
  }
  h = hash(h, encryptedStatic);

  // (C_r, κ) = KDF2(C_r, DH(S_r^priv, S_i^pub)); timestamp = AEAD-open(κ, 0, msg.timestamp, H_r)
  const suppliedStaticStatic = staticStaticFor?.(peerPublicKey);
  const staticStatic =
    staticStaticFor === undefined
      ? dhWithKeyObject(localPrivate, peerPublicKey)
      : suppliedStaticStatic;
  if (staticStatic === null || staticStatic === undefined || isAllZero(staticStatic)) {
    wipe(ck);
    return null;
  }
  checkBytes(staticStatic, 'staticStatic', KEY_SIZE);
  previousCk = ck;
  [ck, key] = kdf2(ck, staticStatic);
  wipe(previousCk);
  if (staticStaticFor === undefined) wipe(staticStatic);
  const timestamp = aeadOpen(key, ZERO_COUNTER, encryptedTimestamp, h);
  wipe(key);
  if (timestamp === null) {
    wipe(ck);
    return null;
  }
  h = hash(h, encryptedTimestamp);

  const remoteIndex = readUint32LE(message, INITIATION_OFFSET_SENDER);
  return {
    peerPublicKey,
    timestamp,
    remoteIndex,
    state: {
      peerPublicKey,
      remoteIndex,
      remoteEphemeral: Uint8Array.from(ephemeral),
      hash: h,
      chainingKey: ck,
      consumed: false,
    },
  };
}

/**
 * The response, §5.4.3, and the responder's transport keys, §5.4.5:
 * (T_r^recv, T_r^send) = KDF2(C_r, ε). Returns null when a DH result is zero or
 * the state was already used.
 */
export function createResponse(a: {
  state: ResponderState;
  /** Q: 32 zero bytes when the peer has no preshared key. */
  presharedKey: Uint8Array;
  localIndex: number;
  /** E_r^priv; only tests pass one, to get reproducible messages. */
  ephemeralPrivateKey?: Uint8Array;
}): { message: Uint8Array; keys: TransportKeys; remoteIndex: number } | null {
  const state = a.state;
  if (typeof state !== 'object' || !(state.chainingKey instanceof Uint8Array)) {
    throw new TypeError('state must be a ResponderState from consumeInitiation');
  }
  checkBytes(a.presharedKey, 'presharedKey', KEY_SIZE);
  checkIndex(a.localIndex, 'localIndex');
  if (a.ephemeralPrivateKey !== undefined) {
    checkBytes(a.ephemeralPrivateKey, 'ephemeralPrivateKey', KEY_SIZE);
  }
  if (state.consumed) return null;

  let ephemeralPrivate: KeyObject;
  let ephemeralPublic: Uint8Array;
  if (a.ephemeralPrivateKey === undefined) {
    ({ privateKey: ephemeralPrivate, publicKey: ephemeralPublic } = generateKeyPair());
  } else {
    ephemeralPrivate = privateKeyObject(a.ephemeralPrivateKey);
    ephemeralPublic = rawPublicKey(ephemeralPrivate);
  }

  const message = new Uint8Array(MESSAGE_RESPONSE_SIZE);
  message[0] = MESSAGE_RESPONSE;
  writeUint32LE(message, RESPONSE_OFFSET_SENDER, a.localIndex);
  writeUint32LE(message, RESPONSE_OFFSET_RECEIVER, state.remoteIndex);
  message.set(ephemeralPublic, RESPONSE_OFFSET_EPHEMERAL);

  // C_r = KDF1(C_r, E_r^pub); H_r = HASH(H_r || msg.ephemeral)
  let [ck] = kdf1(state.chainingKey, ephemeralPublic);
  let h = hash(state.hash, ephemeralPublic);

  // C_r = KDF1(C_r, DH(E_r^priv, E_i^pub)); C_r = KDF1(C_r, DH(E_r^priv, S_i^pub))
  const ephemeralEphemeral = dhWithKeyObject(ephemeralPrivate, state.remoteEphemeral);
  if (ephemeralEphemeral === null) {
    wipe(ck);
    return null;
  }
  let previousCk = ck;
  [ck] = kdf1(ck, ephemeralEphemeral);
  wipe(previousCk, ephemeralEphemeral);
  const ephemeralStatic = dhWithKeyObject(ephemeralPrivate, state.peerPublicKey);
  if (ephemeralStatic === null) {
    wipe(ck);
    return null;
  }
  previousCk = ck;
  [ck] = kdf1(ck, ephemeralStatic);
  wipe(previousCk, ephemeralStatic);

  // (C_r, τ, κ) = KDF3(C_r, Q); H_r = HASH(H_r || τ); msg.empty = AEAD(κ, 0, ε, H_r)
  previousCk = ck;
  const [ck3, tau, key] = kdf3(ck, a.presharedKey);
  ck = ck3;
  wipe(previousCk);
  h = hash(h, tau);
  wipe(tau);
  const encryptedNothing = aeadSeal(key, ZERO_COUNTER, EMPTY, h);
  wipe(key);
  message.set(encryptedNothing, RESPONSE_OFFSET_EMPTY);
  // The final H_r = HASH(H_r || msg.empty) feeds nothing later in WireGuard: skipped.

  // §5.4.5: (T_r^recv, T_r^send) = KDF2(C_r, ε)
  const [receiveKey, sendKey] = kdf2(ck, EMPTY);
  wipe(ck, h, state.chainingKey, state.hash);
  state.consumed = true;
  return { message, keys: { sendKey, receiveKey }, remoteIndex: state.remoteIndex };
}

/**
 * Consumes the response as the initiator (§5.4.3) and derives the initiator's
 * transport keys, §5.4.5: (T_i^send, T_i^recv) = KDF2(C_i, ε).
 * Null when the message is not a response to this state or does not authenticate
 * (wrong PSK, tampering, low-order ephemeral); the state is then left usable.
 */
export function consumeResponse(
  state: InitiatorState,
  local: StaticIdentity,
  presharedKey: Uint8Array,
  message: Uint8Array,
): { keys: TransportKeys; remoteIndex: number } | null {
  if (typeof state !== 'object' || !(state.chainingKey instanceof Uint8Array)) {
    throw new TypeError('state must be an InitiatorState from createInitiation');
  }
  checkIdentity(local);
  checkBytes(presharedKey, 'presharedKey', KEY_SIZE);
  if (!(message instanceof Uint8Array)) throw new TypeError('message must be a Uint8Array');
  if (
    message.length !== MESSAGE_RESPONSE_SIZE ||
    message[0] !== MESSAGE_RESPONSE ||
    (message[1] | message[2] | message[3]) !== 0 ||
    readUint32LE(message, RESPONSE_OFFSET_RECEIVER) !== state.localIndex ||
    state.consumed ||
    state.ephemeralPrivate === null
  ) {
    return null;
  }
  const ephemeral = message.subarray(RESPONSE_OFFSET_EPHEMERAL, RESPONSE_OFFSET_EMPTY);
  const encryptedNothing = message.subarray(RESPONSE_OFFSET_EMPTY, RESPONSE_OFFSET_MAC1);

  // C_i = KDF1(C_i, E_r^pub); H_i = HASH(H_i || msg.ephemeral)
  let [ck] = kdf1(state.chainingKey, ephemeral);
  let h = hash(state.hash, ephemeral);

  // C_i = KDF1(C_i, DH(E_i^priv, E_r^pub)); C_i = KDF1(C_i, DH(S_i^priv, E_r^pub))
  const ephemeralEphemeral = dhWithKeyObject(state.ephemeralPrivate, ephemeral);
  if (ephemeralEphemeral === null) {
    wipe(ck);
    return null;
  }
  let previousCk = ck;
  [ck] = kdf1(ck, ephemeralEphemeral);
  wipe(previousCk, ephemeralEphemeral);
  const staticEphemeral = dhWithKeyObject(cachedPrivateKeyObject(local.privateKey), ephemeral);
  if (staticEphemeral === null) {
    wipe(ck);
    return null;
  }
  previousCk = ck;
  [ck] = kdf1(ck, staticEphemeral);
  wipe(previousCk, staticEphemeral);

  // (C_i, τ, κ) = KDF3(C_i, Q); H_i = HASH(H_i || τ); AEAD-open(κ, 0, msg.empty, H_i)
  previousCk = ck;
  const [ck3, tau, key] = kdf3(ck, presharedKey);
  ck = ck3;
  wipe(previousCk);
  h = hash(h, tau);
  wipe(tau);
  const nothing = aeadOpen(key, ZERO_COUNTER, encryptedNothing, h);
  wipe(key, h);
  if (nothing === null) {
    wipe(ck);
    return null;
  }

  // §5.4.5: (T_i^send, T_i^recv) = KDF2(C_i, ε)
  const [sendKey, receiveKey] = kdf2(ck, EMPTY);
  wipe(ck, state.chainingKey, state.hash);
  state.ephemeralPrivate = null;
  state.consumed = true;
  return {
    keys: { sendKey, receiveKey },
    remoteIndex: readUint32LE(message, RESPONSE_OFFSET_SENDER),
  };
}

/** Wipes a handshake state that will not be completed (timeout, new attempt). */
export function discardHandshakeState(state: InitiatorState | ResponderState): void {
  wipe(state.chainingKey, state.hash);
  if ('ephemeralPrivate' in state) state.ephemeralPrivate = null;
  state.consumed = true;
}
