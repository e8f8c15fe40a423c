/**
 * The addon's ChaCha20-Poly1305 against the node:crypto reference (noble's
 * "fast code tested against a naive version"); the reference itself is checked
 * against RFC 8439 in src/wireguard/crypto.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { nodeCryptoAead } from '../wireguard/aead.js';
import { nativeAead } from './native-aead.js';

const sealWith = (
  aead: typeof nativeAead,
  key: Uint8Array,
  counter: number,
  plaintext: Uint8Array,
  padded: number,
): Uint8Array => {
  const out = new Uint8Array(padded + 16 + 3);
  const written = aead.seal(key, counter, plaintext, padded, out, 3);
  assert.equal(written, padded + 16);
  return out.subarray(3);
};

describe('native transport AEAD', () => {
  it('seals exactly like node:crypto and opens what node:crypto sealed', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.maxSafeNat(),
        fc.uint8Array({ maxLength: 2000 }),
        fc.nat({ max: 40 }),
        (key, counter, plaintext, extra) => {
          const padded = plaintext.length + extra;
          const expected = sealWith(nodeCryptoAead, key, counter, plaintext, padded);
          const actual = sealWith(nativeAead, key, counter, plaintext, padded);
          assert.deepEqual(actual, expected);
          const opened = nativeAead.open(key, counter, Uint8Array.from(expected));
          const reference = nodeCryptoAead.open(key, counter, expected);
          assert.ok(opened !== null && reference !== null);
          assert.deepEqual(Uint8Array.from(opened), Uint8Array.from(reference));
        },
      ),
      { numRuns: 300 },
    );
  });

  it('rejects any modified byte, a wrong key and a wrong counter', () => {
    const key = new Uint8Array(32).fill(9);
    const sealed = sealWith(nativeAead, key, 7, new Uint8Array(100).fill(1), 112);
    for (let i = 0; i < sealed.length; i += 13) {
      const bad = Uint8Array.from(sealed);
      bad[i] = (bad[i] ?? 0) ^ 1;
      assert.equal(nativeAead.open(key, 7, bad), null, `flipped byte ${i}`);
    }
    assert.equal(nativeAead.open(new Uint8Array(32), 7, Uint8Array.from(sealed)), null);
    assert.equal(nativeAead.open(key, 8, Uint8Array.from(sealed)), null);
    assert.ok(nativeAead.open(key, 7, Uint8Array.from(sealed)));
  });
});
