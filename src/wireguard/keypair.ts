/**
 * One session's transport keys and counters (whitepaper §5.4.6): the sending
 * nonce counter, the receiving replay window, and both indices.
 */
import type { TransportAead } from './aead.js';
import {
  AEAD_TAG_SIZE,
  MESSAGE_TRANSPORT_DATA,
  MESSAGE_TRANSPORT_HEADER_SIZE,
  REJECT_AFTER_MESSAGES,
  REJECT_AFTER_TIME,
} from './constants.js';
import { ReplayFilter } from './replay.js';

const REJECT_AFTER_MESSAGES_NUMBER = Number(REJECT_AFTER_MESSAGES);

export class Keypair {
  /** Next counter to send with; a JS number stays exact far past REKEY_AFTER_MESSAGES' practical reach. */
  sendCounter = 0;
  readonly replay = new ReplayFilter();
  private readonly sendKey: Buffer;
  private readonly receiveKey: Buffer;

  constructor(
    sendKey: Uint8Array,
    receiveKey: Uint8Array,
    readonly localIndex: number,
    readonly remoteIndex: number,
    readonly isInitiator: boolean,
    readonly created: number,
    private readonly aead: TransportAead,
  ) {
    this.sendKey = Buffer.from(sendKey);
    this.receiveKey = Buffer.from(receiveKey);
  }

  /** Keys must not be used past REJECT_AFTER_TIME or REJECT_AFTER_MESSAGES (§6.1). */
  canSend(now: number): boolean {
    return (
      now - this.created < REJECT_AFTER_TIME && this.sendCounter < REJECT_AFTER_MESSAGES_NUMBER
    );
  }

  canReceive(now: number): boolean {
    return now - this.created < REJECT_AFTER_TIME;
  }

  /**
   * Encrypt one IP packet (or an empty keepalive) into a transport message,
   * zero-padding the plaintext to a multiple of 16 bytes but not past `mtu` (§5.4.6).
   */
  seal(packet: Uint8Array, mtu: number): Buffer {
    const counter = this.sendCounter++;
    let padded = (packet.length + 15) & ~15;
    if (padded > mtu) padded = Math.max(mtu, packet.length);
    const out = Buffer.allocUnsafe(MESSAGE_TRANSPORT_HEADER_SIZE + padded + AEAD_TAG_SIZE);
    out.writeUInt32LE(MESSAGE_TRANSPORT_DATA, 0);
    out.writeUInt32LE(this.remoteIndex, 4);
    out.writeUInt32LE(counter >>> 0, 8);
    out.writeUInt32LE(Math.floor(counter / 0x1_0000_0000), 12);
    this.aead.seal(this.sendKey, counter, packet, padded, out, MESSAGE_TRANSPORT_HEADER_SIZE);
    return out;
  }

  /**
   * Decrypt a transport message; returns the padded plaintext (possibly decrypted in
   * place inside `message`), or null when the tag does not verify. The replay check
   * is the caller's, after authentication.
   */
  open(message: Uint8Array, counter: number): Uint8Array | null {
    return this.aead.open(
      this.receiveKey,
      counter,
      message.subarray(MESSAGE_TRANSPORT_HEADER_SIZE),
    );
  }

  /** Wipe the keys once the keypair is dropped (§5.4.6: keys are erased after use). */
  wipe(): void {
    this.sendKey.fill(0);
    this.receiveKey.fill(0);
  }
}
