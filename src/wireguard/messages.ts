/**
 * The four WireGuard messages (whitepaper §5.4.2–§5.4.7) as byte layouts.
 * Integers are little-endian. Each message starts with a type byte and three
 * reserved zero bytes, which wireguard-go reads together as one little-endian
 * u32: a packet with any reserved bit set is not a WireGuard message and is
 * dropped silently, as are packets of the wrong size.
 *
 * Parsing never copies: every byte field is a subarray view of the packet.
 */
import {
  AEAD_TAG_SIZE,
  COOKIE_NONCE_SIZE,
  COOKIE_SIZE,
  KEY_SIZE,
  MAC_SIZE,
  MESSAGE_COOKIE_REPLY,
  MESSAGE_COOKIE_REPLY_SIZE,
  MESSAGE_INITIATION,
  MESSAGE_INITIATION_SIZE,
  MESSAGE_RESPONSE,
  MESSAGE_RESPONSE_SIZE,
  MESSAGE_TRANSPORT_DATA,
  MESSAGE_TRANSPORT_HEADER_SIZE,
  MESSAGE_TRANSPORT_MIN_SIZE,
  TIMESTAMP_SIZE,
} from './constants.js';

// §5.4.2 handshake initiation: type(4) sender(4) ephemeral(32) static(32+16)
// timestamp(12+16) mac1(16) mac2(16) = 148 bytes.
export const INITIATION_OFFSET_SENDER = 4;
export const INITIATION_OFFSET_EPHEMERAL = 8;
export const INITIATION_OFFSET_STATIC = 40;
export const INITIATION_OFFSET_TIMESTAMP = 88;
export const INITIATION_OFFSET_MAC1 = 116;
export const INITIATION_OFFSET_MAC2 = 132;
export const ENCRYPTED_STATIC_SIZE = KEY_SIZE + AEAD_TAG_SIZE;
export const ENCRYPTED_TIMESTAMP_SIZE = TIMESTAMP_SIZE + AEAD_TAG_SIZE;

// §5.4.3 handshake response: type(4) sender(4) receiver(4) ephemeral(32)
// empty(0+16) mac1(16) mac2(16) = 92 bytes.
export const RESPONSE_OFFSET_SENDER = 4;
export const RESPONSE_OFFSET_RECEIVER = 8;
export const RESPONSE_OFFSET_EPHEMERAL = 12;
export const RESPONSE_OFFSET_EMPTY = 44;
export const RESPONSE_OFFSET_MAC1 = 60;
export const RESPONSE_OFFSET_MAC2 = 76;

// §5.4.7 cookie reply: type(4) receiver(4) nonce(24) cookie(16+16) = 64 bytes.
export const COOKIE_REPLY_OFFSET_RECEIVER = 4;
export const COOKIE_REPLY_OFFSET_NONCE = 8;
export const COOKIE_REPLY_OFFSET_COOKIE = 32;
export const ENCRYPTED_COOKIE_SIZE = COOKIE_SIZE + AEAD_TAG_SIZE;

// §5.4.6 transport data: type(4) receiver(4) counter(8) packet(n+16).
export const TRANSPORT_OFFSET_RECEIVER = 4;
export const TRANSPORT_OFFSET_COUNTER = 8;
export const TRANSPORT_OFFSET_CONTENT = MESSAGE_TRANSPORT_HEADER_SIZE;

export interface InitiationMessage {
  readonly type: typeof MESSAGE_INITIATION;
  readonly senderIndex: number;
  readonly ephemeral: Uint8Array;
  readonly encryptedStatic: Uint8Array;
  readonly encryptedTimestamp: Uint8Array;
  readonly mac1: Uint8Array;
  readonly mac2: Uint8Array;
}

export interface ResponseMessage {
  readonly type: typeof MESSAGE_RESPONSE;
  readonly senderIndex: number;
  readonly receiverIndex: number;
  readonly ephemeral: Uint8Array;
  readonly encryptedNothing: Uint8Array;
  readonly mac1: Uint8Array;
  readonly mac2: Uint8Array;
}

export interface CookieReplyMessage {
  readonly type: typeof MESSAGE_COOKIE_REPLY;
  readonly receiverIndex: number;
  readonly nonce: Uint8Array;
  readonly encryptedCookie: Uint8Array;
}

export interface TransportMessage {
  readonly type: typeof MESSAGE_TRANSPORT_DATA;
  readonly receiverIndex: number;
  readonly counter: bigint;
  /** The encrypted, padded inner packet followed by its 16-byte tag. */
  readonly encryptedPacket: Uint8Array;
}

export type Message = InitiationMessage | ResponseMessage | CookieReplyMessage | TransportMessage;

/** Reads a little-endian u32 at `offset` (no bounds check: callers check sizes). */
export function readUint32LE(bytes: Uint8Array, offset: number): number {
  return (
    (bytes[offset] |
      (bytes[offset + 1] << 8) |
      (bytes[offset + 2] << 16) |
      (bytes[offset + 3] << 24)) >>>
    0
  );
}

/** Writes a little-endian u32 at `offset`. */
export function writeUint32LE(bytes: Uint8Array, offset: number, value: number): void {
  bytes[offset] = value & 0xff;
  bytes[offset + 1] = (value >>> 8) & 0xff;
  bytes[offset + 2] = (value >>> 16) & 0xff;
  bytes[offset + 3] = value >>> 24;
}

function readUint64LE(bytes: Uint8Array, offset: number): bigint {
  const low = readUint32LE(bytes, offset);
  const high = readUint32LE(bytes, offset + 4);
  return (BigInt(high) << 32n) | BigInt(low);
}

function writeUint64LE(bytes: Uint8Array, offset: number, value: bigint): void {
  writeUint32LE(bytes, offset, Number(value & 0xffffffffn));
  writeUint32LE(bytes, offset + 4, Number((value >> 32n) & 0xffffffffn));
}

function checkIndex(value: unknown, name: string): asserts value is number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`${name} must be an integer in [0, 2^32 - 1]`);
  }
}

function checkField(value: unknown, name: string, length: number): asserts value is Uint8Array {
  if (!(value instanceof Uint8Array) || value.length !== length) {
    throw new RangeError(`${name} must be a ${length}-byte Uint8Array`);
  }
}

function checkPacket(packet: unknown): asserts packet is Uint8Array {
  if (!(packet instanceof Uint8Array)) throw new TypeError('packet must be a Uint8Array');
}

/**
 * The message type for a cheap first dispatch: 1..4 per §5.4, or 0 when the
 * packet is shorter than a header or a reserved byte is set (not WireGuard).
 * It does not check the size the type needs; parseMessage does.
 */
export function messageType(packet: Uint8Array): number {
  checkPacket(packet);
  if (packet.length < 4 || (packet[1] | packet[2] | packet[3]) !== 0) return 0;
  const type = packet[0];
  return type >= MESSAGE_INITIATION && type <= MESSAGE_TRANSPORT_DATA ? type : 0;
}

/** The sender index of an initiation or response (whitepaper: sender). */
export function senderIndexOf(packet: Uint8Array): number {
  checkPacket(packet);
  if (packet.length < 8) throw new RangeError('packet is too short to hold a sender index');
  return readUint32LE(packet, 4);
}

/** The receiver index of a response (offset 8), cookie reply or transport message (offset 4). */
export function receiverIndexOf(packet: Uint8Array): number {
  checkPacket(packet);
  if (packet[0] === MESSAGE_INITIATION) {
    throw new RangeError('an initiation has no receiver index');
  }
  const offset = packet[0] === MESSAGE_RESPONSE ? RESPONSE_OFFSET_RECEIVER : 4;
  if (packet.length < offset + 4) {
    throw new RangeError('packet is too short to hold a receiver index');
  }
  return readUint32LE(packet, offset);
}

/** The 64-bit nonce counter of a transport message. */
export function transportCounterOf(packet: Uint8Array): bigint {
  checkPacket(packet);
  if (packet.length < MESSAGE_TRANSPORT_HEADER_SIZE) {
    throw new RangeError('packet is too short to hold a transport header');
  }
  return readUint64LE(packet, TRANSPORT_OFFSET_COUNTER);
}

/**
 * Parses a packet into a message, or null when it is not one (wrong size, unknown
 * type, reserved bytes set): the protocol drops such packets silently. Never throws
 * for any byte content.
 */
export function parseMessage(packet: Uint8Array): Message | null {
  const type = messageType(packet);
  switch (type) {
    case MESSAGE_INITIATION:
      if (packet.length !== MESSAGE_INITIATION_SIZE) return null;
      return {
        type: MESSAGE_INITIATION,
        senderIndex: readUint32LE(packet, INITIATION_OFFSET_SENDER),
        ephemeral: packet.subarray(INITIATION_OFFSET_EPHEMERAL, INITIATION_OFFSET_STATIC),
        encryptedStatic: packet.subarray(INITIATION_OFFSET_STATIC, INITIATION_OFFSET_TIMESTAMP),
        encryptedTimestamp: packet.subarray(INITIATION_OFFSET_TIMESTAMP, INITIATION_OFFSET_MAC1),
        mac1: packet.subarray(INITIATION_OFFSET_MAC1, INITIATION_OFFSET_MAC2),
        mac2: packet.subarray(INITIATION_OFFSET_MAC2, MESSAGE_INITIATION_SIZE),
      };
    case MESSAGE_RESPONSE:
      if (packet.length !== MESSAGE_RESPONSE_SIZE) return null;
      return {
        type: MESSAGE_RESPONSE,
        senderIndex: readUint32LE(packet, RESPONSE_OFFSET_SENDER),
        receiverIndex: readUint32LE(packet, RESPONSE_OFFSET_RECEIVER),
        ephemeral: packet.subarray(RESPONSE_OFFSET_EPHEMERAL, RESPONSE_OFFSET_EMPTY),
        encryptedNothing: packet.subarray(RESPONSE_OFFSET_EMPTY, RESPONSE_OFFSET_MAC1),
        mac1: packet.subarray(RESPONSE_OFFSET_MAC1, RESPONSE_OFFSET_MAC2),
        mac2: packet.subarray(RESPONSE_OFFSET_MAC2, MESSAGE_RESPONSE_SIZE),
      };
    case MESSAGE_COOKIE_REPLY:
      if (packet.length !== MESSAGE_COOKIE_REPLY_SIZE) return null;
      return {
        type: MESSAGE_COOKIE_REPLY,
        receiverIndex: readUint32LE(packet, COOKIE_REPLY_OFFSET_RECEIVER),
        nonce: packet.subarray(COOKIE_REPLY_OFFSET_NONCE, COOKIE_REPLY_OFFSET_COOKIE),
        encryptedCookie: packet.subarray(COOKIE_REPLY_OFFSET_COOKIE, MESSAGE_COOKIE_REPLY_SIZE),
      };
    case MESSAGE_TRANSPORT_DATA:
      if (packet.length < MESSAGE_TRANSPORT_MIN_SIZE) return null;
      return {
        type: MESSAGE_TRANSPORT_DATA,
        receiverIndex: readUint32LE(packet, TRANSPORT_OFFSET_RECEIVER),
        counter: readUint64LE(packet, TRANSPORT_OFFSET_COUNTER),
        encryptedPacket: packet.subarray(TRANSPORT_OFFSET_CONTENT),
      };
    default:
      return null;
  }
}

/** Writes the 16-byte transport header (§5.4.6) at the start of `out`. */
export function writeTransportHeader(
  out: Uint8Array,
  receiverIndex: number,
  counter: bigint,
): void {
  checkPacket(out);
  if (out.length < MESSAGE_TRANSPORT_HEADER_SIZE) {
    throw new RangeError(`out must hold at least ${MESSAGE_TRANSPORT_HEADER_SIZE} bytes`);
  }
  checkIndex(receiverIndex, 'receiverIndex');
  if (typeof counter !== 'bigint' || counter < 0n || counter >= 1n << 64n) {
    throw new RangeError('counter must be a bigint in [0, 2^64 - 1]');
  }
  out[0] = MESSAGE_TRANSPORT_DATA;
  out[1] = out[2] = out[3] = 0;
  writeUint32LE(out, TRANSPORT_OFFSET_RECEIVER, receiverIndex);
  writeUint64LE(out, TRANSPORT_OFFSET_COUNTER, counter);
}

/** Lays a message out as bytes: the inverse of parseMessage. */
export function serializeMessage(message: Message): Uint8Array {
  switch (message.type) {
    case MESSAGE_INITIATION: {
      checkIndex(message.senderIndex, 'senderIndex');
      checkField(message.ephemeral, 'ephemeral', KEY_SIZE);
      checkField(message.encryptedStatic, 'encryptedStatic', ENCRYPTED_STATIC_SIZE);
      checkField(message.encryptedTimestamp, 'encryptedTimestamp', ENCRYPTED_TIMESTAMP_SIZE);
      checkField(message.mac1, 'mac1', MAC_SIZE);
      checkField(message.mac2, 'mac2', MAC_SIZE);
      const out = new Uint8Array(MESSAGE_INITIATION_SIZE);
      out[0] = MESSAGE_INITIATION;
      writeUint32LE(out, INITIATION_OFFSET_SENDER, message.senderIndex);
      out.set(message.ephemeral, INITIATION_OFFSET_EPHEMERAL);
      out.set(message.encryptedStatic, INITIATION_OFFSET_STATIC);
      out.set(message.encryptedTimestamp, INITIATION_OFFSET_TIMESTAMP);
      out.set(message.mac1, INITIATION_OFFSET_MAC1);
      out.set(message.mac2, INITIATION_OFFSET_MAC2);
      return out;
    }
    case MESSAGE_RESPONSE: {
      checkIndex(message.senderIndex, 'senderIndex');
      checkIndex(message.receiverIndex, 'receiverIndex');
      checkField(message.ephemeral, 'ephemeral', KEY_SIZE);
      checkField(message.encryptedNothing, 'encryptedNothing', AEAD_TAG_SIZE);
      checkField(message.mac1, 'mac1', MAC_SIZE);
      checkField(message.mac2, 'mac2', MAC_SIZE);
      const out = new Uint8Array(MESSAGE_RESPONSE_SIZE);
      out[0] = MESSAGE_RESPONSE;
      writeUint32LE(out, RESPONSE_OFFSET_SENDER, message.senderIndex);
      writeUint32LE(out, RESPONSE_OFFSET_RECEIVER, message.receiverIndex);
      out.set(message.ephemeral, RESPONSE_OFFSET_EPHEMERAL);
      out.set(message.encryptedNothing, RESPONSE_OFFSET_EMPTY);
      out.set(message.mac1, RESPONSE_OFFSET_MAC1);
      out.set(message.mac2, RESPONSE_OFFSET_MAC2);
      return out;
    }
    case MESSAGE_COOKIE_REPLY: {
      checkIndex(message.receiverIndex, 'receiverIndex');
      checkField(message.nonce, 'nonce', COOKIE_NONCE_SIZE);
      checkField(message.encryptedCookie, 'encryptedCookie', ENCRYPTED_COOKIE_SIZE);
      const out = new Uint8Array(MESSAGE_COOKIE_REPLY_SIZE);
      out[0] = MESSAGE_COOKIE_REPLY;
      writeUint32LE(out, COOKIE_REPLY_OFFSET_RECEIVER, message.receiverIndex);
      out.set(message.nonce, COOKIE_REPLY_OFFSET_NONCE);
      out.set(message.encryptedCookie, COOKIE_REPLY_OFFSET_COOKIE);
      return out;
    }
    case MESSAGE_TRANSPORT_DATA: {
      if (
        !(message.encryptedPacket instanceof Uint8Array) ||
        message.encryptedPacket.length < AEAD_TAG_SIZE
      ) {
        throw new RangeError(
          `encryptedPacket must be a Uint8Array of at least ${AEAD_TAG_SIZE} bytes`,
        );
      }
      const out = new Uint8Array(MESSAGE_TRANSPORT_HEADER_SIZE + message.encryptedPacket.length);
      writeTransportHeader(out, message.receiverIndex, message.counter);
      out.set(message.encryptedPacket, TRANSPORT_OFFSET_CONTENT);
      return out;
    }
  }
}
