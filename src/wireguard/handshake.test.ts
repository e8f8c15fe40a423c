import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { MESSAGE_INITIATION_SIZE, MESSAGE_RESPONSE_SIZE } from './constants.js';
import { CookieChecker, CookieGenerator } from './cookie.js';
import { aeadOpen, dh, generatePrivateKey, publicKeyFrom } from './crypto.js';
import {
  INITIAL_CHAINING_KEY,
  INITIAL_HASH,
  consumeInitiation,
  consumeResponse,
  createInitiation,
  createResponse,
  discardHandshakeState,
  type StaticIdentity,
} from './handshake.js';
import { parseKey } from './keys.js';
import { parseMessage, senderIndexOf } from './messages.js';
import { tai64n } from './tai64n.js';

function loadVectors(name: string): unknown {
  const url = new URL(`../../../src/wireguard/vectors/${name}`, import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8'));
}
const fromHex = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'hex'));
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex');
const EMPTY = new Uint8Array(0);
const NO_PSK: Uint8Array = new Uint8Array(32);

function newIdentity(): StaticIdentity {
  const privateKey = generatePrivateKey();
  return { privateKey, publicKey: publicKeyFrom(privateKey) };
}

/** One complete handshake between fresh identities; returns everything for inspection. */
function handshake(presharedKey: Uint8Array = NO_PSK) {
  const initiator = newIdentity();
  const responder = newIdentity();
  const timestamp = tai64n(Date.now());
  const created = createInitiation({
    local: initiator,
    peerPublicKey: responder.publicKey,
    localIndex: 1111,
    timestamp,
  });
  assert.ok(created !== null);
  const consumed = consumeInitiation(responder, created.message);
  assert.ok(consumed !== null);
  const response = createResponse({ state: consumed.state, presharedKey, localIndex: 2222 });
  assert.ok(response !== null);
  return { initiator, responder, timestamp, created, consumed, response };
}

describe('initial Noise values', () => {
  it('match the well-known C_i and H_i', () => {
    const vectors = loadVectors('noise-constants.json') as {
      initialChainingKey: string;
      initialHash: string;
    };
    assert.equal(toHex(INITIAL_CHAINING_KEY), vectors.initialChainingKey);
    assert.equal(toHex(INITIAL_HASH), vectors.initialHash);
  });
});

describe('Noise_IKpsk2 handshake between two identities', () => {
  for (const [name, psk] of [
    ['without a preshared key', NO_PSK],
    ['with a preshared key', generatePrivateKey()],
  ] as const) {
    it(`derives matching transport keys both ways ${name}`, () => {
      const { initiator, timestamp, created, consumed, response } = handshake(psk);
      assert.equal(created.message.length, MESSAGE_INITIATION_SIZE);
      assert.equal(response.message.length, MESSAGE_RESPONSE_SIZE);
      assert.deepEqual(consumed.peerPublicKey, initiator.publicKey);
      assert.deepEqual(consumed.timestamp, timestamp);
      assert.equal(consumed.remoteIndex, 1111);
      assert.equal(response.remoteIndex, 1111);
      const done = consumeResponse(created.state, initiator, psk, response.message);
      assert.ok(done !== null);
      assert.equal(done.remoteIndex, 2222);
      assert.deepEqual(done.keys.sendKey, response.keys.receiveKey);
      assert.deepEqual(done.keys.receiveKey, response.keys.sendKey);
      assert.notDeepEqual(done.keys.sendKey, done.keys.receiveKey);
      // The messages leave with zero MACs for cookie.ts to fill in.
      assert.deepEqual(created.message.subarray(116), new Uint8Array(32));
      assert.deepEqual(response.message.subarray(60), new Uint8Array(32));
    });
  }

  it('fails with the wrong preshared key and keeps the state usable', () => {
    const psk = generatePrivateKey();
    const { initiator, created, response } = handshake(psk);
    const wrong = Uint8Array.from(psk);
    wrong[0] ^= 1;
    assert.equal(consumeResponse(created.state, initiator, wrong, response.message), null);
    assert.equal(consumeResponse(created.state, initiator, NO_PSK, response.message), null);
    assert.notEqual(consumeResponse(created.state, initiator, psk, response.message), null);
  });

  it('rejects an initiation when any authenticated byte is changed', () => {
    const { responder, created } = handshake();
    // Bytes 4..7 (sender index) are outside the Noise transcript: only mac1 covers them.
    for (let i = 0; i < 116; i++) {
      if (i >= 4 && i < 8) continue;
      const tampered = Uint8Array.from(created.message);
      tampered[i] ^= 0x20;
      assert.equal(consumeInitiation(responder, tampered), null, `byte ${i}`);
    }
    const reindexed = Uint8Array.from(created.message);
    reindexed[4] ^= 0x20;
    assert.equal(consumeInitiation(responder, reindexed)?.remoteIndex, 1111 ^ 0x20);
    // mac1/mac2 belong to cookie.ts, not to the Noise transcript.
    const withMacs = Uint8Array.from(created.message);
    withMacs.fill(0x55, 116);
    assert.notEqual(consumeInitiation(responder, withMacs), null);
  });

  it('rejects a response when any authenticated byte is changed, then accepts the real one', () => {
    const { initiator, created, response } = handshake();
    // Bytes 4..7 (sender index) are outside the transcript (mac1 covers them);
    // bytes 8..11 (receiver index) must name the initiation's index.
    for (let i = 0; i < 60; i++) {
      if (i >= 4 && i < 8) continue;
      const tampered = Uint8Array.from(response.message);
      tampered[i] ^= 0x20;
      assert.equal(consumeResponse(created.state, initiator, NO_PSK, tampered), null, `byte ${i}`);
    }
    assert.notEqual(consumeResponse(created.state, initiator, NO_PSK, response.message), null);
  });

  it('rejects an initiation meant for another responder', () => {
    const { created } = handshake();
    assert.equal(consumeInitiation(newIdentity(), created.message), null);
  });

  it('rejects wrong sizes and types without throwing', () => {
    const { responder, initiator, created, response } = handshake();
    assert.equal(consumeInitiation(responder, created.message.subarray(0, 147)), null);
    assert.equal(consumeInitiation(responder, response.message), null);
    assert.equal(consumeResponse(created.state, initiator, NO_PSK, created.message), null);
    assert.equal(consumeResponse(created.state, initiator, NO_PSK, new Uint8Array(92)), null);
  });

  it('rejects a response addressed to another index', () => {
    const { initiator, created, response } = handshake();
    const misaddressed = Uint8Array.from(response.message);
    misaddressed[8] ^= 1; // receiver index
    assert.equal(consumeResponse(created.state, initiator, NO_PSK, misaddressed), null);
  });

  it('uses each state once and wipes its secrets', () => {
    const { initiator, created, consumed, response } = handshake();
    assert.equal(
      createResponse({ state: consumed.state, presharedKey: NO_PSK, localIndex: 3 }),
      null,
    );
    assert.deepEqual(consumed.state.chainingKey, new Uint8Array(32));
    assert.deepEqual(consumed.state.hash, new Uint8Array(32));
    assert.notEqual(consumeResponse(created.state, initiator, NO_PSK, response.message), null);
    assert.equal(consumeResponse(created.state, initiator, NO_PSK, response.message), null);
    assert.deepEqual(created.state.chainingKey, new Uint8Array(32));
    assert.equal(created.state.ephemeralPrivate, null);
  });

  it('stays correct when a caller rewrites its key arrays in place', () => {
    const initiator = newIdentity();
    const responder = newIdentity();
    const run = (): boolean => {
      const created = createInitiation({
        local: initiator,
        peerPublicKey: responder.publicKey,
        localIndex: 1,
        timestamp: tai64n(Date.now()),
      });
      assert.ok(created !== null);
      const consumed = consumeInitiation(responder, created.message);
      if (consumed === null) return false;
      const response = createResponse({
        state: consumed.state,
        presharedKey: NO_PSK,
        localIndex: 2,
      });
      assert.ok(response !== null);
      return consumeResponse(created.state, initiator, NO_PSK, response.message) !== null;
    };
    assert.equal(run(), true);
    // Same arrays, new contents (e.g. a UAPI private_key change): no cached value may leak through.
    const replacement = newIdentity();
    responder.privateKey.set(replacement.privateKey);
    responder.publicKey.set(replacement.publicKey);
    assert.equal(run(), true);
  });

  it('discardHandshakeState wipes a state that will not complete', () => {
    const { initiator, created, response } = handshake();
    discardHandshakeState(created.state);
    assert.deepEqual(created.state.hash, new Uint8Array(32));
    assert.equal(consumeResponse(created.state, initiator, NO_PSK, response.message), null);
  });
});

describe('low-order keys', () => {
  const lowOrder = (loadVectors('x25519.json') as { lowOrderPoints: string[] }).lowOrderPoints.map(
    fromHex,
  );

  it('createInitiation refuses a low-order peer public key', () => {
    const local = newIdentity();
    for (const point of lowOrder) {
      const created = createInitiation({
        local,
        peerPublicKey: point,
        localIndex: 1,
        timestamp: tai64n(0),
      });
      assert.equal(created, null);
    }
  });

  it('consumeInitiation refuses a low-order ephemeral', () => {
    const { responder, created } = handshake();
    for (const point of lowOrder) {
      const forged = Uint8Array.from(created.message);
      forged.set(point, 8);
      assert.equal(consumeInitiation(responder, forged), null);
    }
  });

  it('consumeResponse refuses a low-order ephemeral', () => {
    const { initiator, created, response } = handshake();
    for (const point of lowOrder) {
      const forged = Uint8Array.from(response.message);
      forged.set(point, 12);
      assert.equal(consumeResponse(created.state, initiator, NO_PSK, forged), null);
    }
  });

  it('consumeInitiation refuses a zero static-static secret from the caller', () => {
    const { responder, created } = handshake();
    assert.equal(
      consumeInitiation(responder, created.message, () => new Uint8Array(32)),
      null,
    );
  });
});

describe('consumeInitiation with a precomputed static-static secret', () => {
  it('asks for the initiator by public key and stops on an unknown peer', () => {
    const { initiator, responder, created } = handshake();
    const asked: Uint8Array[] = [];
    const unknown = consumeInitiation(responder, created.message, (peer) => {
      asked.push(peer);
      return null;
    });
    assert.equal(unknown, null);
    assert.deepEqual(asked, [initiator.publicKey]);
    const staticStatic = dh(responder.privateKey, initiator.publicKey);
    assert.ok(staticStatic !== null);
    const known = consumeInitiation(responder, created.message, () => staticStatic);
    assert.ok(known !== null);
    assert.deepEqual(known.peerPublicKey, initiator.publicKey);
    assert.deepEqual(staticStatic, dh(responder.privateKey, initiator.publicKey), 'not wiped');
  });

  it('createInitiation accepts the precomputed secret and gives the same message', () => {
    const initiator = newIdentity();
    const responder = newIdentity();
    const ephemeralPrivateKey = generatePrivateKey();
    const common = {
      local: initiator,
      peerPublicKey: responder.publicKey,
      localIndex: 5,
      timestamp: tai64n(1_700_000_000_000),
      ephemeralPrivateKey,
    };
    const staticStatic = dh(initiator.privateKey, responder.publicKey);
    assert.ok(staticStatic !== null);
    const withSecret = createInitiation({ ...common, staticStatic });
    const without = createInitiation(common);
    assert.ok(withSecret !== null && without !== null);
    assert.deepEqual(withSecret.message, without.message);
  });
});

describe('interoperability with wireguard-go (recorded exchange)', () => {
  interface Exchange {
    source: string;
    aPrivate: string;
    aPublic: string;
    bPrivate: string;
    bPublic: string;
    presharedKey: string;
    initiatedByWireguardGo: {
      initiation: string;
      responderEphemeralPrivate: string;
      responderIndex: number;
      response: string;
      transportFromWireguardGo: string;
      plaintextFromWireguardGo: string;
    };
    initiatedByB: {
      initiatorEphemeralPrivate: string;
      initiatorIndex: number;
      timestamp: string;
      initiation: string;
      response: string;
      transportFromWireguardGo: string;
      plaintextFromWireguardGo: string;
    };
  }
  const exchange = loadVectors('wireguard-go-exchange.json') as Exchange;
  const a: StaticIdentity = {
    privateKey: parseKey(exchange.aPrivate, 'A private key'),
    publicKey: parseKey(exchange.aPublic, 'A public key'),
  };
  const b: StaticIdentity = {
    privateKey: parseKey(exchange.bPrivate, 'B private key'),
    publicKey: parseKey(exchange.bPublic, 'B public key'),
  };
  const psk = parseKey(exchange.presharedKey, 'preshared key');

  function openTransport(key: Uint8Array, packetHex: string): Uint8Array | null {
    const message = parseMessage(fromHex(packetHex));
    assert.ok(message?.type === 4);
    return aeadOpen(key, message.counter, message.encryptedPacket, EMPTY);
  }

  it('the keys in the recording belong together', () => {
    assert.ok(exchange.source.includes('wireguard-go'));
    assert.deepEqual(publicKeyFrom(a.privateKey), a.publicKey);
    assert.deepEqual(publicKeyFrom(b.privateKey), b.publicKey);
  });

  it('consumes wireguard-go’s initiation and reproduces the response it accepted', () => {
    const recorded = exchange.initiatedByWireguardGo;
    const initiation = fromHex(recorded.initiation);
    assert.ok(new CookieChecker(b.publicKey).checkMac1(initiation));
    const consumed = consumeInitiation(b, initiation);
    assert.ok(consumed !== null);
    assert.deepEqual(consumed.peerPublicKey, a.publicKey);
    assert.equal(consumed.remoteIndex, senderIndexOf(initiation));
    // wireguard-go whitens the nanoseconds to a multiple of 2^24 too.
    assert.equal(consumed.timestamp[0], 0x40);
    assert.equal(
      new DataView(consumed.timestamp.buffer, consumed.timestamp.byteOffset).getUint32(8) % 2 ** 24,
      0,
    );

    const response = createResponse({
      state: consumed.state,
      presharedKey: psk,
      localIndex: recorded.responderIndex,
      ephemeralPrivateKey: fromHex(recorded.responderEphemeralPrivate),
    });
    assert.ok(response !== null);
    new CookieGenerator(a.publicKey).addMacs(response.message, 0);
    assert.equal(toHex(response.message), recorded.response);

    const plaintext = openTransport(response.keys.receiveKey, recorded.transportFromWireguardGo);
    assert.ok(plaintext !== null, 'wireguard-go’s first data packet opens with our receive key');
    assert.equal(toHex(plaintext), recorded.plaintextFromWireguardGo);
    assert.equal(plaintext[0] >> 4, 4, 'an IPv4 packet');
    assert.equal(plaintext[20], 8, 'an ICMP echo request');
  });

  it('reproduces the initiation wireguard-go accepted and consumes its response', () => {
    const recorded = exchange.initiatedByB;
    const created = createInitiation({
      local: b,
      peerPublicKey: a.publicKey,
      localIndex: recorded.initiatorIndex,
      timestamp: fromHex(recorded.timestamp),
      ephemeralPrivateKey: fromHex(recorded.initiatorEphemeralPrivate),
    });
    assert.ok(created !== null);
    new CookieGenerator(a.publicKey).addMacs(created.message, 0);
    assert.equal(toHex(created.message), recorded.initiation);

    const response = fromHex(recorded.response);
    assert.ok(new CookieChecker(b.publicKey).checkMac1(response));
    const done = consumeResponse(created.state, b, psk, response);
    assert.ok(done !== null);
    const plaintext = openTransport(done.keys.receiveKey, recorded.transportFromWireguardGo);
    assert.ok(plaintext !== null, 'wireguard-go’s echo reply opens with our receive key');
    assert.equal(toHex(plaintext), recorded.plaintextFromWireguardGo);
    assert.equal(plaintext[20], 0, 'an ICMP echo reply');
  });
});

describe('argument checks', () => {
  it('name the bad argument', () => {
    const local = newIdentity();
    const base = {
      local,
      peerPublicKey: newIdentity().publicKey,
      localIndex: 1,
      timestamp: tai64n(0),
    };
    assert.throws(
      () => createInitiation({ ...base, peerPublicKey: new Uint8Array(31) }),
      /peerPublicKey/,
    );
    assert.throws(() => createInitiation({ ...base, localIndex: -1 }), /localIndex/);
    assert.throws(() => createInitiation({ ...base, timestamp: new Uint8Array(8) }), /timestamp/);
    assert.throws(
      () =>
        createInitiation({
          ...base,
          local: { privateKey: new Uint8Array(32), publicKey: new Uint8Array(3) },
        }),
      /local.publicKey/,
    );
    const { consumed } = handshake();
    assert.throws(
      () =>
        createResponse({ state: consumed.state, presharedKey: new Uint8Array(16), localIndex: 1 }),
      /presharedKey/,
    );
  });
});
