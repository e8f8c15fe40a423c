/**
 * Assertions over `wg show IFNAME dump` of both ends of a tunnel pair.
 */
import assert from 'node:assert/strict';
import type { OuterFamily, TunnelPair } from './topology.js';
import type { WgPeerDump } from './wireguard.js';

/**
 * Slack between one side's tx and the other's rx in a quiet tunnel: two
 * keepalives (32 bytes each, whitepaper §6.5) may be in flight while the two
 * dumps are read one after the other.
 */
export const QUIET_COUNTER_SLACK_BYTES = 64;
/** A handshake counts as recent when it is younger than REKEY_AFTER_TIME (whitepaper §6.1). */
export const RECENT_HANDSHAKE_SECONDS = 120;

export interface PeerDumps {
  /** The initiator's view of the responder. */
  readonly atInitiator: WgPeerDump;
  /** The responder's view of the initiator. */
  readonly atResponder: WgPeerDump;
}

export async function readPeerDumps(pair: TunnelPair): Promise<PeerDumps> {
  const atInitiator = await pair.initiator.wg.peerDump(pair.responder.wg.publicKey);
  const atResponder = await pair.responder.wg.peerDump(pair.initiator.wg.publicKey);
  return { atInitiator, atResponder };
}

export interface HealthExpectations {
  /** Outer family the initiator talks over; the responder must have learned that endpoint. */
  readonly family: OuterFamily;
  /**
   * 'lossless': the tunnel was quiet and lossless since it came up (pings only), so
   * each side's tx must equal the other's rx within QUIET_COUNTER_SLACK_BYTES.
   * 'lossy': after bulk transfers that may overflow socket buffers, only rx ≤ tx holds.
   * 'peer-recreated': a peer was removed and added again on one side, which restarts
   * its counters there, so the two sides' counters are not comparable.
   */
  readonly counters: 'lossless' | 'lossy' | 'peer-recreated';
}

/** Handshake recent, counters nonzero and consistent, endpoints as configured/learned. */
export async function assertPeersHealthy(
  pair: TunnelPair,
  expect: HealthExpectations,
): Promise<PeerDumps> {
  const dumps = await readPeerDumps(pair);
  const nowSeconds = Date.now() / 1000;
  const views = [
    ['initiator', dumps.atInitiator],
    ['responder', dumps.atResponder],
  ] as const;
  for (const [side, peer] of views) {
    const context = `${side} dump: ${JSON.stringify(peer)}`;
    assert.ok(peer.latestHandshake > 0, `no handshake recorded; ${context}`);
    assert.ok(
      nowSeconds - peer.latestHandshake < RECENT_HANDSHAKE_SECONDS &&
        peer.latestHandshake <= nowSeconds + 2,
      `latest handshake ${peer.latestHandshake} is not recent (now ${Math.round(nowSeconds)}); ${context}`,
    );
    assert.ok(peer.rxBytes > 0, `rx bytes are zero; ${context}`);
    assert.ok(peer.txBytes > 0, `tx bytes are zero; ${context}`);
  }
  const { atInitiator, atResponder } = dumps;
  const directions = [
    ['initiator → responder', atInitiator.txBytes, atResponder.rxBytes],
    ['responder → initiator', atResponder.txBytes, atInitiator.rxBytes],
  ] as const;
  // Both directions are judged before asserting, so a failure shows the whole picture.
  const problems: string[] = [];
  for (const [direction, sent, received] of directions) {
    const detail = `${direction}: sender tx ${sent}, receiver rx ${received} (difference ${sent - received})`;
    switch (expect.counters) {
      case 'lossless':
        if (Math.abs(sent - received) > QUIET_COUNTER_SLACK_BYTES) {
          problems.push(`counters disagree on a lossless link; ${detail}`);
        }
        break;
      case 'lossy':
        if (received > sent + QUIET_COUNTER_SLACK_BYTES)
          problems.push(`receiver counted more than was sent; ${detail}`);
        break;
      case 'peer-recreated':
        break;
    }
  }
  assert.deepEqual(problems, [], problems.join('\n'));
  assert.equal(
    atInitiator.endpoint,
    pair.responder.endpoint(expect.family),
    'initiator keeps the configured endpoint',
  );
  assert.equal(
    atResponder.endpoint,
    pair.initiator.endpoint(expect.family),
    'responder learned the initiator’s endpoint from its packets',
  );
  return dumps;
}
