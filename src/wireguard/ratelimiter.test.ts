import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  RATELIMIT_GC_AGE,
  RATELIMIT_MAX_TOKENS,
  RATELIMIT_PACKET_COST,
  RateLimiter,
} from './ratelimiter.js';
import { RATELIMIT_PACKETS_BURSTABLE, RATELIMIT_PACKETS_PER_SECOND } from './constants.js';

const ipv4 = (...octets: number[]): Uint8Array => Uint8Array.from(octets);
function ipv6(text: string): Uint8Array {
  const groups = text.split(':');
  const out = new Uint8Array(16);
  groups.forEach((group, i) => {
    const value = parseInt(group, 16);
    out[2 * i] = value >> 8;
    out[2 * i + 1] = value & 0xff;
  });
  return out;
}

describe('RateLimiter', () => {
  it('derives its bucket from the constants', () => {
    assert.equal(RATELIMIT_PACKET_COST, 1000 / RATELIMIT_PACKETS_PER_SECOND);
    assert.equal(RATELIMIT_MAX_TOKENS, RATELIMIT_PACKET_COST * RATELIMIT_PACKETS_BURSTABLE);
  });

  it('follows wireguard-go ratelimiter_test.go’s sequence for every source', () => {
    // Each step waits `wait` ms (plus a hair, as the Go test adds 1 ns) and then
    // asks for every address once.
    const cost = 1000 / RATELIMIT_PACKETS_PER_SECOND;
    const steps: { allowed: boolean; wait: number; text: string }[] = [];
    for (let i = 0; i < RATELIMIT_PACKETS_BURSTABLE; i++) {
      steps.push({ allowed: true, wait: 0, text: 'initial burst' });
    }
    steps.push({ allowed: false, wait: 0, text: 'after burst' });
    steps.push({ allowed: true, wait: cost, text: 'filling tokens for single packet' });
    steps.push({ allowed: false, wait: 0, text: 'not having refilled enough' });
    steps.push({ allowed: true, wait: 2 * cost, text: 'filling tokens for two packet burst' });
    steps.push({ allowed: true, wait: 0, text: 'second packet in 2 packet burst' });
    steps.push({ allowed: false, wait: 0, text: 'packet following 2 packet burst' });
    const sources = [
      ipv4(127, 0, 0, 1),
      ipv4(192, 168, 1, 1),
      ipv4(172, 167, 2, 3),
      ipv4(97, 231, 252, 215),
      ipv6('2001:0db8:0a0b:12f0:0000:0000:0000:0001'),
      ipv6('f5c2:818f:c052:655a:9860:b136:6894:25f0'),
      ipv6('b2d7:15ab:48a7:b07c:a541:f144:a9fe:54fc'),
    ];
    const limiter = new RateLimiter();
    let now = 5000;
    steps.forEach((step, i) => {
      now += step.wait + 1e-6;
      limiter.collect(now);
      for (const source of sources) {
        assert.equal(limiter.allow(source, now), step.allowed, `${i}: ${step.text}`);
      }
    });
  });

  it('allows exactly the burst at one instant, then the rate', () => {
    const limiter = new RateLimiter();
    const source = ipv4(198, 51, 100, 1);
    let allowed = 0;
    for (let i = 0; i < 50; i++) if (limiter.allow(source, 0)) allowed++;
    assert.equal(allowed, RATELIMIT_PACKETS_BURSTABLE);
    // Over the next 10 s at 1 packet/ms, about the rate gets through.
    allowed = 0;
    for (let t = 1; t <= 10_000; t++) if (limiter.allow(source, t)) allowed++;
    assert.equal(allowed, 10 * RATELIMIT_PACKETS_PER_SECOND);
  });

  it('groups IPv6 sources by /64 and keeps /64s apart', () => {
    const limiter = new RateLimiter();
    for (let i = 0; i < RATELIMIT_PACKETS_BURSTABLE; i++) {
      assert.equal(limiter.allow(ipv6(`2001:db8:1:2:0:0:0:${i + 1}`), 0), true);
    }
    assert.equal(limiter.allow(ipv6('2001:db8:1:2:ffff:ffff:ffff:ffff'), 0), false, 'same /64');
    assert.equal(limiter.allow(ipv6('2001:db8:1:3:0:0:0:1'), 0), true, 'another /64');
    assert.equal(limiter.size, 2);
  });

  it('counts IPv4-mapped IPv6 addresses as their IPv4 address', () => {
    const limiter = new RateLimiter();
    for (let i = 0; i < RATELIMIT_PACKETS_BURSTABLE; i++) limiter.allow(ipv4(203, 0, 113, 9), 0);
    assert.equal(limiter.allow(ipv6('0:0:0:0:0:ffff:cb00:7109'), 0), false);
    assert.equal(limiter.size, 1);
  });

  it('collect forgets idle sources only', () => {
    const limiter = new RateLimiter();
    limiter.allow(ipv4(192, 0, 2, 1), 0);
    limiter.allow(ipv4(192, 0, 2, 2), 600);
    limiter.collect(RATELIMIT_GC_AGE + 1);
    assert.equal(limiter.size, 1);
    limiter.collect(600 + RATELIMIT_GC_AGE + 1);
    assert.equal(limiter.size, 0);
  });

  it('refuses new sources once full, as the kernel does', () => {
    const limiter = new RateLimiter({ maxEntries: 2 });
    assert.equal(limiter.allow(ipv4(192, 0, 2, 1), 0), true);
    assert.equal(limiter.allow(ipv4(192, 0, 2, 2), 0), true);
    assert.equal(limiter.allow(ipv4(192, 0, 2, 3), 0), false);
    assert.equal(limiter.allow(ipv4(192, 0, 2, 1), 0), true, 'known sources still work');
    limiter.clear();
    assert.equal(limiter.allow(ipv4(192, 0, 2, 3), 0), true);
  });

  it('a clock going backwards gives no extra credit', () => {
    const limiter = new RateLimiter();
    const source = ipv4(192, 0, 2, 4);
    for (let i = 0; i < RATELIMIT_PACKETS_BURSTABLE; i++) limiter.allow(source, 1000);
    assert.equal(limiter.allow(source, 0), false);
    assert.equal(limiter.allow(source, 1000), false);
  });

  it('names bad arguments', () => {
    const limiter = new RateLimiter();
    assert.throws(() => limiter.allow(new Uint8Array(5), 0), /sourceIp/);
    assert.throws(() => limiter.allow(ipv4(1, 2, 3, 4), Number.NaN), /now/);
    assert.throws(() => new RateLimiter({ maxEntries: 0 }), /maxEntries/);
  });
});
