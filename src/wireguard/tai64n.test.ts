import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { TAI64N_WHITENER_MASK, compareTai64n, tai64n } from './tai64n.js';

const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

describe('tai64n', () => {
  it('labels the Unix epoch 2^62 + 10 with zero nanoseconds', () => {
    assert.equal(toHex(tai64n(0)), '400000000000000a' + '00000000');
  });

  it('writes seconds big-endian and carries into the high word', () => {
    // 1_000_000_000 s after the epoch: 0x3b9aca00 + 10 = 0x3b9aca0a.
    assert.equal(toHex(tai64n(1_000_000_000_000)), '400000003b9aca0a' + '00000000');
    // 2^32 + 5 seconds: the seconds label overflows into the upper 32 bits.
    assert.equal(toHex(tai64n((2 ** 32 + 5) * 1000)), '400000010000000f' + '00000000');
  });

  it('keeps only multiples of 2^24 ns, like wireguard-go tai64n.Now', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 4e12 }),
        fc.integer({ min: 0, max: 999_999 }),
        (ms, ns) => {
          const stamp = tai64n(ms, ns);
          const nanoseconds = new DataView(stamp.buffer).getUint32(8);
          assert.equal(nanoseconds & TAI64N_WHITENER_MASK, 0);
          const exact = (ms % 1000) * 1e6 + ns;
          assert.ok(nanoseconds <= exact && exact - nanoseconds < 2 ** 24);
          assert.equal(new DataView(stamp.buffer).getUint32(4), Math.floor(ms / 1000) + 10);
        },
      ),
    );
  });

  it('whitening hides differences under ~17 ms (wireguard-go tai64n_test.go TestMonotonic)', () => {
    // Start at 0.123456789 s, as the wireguard-go test does.
    const start = tai64n(123, 456_789);
    assert.equal(compareTai64n(tai64n(123, 456_799), start), 0, 'after 10 ns');
    assert.equal(compareTai64n(tai64n(123, 466_789), start), 0, 'after 10 µs');
    assert.equal(compareTai64n(tai64n(124, 456_789), start), 0, 'after 1 ms');
    assert.equal(compareTai64n(tai64n(133, 456_789), start), 0, 'after 10 ms');
    assert.equal(compareTai64n(tai64n(143, 456_789), start), 1, 'after 20 ms');
  });

  it('never goes backwards as time advances', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 4e12 }),
        fc.integer({ min: 0, max: 1e9 }),
        (ms, delta) => {
          assert.ok(compareTai64n(tai64n(ms), tai64n(ms + delta)) <= 0);
          if (delta >= 17) assert.equal(compareTai64n(tai64n(ms), tai64n(ms + delta)), -1);
        },
      ),
    );
  });

  it('refuses times it can not represent', () => {
    assert.throws(() => tai64n(-1), /unixMillis/);
    assert.throws(() => tai64n(Number.NaN), /unixMillis/);
    assert.throws(() => tai64n(0, 1_000_000), /nanoExtra/);
    assert.throws(() => tai64n(0, 0.5), /nanoExtra/);
  });
});

describe('compareTai64n', () => {
  it('orders by seconds, then nanoseconds', () => {
    const a = Uint8Array.from(Buffer.from('400000000000000a00000001', 'hex'));
    const b = Uint8Array.from(Buffer.from('400000000000000b00000000', 'hex'));
    assert.equal(compareTai64n(a, b), -1);
    assert.equal(compareTai64n(b, a), 1);
    assert.equal(compareTai64n(a, Uint8Array.from(a)), 0);
  });

  it('names the bad argument', () => {
    assert.throws(() => compareTai64n(new Uint8Array(11), new Uint8Array(12)), /^RangeError: a /);
    assert.throws(() => compareTai64n(new Uint8Array(12), new Uint8Array(13)), /^RangeError: b /);
  });
});
