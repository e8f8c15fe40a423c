/**
 * The cookie MACs of the handshake messages (whitepaper §5.4.4, §5.4.7, §6.6),
 * mirroring wireguard-go device/cookie.go:
 *
 *   msg.mac1 = MAC(HASH(LABEL_MAC1 || S_receiver^pub), msg[0 : len-32])
 *   msg.mac2 = MAC(cookie, msg[0 : len-16])       (zero when no fresh cookie is held)
 *   cookie   = MAC(R_m, source IP bytes || source port big-endian)
 *   reply    = XAEAD(HASH(LABEL_COOKIE || S_receiver^pub), nonce, cookie, msg.mac1)
 *
 * where R_m is a random secret the checker renews every COOKIE_SECRET_MAX_AGE.
 * `now` is always the caller's monotonic clock in milliseconds; nothing here
 * reads a clock.
 */
import { randomBytes } from 'node:crypto';
import {
  COOKIE_NONCE_SIZE,
  COOKIE_REFRESH_TIME,
  COOKIE_SECRET_MAX_AGE,
  COOKIE_SIZE,
  KEY_SIZE,
  LABEL_COOKIE,
  LABEL_MAC1,
  MAC_SIZE,
  MESSAGE_COOKIE_REPLY,
  MESSAGE_COOKIE_REPLY_SIZE,
  MESSAGE_INITIATION_SIZE,
  MESSAGE_RESPONSE_SIZE,
} from './constants.js';
import { KeyedMac, constantTimeEqual, hash, mac, xaeadOpen, xaeadSeal } from './crypto.js';
import {
  COOKIE_REPLY_OFFSET_COOKIE,
  COOKIE_REPLY_OFFSET_NONCE,
  COOKIE_REPLY_OFFSET_RECEIVER,
  writeUint32LE,
} from './messages.js';

const textEncoder = new TextEncoder();
const LABEL_MAC1_BYTES = textEncoder.encode(LABEL_MAC1);
const LABEL_COOKIE_BYTES = textEncoder.encode(LABEL_COOKIE);

/** HASH(LABEL_MAC1 || public key): the key of mac1 for messages sent to that key's owner. */
export function mac1Key(publicKey: Uint8Array): Uint8Array {
  checkKey(publicKey, 'publicKey');
  return hash(LABEL_MAC1_BYTES, publicKey);
}

/** HASH(LABEL_COOKIE || public key): the XAEAD key of cookie replies from that key's owner. */
export function cookieKey(publicKey: Uint8Array): Uint8Array {
  checkKey(publicKey, 'publicKey');
  return hash(LABEL_COOKIE_BYTES, publicKey);
}

function checkKey(key: unknown, name: string): asserts key is Uint8Array {
  if (!(key instanceof Uint8Array) || key.length !== KEY_SIZE) {
    throw new RangeError(`${name} must be a ${KEY_SIZE}-byte Uint8Array`);
  }
}

function checkTime(now: unknown): asserts now is number {
  if (typeof now !== 'number' || Number.isNaN(now)) {
    throw new TypeError('now must be a number of milliseconds');
  }
}

function checkSource(source: unknown): asserts source is Uint8Array {
  if (!(source instanceof Uint8Array) || source.length === 0) {
    throw new TypeError('source must be the non-empty bytes of IP address || port');
  }
}

/** True when `message` has the size of a handshake message that carries MACs. */
function isMacCarrier(message: unknown): message is Uint8Array {
  return (
    message instanceof Uint8Array &&
    (message.length === MESSAGE_INITIATION_SIZE || message.length === MESSAGE_RESPONSE_SIZE)
  );
}

function checkMacCarrier(message: unknown): asserts message is Uint8Array {
  if (!isMacCarrier(message)) {
    throw new RangeError(
      `message must be a handshake initiation (${MESSAGE_INITIATION_SIZE} bytes) or response (${MESSAGE_RESPONSE_SIZE} bytes)`,
    );
  }
}

/**
 * The receiving side: checks mac1/mac2 of incoming handshake messages with the
 * local public key, and makes cookie replies when under load.
 */
export class CookieChecker {
  #mac1: KeyedMac | null = null;
  #encryptionKey: Uint8Array | null = null;
  readonly #secret = new Uint8Array(KEY_SIZE);
  #secretSetAt = Number.NEGATIVE_INFINITY;

  /** `localPublicKey` null means no identity yet: every mac1 check fails. */
  constructor(localPublicKey: Uint8Array | null) {
    this.setLocalPublicKey(localPublicKey);
  }

  /** Rekeys for a new local identity; the current secret is dropped. */
  setLocalPublicKey(localPublicKey: Uint8Array | null): void {
    this.#mac1?.destroy();
    this.#encryptionKey?.fill(0);
    if (localPublicKey === null) {
      this.#mac1 = null;
      this.#encryptionKey = null;
    } else {
      checkKey(localPublicKey, 'localPublicKey');
      const key = mac1Key(localPublicKey);
      this.#mac1 = new KeyedMac(key);
      key.fill(0);
      this.#encryptionKey = cookieKey(localPublicKey);
    }
    this.#secret.fill(0);
    this.#secretSetAt = Number.NEGATIVE_INFINITY;
  }

  /** §5.4.4: is msg.mac1 right for our public key? False for anything not a handshake message. */
  checkMac1(message: Uint8Array): boolean {
    if (this.#mac1 === null || !isMacCarrier(message)) return false;
    const mac1Offset = message.length - 2 * MAC_SIZE;
    const expected = this.#mac1.compute(message.subarray(0, mac1Offset));
    return constantTimeEqual(expected, message.subarray(mac1Offset, mac1Offset + MAC_SIZE));
  }

  /**
   * §5.4.4: is msg.mac2 the MAC under the cookie we would give `source` now?
   * False when our secret is older than COOKIE_SECRET_MAX_AGE: any cookie the
   * sender holds came from an expired secret.
   * @param source the sender's IP address bytes (4 or 16) followed by its UDP port, big-endian.
   */
  checkMac2(message: Uint8Array, source: Uint8Array, now: number): boolean {
    checkSource(source);
    checkTime(now);
    if (!isMacCarrier(message)) return false;
    if (!(now - this.#secretSetAt <= COOKIE_SECRET_MAX_AGE)) return false;
    const cookie = mac(this.#secret, source);
    const mac2Offset = message.length - MAC_SIZE;
    const expected = mac(cookie, message.subarray(0, mac2Offset));
    cookie.fill(0);
    return constantTimeEqual(expected, message.subarray(mac2Offset));
  }

  /**
   * §5.4.7: the 64-byte cookie reply to a handshake message we are too loaded to
   * process. `receiverIndex` is the sender index of that message.
   */
  createReply(
    message: Uint8Array,
    receiverIndex: number,
    source: Uint8Array,
    now: number,
  ): Uint8Array {
    checkMacCarrier(message);
    if (!Number.isInteger(receiverIndex) || receiverIndex < 0 || receiverIndex > 0xffffffff) {
      throw new RangeError('receiverIndex must be an integer in [0, 2^32 - 1]');
    }
    checkSource(source);
    checkTime(now);
    const encryptionKey = this.#encryptionKey;
    if (encryptionKey === null) throw new Error('CookieChecker has no local public key');

    // §6.6: R_m changes every two minutes.
    if (!(now - this.#secretSetAt <= COOKIE_SECRET_MAX_AGE)) {
      const fresh = randomBytes(KEY_SIZE);
      this.#secret.set(fresh);
      fresh.fill(0);
      this.#secretSetAt = now;
    }
    const cookie = mac(this.#secret, source);
    const nonce = randomBytes(COOKIE_NONCE_SIZE);
    const mac1Offset = message.length - 2 * MAC_SIZE;
    const encryptedCookie = xaeadSeal(
      encryptionKey,
      nonce,
      cookie,
      message.subarray(mac1Offset, mac1Offset + MAC_SIZE),
    );
    cookie.fill(0);

    const reply = new Uint8Array(MESSAGE_COOKIE_REPLY_SIZE);
    reply[0] = MESSAGE_COOKIE_REPLY;
    writeUint32LE(reply, COOKIE_REPLY_OFFSET_RECEIVER, receiverIndex);
    reply.set(nonce, COOKIE_REPLY_OFFSET_NONCE);
    reply.set(encryptedCookie, COOKIE_REPLY_OFFSET_COOKIE);
    return reply;
  }
}

/**
 * The sending side, one per peer: adds mac1/mac2 to the handshake messages we
 * send that peer, and takes in the cookie replies it sends us.
 */
export class CookieGenerator {
  readonly #mac1: KeyedMac;
  readonly #encryptionKey: Uint8Array;
  readonly #cookie = new Uint8Array(COOKIE_SIZE);
  #cookieSetAt = Number.NEGATIVE_INFINITY;
  readonly #lastMac1 = new Uint8Array(MAC_SIZE);
  #hasLastMac1 = false;

  constructor(peerPublicKey: Uint8Array) {
    checkKey(peerPublicKey, 'peerPublicKey');
    const key = mac1Key(peerPublicKey);
    this.#mac1 = new KeyedMac(key);
    key.fill(0);
    this.#encryptionKey = cookieKey(peerPublicKey);
  }

  /**
   * Writes mac1, and mac2 when a cookie younger than COOKIE_REFRESH_TIME is held
   * (else zeros), into the last 32 bytes of `message` in place (§5.4.4).
   * Remembers mac1: a cookie reply is bound to it.
   */
  addMacs(message: Uint8Array, now: number): void {
    checkMacCarrier(message);
    checkTime(now);
    const mac1Offset = message.length - 2 * MAC_SIZE;
    const mac2Offset = message.length - MAC_SIZE;
    this.#mac1.compute(message.subarray(0, mac1Offset), message, mac1Offset);
    this.#lastMac1.set(message.subarray(mac1Offset, mac2Offset));
    this.#hasLastMac1 = true;
    if (now - this.#cookieSetAt < COOKIE_REFRESH_TIME) {
      message.set(mac(this.#cookie, message.subarray(0, mac2Offset)), mac2Offset);
    } else {
      message.fill(0, mac2Offset);
    }
  }

  /**
   * §5.4.7: decrypts a cookie reply to the last message we MACed and keeps the
   * cookie. False when it does not authenticate. As in the Linux kernel
   * (cookie.c), a reply is accepted once per message sent, so a replayed reply
   * can not renew an old cookie.
   */
  consumeReply(reply: Uint8Array, now: number): boolean {
    checkTime(now);
    if (
      !(reply instanceof Uint8Array) ||
      reply.length !== MESSAGE_COOKIE_REPLY_SIZE ||
      reply[0] !== MESSAGE_COOKIE_REPLY ||
      (reply[1] | reply[2] | reply[3]) !== 0 ||
      !this.#hasLastMac1
    ) {
      return false;
    }
    const cookie = xaeadOpen(
      this.#encryptionKey,
      reply.subarray(COOKIE_REPLY_OFFSET_NONCE, COOKIE_REPLY_OFFSET_COOKIE),
      reply.subarray(COOKIE_REPLY_OFFSET_COOKIE),
      this.#lastMac1,
    );
    if (cookie === null) return false;
    this.#cookie.set(cookie);
    cookie.fill(0);
    this.#cookieSetAt = now;
    this.#hasLastMac1 = false;
    return true;
  }

  /** True while a cookie younger than COOKIE_REFRESH_TIME is held (mac2 will be sent). */
  hasFreshCookie(now: number): boolean {
    return now - this.#cookieSetAt < COOKIE_REFRESH_TIME;
  }
}
