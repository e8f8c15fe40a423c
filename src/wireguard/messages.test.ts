import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  MESSAGE_COOKIE_REPLY,
  MESSAGE_COOKIE_REPLY_SIZE,
  MESSAGE_INITIATION,
  MESSAGE_INITIATION_SIZE,
  MESSAGE_RESPONSE,
  MESSAGE_RESPONSE_SIZE,
  MESSAGE_TRANSPORT_DATA,
} from './constants.js';
import {
  messageType,
  parseMessage,
  receiverIndexOf,
  senderIndexOf,
  serializeMessage,
  transportCounterOf,
  writeTransportHeader,
  type Message,
} from './messages.js';

const bytes = (length: number, fill: number): Uint8Array => new Uint8Array(length).fill(fill);

describe('parseMessage', () => {
  it('lays out an initiation as §5.4.2 says, without copying', () => {
    const packet = new Uint8Array(MESSAGE_INITIATION_SIZE);
    packet.set([1, 0, 0, 0, 0x78, 0x56, 0x34, 0x12]);
    packet.fill(0xe1, 8, 40);
    packet.fill(0x51, 40, 88);
    packet.fill(0x71, 88, 116);
    packet.fill(0xa1, 116, 132);
    packet.fill(0xa2, 132, 148);
    const message = parseMessage(packet);
    assert.ok(message?.type === MESSAGE_INITIATION);
    assert.equal(message.senderIndex, 0x12345678);
    assert.deepEqual(message.ephemeral, bytes(32, 0xe1));
    assert.deepEqual(message.encryptedStatic, bytes(48, 0x51));
    assert.deepEqual(message.encryptedTimestamp, bytes(28, 0x71));
    assert.deepEqual(message.mac1, bytes(16, 0xa1));
    assert.deepEqual(message.mac2, bytes(16, 0xa2));
    packet[8] = 0;
    assert.equal(message.ephemeral[0], 0, 'fields are views of the packet');
    assert.equal(message.ephemeral.buffer, packet.buffer);
  });

  it('lays out a response as §5.4.3 says', () => {
    const packet = new Uint8Array(MESSAGE_RESPONSE_SIZE);
    packet.set([2, 0, 0, 0, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
    packet.fill(0xe2, 12, 44);
    packet.fill(0x0e, 44, 60);
    packet.fill(0xa1, 60, 76);
    packet.fill(0xa2, 76, 92);
    const message = parseMessage(packet);
    assert.ok(message?.type === MESSAGE_RESPONSE);
    assert.equal(message.senderIndex, 1);
    assert.equal(message.receiverIndex, 0xffffffff);
    assert.deepEqual(message.ephemeral, bytes(32, 0xe2));
    assert.deepEqual(message.encryptedNothing, bytes(16, 0x0e));
    assert.deepEqual(message.mac1, bytes(16, 0xa1));
    assert.deepEqual(message.mac2, bytes(16, 0xa2));
  });

  it('lays out a cookie reply as §5.4.7 says', () => {
    const packet = new Uint8Array(MESSAGE_COOKIE_REPLY_SIZE);
    packet.set([3, 0, 0, 0, 9, 0, 0, 0]);
    packet.fill(0x4e, 8, 32);
    packet.fill(0xc0, 32, 64);
    const message = parseMessage(packet);
    assert.ok(message?.type === MESSAGE_COOKIE_REPLY);
    assert.equal(message.receiverIndex, 9);
    assert.deepEqual(message.nonce, bytes(24, 0x4e));
    assert.deepEqual(message.encryptedCookie, bytes(32, 0xc0));
  });

  it('lays out transport data as §5.4.6 says, with a 64-bit counter', () => {
    const packet = new Uint8Array(48);
    packet.set([4, 0, 0, 0, 7, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 0xf8]);
    packet.fill(0xdd, 16);
    const message = parseMessage(packet);
    assert.ok(message?.type === MESSAGE_TRANSPORT_DATA);
    assert.equal(message.receiverIndex, 7);
    assert.equal(message.counter, 0xf807060504030201n);
    assert.deepEqual(message.encryptedPacket, bytes(32, 0xdd));
    assert.equal(transportCounterOf(packet), 0xf807060504030201n);
  });

  it('drops wrong sizes, unknown types and reserved bits silently', () => {
    assert.equal(parseMessage(new Uint8Array(0)), null);
    assert.equal(parseMessage(Uint8Array.of(1, 0, 0)), null);
    for (const [type, size] of [
      [1, MESSAGE_INITIATION_SIZE],
      [2, MESSAGE_RESPONSE_SIZE],
      [3, MESSAGE_COOKIE_REPLY_SIZE],
    ] as const) {
      const good = new Uint8Array(size);
      good[0] = type;
      assert.notEqual(parseMessage(good), null);
      assert.equal(parseMessage(good.subarray(0, size - 1)), null);
      assert.equal(parseMessage(Uint8Array.of(...good, 0)), null);
      for (const reserved of [1, 2, 3]) {
        const bad = Uint8Array.from(good);
        bad[reserved] = 1;
        assert.equal(parseMessage(bad), null);
      }
    }
    const keepalive = new Uint8Array(32);
    keepalive[0] = 4;
    assert.notEqual(parseMessage(keepalive), null, 'an empty keepalive is 32 bytes');
    assert.equal(parseMessage(keepalive.subarray(0, 31)), null);
    for (const type of [0, 5, 255]) {
      const packet = new Uint8Array(148);
      packet[0] = type;
      assert.equal(parseMessage(packet), null);
    }
  });

  it('never throws on arbitrary bytes (fuzz)', () => {
    // Half the inputs are shaped like real messages so the parsers past the
    // type switch get exercised, the rest are uniform noise.
    const shaped = fc
      .tuple(
        fc.constantFrom(1, 2, 3, 4),
        fc.constantFrom(0, 0, 0, 1),
        fc.constantFrom(148, 92, 64, 32, 33, 100, 1500, 31, 4),
      )
      .chain(([type, reserved, size]) =>
        fc.uint8Array({ minLength: size, maxLength: size }).map((packet) => {
          if (packet.length >= 4) packet.set([type, 0, reserved, 0]);
          return packet;
        }),
      );
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), shaped), (packet) => {
        const message = parseMessage(packet);
        const type = messageType(packet);
        if (message !== null) {
          assert.equal(message.type, type);
          assert.deepEqual(serializeMessage(message), packet, 'parse then serialize is identity');
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('serializeMessage', () => {
  const index = fc.integer({ min: 0, max: 0xffffffff });
  const field = (length: number) => fc.uint8Array({ minLength: length, maxLength: length });
  // fc.record builds null-prototype objects; spread them into plain ones.
  const anyMessage: fc.Arbitrary<Message> = fc
    .oneof(
      fc.record({
        type: fc.constant(MESSAGE_INITIATION),
        senderIndex: index,
        ephemeral: field(32),
        encryptedStatic: field(48),
        encryptedTimestamp: field(28),
        mac1: field(16),
        mac2: field(16),
      }),
      fc.record({
        type: fc.constant(MESSAGE_RESPONSE),
        senderIndex: index,
        receiverIndex: index,
        ephemeral: field(32),
        encryptedNothing: field(16),
        mac1: field(16),
        mac2: field(16),
      }),
      fc.record({
        type: fc.constant(MESSAGE_COOKIE_REPLY),
        receiverIndex: index,
        nonce: field(24),
        encryptedCookie: field(32),
      }),
      fc.record({
        type: fc.constant(MESSAGE_TRANSPORT_DATA),
        receiverIndex: index,
        counter: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        encryptedPacket: fc.uint8Array({ minLength: 16, maxLength: 200 }),
      }),
    )
    .map((message) => ({ ...message }));

  it('round-trips every valid message (fuzz)', () => {
    fc.assert(
      fc.property(anyMessage, (message) => {
        const packet = serializeMessage(message);
        assert.deepEqual(parseMessage(packet), message);
        assert.equal(messageType(packet), message.type);
      }),
      { numRuns: 1000 },
    );
  });

  it('names a field of the wrong size', () => {
    assert.throws(
      () =>
        serializeMessage({
          type: MESSAGE_COOKIE_REPLY,
          receiverIndex: 1,
          nonce: new Uint8Array(12),
          encryptedCookie: new Uint8Array(32),
        }),
      /nonce/,
    );
    assert.throws(
      () =>
        serializeMessage({
          type: MESSAGE_TRANSPORT_DATA,
          receiverIndex: 2 ** 32,
          counter: 0n,
          encryptedPacket: new Uint8Array(16),
        }),
      /receiverIndex/,
    );
  });
});

describe('header accessors', () => {
  it('messageType reads the type and rejects reserved bits and short packets', () => {
    assert.equal(messageType(Uint8Array.of(4, 0, 0, 0)), 4);
    assert.equal(messageType(Uint8Array.of(4, 0, 0, 1)), 0);
    assert.equal(messageType(Uint8Array.of(9, 0, 0, 0)), 0);
    assert.equal(messageType(Uint8Array.of(1, 0, 0)), 0);
  });

  it('sender and receiver indices come from their §5.4 offsets', () => {
    const response = new Uint8Array(MESSAGE_RESPONSE_SIZE);
    response.set([2, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert.equal(senderIndexOf(response), 0x04030201);
    assert.equal(receiverIndexOf(response), 0x08070605);
    const transport = new Uint8Array(32);
    transport.set([4, 0, 0, 0, 9, 8, 7, 6]);
    assert.equal(receiverIndexOf(transport), 0x06070809);
    assert.throws(() => senderIndexOf(new Uint8Array(7)), /sender index/);
    assert.throws(
      () => receiverIndexOf(new Uint8Array(MESSAGE_INITIATION_SIZE).fill(1, 0, 1)),
      /receiver index/,
    );
  });

  it('writeTransportHeader writes what parseMessage reads', () => {
    const packet = new Uint8Array(40).fill(0xee);
    writeTransportHeader(packet, 0xdeadbeef, 2n ** 64n - 2n);
    const message = parseMessage(packet);
    assert.ok(message?.type === MESSAGE_TRANSPORT_DATA);
    assert.equal(message.receiverIndex, 0xdeadbeef);
    assert.equal(message.counter, 2n ** 64n - 2n);
    assert.deepEqual(message.encryptedPacket, bytes(24, 0xee));
    assert.throws(() => {
      writeTransportHeader(new Uint8Array(15), 0, 0n);
    }, /out/);
    assert.throws(() => {
      writeTransportHeader(new Uint8Array(16), 0, 2n ** 64n);
    }, /counter/);
  });
});
