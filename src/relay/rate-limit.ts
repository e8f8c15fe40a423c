/**
 * A token bucket (the classic traffic-shaping algorithm): `burst` tokens at
 * most, refilled at `ratePerSecond`. The relay keeps one per tunnel to bound
 * requests (HTTP) or new connections (TCP) a tunnel receives.
 */
export class TokenBucket {
  readonly ratePerSecond: number;
  readonly burst: number;
  private tokens: number;
  private updatedAt: number;

  constructor(ratePerSecond: number, burst: number, now = performance.now()) {
    if (!Number.isFinite(ratePerSecond) || ratePerSecond <= 0) {
      throw new RangeError(`ratePerSecond must be a positive number, got ${String(ratePerSecond)}`);
    }
    if (!Number.isFinite(burst) || burst < 1) {
      throw new RangeError(`burst must be a number >= 1, got ${String(burst)}`);
    }
    this.ratePerSecond = ratePerSecond;
    this.burst = burst;
    this.tokens = burst;
    this.updatedAt = now;
  }

  /** Takes one token if there is one; false when the rate is exceeded. */
  take(now = performance.now()): boolean {
    const elapsed = Math.max(0, now - this.updatedAt);
    this.updatedAt = now;
    this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.ratePerSecond) / 1000);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
