/**
 * TAI64N timestamps for handshake initiations (whitepaper §5.1 and §5.4.2: the
 * responder keeps the greatest timestamp seen per peer and drops any initiation
 * whose timestamp is not greater, which stops replays).
 *
 * Layout as wireguard-go's `tai64n` package writes it: 8 bytes big-endian seconds
 * labelled 2^62 + 10 + unix seconds (TAI64 label 2^62 plus the 10 s TAI−UTC offset
 * of 1970; leap seconds since are ignored, as all implementations do), then 4 bytes
 * big-endian nanoseconds. The nanoseconds are rounded down to a multiple of 2^24
 * (wireguard-go `whitenerMask`, ~16.8 ms) so the timestamp does not leak a precise
 * clock to an observer able to decrypt it later.
 */
import { TIMESTAMP_SIZE } from './constants.js';

/** wireguard-go tai64n.whitenerMask: the low 24 bits of the nanoseconds are dropped. */
export const TAI64N_WHITENER_MASK = 0x1000000 - 1;
/** wireguard-go tai64n.base = 0x400000000000000a, split into its 32-bit halves. */
const LABEL_HIGH = 0x40000000;
const LABEL_LOW = 10;
const TWO_POW_32 = 2 ** 32;

/**
 * The TAI64N timestamp of a wall-clock time.
 * @param unixMillis milliseconds since 1970-01-01 UTC (e.g. Date.now()).
 * @param nanoExtra nanoseconds below the millisecond, 0..999999 (e.g. from hrtime).
 */
export function tai64n(unixMillis: number, nanoExtra = 0): Uint8Array {
  if (!Number.isFinite(unixMillis) || unixMillis < 0) {
    throw new RangeError('unixMillis must be a finite, non-negative number of milliseconds');
  }
  if (!Number.isInteger(nanoExtra) || nanoExtra < 0 || nanoExtra > 999_999) {
    throw new RangeError('nanoExtra must be an integer in [0, 999999]');
  }
  const wholeMillis = Math.floor(unixMillis);
  const seconds = Math.floor(wholeMillis / 1000) + LABEL_LOW;
  const subMillisNanos = Math.floor((unixMillis - wholeMillis) * 1e6);
  const nanoseconds =
    (wholeMillis % 1000) * 1_000_000 + Math.min(nanoExtra + subMillisNanos, 999_999);
  const whitened = (nanoseconds & ~TAI64N_WHITENER_MASK) >>> 0;

  const out = new Uint8Array(TIMESTAMP_SIZE);
  const view = new DataView(out.buffer);
  view.setUint32(0, LABEL_HIGH + Math.floor(seconds / TWO_POW_32));
  view.setUint32(4, seconds % TWO_POW_32);
  view.setUint32(8, whitened);
  return out;
}

/**
 * Orders two TAI64N timestamps: negative, zero or positive like a sort comparator.
 * Big-endian fields make this a byte-wise comparison (wireguard-go Timestamp.After).
 */
export function compareTai64n(a: Uint8Array, b: Uint8Array): number {
  if (!(a instanceof Uint8Array) || a.length !== TIMESTAMP_SIZE) {
    throw new RangeError(`a must be a ${TIMESTAMP_SIZE}-byte TAI64N timestamp`);
  }
  if (!(b instanceof Uint8Array) || b.length !== TIMESTAMP_SIZE) {
    throw new RangeError(`b must be a ${TIMESTAMP_SIZE}-byte TAI64N timestamp`);
  }
  for (let i = 0; i < TIMESTAMP_SIZE; i++) {
    if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  }
  return 0;
}
