import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { isZeroKey, keyToBase64, keyToHex, parseKey } from './keys.js';

// RFC 7748 §6.1 Alice's private key, and its base64 spelling as `wg` prints keys.
const ALICE_HEX = '77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a';
const ALICE_BASE64 = Buffer.from(ALICE_HEX, 'hex').toString('base64');

describe('parseKey', () => {
  it('reads base64 and hex (either case) to the same 32 bytes', () => {
    assert.equal(ALICE_BASE64.length, 44);
    const fromBase64 = parseKey(ALICE_BASE64, 'private key');
    assert.equal(Buffer.from(fromBase64).toString('hex'), ALICE_HEX);
    assert.deepEqual(parseKey(ALICE_HEX, 'private key'), fromBase64);
    assert.deepEqual(parseKey(ALICE_HEX.toUpperCase(), 'private key'), fromBase64);
    assert.equal(Object.getPrototypeOf(fromBase64), Uint8Array.prototype);
  });

  it('round-trips any key through both text forms', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (key) => {
        assert.deepEqual(parseKey(keyToBase64(key), 'k'), key);
        assert.deepEqual(parseKey(keyToHex(key), 'k'), key);
        assert.equal(keyToHex(key), Buffer.from(key).toString('hex'));
      }),
    );
  });

  it('refuses non-canonical base64 (unused low bits set), as wireguard-tools does', () => {
    // The 43rd character carries 4 key bits and 2 unused bits; set an unused one.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const last = alphabet.indexOf(ALICE_BASE64.charAt(42));
    const nonCanonical = ALICE_BASE64.slice(0, 42) + alphabet.charAt(last | 1) + '=';
    assert.throws(() => parseKey(nonCanonical, 'peer public key'), /peer public key/);
  });

  it('names `what` and never echoes the key text in errors', () => {
    const bad = [
      '',
      ALICE_BASE64.slice(0, 43),
      ALICE_BASE64 + '=',
      ` ${ALICE_BASE64.slice(1)}`,
      ALICE_BASE64.replace('=', 'A'),
      ALICE_BASE64.slice(0, 10) + '*' + ALICE_BASE64.slice(11),
      ALICE_HEX.slice(0, 63),
      ALICE_HEX.slice(0, 63) + 'g',
      ALICE_HEX + '00',
    ];
    for (const text of bad) {
      assert.throws(
        () => parseKey(text, 'interface private key'),
        (error: unknown) =>
          error instanceof Error &&
          error.message.startsWith('interface private key:') &&
          (text.length < 8 || !error.message.includes(text.slice(2, 10))),
        JSON.stringify(text),
      );
    }
  });

  it('never throws anything but an Error for arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (text) => {
        try {
          assert.equal(parseKey(text, 'k').length, 32);
        } catch (error) {
          assert.ok(error instanceof Error);
        }
      }),
    );
  });
});

describe('isZeroKey / keyToBase64 / keyToHex', () => {
  it('recognises the all-zero key only', () => {
    assert.equal(isZeroKey(new Uint8Array(32)), true);
    const key = new Uint8Array(32);
    key[31] = 1;
    assert.equal(isZeroKey(key), false);
  });

  it('check their argument', () => {
    assert.throws(() => isZeroKey(new Uint8Array(31)), /key/);
    assert.throws(() => keyToBase64(new Uint8Array(33)), /key/);
    assert.throws(() => keyToHex(new Uint8Array(0)), /key/);
  });
});
