import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  aeadOpen,
  aeadSeal,
  cachedPrivateKeyObject,
  chachaPolyOpen,
  chachaPolySeal,
  constantTimeEqual,
  dh,
  dhWithKeyObject,
  generateKeyPair,
  generatePrivateKey,
  hash,
  hmac,
  kdf1,
  kdf2,
  kdf3,
  KeyedMac,
  mac,
  publicKeyFrom,
  writeCounterNonce,
  xaeadOpen,
  xaeadSeal,
} from './crypto.js';

// Tests run from dist/src/wireguard/; the vectors stay in the source tree.
function loadVectors(name: string): unknown {
  const url = new URL(`../../../src/wireguard/vectors/${name}`, import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8'));
}
const fromHex = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'hex'));
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');

interface AeadVector {
  source: string;
  key: string;
  nonce: string;
  aad: string;
  plaintext: string;
  ciphertext: string;
  tag: string;
}

describe('hash (BLAKE2s-256)', () => {
  const vectors = loadVectors('blake2s.json') as {
    source: string;
    hash: { inputAscii: string; digest: string }[];
  };

  it('matches RFC 7693 Appendix B', () => {
    assert.ok(vectors.source.includes('RFC 7693'));
    for (const vector of vectors.hash) {
      assert.equal(toHex(hash(new TextEncoder().encode(vector.inputAscii))), vector.digest);
    }
  });

  it('hashes its parts as one concatenation', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 100 }), { maxLength: 5 }), (parts) => {
        assert.deepEqual(hash(...parts), hash(Buffer.concat(parts)));
      }),
    );
  });

  it('names a part that is not bytes', () => {
    assert.throws(() => hash(new Uint8Array(1), 'x' as unknown as Uint8Array), /hash part 1/);
  });
});

describe('mac (keyed BLAKE2s, 16 bytes) and hmac (HMAC-BLAKE2s)', () => {
  const vectors = loadVectors('blake2s.json') as {
    kernelSelftest: {
      keyedMac16: { index: number; digest: string }[];
      hmac: { keyIs: 'key' | 'buf'; dataIs: 'key' | 'buf'; digest: string }[];
    };
  };
  // The inputs of the kernel self-test, built as its generator describes.
  const kernelKey = new Uint8Array(32);
  kernelKey[0] = kernelKey[1] = 1;
  for (let i = 2; i < 32; i++) kernelKey[i] = (kernelKey[i - 2] + kernelKey[i - 1]) & 0xff;
  const kernelBuf = Uint8Array.from({ length: 256 }, (_, i) => i);

  it('matches the Linux kernel blake2s self-test vectors with a 16-byte output', () => {
    assert.equal(vectors.kernelSelftest.keyedMac16.length, 8);
    for (const { index, digest } of vectors.kernelSelftest.keyedMac16) {
      assert.equal(1 + (index % 32), 16, 'only entries with a 16-byte output are MAC vectors');
      const keyLength = (13 * index) % 33;
      const key = kernelKey.subarray(32 - keyLength);
      const input = kernelBuf.subarray(0, index);
      assert.equal(toHex(mac(key, input)), digest, `entry ${index}`);
      assert.equal(toHex(new KeyedMac(key).compute(input)), digest, `KeyedMac entry ${index}`);
    }
  });

  it('matches the Linux kernel HMAC-BLAKE2s self-test vectors', () => {
    const pick = (which: 'key' | 'buf'): Uint8Array => (which === 'key' ? kernelKey : kernelBuf);
    for (const vector of vectors.kernelSelftest.hmac) {
      assert.equal(toHex(hmac(pick(vector.keyIs), pick(vector.dataIs))), vector.digest);
    }
  });

  it('KeyedMac can be reused and writes into a buffer', () => {
    const keyed = new KeyedMac(new Uint8Array(32).fill(7));
    const out = new Uint8Array(40);
    const first = keyed.compute(Uint8Array.of(1, 2, 3), out, 10);
    assert.deepEqual(first, mac(new Uint8Array(32).fill(7), Uint8Array.of(1, 2, 3)));
    assert.deepEqual(out.subarray(10, 26), first);
    assert.deepEqual(keyed.compute(Uint8Array.of(1, 2, 3)), first);
  });

  it('refuses an empty or over-long key', () => {
    assert.throws(() => mac(new Uint8Array(0), new Uint8Array(1)), /mac key/);
    assert.throws(() => mac(new Uint8Array(33), new Uint8Array(1)), /mac key/);
  });
});

describe('kdf1/kdf2/kdf3 (whitepaper §5.4 HKDF)', () => {
  const vectors = loadVectors('kdf.json') as {
    source: string;
    vectors: { key: string; input: string; t0: string; t1: string; t2: string }[];
  };

  it('match wireguard-go device/kdf_test.go', () => {
    assert.ok(vectors.source.includes('kdf_test.go'));
    for (const v of vectors.vectors) {
      const key = fromHex(v.key);
      const input = fromHex(v.input);
      assert.deepEqual(kdf3(key, input).map(toHex), [v.t0, v.t1, v.t2]);
      assert.deepEqual(kdf2(key, input).map(toHex), [v.t0, v.t1]);
      assert.deepEqual(kdf1(key, input).map(toHex), [v.t0]);
    }
  });
});

describe('AEAD (ChaCha20-Poly1305)', () => {
  const vector = loadVectors('chacha20poly1305.json') as AeadVector;

  it('matches RFC 8439 §2.8.2', () => {
    assert.ok(vector.source.includes('RFC 8439'));
    const sealed = chachaPolySeal(
      fromHex(vector.key),
      fromHex(vector.nonce),
      fromHex(vector.plaintext),
      fromHex(vector.aad),
    );
    assert.equal(toHex(sealed), vector.ciphertext + vector.tag);
    const opened = chachaPolyOpen(
      fromHex(vector.key),
      fromHex(vector.nonce),
      sealed,
      fromHex(vector.aad),
    );
    assert.ok(opened !== null);
    assert.equal(toHex(opened), vector.plaintext);
  });

  it('uses the nonce 0^32 || counter as little-endian 64 bits (§5.4.6)', () => {
    const nonce = writeCounterNonce(new Uint8Array(12).fill(0xaa), 0x0102030405060708n);
    assert.equal(toHex(nonce), '000000000807060504030201');
    const key = new Uint8Array(32).fill(9);
    const plaintext = Uint8Array.of(1, 2, 3);
    const ad = Uint8Array.of(4);
    assert.deepEqual(
      aeadSeal(key, 0x0102030405060708n, plaintext, ad),
      chachaPolySeal(key, nonce, plaintext, ad),
    );
    assert.equal(
      toHex(writeCounterNonce(new Uint8Array(12), 2n ** 64n - 1n)),
      '00000000' + 'ff'.repeat(8),
    );
    assert.throws(() => writeCounterNonce(new Uint8Array(12), 2n ** 64n), /counter/);
    assert.throws(() => writeCounterNonce(new Uint8Array(12), -1n), /counter/);
  });

  it('round-trips, and any change to key, counter, ciphertext or ad fails', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        fc.uint8Array({ maxLength: 200 }),
        fc.uint8Array({ maxLength: 40 }),
        fc.nat(),
        (key, counter, plaintext, ad, position) => {
          const sealed = aeadSeal(key, counter, plaintext, ad);
          assert.equal(sealed.length, plaintext.length + 16);
          assert.deepEqual(aeadOpen(key, counter, sealed, ad), plaintext);
          const tampered = Uint8Array.from(sealed);
          tampered[position % tampered.length] ^= 1;
          assert.equal(aeadOpen(key, counter, tampered, ad), null);
          const otherCounter = counter === 0n ? 1n : counter - 1n;
          assert.equal(aeadOpen(key, otherCounter, sealed, ad), null);
          assert.equal(aeadOpen(key, counter, sealed, Uint8Array.of(...ad, 0)), null);
          const otherKey = Uint8Array.from(key);
          otherKey[position % 32] ^= 0x80;
          assert.equal(aeadOpen(otherKey, counter, sealed, ad), null);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('returns null for input shorter than a tag, and checks argument sizes', () => {
    assert.equal(aeadOpen(new Uint8Array(32), 0n, new Uint8Array(15), new Uint8Array(0)), null);
    assert.throws(
      () => aeadSeal(new Uint8Array(31), 0n, new Uint8Array(0), new Uint8Array(0)),
      /key/,
    );
    assert.throws(
      () =>
        aeadSeal(new Uint8Array(32), 1 as unknown as bigint, new Uint8Array(0), new Uint8Array(0)),
      /counter/,
    );
  });
});

describe('XAEAD (XChaCha20-Poly1305)', () => {
  const vector = loadVectors('xchacha20poly1305.json') as AeadVector;

  it('matches draft-irtf-cfrg-xchacha-03 A.3.1', () => {
    assert.ok(vector.source.includes('xchacha'));
    const sealed = xaeadSeal(
      fromHex(vector.key),
      fromHex(vector.nonce),
      fromHex(vector.plaintext),
      fromHex(vector.aad),
    );
    assert.equal(toHex(sealed), vector.ciphertext + vector.tag);
    const opened = xaeadOpen(
      fromHex(vector.key),
      fromHex(vector.nonce),
      sealed,
      fromHex(vector.aad),
    );
    assert.ok(opened !== null);
    assert.equal(toHex(opened), vector.plaintext);
  });

  it('fails closed on tampering and short input', () => {
    const key = new Uint8Array(32).fill(1);
    const nonce = new Uint8Array(24).fill(2);
    const sealed = xaeadSeal(key, nonce, new Uint8Array(16), Uint8Array.of(3));
    for (let i = 0; i < sealed.length; i++) {
      const tampered = Uint8Array.from(sealed);
      tampered[i] ^= 4;
      assert.equal(xaeadOpen(key, nonce, tampered, Uint8Array.of(3)), null);
    }
    assert.equal(xaeadOpen(key, nonce, sealed, Uint8Array.of(4)), null);
    assert.equal(xaeadOpen(key, nonce, sealed.subarray(0, 15), Uint8Array.of(3)), null);
    assert.throws(
      () => xaeadSeal(key, new Uint8Array(12), new Uint8Array(0), new Uint8Array(0)),
      /nonce/,
    );
  });
});

describe('X25519', () => {
  const vectors = loadVectors('x25519.json') as {
    scalarMultiplication: { scalar: string; uCoordinate: string; output: string }[];
    diffieHellman: Record<
      'alicePrivate' | 'alicePublic' | 'bobPrivate' | 'bobPublic' | 'shared',
      string
    >;
    lowOrderPoints: string[];
  };

  it('matches RFC 7748 §5.2', () => {
    for (const v of vectors.scalarMultiplication) {
      const shared = dh(fromHex(v.scalar), fromHex(v.uCoordinate));
      assert.ok(shared !== null);
      assert.equal(toHex(shared), v.output);
    }
  });

  it('matches RFC 7748 §6.1 (public keys and the shared secret, both ways)', () => {
    const v = vectors.diffieHellman;
    assert.equal(toHex(publicKeyFrom(fromHex(v.alicePrivate))), v.alicePublic);
    assert.equal(toHex(publicKeyFrom(fromHex(v.bobPrivate))), v.bobPublic);
    assert.equal(
      toHex(dh(fromHex(v.alicePrivate), fromHex(v.bobPublic)) ?? new Uint8Array(0)),
      v.shared,
    );
    assert.equal(
      toHex(dh(fromHex(v.bobPrivate), fromHex(v.alicePublic)) ?? new Uint8Array(0)),
      v.shared,
    );
  });

  it('returns null for every low-order public key', () => {
    assert.equal(vectors.lowOrderPoints.length, 7);
    const privateKey = generatePrivateKey();
    for (const point of vectors.lowOrderPoints) {
      assert.equal(dh(privateKey, fromHex(point)), null, point);
    }
  });

  it('generates clamped private keys whose DH agrees both ways', () => {
    for (let i = 0; i < 20; i++) {
      const a = generatePrivateKey();
      const b = generatePrivateKey();
      assert.equal(a[0] & 7, 0);
      assert.equal(a[31] & 0x80, 0);
      assert.equal(a[31] & 0x40, 0x40);
      assert.deepEqual(dh(a, publicKeyFrom(b)), dh(b, publicKeyFrom(a)));
    }
  });

  it('generateKeyPair gives a KeyObject whose public key matches', () => {
    const pair = generateKeyPair();
    const other = generatePrivateKey();
    assert.equal(pair.publicKey.length, 32);
    const ours = dhWithKeyObject(pair.privateKey, publicKeyFrom(other));
    assert.ok(ours !== null);
    assert.deepEqual(dh(other, pair.publicKey), ours);
  });

  it('never serves a stale cached key when the caller rewrites its array', () => {
    const privateKey = generatePrivateKey();
    const first = cachedPrivateKeyObject(privateKey);
    assert.equal(cachedPrivateKeyObject(privateKey), first);
    const replacement = generatePrivateKey();
    privateKey.set(replacement);
    assert.notEqual(cachedPrivateKeyObject(privateKey), first);
    assert.deepEqual(publicKeyFrom(privateKey), publicKeyFrom(Uint8Array.from(replacement)));
  });

  it('names bad arguments', () => {
    assert.throws(() => dh(new Uint8Array(31), new Uint8Array(32)), /privateKey/);
    assert.throws(() => dh(new Uint8Array(32), new Uint8Array(33)), /publicKey/);
  });
});

describe('constantTimeEqual', () => {
  it('compares contents and treats different lengths as unequal', () => {
    assert.equal(constantTimeEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 2)), true);
    assert.equal(constantTimeEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 3)), false);
    assert.equal(constantTimeEqual(Uint8Array.of(1, 2), Uint8Array.of(1, 2, 3)), false);
    assert.equal(constantTimeEqual(new Uint8Array(0), new Uint8Array(0)), true);
  });
});
