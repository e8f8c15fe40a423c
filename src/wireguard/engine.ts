/**
 * The WireGuard protocol engine for one interface, with no I/O: the device feeds
 * it packets from the TUN and from UDP plus the monotonic time, and it answers
 * through the EngineOutput sink (datagrams to send, packets for the TUN).
 * Structure and timer semantics follow the whitepaper and wireguard-go's device/.
 */
import { randomInt } from 'node:crypto';
import { channel } from 'node:diagnostics_channel';
import { nodeCryptoAead, type TransportAead } from './aead.js';
import { AllowedIps } from './allowed-ips.js';
import {
  COOKIE_SECRET_MAX_AGE,
  HANDSHAKE_INITIATION_RATE,
  KEEPALIVE_TIMEOUT,
  MAX_STAGED_PACKETS,
  MAX_TIMER_HANDSHAKES,
  MESSAGE_COOKIE_REPLY,
  MESSAGE_COOKIE_REPLY_SIZE,
  MESSAGE_INITIATION,
  MESSAGE_INITIATION_SIZE,
  MESSAGE_RESPONSE,
  MESSAGE_RESPONSE_SIZE,
  MESSAGE_TRANSPORT_DATA,
  MESSAGE_TRANSPORT_MIN_SIZE,
  REJECT_AFTER_MESSAGES,
  REJECT_AFTER_TIME,
  REKEY_AFTER_MESSAGES,
  REKEY_AFTER_TIME,
  REKEY_TIMEOUT,
  UNDER_LOAD_AFTER_TIME,
  UNDER_LOAD_HANDSHAKES_PER_SECOND,
} from './constants.js';
import { CookieChecker } from './cookie.js';
import { constantTimeEqual, dh, publicKeyFrom } from './crypto.js';
import { copyEndpoint, endpointSourceBytes, sameEndpoint, type Endpoint } from './endpoint.js';
import {
  consumeInitiation,
  consumeResponse,
  createInitiation,
  createResponse,
  type StaticIdentity,
} from './handshake.js';
import { Keypair } from './keypair.js';
import { readUint32LE } from './messages.js';
import { keyToHex } from './keys.js';
import { OFF, Peer } from './peer.js';
import { RateLimiter } from './ratelimiter.js';
import { compareTai64n, tai64n } from './tai64n.js';

const REKEY_AFTER_MESSAGES_NUMBER = Number(REKEY_AFTER_MESSAGES);
const REJECT_AFTER_MESSAGES_NUMBER = Number(REJECT_AFTER_MESSAGES);
const EMPTY = new Uint8Array(0);

/** Where the engine's actions go. */
export interface EngineOutput {
  sendUdp(endpoint: Endpoint, message: Uint8Array): void;
  writeTun(packet: Uint8Array): void;
}

export interface EngineOptions {
  /** Uniform [0, 1), for timer jitter; injectable for tests. */
  random?: () => number;
  /** Unix time in ms, for TAI64N timestamps; injectable for tests. */
  wallClock?: () => number;
  /** The transport AEAD; node:crypto's unless the I/O layer brings a faster one. */
  aead?: TransportAead;
}

/** diagnostics_channel events, for logging by the daemon (library code never logs). */
export const diagnostics = {
  handshake: channel('warren:wireguard:handshake'),
  drop: channel('warren:wireguard:drop'),
};
export interface HandshakeEvent {
  peer: string;
  event:
    | 'initiation-sent'
    | 'initiation-received'
    | 'response-sent'
    | 'session-established'
    | 'cookie-sent'
    | 'cookie-received'
    | 'gave-up'
    | 'keys-zeroed';
}
export interface DropEvent {
  peer: string | null;
  reason: string;
}

interface IndexEntry {
  peer: Peer;
  /** Null while the index names a pending handshake rather than a keypair. */
  keypair: Keypair | null;
}

export class Engine {
  private identity: StaticIdentity | null = null;
  private readonly peersById = new Map<string, Peer>();
  readonly allowedIps = new AllowedIps<Peer>();
  private readonly indices = new Map<number, IndexEntry>();
  private readonly cookieChecker = new CookieChecker(null);
  private readonly rateLimiter = new RateLimiter();
  private readonly random: () => number;
  private readonly wallClock: () => number;
  private readonly aead: TransportAead;
  /** Largest plaintext (the TUN MTU), for padding (§5.4.6). */
  mtu = 1420;
  private underLoadUntil = -OFF;
  private handshakeWindowStart = 0;
  private handshakesInWindow = 0;
  private lastCollect = 0;

  constructor(
    private readonly output: EngineOutput,
    options: EngineOptions = {},
  ) {
    this.random = options.random ?? Math.random;
    this.wallClock = options.wallClock ?? Date.now;
    this.aead = options.aead ?? nodeCryptoAead;
  }

  // ---------------------------------------------------------------- configuration

  get privateKey(): Uint8Array | null {
    return this.identity?.privateKey ?? null;
  }

  get publicKey(): Uint8Array | null {
    return this.identity?.publicKey ?? null;
  }

  /**
   * Set or clear the interface's private key. As wireguard-go's SetPrivateKey:
   * a peer with our own new public key is removed, every static-static DH is
   * recomputed and every session is expired.
   */
  setPrivateKey(privateKey: Uint8Array | null): void {
    const current = this.identity?.privateKey;
    if (privateKey !== null && current !== undefined && constantTimeEqual(current, privateKey))
      return;
    if (privateKey === null) {
      this.identity = null;
    } else {
      const publicKey = publicKeyFrom(privateKey);
      this.identity = { privateKey: Uint8Array.from(privateKey), publicKey };
      const self = this.peersById.get(keyToHex(publicKey));
      if (self !== undefined) this.removePeer(self);
    }
    this.cookieChecker.setLocalPublicKey(this.identity?.publicKey ?? null);
    for (const peer of this.peersById.values()) {
      peer.staticStatic = this.computeStaticStatic(peer.publicKey);
      this.expireSessions(peer);
    }
  }

  peers(): IterableIterator<Peer> {
    return this.peersById.values();
  }

  peerCount(): number {
    return this.peersById.size;
  }

  findPeer(publicKey: Uint8Array): Peer | undefined {
    return this.peersById.get(keyToHex(publicKey));
  }

  /** Add a peer; returns the existing one if present. A peer with our own public key is refused (null). */
  addPeer(publicKey: Uint8Array): Peer | null {
    const id = keyToHex(publicKey);
    const existing = this.peersById.get(id);
    if (existing !== undefined) return existing;
    const own = this.identity?.publicKey;
    if (own !== undefined && constantTimeEqual(own, publicKey)) return null;
    const peer = new Peer(Uint8Array.from(publicKey), id, this.random);
    peer.staticStatic = this.computeStaticStatic(peer.publicKey);
    this.peersById.set(id, peer);
    return peer;
  }

  removePeer(peer: Peer): void {
    if (this.peersById.get(peer.id) !== peer) return;
    this.peersById.delete(peer.id);
    this.allowedIps.removeValue(peer);
    this.clearHandshake(peer);
    this.dropKeypairs(peer);
    peer.staged = [];
    peer.stopTimers();
  }

  removeAllPeers(): void {
    for (const peer of [...this.peersById.values()]) this.removePeer(peer);
  }

  setPresharedKey(peer: Peer, key: Uint8Array): void {
    peer.presharedKey = Uint8Array.from(key);
  }

  setEndpoint(peer: Peer, endpoint: Endpoint): void {
    peer.endpoint = copyEndpoint(endpoint);
  }

  /** Seconds, 0 = off. Turning it on sends a keepalive at once, as wireguard-go and the kernel do. */
  setPersistentKeepalive(peer: Peer, seconds: number, now: number): void {
    const wasOff = peer.persistentKeepaliveInterval === 0;
    peer.persistentKeepaliveInterval = seconds;
    if (seconds === 0) peer.persistentKeepaliveAt = OFF;
    else if (wasOff) this.sendKeepalive(peer, now);
  }

  /**
   * Handshake now with every peer that has an endpoint and no session (used when a
   * tunnel is brought up for a program, so its first packet need not wait).
   */
  initiateHandshakes(now: number): void {
    for (const peer of this.peersById.values()) {
      if (peer.current === null) this.sendHandshakeInitiation(peer, false, now);
    }
  }

  // ---------------------------------------------------------------- outgoing packets

  /** A packet read from the TUN: cryptokey routing by destination (whitepaper §2). */
  handleTunPacket(packet: Uint8Array, now: number): void {
    if (packet.length < 1) return;
    const version = packet[0] >> 4;
    let peer: Peer | undefined;
    if (version === 4 && packet.length >= 20) peer = this.allowedIps.lookup(packet, 16, 4);
    else if (version === 6 && packet.length >= 40) peer = this.allowedIps.lookup(packet, 24, 6);
    else return;
    if (peer === undefined) {
      if (diagnostics.drop.hasSubscribers) {
        diagnostics.drop.publish({
          peer: null,
          reason: 'no peer for destination',
        } satisfies DropEvent);
      }
      return;
    }
    this.sendPacket(peer, packet, now);
  }

  private sendPacket(peer: Peer, packet: Uint8Array, now: number): void {
    const keypair = peer.current;
    if (this.identity === null || peer.endpoint === null || !keypair?.canSend(now)) {
      this.stage(peer, Uint8Array.from(packet));
      this.sendHandshakeInitiation(peer, false, now);
      return;
    }
    this.sendWithKeypair(peer, keypair, packet, now);
    // §6.2: the initiator rekeys after REKEY_AFTER_TIME or REKEY_AFTER_MESSAGES.
    if (
      keypair.isInitiator &&
      (keypair.sendCounter > REKEY_AFTER_MESSAGES_NUMBER ||
        now - keypair.created > REKEY_AFTER_TIME)
    ) {
      this.sendHandshakeInitiation(peer, false, now);
    }
  }

  private sendWithKeypair(peer: Peer, keypair: Keypair, packet: Uint8Array, now: number): void {
    const endpoint = peer.endpoint;
    if (endpoint === null) return;
    const message = keypair.seal(packet, this.mtu);
    peer.txBytes += message.length;
    peer.timersAnyAuthenticatedPacketTraversal(now);
    peer.timersAnyAuthenticatedPacketSent();
    if (packet.length > 0) peer.timersDataSent(now);
    this.output.sendUdp(endpoint, message);
  }

  private stage(peer: Peer, packet: Uint8Array): void {
    if (peer.staged.length >= MAX_STAGED_PACKETS) peer.staged.shift();
    peer.staged.push(packet);
  }

  /** Send staged packets, or a keepalive if there are none (wireguard-go SendKeepalive). */
  private sendKeepalive(peer: Peer, now: number): void {
    if (peer.staged.length > 0) {
      this.flushStaged(peer, now);
      return;
    }
    const keypair = peer.current;
    if (keypair === null || !keypair.canSend(now) || peer.endpoint === null) {
      this.sendHandshakeInitiation(peer, false, now);
      return;
    }
    this.sendWithKeypair(peer, keypair, EMPTY, now);
  }

  private flushStaged(peer: Peer, now: number): void {
    const staged = peer.staged;
    peer.staged = [];
    for (const packet of staged) this.sendPacket(peer, packet, now);
  }

  // ---------------------------------------------------------------- handshake: initiator

  private sendHandshakeInitiation(peer: Peer, isRetry: boolean, now: number): void {
    if (!isRetry) peer.handshakeAttempts = 0;
    // §6.4: at most one initiation per REKEY_TIMEOUT.
    if (!isRetry && now - peer.lastSentHandshake < REKEY_TIMEOUT) return;
    const identity = this.identity;
    const endpoint = peer.endpoint;
    if (identity === null || endpoint === null || peer.staticStatic === null) return;
    peer.lastSentHandshake = now;
    this.clearHandshake(peer);
    const localIndex = this.allocateIndex({ peer, keypair: null });
    const created = createInitiation({
      local: identity,
      peerPublicKey: peer.publicKey,
      staticStatic: peer.staticStatic,
      localIndex,
      timestamp: tai64n(this.wallClock()),
    });
    if (created === null) {
      this.indices.delete(localIndex);
      return;
    }
    peer.initiation = created.state;
    peer.initiationLocalIndex = localIndex;
    peer.cookieGenerator.addMacs(created.message, now);
    peer.timersAnyAuthenticatedPacketTraversal(now);
    peer.timersAnyAuthenticatedPacketSent();
    this.publishHandshake(peer, 'initiation-sent');
    // Handshake messages count in the peer's transfer totals, as in wireguard-go and the kernel.
    peer.txBytes += created.message.length;
    this.output.sendUdp(endpoint, created.message);
    peer.timersHandshakeInitiated(now);
  }

  private handleResponse(message: Uint8Array, source: Endpoint, now: number): void {
    const receiverIndex = readUint32LE(message, 8);
    const entry = this.indices.get(receiverIndex);
    if (entry?.keypair !== null) return;
    const peer = entry.peer;
    const state = peer.initiation;
    const identity = this.identity;
    if (state === null || identity === null || peer.initiationLocalIndex !== receiverIndex) return;
    const result = consumeResponse(state, identity, peer.presharedKey, message);
    if (result === null) {
      this.publishDrop(peer, 'response failed to authenticate');
      return;
    }
    peer.initiation = null;
    peer.initiationLocalIndex = 0;
    peer.rxBytes += message.length;
    this.updateEndpoint(peer, source);
    peer.timersAnyAuthenticatedPacketTraversal(now);
    peer.timersAnyAuthenticatedPacketReceived();
    const keypair = new Keypair(
      result.keys.sendKey,
      result.keys.receiveKey,
      receiverIndex,
      result.remoteIndex,
      true,
      now,
      this.aead,
    );
    entry.keypair = keypair;
    this.installInitiatorKeypair(peer, keypair);
    peer.timersSessionDerived(now);
    peer.timersHandshakeComplete(now);
    this.publishHandshake(peer, 'session-established');
    // Confirm the session to the responder at once (§5.4.6: it waits for our first data packet).
    this.sendKeepalive(peer, now);
  }

  private installInitiatorKeypair(peer: Peer, keypair: Keypair): void {
    const { previous, current, next } = peer;
    if (next !== null) {
      peer.next = null;
      peer.previous = next;
      this.dropKeypair(current);
    } else {
      peer.previous = current;
    }
    this.dropKeypair(previous);
    peer.current = keypair;
  }

  // ---------------------------------------------------------------- handshake: responder

  private handleInitiation(message: Uint8Array, source: Endpoint, now: number): void {
    const identity = this.identity;
    if (identity === null) return;
    // The precomputed static-static DH saves one X25519 per initiation, and unknown
    // peers are rejected before any further DH (as wireguard-go does).
    const consumed = consumeInitiation(
      identity,
      message,
      (peerPublicKey) => this.peersById.get(keyToHex(peerPublicKey))?.staticStatic ?? null,
    );
    if (consumed === null) {
      this.publishDrop(null, 'initiation failed to authenticate');
      return;
    }
    const peer = this.peersById.get(keyToHex(consumed.peerPublicKey));
    if (peer === undefined) {
      this.publishDrop(null, 'initiation from unknown peer');
      return;
    }
    // §5.1: replayed or too-frequent initiations are ignored.
    if (
      peer.latestTimestamp !== null &&
      compareTai64n(consumed.timestamp, peer.latestTimestamp) <= 0
    ) {
      this.publishDrop(peer, 'replayed initiation');
      return;
    }
    if (now - peer.lastInitiationConsumed < HANDSHAKE_INITIATION_RATE) {
      this.publishDrop(peer, 'initiation flood');
      return;
    }
    peer.latestTimestamp = Uint8Array.from(consumed.timestamp);
    peer.rxBytes += message.length;
    peer.lastInitiationConsumed = now;
    this.publishHandshake(peer, 'initiation-received');
    this.updateEndpoint(peer, source);
    peer.timersAnyAuthenticatedPacketTraversal(now);
    peer.timersAnyAuthenticatedPacketReceived();

    const localIndex = this.allocateIndex({ peer, keypair: null });
    const response = createResponse({
      state: consumed.state,
      presharedKey: peer.presharedKey,
      localIndex,
    });
    if (response === null) {
      this.indices.delete(localIndex);
      return;
    }
    const keypair = new Keypair(
      response.keys.sendKey,
      response.keys.receiveKey,
      localIndex,
      response.remoteIndex,
      false,
      now,
      this.aead,
    );
    const entry = this.indices.get(localIndex);
    if (entry !== undefined) entry.keypair = keypair;
    // As responder the new keypair waits in `next` until the initiator uses it.
    this.dropKeypair(peer.next);
    peer.next = keypair;
    this.dropKeypair(peer.previous);
    peer.previous = null;
    peer.cookieGenerator.addMacs(response.message, now);
    peer.timersSessionDerived(now);
    peer.timersAnyAuthenticatedPacketTraversal(now);
    peer.timersAnyAuthenticatedPacketSent();
    this.publishHandshake(peer, 'response-sent');
    const endpoint = peer.endpoint;
    if (endpoint !== null) {
      peer.txBytes += response.message.length;
      this.output.sendUdp(endpoint, response.message);
    }
  }

  private handleCookieReply(message: Uint8Array, now: number): void {
    const entry = this.indices.get(readUint32LE(message, 4));
    if (entry === undefined) return;
    if (entry.peer.cookieGenerator.consumeReply(message, now)) {
      this.publishHandshake(entry.peer, 'cookie-received');
    }
  }

  /**
   * §5.3 / §5.4.7: handshake messages need a valid mac1; when under load they also
   * need mac2 (else we answer with a cookie) and pass a per-source rate limit.
   */
  private admitHandshake(message: Uint8Array, source: Endpoint, now: number): boolean {
    if (!this.cookieChecker.checkMac1(message)) {
      this.publishDrop(null, 'bad mac1');
      return false;
    }
    if (now - this.handshakeWindowStart >= 1000) {
      this.handshakeWindowStart = now;
      this.handshakesInWindow = 0;
    }
    if (++this.handshakesInWindow > UNDER_LOAD_HANDSHAKES_PER_SECOND) {
      this.underLoadUntil = now + UNDER_LOAD_AFTER_TIME;
    }
    if (now >= this.underLoadUntil) return true;
    const sourceBytes = endpointSourceBytes(source);
    if (!this.cookieChecker.checkMac2(message, sourceBytes, now)) {
      const senderIndex = readUint32LE(message, 4);
      const reply = this.cookieChecker.createReply(message, senderIndex, sourceBytes, now);
      this.publishHandshake(null, 'cookie-sent');
      this.output.sendUdp(source, reply);
      return false;
    }
    if (!this.rateLimiter.allow(source.address, now)) {
      this.publishDrop(null, 'handshake rate limit');
      return false;
    }
    return true;
  }

  // ---------------------------------------------------------------- incoming datagrams

  /** A datagram from the UDP socket. `source` may be reused by the caller after return. */
  handleUdpPacket(message: Uint8Array, source: Endpoint, now: number): void {
    if (message.length < 4 || message[1] !== 0 || message[2] !== 0 || message[3] !== 0) return;
    switch (message[0]) {
      case MESSAGE_TRANSPORT_DATA:
        if (message.length >= MESSAGE_TRANSPORT_MIN_SIZE)
          this.handleTransport(message, source, now);
        return;
      case MESSAGE_INITIATION:
        if (
          message.length === MESSAGE_INITIATION_SIZE &&
          this.admitHandshake(message, source, now)
        ) {
          this.handleInitiation(message, source, now);
        }
        return;
      case MESSAGE_RESPONSE:
        if (message.length === MESSAGE_RESPONSE_SIZE && this.admitHandshake(message, source, now)) {
          this.handleResponse(message, source, now);
        }
        return;
      case MESSAGE_COOKIE_REPLY:
        if (message.length === MESSAGE_COOKIE_REPLY_SIZE) this.handleCookieReply(message, now);
        return;
      default:
        return;
    }
  }

  private handleTransport(message: Uint8Array, source: Endpoint, now: number): void {
    const entry = this.indices.get(readUint32LE(message, 4));
    if (entry === undefined) return;
    const keypair = entry.keypair;
    if (!keypair?.canReceive(now)) return;
    const peer = entry.peer;
    const counter = readUint32LE(message, 8) + readUint32LE(message, 12) * 0x1_0000_0000;
    if (counter >= REJECT_AFTER_MESSAGES_NUMBER) return;
    const plaintext = keypair.open(message, counter);
    if (plaintext === null) {
      this.publishDrop(peer, 'transport data failed to authenticate');
      return;
    }
    if (!keypair.replay.validate(counter, REJECT_AFTER_MESSAGES)) {
      this.publishDrop(peer, 'replayed transport counter');
      return;
    }
    // The responder's `next` keypair is confirmed by its first use (§5.4.6).
    if (keypair === peer.next) {
      this.dropKeypair(peer.previous);
      peer.previous = peer.current;
      peer.current = keypair;
      peer.next = null;
      peer.timersHandshakeComplete(now);
      this.publishHandshake(peer, 'session-established');
      if (peer.staged.length > 0) this.flushStaged(peer, now);
    }
    this.updateEndpoint(peer, source);
    peer.rxBytes += message.length;
    // §6.2: the initiator rehandshakes before REJECT_AFTER_TIME if it only receives.
    if (
      !peer.sentLastMinuteHandshake &&
      keypair === peer.current &&
      keypair.isInitiator &&
      now - keypair.created > REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT
    ) {
      peer.sentLastMinuteHandshake = true;
      this.sendHandshakeInitiation(peer, false, now);
    }
    peer.timersAnyAuthenticatedPacketTraversal(now);
    peer.timersAnyAuthenticatedPacketReceived();
    if (plaintext.length === 0) return; // keepalive
    peer.timersDataReceived(now);
    this.deliver(peer, plaintext);
  }

  /** Trim padding and enforce the allowed-IPs source check (whitepaper §2) before the TUN sees it. */
  private deliver(peer: Peer, plaintext: Uint8Array): void {
    const version = plaintext[0] >> 4;
    let length: number;
    let owner: Peer | undefined;
    if (version === 4 && plaintext.length >= 20) {
      length = (plaintext[2] << 8) | plaintext[3];
      owner = this.allowedIps.lookup(plaintext, 12, 4);
    } else if (version === 6 && plaintext.length >= 40) {
      length = ((plaintext[4] << 8) | plaintext[5]) + 40;
      owner = this.allowedIps.lookup(plaintext, 8, 6);
    } else {
      this.publishDrop(peer, 'not an IP packet');
      return;
    }
    if (length > plaintext.length || length < 20) {
      this.publishDrop(peer, 'bad IP length');
      return;
    }
    if (owner !== peer) {
      this.publishDrop(peer, 'source address not in peer allowed IPs');
      return;
    }
    this.output.writeTun(plaintext.subarray(0, length));
  }

  private updateEndpoint(peer: Peer, source: Endpoint): void {
    // Roaming (§2): the latest authenticated packet's source becomes the endpoint.
    if (peer.endpoint === null || !sameEndpoint(peer.endpoint, source))
      peer.endpoint = copyEndpoint(source);
  }

  // ---------------------------------------------------------------- timers

  /** Fire every expired timer (whitepaper §6; wireguard-go timers.go expiry functions). */
  tick(now: number): void {
    if (now - this.lastCollect >= COOKIE_SECRET_MAX_AGE / 12) {
      this.lastCollect = now;
      this.rateLimiter.collect(now);
    }
    for (const peer of this.peersById.values()) {
      if (peer.nextDeadline() > now) continue;
      if (peer.retransmitHandshakeAt <= now) {
        peer.retransmitHandshakeAt = OFF;
        if (peer.handshakeAttempts > MAX_TIMER_HANDSHAKES) {
          // §6.4: give up after REKEY_ATTEMPT_TIME; drop what waited for the session.
          peer.staged = [];
          this.publishHandshake(peer, 'gave-up');
          if (peer.zeroKeyMaterialAt === OFF) peer.zeroKeyMaterialAt = now + REJECT_AFTER_TIME * 3;
        } else {
          peer.handshakeAttempts++;
          this.clearSourceAddress(peer);
          this.sendHandshakeInitiation(peer, true, now);
        }
      }
      if (peer.sendKeepaliveAt <= now) {
        peer.sendKeepaliveAt = OFF;
        this.sendKeepalive(peer, now);
        if (peer.needAnotherKeepalive) {
          peer.needAnotherKeepalive = false;
          peer.sendKeepaliveAt = now + KEEPALIVE_TIMEOUT;
        }
      }
      if (peer.newHandshakeAt <= now) {
        peer.newHandshakeAt = OFF;
        this.clearSourceAddress(peer);
        this.sendHandshakeInitiation(peer, false, now);
      }
      if (peer.zeroKeyMaterialAt <= now) {
        peer.zeroKeyMaterialAt = OFF;
        this.clearHandshake(peer);
        this.dropKeypairs(peer);
        this.publishHandshake(peer, 'keys-zeroed');
      }
      if (peer.persistentKeepaliveAt <= now) {
        peer.persistentKeepaliveAt = OFF;
        if (peer.persistentKeepaliveInterval > 0) this.sendKeepalive(peer, now);
      }
    }
  }

  /** The earliest deadline over all peers, for scheduling the next tick. */
  nextDeadline(): number {
    let deadline = OFF;
    for (const peer of this.peersById.values()) deadline = Math.min(deadline, peer.nextDeadline());
    return deadline;
  }

  // ---------------------------------------------------------------- helpers

  /** Handshake retries forget the sticky source so a vanished local address is not reused. */
  private clearSourceAddress(peer: Peer): void {
    if (peer.endpoint !== null) {
      peer.endpoint.localAddress = null;
      peer.endpoint.localIfindex = 0;
    }
  }

  private computeStaticStatic(peerPublicKey: Uint8Array): Uint8Array | null {
    return this.identity === null ? null : dh(this.identity.privateKey, peerPublicKey);
  }

  private allocateIndex(entry: IndexEntry): number {
    for (;;) {
      const index = randomInt(1, 0x1_0000_0000 - 1);
      if (!this.indices.has(index)) {
        this.indices.set(index, entry);
        return index;
      }
    }
  }

  private clearHandshake(peer: Peer): void {
    if (peer.initiationLocalIndex !== 0) this.indices.delete(peer.initiationLocalIndex);
    peer.initiation = null;
    peer.initiationLocalIndex = 0;
  }

  private dropKeypair(keypair: Keypair | null): void {
    if (keypair === null) return;
    const entry = this.indices.get(keypair.localIndex);
    if (entry?.keypair === keypair) this.indices.delete(keypair.localIndex);
    keypair.wipe();
  }

  private dropKeypairs(peer: Peer): void {
    this.dropKeypair(peer.previous);
    this.dropKeypair(peer.current);
    this.dropKeypair(peer.next);
    peer.previous = peer.current = peer.next = null;
  }

  /** Force a new handshake before more data is sent (key change). */
  private expireSessions(peer: Peer): void {
    this.clearHandshake(peer);
    this.dropKeypairs(peer);
    peer.lastSentHandshake = -OFF;
  }

  private publishHandshake(peer: Peer | null, event: HandshakeEvent['event']): void {
    if (diagnostics.handshake.hasSubscribers) {
      diagnostics.handshake.publish({ peer: peer?.id ?? '', event } satisfies HandshakeEvent);
    }
  }

  private publishDrop(peer: Peer | null, reason: string): void {
    if (diagnostics.drop.hasSubscribers) {
      diagnostics.drop.publish({ peer: peer?.id ?? null, reason } satisfies DropEvent);
    }
  }
}
