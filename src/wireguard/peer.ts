/**
 * Per-peer protocol state: keypair rotation (previous/current/next, as wireguard-go
 * device/peer.go and the kernel's noise.c), handshake bookkeeping, staged packets,
 * counters and the timer deadlines of whitepaper §6. No I/O: the engine acts on it.
 */
import {
  KEEPALIVE_TIMEOUT,
  REJECT_AFTER_TIME,
  REKEY_TIMEOUT,
  REKEY_TIMEOUT_JITTER_MAX,
} from './constants.js';
import { CookieGenerator } from './cookie.js';
import type { Endpoint } from './endpoint.js';
import type { InitiatorState } from './handshake.js';
import type { Keypair } from './keypair.js';

/** A deadline that is not armed. */
export const OFF = Number.POSITIVE_INFINITY;

export class Peer {
  presharedKey: Uint8Array = new Uint8Array(32);
  /** dh(local private, peer public), precomputed (whitepaper §5.4.2 "ss"); null when either key is missing or low-order. */
  staticStatic: Uint8Array | null = null;
  endpoint: Endpoint | null = null;
  /** Seconds; 0 is off. */
  persistentKeepaliveInterval = 0;
  readonly cookieGenerator: CookieGenerator;

  previous: Keypair | null = null;
  current: Keypair | null = null;
  /** Responder's new keypair, not used for sending until the initiator's first data packet confirms it. */
  next: Keypair | null = null;

  // Handshake bookkeeping.
  initiation: InitiatorState | null = null;
  initiationLocalIndex = 0;
  /** Greatest TAI64N timestamp accepted from this peer (§5.1: replayed initiations are dropped). */
  latestTimestamp: Uint8Array | null = null;
  lastInitiationConsumed = -OFF;
  lastSentHandshake = -OFF;
  /** Monotonic ms of the last completed handshake, or null. */
  lastHandshake: number | null = null;

  /** Packets waiting for a session. */
  staged: Uint8Array[] = [];

  rxBytes = 0;
  txBytes = 0;

  // Timer deadlines (monotonic ms; OFF when not armed) — wireguard-go device/timers.go.
  retransmitHandshakeAt = OFF;
  sendKeepaliveAt = OFF;
  newHandshakeAt = OFF;
  zeroKeyMaterialAt = OFF;
  persistentKeepaliveAt = OFF;
  handshakeAttempts = 0;
  needAnotherKeepalive = false;
  sentLastMinuteHandshake = false;

  constructor(
    readonly publicKey: Uint8Array,
    readonly id: string,
    private readonly random: () => number,
  ) {
    this.cookieGenerator = new CookieGenerator(publicKey);
  }

  private jitter(): number {
    return Math.floor(this.random() * REKEY_TIMEOUT_JITTER_MAX);
  }

  /** The earliest armed deadline. */
  nextDeadline(): number {
    return Math.min(
      this.retransmitHandshakeAt,
      this.sendKeepaliveAt,
      this.newHandshakeAt,
      this.zeroKeyMaterialAt,
      this.persistentKeepaliveAt,
    );
  }

  // --- Timer events (names follow wireguard-go timers.go; whitepaper §6.2–§6.5) ---

  /** Sent a data packet: expect something back within KEEPALIVE + REKEY timeout, else rehandshake. */
  timersDataSent(now: number): void {
    if (this.newHandshakeAt === OFF) {
      this.newHandshakeAt = now + KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + this.jitter();
    }
  }

  /** Received a data packet: answer with a keepalive if we send nothing for KEEPALIVE_TIMEOUT. */
  timersDataReceived(now: number): void {
    if (this.sendKeepaliveAt === OFF) this.sendKeepaliveAt = now + KEEPALIVE_TIMEOUT;
    else this.needAnotherKeepalive = true;
  }

  timersAnyAuthenticatedPacketSent(): void {
    this.sendKeepaliveAt = OFF;
  }

  timersAnyAuthenticatedPacketReceived(): void {
    this.newHandshakeAt = OFF;
  }

  timersHandshakeInitiated(now: number): void {
    this.retransmitHandshakeAt = now + REKEY_TIMEOUT + this.jitter();
  }

  timersHandshakeComplete(now: number): void {
    this.retransmitHandshakeAt = OFF;
    this.handshakeAttempts = 0;
    this.sentLastMinuteHandshake = false;
    this.lastHandshake = now;
  }

  /** New keys: erase everything if no new handshake happens for 3 × REJECT_AFTER_TIME (§6.3). */
  timersSessionDerived(now: number): void {
    this.zeroKeyMaterialAt = now + REJECT_AFTER_TIME * 3;
  }

  timersAnyAuthenticatedPacketTraversal(now: number): void {
    if (this.persistentKeepaliveInterval > 0) {
      this.persistentKeepaliveAt = now + this.persistentKeepaliveInterval * 1000;
    }
  }

  stopTimers(): void {
    this.retransmitHandshakeAt = OFF;
    this.sendKeepaliveAt = OFF;
    this.newHandshakeAt = OFF;
    this.zeroKeyMaterialAt = OFF;
    this.persistentKeepaliveAt = OFF;
  }
}
