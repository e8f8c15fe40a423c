/**
 * The engine against itself through an in-memory "network", driven by a fake
 * clock: handshakes, data, timers (whitepaper §6) and the receive-side checks.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  KEEPALIVE_TIMEOUT,
  MESSAGE_COOKIE_REPLY,
  MESSAGE_INITIATION,
  MESSAGE_RESPONSE,
  MESSAGE_TRANSPORT_DATA,
  REJECT_AFTER_TIME,
  REKEY_AFTER_TIME,
  REKEY_ATTEMPT_TIME,
  REKEY_TIMEOUT,
  UNDER_LOAD_HANDSHAKES_PER_SECOND,
} from './constants.js';
import { generatePrivateKey, publicKeyFrom } from './crypto.js';
import type { Endpoint } from './endpoint.js';
import { Engine } from './engine.js';
import { parseCidr } from './allowed-ips.js';

interface Sent {
  from: 'a' | 'b';
  to: Endpoint;
  message: Uint8Array;
}

const ADDRESS_A = Uint8Array.of(192, 0, 2, 1);
const ADDRESS_B = Uint8Array.of(192, 0, 2, 2);

function endpoint(address: Uint8Array, port: number): Endpoint {
  return { family: 4, address, port, localAddress: null, localIfindex: 0 };
}

/** An IPv4 packet with the given tunnel source/destination and a payload. */
function ipv4(src: string, dst: string, payload = 8): Uint8Array {
  const packet = new Uint8Array(20 + payload);
  packet[0] = 0x45;
  packet[2] = (20 + payload) >> 8;
  packet[3] = (20 + payload) & 0xff;
  packet[8] = 64;
  packet[9] = 17;
  packet.set(src.split('.').map(Number), 12);
  packet.set(dst.split('.').map(Number), 16);
  for (let i = 20; i < packet.length; i++) packet[i] = i & 0xff;
  return packet;
}

class Pair {
  now = 1_000_000;
  wall = 1_700_000_000_000;
  readonly wire: Sent[] = [];
  /** Everything delivered (or dropped) so far, in order. */
  readonly log: Sent[] = [];
  readonly tunA: Uint8Array[] = [];
  readonly tunB: Uint8Array[] = [];
  readonly a: Engine;
  readonly b: Engine;
  readonly keyA = generatePrivateKey();
  readonly keyB = generatePrivateKey();

  constructor() {
    const options = { random: () => 0.5, wallClock: () => this.wall + this.now };
    this.a = new Engine(
      {
        sendUdp: (to, message) =>
          this.wire.push({ from: 'a', to, message: Uint8Array.from(message) }),
        writeTun: (packet) => this.tunA.push(Uint8Array.from(packet)),
      },
      options,
    );
    this.b = new Engine(
      {
        sendUdp: (to, message) =>
          this.wire.push({ from: 'b', to, message: Uint8Array.from(message) }),
        writeTun: (packet) => this.tunB.push(Uint8Array.from(packet)),
      },
      options,
    );
    this.a.setPrivateKey(this.keyA);
    this.b.setPrivateKey(this.keyB);
    const peerB = this.a.addPeer(publicKeyFrom(this.keyB));
    const peerA = this.b.addPeer(publicKeyFrom(this.keyA));
    assert.ok(peerA && peerB);
    this.a.setEndpoint(peerB, endpoint(ADDRESS_B, 51820));
    const b = parseCidr('10.0.0.2/32');
    const a = parseCidr('10.0.0.1/32');
    this.a.allowedIps.insert(b.address, b.cidr, peerB);
    this.b.allowedIps.insert(a.address, a.cidr, peerA);
  }

  get peerOfA() {
    const peer = this.a.findPeer(publicKeyFrom(this.keyB));
    assert.ok(peer);
    return peer;
  }

  get peerOfB() {
    const peer = this.b.findPeer(publicKeyFrom(this.keyA));
    assert.ok(peer);
    return peer;
  }

  /** Deliver everything on the wire (and whatever that provokes), optionally dropping some. */
  flush(drop: (s: Sent) => boolean = () => false): Sent[] {
    const delivered: Sent[] = [];
    while (this.wire.length > 0) {
      const s = this.wire.shift();
      assert.ok(s);
      delivered.push(s);
      this.log.push(s);
      if (drop(s)) continue;
      if (s.from === 'a') this.b.handleUdpPacket(s.message, endpoint(ADDRESS_A, 40000), this.now);
      else this.a.handleUdpPacket(s.message, endpoint(ADDRESS_B, 51820), this.now);
    }
    return delivered;
  }

  /** Let time pass in steps, delivering what the timers send (minus what `drop` loses). */
  advance(ms: number, step = 100, drop: (s: Sent) => boolean = () => false): void {
    for (let t = 0; t < ms; t += step) {
      this.now += step;
      this.a.tick(this.now);
      this.b.tick(this.now);
      this.flush(drop);
    }
  }
}

const types = (sent: Sent[]) => sent.map((s) => `${s.from}${s.message[0]}`);

describe('engine', () => {
  it('handshakes on the first packet, delivers it and confirms the session', () => {
    const p = new Pair();
    p.a.handleTunPacket(ipv4('10.0.0.1', '10.0.0.2'), p.now);
    const sent = p.flush();
    // initiation, response, then A's staged packet (which confirms the session to B).
    assert.deepEqual(types(sent), [
      `a${MESSAGE_INITIATION}`,
      `b${MESSAGE_RESPONSE}`,
      `a${MESSAGE_TRANSPORT_DATA}`,
    ]);
    assert.equal(p.tunB.length, 1);
    assert.deepEqual(p.tunB[0], ipv4('10.0.0.1', '10.0.0.2'));
    assert.ok(p.peerOfA.current && p.peerOfB.current);
    assert.equal(p.peerOfB.next, null);
    // B learned A's endpoint from the handshake (roaming) and can answer.
    assert.deepEqual(p.peerOfB.endpoint?.address, ADDRESS_A);
    p.b.handleTunPacket(ipv4('10.0.0.2', '10.0.0.1', 100), p.now);
    p.flush();
    assert.deepEqual(p.tunA[0], ipv4('10.0.0.2', '10.0.0.1', 100));
    assert.ok(p.peerOfA.txBytes > 0 && p.peerOfA.rxBytes > 0);
    assert.equal(p.peerOfA.lastHandshake, p.now);
    assert.equal(p.peerOfB.lastHandshake, p.now);
  });

  it('sends a keepalive when nothing else goes back within KEEPALIVE_TIMEOUT', () => {
    const p = new Pair();
    p.a.handleTunPacket(ipv4('10.0.0.1', '10.0.0.2'), p.now);
    p.flush();
    p.log.length = 0;
    p.advance(KEEPALIVE_TIMEOUT + 200);
    const keepalive = p.log.find((s) => s.from === 'b' && s.message[0] === MESSAGE_TRANSPORT_DATA);
    assert.ok(keepalive, 'B sends a keepalive');
    assert.equal(keepalive.message.length, 32);
    assert.equal(p.tunA.length, 0, 'keepalives are not written to the TUN');
  });

  it('the initiator rekeys after REKEY_AFTER_TIME and old and new sessions both decrypt', () => {
    const p = new Pair();
    p.a.handleTunPacket(ipv4('10.0.0.1', '10.0.0.2'), p.now);
    p.flush();
    const first = p.peerOfA.current;
    p.advance(REKEY_AFTER_TIME + 1000, 1000);
    p.flush();
    p.a.handleTunPacket(ipv4('10.0.0.1', '10.0.0.2'), p.now);
    const sent = p.flush();
    assert.ok(
      types(sent).includes(`a${MESSAGE_INITIATION}`),
      'a new initiation after REKEY_AFTER_TIME',
    );
    assert.notEqual(p.peerOfA.current, first);
    assert.equal(p.peerOfA.previous, first);
    assert.equal(p.tunB.length, 2);
  });

  it('keys are rejected after REJECT_AFTER_TIME and zeroed after 3 × REJECT_AFTER_TIME', () => {
    const p = new Pair();
    p.a.handleTunPacket(ipv4('10.0.0.1', '10.0.0.2'), p.now);
    p.flush();
    // B sends with its session; capture but drop, then replay after expiry.
    p.b.handleTunPacket(ipv4('10.0.0.2', '10.0.0.1'), p.now);
    const late = p.wire.splice(0);
    p.advance(REJECT_AFTER_TIME + 1000, 1000);
    p.wire.splice(0);
    for (const s of late) p.a.handleUdpPacket(s.message, endpoint(ADDRESS_B, 51820), p.now);
    assert.equal(p.tunA.length, 0, 'a packet sealed with expired keys is dropped');
    // B's unanswered data made it rehandshake once (§6.2 newHandshake); no traffic since.
    p.advance(REJECT_AFTER_TIME * 3 + 1000, 1000);
    assert.equal(p.peerOfA.current, null);
    assert.equal(p.peerOfB.current, null);
  });

  it('retransmits the initiation every REKEY_TIMEOUT and gives up after REKEY_ATTEMPT_TIME', () => {
    const p = new Pair();
    p.a.handleTunPacket(ipv4('10.0.0.1', '10.0.0.2'), p.now);
    let initiations = 0;
    const dropAll = (s: Sent) => {
      if (s.message[0] === MESSAGE_INITIATION) initiations++;
      return true;
    };
    p.flush(dropAll);
    p.advance(REKEY_ATTEMPT_TIME + 10 * REKEY_TIMEOUT, 100, dropAll);
    // The first initiation and MAX_TIMER_HANDSHAKES + 1 retries: the attempt counter is checked
    // before it is incremented (wireguard-go timers.go expiredRetransmitHandshake, the kernel's
    // wg_expired_retransmit_handshake), then silence.
    assert.equal(initiations, 20);
    assert.equal(p.peerOfA.staged.length, 0, 'staged packets are dropped on giving up');
  });

  it('drops packets whose inner source is outside the peer allowed IPs', () => {
    const p = new Pair();
    p.a.handleTunPacket(ipv4('10.0.0.1', '10.0.0.2'), p.now);
    p.flush();
    // A sends a packet claiming another source address.
    const peer = p.peerOfA;
    const other = parseCidr('10.9.9.0/24');
    p.a.allowedIps.insert(other.address, other.cidr, peer);
    p.a.handleTunPacket(ipv4('10.0.0.66', '10.9.9.9'), p.now);
    p.flush();
    assert.equal(p.tunB.length, 1, 'only the first, legitimate packet arrived');
  });

  it('drops replayed transport packets and replayed initiations', () => {
    const p = new Pair();
    p.a.handleTunPacket(ipv4('10.0.0.1', '10.0.0.2'), p.now);
    const sent = p.flush();
    assert.equal(sent.length, 3);
    const [initiation, , data] = sent;
    p.b.handleUdpPacket(data.message, endpoint(ADDRESS_A, 40000), p.now);
    assert.equal(p.tunB.length, 1, 'the replayed data packet was dropped');
    const before = p.peerOfB.current;
    p.now += 1000;
    p.b.handleUdpPacket(initiation.message, endpoint(ADDRESS_A, 40000), p.now);
    assert.equal(p.wire.length, 0, 'no response to a replayed initiation');
    assert.equal(p.peerOfB.current, before);
  });

  it('answers with a cookie when under load and accepts the retry that carries mac2', () => {
    const p = new Pair();
    p.a.handleTunPacket(ipv4('10.0.0.1', '10.0.0.2'), p.now);
    const first = p.wire.splice(0)[0];
    assert.ok(first);
    /** Flood B with copies of an initiation (valid mac1) to push it over the under-load threshold. */
    const floodB = () => {
      for (let i = 0; i <= UNDER_LOAD_HANDSHAKES_PER_SECOND; i++) {
        p.b.handleUdpPacket(first.message, endpoint(ADDRESS_A, 40000), p.now);
      }
      p.wire.splice(0);
    };
    /** Let A's retransmit timer fire and take its next initiation off the wire. */
    const nextInitiation = (): Sent => {
      for (;;) {
        p.now += 100;
        p.a.tick(p.now);
        const i = p.wire.findIndex((s) => s.from === 'a' && s.message[0] === MESSAGE_INITIATION);
        if (i >= 0) return p.wire.splice(i, 1)[0];
      }
    };
    floodB();
    const retry = nextInitiation();
    floodB();
    p.wire.push(retry);
    assert.deepEqual(types(p.flush()), [`a${MESSAGE_INITIATION}`, `b${MESSAGE_COOKIE_REPLY}`]);
    // A's next initiation carries mac2 and is answered although B is still under load.
    const withCookie = nextInitiation();
    floodB();
    p.wire.push(withCookie);
    const sent = types(p.flush());
    assert.deepEqual(sent.slice(0, 2), [`a${MESSAGE_INITIATION}`, `b${MESSAGE_RESPONSE}`]);
    assert.equal(p.tunB.length, 1, 'the staged packet arrives');
  });

  it('removing a peer stops traffic to it and frees its allowed IPs', () => {
    const p = new Pair();
    p.a.handleTunPacket(ipv4('10.0.0.1', '10.0.0.2'), p.now);
    p.flush();
    p.a.removePeer(p.peerOfA);
    assert.equal(p.a.allowedIps.size, 0);
    p.a.handleTunPacket(ipv4('10.0.0.1', '10.0.0.2'), p.now);
    assert.equal(p.wire.length, 0);
  });

  it('a changed private key forces a new handshake', () => {
    const p = new Pair();
    p.a.handleTunPacket(ipv4('10.0.0.1', '10.0.0.2'), p.now);
    p.flush();
    const newKey = generatePrivateKey();
    p.a.setPrivateKey(newKey);
    assert.equal(p.peerOfA.current, null);
    // B learns A's new public key.
    p.b.removePeer(p.peerOfB);
    const peer = p.b.addPeer(publicKeyFrom(newKey));
    assert.ok(peer);
    const a = parseCidr('10.0.0.1/32');
    p.b.allowedIps.insert(a.address, a.cidr, peer);
    p.a.handleTunPacket(ipv4('10.0.0.1', '10.0.0.2'), p.now);
    p.flush();
    assert.equal(p.tunB.length, 2);
  });

  it('persistent keepalive sends every interval when idle', () => {
    const p = new Pair();
    p.a.handleTunPacket(ipv4('10.0.0.1', '10.0.0.2'), p.now);
    p.flush();
    p.a.setPersistentKeepalive(p.peerOfA, 25, p.now);
    p.flush();
    let keepalives = 0;
    p.log.length = 0;
    p.advance(60_000);
    {
      for (const s of p.log) {
        if (s.from === 'a' && s.message[0] === MESSAGE_TRANSPORT_DATA && s.message.length === 32)
          keepalives++;
      }
    }
    assert.ok(keepalives >= 2 && keepalives <= 4, `keepalives: ${keepalives}`);
  });
});
