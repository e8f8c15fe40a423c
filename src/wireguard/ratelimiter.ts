/**
 * Per-source token bucket for handshake messages under load (whitepaper §5.3,
 * wireguard-go ratelimiter/ratelimiter.go, Linux drivers/net/wireguard/ratelimiter.c):
 * RATELIMIT_PACKETS_PER_SECOND per source with bursts of RATELIMIT_PACKETS_BURSTABLE.
 * A source is an IPv4 address or, as the kernel groups them, an IPv6 /64 (one
 * host usually holds a whole /64, so per-address buckets would be no limit).
 *
 * Tokens are kept in milliseconds of credit: each packet costs 1000 / rate ms and
 * a bucket holds at most burst × cost. `now` is the caller's monotonic clock (ms).
 */
import { RATELIMIT_PACKETS_BURSTABLE, RATELIMIT_PACKETS_PER_SECOND } from './constants.js';

/** Credit one packet costs, in ms (wireguard-go packetCost = 1 s / packetsPerSecond). */
export const RATELIMIT_PACKET_COST = 1000 / RATELIMIT_PACKETS_PER_SECOND;
/** Credit a bucket can hold (wireguard-go maxTokens = packetCost × packetsBurstable). */
export const RATELIMIT_MAX_TOKENS = RATELIMIT_PACKET_COST * RATELIMIT_PACKETS_BURSTABLE;
/** Buckets untouched for longer than this are dropped by collect() (wireguard-go garbageCollectTime). */
export const RATELIMIT_GC_AGE = 1000;
/** Default bound on the number of buckets; past it new sources are refused, as the kernel does. */
export const RATELIMIT_DEFAULT_MAX_ENTRIES = 65_536;

interface Bucket {
  tokens: number;
  lastTime: number;
}

export class RateLimiter {
  readonly #buckets = new Map<number | string, Bucket>();
  readonly #maxEntries: number;

  constructor(options: { maxEntries?: number } = {}) {
    const maxEntries = options.maxEntries ?? RATELIMIT_DEFAULT_MAX_ENTRIES;
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError('maxEntries must be a positive integer');
    }
    this.#maxEntries = maxEntries;
  }

  /** The number of sources currently tracked. */
  get size(): number {
    return this.#buckets.size;
  }

  /**
   * Takes one packet's worth of credit from the source's bucket.
   * @param sourceIp 4 bytes (IPv4) or 16 bytes (IPv6; IPv4-mapped ::ffff:a.b.c.d counts as IPv4).
   */
  allow(sourceIp: Uint8Array, now: number): boolean {
    if (typeof now !== 'number' || Number.isNaN(now)) {
      throw new TypeError('now must be a number of milliseconds');
    }
    const key = bucketKey(sourceIp);
    const bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxEntries) return false;
      // A new source starts with a full bucket minus this packet.
      this.#buckets.set(key, {
        tokens: RATELIMIT_MAX_TOKENS - RATELIMIT_PACKET_COST,
        lastTime: now,
      });
      return true;
    }
    bucket.tokens = Math.min(
      RATELIMIT_MAX_TOKENS,
      bucket.tokens + Math.max(0, now - bucket.lastTime),
    );
    bucket.lastTime = Math.max(bucket.lastTime, now);
    // `>=` as the kernel has it: a full bucket allows exactly the burst.
    if (bucket.tokens >= RATELIMIT_PACKET_COST) {
      bucket.tokens -= RATELIMIT_PACKET_COST;
      return true;
    }
    return false;
  }

  /** Forgets sources idle for more than RATELIMIT_GC_AGE; call about once a second. */
  collect(now: number): void {
    for (const [key, bucket] of this.#buckets) {
      if (now - bucket.lastTime > RATELIMIT_GC_AGE) this.#buckets.delete(key);
    }
  }

  /** Forgets every source. */
  clear(): void {
    this.#buckets.clear();
  }
}

function isIpv4Mapped(ip: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (ip[i] !== 0) return false;
  return ip[10] === 0xff && ip[11] === 0xff;
}

/** IPv4: the address as a u32 number. IPv6: its /64 prefix as an 8-character string. */
function bucketKey(ip: Uint8Array): number | string {
  if (!(ip instanceof Uint8Array)) throw new TypeError('sourceIp must be a Uint8Array');
  if (ip.length === 4) return ((ip[0] << 24) | (ip[1] << 16) | (ip[2] << 8) | ip[3]) >>> 0;
  if (ip.length !== 16) throw new RangeError('sourceIp must be 4 (IPv4) or 16 (IPv6) bytes');
  if (isIpv4Mapped(ip)) return ((ip[12] << 24) | (ip[13] << 16) | (ip[14] << 8) | ip[15]) >>> 0;
  return String.fromCharCode(ip[0], ip[1], ip[2], ip[3], ip[4], ip[5], ip[6], ip[7]);
}
