import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  COOKIE_REFRESH_TIME,
  COOKIE_SECRET_MAX_AGE,
  MESSAGE_COOKIE_REPLY_SIZE,
  MESSAGE_INITIATION_SIZE,
  MESSAGE_RESPONSE_SIZE,
} from './constants.js';
import { CookieChecker, CookieGenerator, cookieKey, mac1Key } from './cookie.js';
import { generatePrivateKey, hash, mac, publicKeyFrom } from './crypto.js';
import { consumeResponse, createInitiation } from './handshake.js';
import { parseKey } from './keys.js';
import { parseMessage } from './messages.js';

function loadVectors(name: string): unknown {
  const url = new URL(`../../../src/wireguard/vectors/${name}`, import.meta.url);
  return JSON.parse(readFileSync(url, 'utf8'));
}
const fromHex = (text: string): Uint8Array => new Uint8Array(Buffer.from(text, 'hex'));

const SOURCE_A = Uint8Array.of(192, 0, 2, 7, 0xca, 0x6c); // 192.0.2.7:51820
const SOURCE_B = Uint8Array.of(192, 0, 2, 8, 0xca, 0x6c);

/** A handshake-sized message with random contents and zero MACs. */
function message(size: number = MESSAGE_INITIATION_SIZE): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size - 32; i++) bytes[i] = (i * 37 + size) & 0xff;
  bytes[0] = size === MESSAGE_INITIATION_SIZE ? 1 : 2;
  bytes[1] = bytes[2] = bytes[3] = 0;
  return bytes;
}

function setup() {
  const responderPublicKey = publicKeyFrom(generatePrivateKey());
  return {
    checker: new CookieChecker(responderPublicKey),
    generator: new CookieGenerator(responderPublicKey),
    responderPublicKey,
  };
}

describe('mac1 (§5.4.4)', () => {
  it('is MAC(HASH(LABEL_MAC1 || key), msg[0:len-32]) and the checker accepts it', () => {
    for (const size of [MESSAGE_INITIATION_SIZE, MESSAGE_RESPONSE_SIZE]) {
      const { checker, generator, responderPublicKey } = setup();
      const msg = message(size);
      generator.addMacs(msg, 0);
      const key = hash(new TextEncoder().encode('mac1----'), responderPublicKey);
      assert.deepEqual(mac1Key(responderPublicKey), key);
      assert.deepEqual(msg.subarray(size - 32, size - 16), mac(key, msg.subarray(0, size - 32)));
      assert.deepEqual(msg.subarray(size - 16), new Uint8Array(16), 'no cookie yet: mac2 is zero');
      assert.equal(checker.checkMac1(msg), true);
    }
  });

  it('fails for another key, any changed byte, or a wrong size', () => {
    const { checker, generator } = setup();
    const msg = message();
    generator.addMacs(msg, 0);
    assert.equal(new CookieChecker(publicKeyFrom(generatePrivateKey())).checkMac1(msg), false);
    assert.equal(new CookieChecker(null).checkMac1(msg), false);
    for (let i = 0; i < MESSAGE_INITIATION_SIZE - 16; i++) {
      const tampered = Uint8Array.from(msg);
      tampered[i] ^= 1;
      assert.equal(checker.checkMac1(tampered), false, `byte ${i}`);
    }
    assert.equal(checker.checkMac1(msg.subarray(0, 147)), false);
    assert.equal(checker.checkMac1(new Uint8Array(64)), false);
  });

  it('matches the mac1 of real wireguard-go messages', () => {
    const exchange = loadVectors('wireguard-go-exchange.json') as {
      aPublic: string;
      bPublic: string;
      initiatedByWireguardGo: { initiation: string };
      initiatedByB: { initiation: string; response: string };
    };
    const a = parseKey(exchange.aPublic, 'A public key');
    const b = parseKey(exchange.bPublic, 'B public key');
    // Sent by wireguard-go (A) to B.
    assert.equal(
      new CookieChecker(b).checkMac1(fromHex(exchange.initiatedByWireguardGo.initiation)),
      true,
    );
    assert.equal(new CookieChecker(b).checkMac1(fromHex(exchange.initiatedByB.response)), true);
    // Sent by us (B) to wireguard-go, which accepted it.
    assert.equal(new CookieChecker(a).checkMac1(fromHex(exchange.initiatedByB.initiation)), true);
  });

  it('takes wireguard-go’s cookie and makes the mac2 it accepted under load', () => {
    const exchange = loadVectors('wireguard-go-exchange.json') as {
      aPublic: string;
      bPrivate: string;
      bPublic: string;
      presharedKey: string;
      initiatedByB: {
        initiatorEphemeralPrivate: string;
        initiatorIndex: number;
        timestamp: string;
      };
      underLoad: {
        floodedInitiation: string;
        cookieReply: string;
        probeWithoutMac2BeforeAnsweredWithCookie: boolean;
        initiatorEphemeralPrivate: string;
        initiatorIndex: number;
        timestamp: string;
        initiationWithMac2: string;
        response: string;
      };
    };
    const recorded = exchange.underLoad;
    assert.equal(
      recorded.probeWithoutMac2BeforeAnsweredWithCookie,
      true,
      'wireguard-go was under load',
    );
    const a = parseKey(exchange.aPublic, 'A public key');
    const b = {
      privateKey: parseKey(exchange.bPrivate, 'B private key'),
      publicKey: parseKey(exchange.bPublic, 'B public key'),
    };
    const generator = new CookieGenerator(a);
    // The flooded initiation, rebuilt: the cookie reply is bound to its mac1.
    const flooded = createInitiation({
      local: b,
      peerPublicKey: a,
      localIndex: exchange.initiatedByB.initiatorIndex,
      timestamp: fromHex(exchange.initiatedByB.timestamp),
      ephemeralPrivateKey: fromHex(exchange.initiatedByB.initiatorEphemeralPrivate),
    });
    assert.ok(flooded !== null);
    generator.addMacs(flooded.message, 0);
    assert.deepEqual(flooded.message, fromHex(recorded.floodedInitiation));
    assert.equal(generator.consumeReply(fromHex(recorded.cookieReply), 1), true);

    // The next initiation carries mac2 under that cookie: byte for byte what wireguard-go accepted.
    const withMac2 = createInitiation({
      local: b,
      peerPublicKey: a,
      localIndex: recorded.initiatorIndex,
      timestamp: fromHex(recorded.timestamp),
      ephemeralPrivateKey: fromHex(recorded.initiatorEphemeralPrivate),
    });
    assert.ok(withMac2 !== null);
    generator.addMacs(withMac2.message, 2);
    assert.notDeepEqual(withMac2.message.subarray(132), new Uint8Array(16));
    assert.deepEqual(withMac2.message, fromHex(recorded.initiationWithMac2));
    const psk = parseKey(exchange.presharedKey, 'preshared key');
    assert.notEqual(consumeResponse(withMac2.state, b, psk, fromHex(recorded.response)), null);
  });

  it('setLocalPublicKey rekeys the checker', () => {
    const { checker, generator } = setup();
    const msg = message();
    generator.addMacs(msg, 0);
    checker.setLocalPublicKey(null);
    assert.equal(checker.checkMac1(msg), false);
    const other = publicKeyFrom(generatePrivateKey());
    checker.setLocalPublicKey(other);
    const forOther = message();
    new CookieGenerator(other).addMacs(forOther, 0);
    assert.equal(checker.checkMac1(forOther), true);
    assert.throws(() => {
      checker.setLocalPublicKey(new Uint8Array(31));
    }, /localPublicKey/);
  });
});

describe('cookie reply and mac2 (§5.4.7)', () => {
  it('round trip: reply, cookie, then a mac2 valid only for that source', () => {
    const { checker, generator, responderPublicKey } = setup();
    const first = message();
    generator.addMacs(first, 1000);
    assert.equal(checker.checkMac2(first, SOURCE_A, 1000), false, 'no cookie was sent yet');

    const reply = checker.createReply(first, 0xabcdef01, SOURCE_A, 1000);
    assert.equal(reply.length, MESSAGE_COOKIE_REPLY_SIZE);
    const parsed = parseMessage(reply);
    assert.ok(parsed?.type === 3);
    assert.equal(parsed.receiverIndex, 0xabcdef01);
    assert.deepEqual(
      cookieKey(responderPublicKey),
      hash(new TextEncoder().encode('cookie--'), responderPublicKey),
    );
    assert.equal(generator.consumeReply(reply, 1010), true);
    assert.equal(generator.hasFreshCookie(1010), true);

    const second = message();
    generator.addMacs(second, 1020);
    assert.notDeepEqual(second.subarray(132), new Uint8Array(16), 'mac2 is now set');
    assert.equal(checker.checkMac1(second), true);
    assert.equal(checker.checkMac2(second, SOURCE_A, 1030), true);
    assert.equal(checker.checkMac2(second, SOURCE_B, 1030), false, 'cookie is bound to the source');
    const tampered = Uint8Array.from(second);
    tampered[140] ^= 1;
    assert.equal(checker.checkMac2(tampered, SOURCE_A, 1030), false);

    // Responses carry mac2 too.
    const response = message(MESSAGE_RESPONSE_SIZE);
    generator.addMacs(response, 1040);
    assert.equal(checker.checkMac2(response, SOURCE_A, 1040), true);
  });

  it('accepts a reply only for the last mac1 sent, once', () => {
    const { checker, generator } = setup();
    assert.equal(generator.consumeReply(new Uint8Array(64), 0), false, 'nothing sent yet');
    const first = message();
    generator.addMacs(first, 0);
    const replyToFirst = checker.createReply(first, 1, SOURCE_A, 0);
    const second = message();
    second[20] ^= 1;
    generator.addMacs(second, 1);
    assert.equal(generator.consumeReply(replyToFirst, 2), false, 'bound to the first mac1');
    const replyToSecond = checker.createReply(second, 1, SOURCE_A, 2);
    for (let i = 8; i < 64; i++) {
      const tampered = Uint8Array.from(replyToSecond);
      tampered[i] ^= 1;
      assert.equal(generator.consumeReply(tampered, 3), false, `byte ${i}`);
    }
    assert.equal(generator.consumeReply(replyToSecond.subarray(0, 63), 3), false);
    assert.equal(generator.consumeReply(replyToSecond, 3), true);
    assert.equal(generator.consumeReply(replyToSecond, 4), false, 'a replay is refused');
  });

  it('the generator stops sending mac2 after COOKIE_REFRESH_TIME', () => {
    const { checker, generator } = setup();
    const first = message();
    generator.addMacs(first, 0);
    assert.equal(generator.consumeReply(checker.createReply(first, 1, SOURCE_A, 0), 5), true);
    const fresh = message();
    generator.addMacs(fresh, 5 + COOKIE_REFRESH_TIME - 1);
    assert.notDeepEqual(fresh.subarray(132), new Uint8Array(16));
    const stale = message();
    stale.fill(0x99, 132); // whatever was there is overwritten with zeros
    generator.addMacs(stale, 5 + COOKIE_REFRESH_TIME);
    assert.deepEqual(stale.subarray(132), new Uint8Array(16));
    assert.equal(generator.hasFreshCookie(5 + COOKIE_REFRESH_TIME), false);
  });

  it('the checker rotates its secret after COOKIE_SECRET_MAX_AGE: old cookies stop working', () => {
    const { checker, generator } = setup();
    const first = message();
    generator.addMacs(first, 0);
    assert.equal(generator.consumeReply(checker.createReply(first, 1, SOURCE_A, 0), 0), true);
    const msg = message();
    generator.addMacs(msg, 10);
    assert.equal(checker.checkMac2(msg, SOURCE_A, COOKIE_SECRET_MAX_AGE), true);
    assert.equal(
      checker.checkMac2(msg, SOURCE_A, COOKIE_SECRET_MAX_AGE + 1),
      false,
      'secret expired',
    );
    // A new reply makes a new secret; the old cookie does not match it.
    const again = message();
    generator.addMacs(again, COOKIE_SECRET_MAX_AGE + 2);
    checker.createReply(again, 1, SOURCE_A, COOKIE_SECRET_MAX_AGE + 2);
    assert.equal(checker.checkMac2(msg, SOURCE_A, COOKIE_SECRET_MAX_AGE + 3), false);
  });

  it('never throws on arbitrary replies and messages (fuzz)', () => {
    const { checker, generator } = setup();
    const sent = message();
    generator.addMacs(sent, 0);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        assert.equal(generator.consumeReply(bytes, 1), false);
        assert.equal(checker.checkMac1(bytes), false);
        assert.equal(checker.checkMac2(bytes, SOURCE_A, 1), false);
      }),
    );
  });

  it('names bad arguments', () => {
    const { checker, generator } = setup();
    assert.throws(() => {
      generator.addMacs(new Uint8Array(100), 0);
    }, /message/);
    assert.throws(() => checker.createReply(message(), -1, SOURCE_A, 0), /receiverIndex/);
    assert.throws(() => checker.createReply(message(), 1, new Uint8Array(0), 0), /source/);
    assert.throws(
      () => new CookieChecker(null).createReply(message(), 1, SOURCE_A, 0),
      /public key/,
    );
    assert.throws(() => new CookieGenerator(new Uint8Array(5)), /peerPublicKey/);
  });
});
