/**
 * Anti-replay sliding window for transport-data counters (whitepaper §5.4.6, which
 * points to RFC 6479). Same algorithm and acceptance rules as the Linux kernel's
 * `counter_validate` (drivers/net/wireguard/receive.c) and wireguard-go
 * replay/replay.go: a ring of bitmap words; moving the window forward clears
 * whole words instead of shifting bits.
 *
 * A counter is accepted once, if it is below `limit` and no more than
 * COUNTER_WINDOW_SIZE behind the greatest counter accepted so far.
 *
 * The ring holds COUNTER_WINDOW_SIZE + 64 bits (the kernel's COUNTER_BITS_TOTAL,
 * 8192) as 256 32-bit words. With 32-bit words the ring always retains the
 * COUNTER_WINDOW_SIZE most recent counters plus the current word, so the result
 * is identical to the kernel's 64-bit-word ring for every input sequence.
 */
import { COUNTER_WINDOW_SIZE } from './constants.js';

const RING_BITS = 8192;
const WORD_BITS = 32;
const RING_WORDS = RING_BITS / WORD_BITS;
const RING_MASK = RING_WORDS - 1;
const MAX_SAFE = Number.MAX_SAFE_INTEGER;

const BIG_WINDOW = BigInt(COUNTER_WINDOW_SIZE);
const BIG_RING_WORDS = BigInt(RING_WORDS);
const BIG_RING_MASK = BigInt(RING_MASK);
const BIG_WORD_SHIFT = 5n;
const BIG_BIT_MASK = 31n;
const BIG_MAX_SAFE = BigInt(MAX_SAFE);

export class ReplayFilter {
  private readonly ring = new Uint32Array(RING_WORDS);
  /**
   * Greatest accepted counter plus one; 0 means none yet (the kernel stores
   * the same, so that counter 0 is acceptable in a fresh window).
   */
  private next = 0;
  /** Exact `next` once it no longer fits a safe integer; null until then. */
  private nextBig: bigint | null = null;
  /** Last `limit` seen and its value as a number (Infinity when above 2^53), so the
   * per-packet path compares numbers instead of BigInts. */
  private cachedLimit: bigint | null = null;
  private limitNumber = 0;

  reset(): void {
    this.ring.fill(0);
    this.next = 0;
    this.nextBig = null;
  }

  /**
   * Returns true the first time `counter` is seen inside the window and it is
   * below `limit` (REJECT_AFTER_MESSAGES); false for replays, counters too old,
   * and counters at or above the limit. Call only after the packet authenticated
   * (whitepaper §5.4.6), or a forged counter could move the window.
   *
   * Numbers must be non-negative integers; numbers above 2^53 − 1 cannot be
   * exact and are rejected — pass such counters as bigint.
   */
  validate(counter: bigint | number, limit: bigint): boolean {
    if (limit !== this.cachedLimit) this.setLimit(limit);
    if (typeof counter === 'number') {
      if (!(counter >= 0 && Number.isInteger(counter))) {
        throw new RangeError(`counter must be a non-negative integer, got ${String(counter)}`);
      }
      if (counter > MAX_SAFE) return false;
      if (counter === MAX_SAFE || this.nextBig !== null)
        return this.validateBig(BigInt(counter), limit);
      return this.validateNumber(counter);
    }
    if (typeof counter !== 'bigint' || counter < 0n) {
      throw new RangeError(`counter must be a non-negative integer, got ${String(counter)}`);
    }
    if (counter < BIG_MAX_SAFE && this.nextBig === null)
      return this.validateNumber(Number(counter));
    return this.validateBig(counter, limit);
  }

  private setLimit(limit: bigint): void {
    if (typeof limit !== 'bigint' || limit < 0n) {
      throw new RangeError(`limit must be a non-negative bigint, got ${String(limit)}`);
    }
    this.cachedLimit = limit;
    this.limitNumber = limit > BIG_MAX_SAFE ? Infinity : Number(limit);
  }

  /** The per-packet path: every quantity is a safe integer (counter < 2^53 − 1). */
  private validateNumber(counter: number): boolean {
    const limit = this.limitNumber;
    if (counter >= limit || this.next > limit) return false;
    const shifted = counter + 1;
    let next = this.next;
    if (next - shifted > COUNTER_WINDOW_SIZE) return false; // too old
    const ring = this.ring;
    // (x & mask) on a double takes x modulo 2^32 first, which keeps the low bits
    // exact for every safe integer, so word and bit indices need no BigInt.
    const wordIndex = (shifted - (shifted & 31)) / WORD_BITS;
    if (shifted > next) {
      const currentWord = (next - (next & 31)) / WORD_BITS;
      const advance = Math.min(wordIndex - currentWord, RING_WORDS);
      for (let i = 1; i <= advance; i++) ring[(currentWord + i) & RING_MASK] = 0;
      next = shifted;
      this.next = next;
    }
    const slot = wordIndex & RING_MASK;
    const bit = 1 << (shifted & 31);
    if ((ring[slot] & bit) !== 0) return false;
    ring[slot] |= bit;
    return true;
  }

  /** Same algorithm in BigInt for counters near 2^64 (never reached by real traffic). */
  private validateBig(counter: bigint, limit: bigint): boolean {
    const next = this.nextBig ?? BigInt(this.next);
    if (counter >= limit || next > limit) return false;
    const shifted = counter + 1n;
    if (next - shifted > BIG_WINDOW) return false;
    const ring = this.ring;
    const wordIndex = shifted >> BIG_WORD_SHIFT;
    if (shifted > next) {
      const currentWord = next >> BIG_WORD_SHIFT;
      const distance = wordIndex - currentWord;
      const advance = distance > BIG_RING_WORDS ? RING_WORDS : Number(distance);
      const currentSlot = Number(currentWord & BIG_RING_MASK);
      for (let i = 1; i <= advance; i++) ring[(currentSlot + i) & RING_MASK] = 0;
      if (shifted > BIG_MAX_SAFE) {
        this.nextBig = shifted;
      } else {
        this.nextBig = null;
        this.next = Number(shifted);
      }
    }
    const slot = Number(wordIndex & BIG_RING_MASK);
    const bit = 1 << Number(shifted & BIG_BIT_MASK);
    if ((ring[slot] & bit) !== 0) return false;
    ring[slot] |= bit;
    return true;
  }
}
