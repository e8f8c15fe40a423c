import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { DEFAULT_RENEWAL_POLICY, renewalTime, retryDelay } from './schedule.js';

const DAY = 24 * 3600_000;

describe('renewalTime', () => {
  it('renews a 90-day certificate on day 60, up to 5 % of the lifetime earlier', () => {
    const notBefore = Date.UTC(2030, 0, 1);
    const notAfter = notBefore + 90 * DAY;
    assert.equal(renewalTime(notBefore, notAfter, DEFAULT_RENEWAL_POLICY, 0), notBefore + 60 * DAY);
    const earliest = renewalTime(notBefore, notAfter, DEFAULT_RENEWAL_POLICY, 0.999999);
    assert.ok(earliest > notBefore + 60 * DAY - 4.5 * DAY - 1000);
    assert.ok(earliest < notBefore + 60 * DAY);
  });

  it('always falls inside the validity, before the last renewWhenRemaining part', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2 ** 40 }),
        fc.integer({ min: 60_000, max: 400 * DAY }),
        fc.double({ min: 0.01, max: 0.9, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
        fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
        (notBefore, lifetime, remaining, jitterShare, draw) => {
          const jitter = Math.min(remaining, 1 - remaining) * jitterShare;
          // At the very edge, remaining + jitter rounds to 1: a policy the function refuses.
          fc.pre(jitter < remaining && remaining + jitter < 1);
          const policy = { renewWhenRemaining: remaining, jitter };
          const at = renewalTime(notBefore, notBefore + lifetime, policy, draw);
          assert.ok(at >= notBefore - 1 && at <= notBefore + lifetime - lifetime * remaining + 1);
        },
      ),
    );
  });

  it('rejects a bad policy, validity or draw, naming it', () => {
    assert.throws(() => renewalTime(2, 1, DEFAULT_RENEWAL_POLICY, 0), /notBefore/);
    assert.throws(() => renewalTime(0, 1, { renewWhenRemaining: 1, jitter: 0 }, 0), /renewWhen/);
    assert.throws(() => renewalTime(0, 1, { renewWhenRemaining: 0.3, jitter: 0.3 }, 0), /jitter/);
    assert.throws(() => renewalTime(0, 1, { renewWhenRemaining: 0.7, jitter: 0.4 }, 0), /jitter/);
    assert.throws(() => renewalTime(0, 1, DEFAULT_RENEWAL_POLICY, 1), /draw/);
  });
});

describe('retryDelay', () => {
  const policy = { retryMinMs: 60_000, retryMaxMs: 3600_000 };

  it('doubles from the minimum up to the maximum, ±25 %', () => {
    assert.equal(retryDelay(1, policy, 0.5), 60_000);
    assert.equal(retryDelay(2, policy, 0.5), 120_000);
    assert.equal(retryDelay(3, policy, 0), 180_000);
    assert.equal(retryDelay(100, policy, 0.5), 3600_000);
    assert.equal(retryDelay(2 ** 30, policy, 0.999), 3600_000);
  });

  it('never waits less than 3/4 of the minimum nor more than the maximum', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 10_000 }),
        fc.double({ min: 0, max: 1, noNaN: true, maxExcluded: true }),
        (failures, draw) => {
          const delay = retryDelay(failures, policy, draw);
          assert.ok(delay >= 45_000 && delay <= 3600_000);
          if (failures > 1) assert.ok(delay >= retryDelay(failures - 1, policy, 0) - 1);
        },
      ),
    );
  });

  it('rejects bad arguments', () => {
    assert.throws(() => retryDelay(0, policy, 0), /failures/);
    assert.throws(() => retryDelay(1, { retryMinMs: 0, retryMaxMs: 1 }, 0), /retryMinMs/);
    assert.throws(() => retryDelay(1, { retryMinMs: 2, retryMaxMs: 1 }, 0), /retryMaxMs/);
    assert.throws(() => retryDelay(1, policy, -0.1), /draw/);
  });
});
