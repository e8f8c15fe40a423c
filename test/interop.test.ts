/**
 * Interop: two namespaces joined by a veth, one WireGuard daemon in each; for
 * each [initiator, responder] pair below: pings over the tunnel's IPv4 and IPv6
 * through outer IPv4 and IPv6 endpoints, byte-exact TCP, iperf3 TCP/UDP, and
 * the counters/handshake/endpoint reported by `wg show … dump` on both ends.
 * Topology: test/harness/topology.ts.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { leftoversOfThisRun, requireRoot, withHarness } from './harness/netns.js';
import { INTEROP_PAIRS, selectPairs } from './harness/pairs.js';
import { createTunnelPair } from './harness/topology.js';
import type { TunnelPair, TunnelPairOptions } from './harness/topology.js';
import { assertPeersHealthy } from './harness/checks.js';
import {
  describeDropDeltas,
  dropDelta,
  dropSnapshot,
  expectPingsAnswered,
  expectPingsLost,
  ping,
  runIperf3,
  tcpTransferWithDigest,
  waitForPing,
} from './harness/traffic.js';

// [initiator, responder]. Override with WARREN_INTEROP_PAIRS=initiator:responder,…
const PAIRS = selectPairs(INTEROP_PAIRS);

/** Loss iperf3 UDP may see at UDP_BITRATE before the test fails. */
const MAX_UDP_LOSS_PERCENT = 5;
const UDP_BITRATE = '20M';
const DIGEST_TRANSFER_BYTES = 8 * 1024 * 1024;

requireRoot();

after(async () => {
  assert.deepEqual(await leftoversOfThisRun(), [], 'this run left nothing behind');
});

for (const [initiatorImpl, responderImpl] of PAIRS) {
  describe(`interop: ${initiatorImpl} (initiator) ↔ ${responderImpl} (responder)`, () => {
    const withPair = (
      options: Partial<TunnelPairOptions>,
      body: (pair: TunnelPair) => Promise<void>,
    ) =>
      withHarness(async (harness) =>
        body(await createTunnelPair(harness, { initiatorImpl, responderImpl, ...options })),
      );

    it('pings tunnel IPv4 and IPv6 over an outer IPv4 endpoint; the responder learns it', () =>
      withPair({ outerFamily: 'ipv4' }, async (pair) => {
        const { harness, initiator, responder } = pair;
        // Without an endpoint the responder cannot reach the initiator first.
        await expectPingsLost(harness, responder.ns, initiator.addresses.tunnelV4, { count: 1 });
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
        await expectPingsAnswered(harness, initiator.ns, responder.addresses.tunnelV4, {
          count: 5,
        });
        await expectPingsAnswered(harness, initiator.ns, responder.addresses.tunnelV6, {
          count: 5,
        });
        // Now that it has learned the endpoint, the responder can start traffic too.
        await expectPingsAnswered(harness, responder.ns, initiator.addresses.tunnelV4, {
          count: 3,
        });
        await expectPingsAnswered(harness, responder.ns, initiator.addresses.tunnelV6, {
          count: 3,
        });
        await assertPeersHealthy(pair, { family: 'ipv4', counters: 'lossless' });
      }));

    it('pings over an outer IPv6 endpoint with a preshared key, then roams to outer IPv4', () =>
      withPair({ outerFamily: 'ipv6', presharedKey: true }, async (pair) => {
        const { harness, initiator, responder } = pair;
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV6);
        await expectPingsAnswered(harness, initiator.ns, responder.addresses.tunnelV6, {
          count: 5,
        });
        await expectPingsAnswered(harness, initiator.ns, responder.addresses.tunnelV4, {
          count: 5,
        });
        const dumps = await assertPeersHealthy(pair, { family: 'ipv6', counters: 'lossless' });
        assert.notEqual(
          dumps.atInitiator.presharedKey,
          null,
          'initiator reports its preshared key',
        );
        assert.equal(
          dumps.atInitiator.presharedKey,
          dumps.atResponder.presharedKey,
          'both ends hold the same key',
        );

        // Same session, other address family: the responder follows the initiator.
        await initiator.wg.setPeer({
          publicKey: responder.wg.publicKey,
          endpoint: responder.endpoint('ipv4'),
        });
        await expectPingsAnswered(harness, initiator.ns, responder.addresses.tunnelV4, {
          count: 3,
        });
        await assertPeersHealthy(pair, { family: 'ipv4', counters: 'lossless' });
      }));

    it('carries a TCP stream byte-exactly in both directions', () =>
      withPair({}, async (pair) => {
        const { harness, initiator, responder } = pair;
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
        const forward = await tcpTransferWithDigest(harness, {
          fromNs: initiator.ns,
          toNs: responder.ns,
          toAddress: responder.addresses.tunnelV4,
          port: 5001,
          bytes: DIGEST_TRANSFER_BYTES,
        });
        assert.equal(
          forward.receivedBytes,
          forward.bytes,
          'initiator → responder: every byte arrived',
        );
        assert.equal(
          forward.receivedSha256,
          forward.sentSha256,
          'initiator → responder: content intact',
        );
        const backward = await tcpTransferWithDigest(harness, {
          fromNs: responder.ns,
          toNs: initiator.ns,
          toAddress: initiator.addresses.tunnelV6,
          port: 5002,
          bytes: DIGEST_TRANSFER_BYTES,
        });
        assert.equal(
          backward.receivedBytes,
          backward.bytes,
          'responder → initiator (IPv6): every byte arrived',
        );
        assert.equal(
          backward.receivedSha256,
          backward.sentSha256,
          'responder → initiator (IPv6): content intact',
        );
        const dumps = await assertPeersHealthy(pair, { family: 'ipv4', counters: 'lossy' });
        // The tunnel counters include at least every payload byte carried.
        assert.ok(
          dumps.atResponder.rxBytes >= forward.bytes,
          'responder rx covers the forward payload',
        );
        assert.ok(
          dumps.atInitiator.rxBytes >= backward.bytes,
          'initiator rx covers the backward payload',
        );
      }));

    it('carries iperf3 TCP both ways and iperf3 UDP with little loss', () =>
      // Outer IPv4: the tunnel's own datagrams then never count in the Udp6 counters below.
      withPair({ outerFamily: 'ipv4' }, async (pair) => {
        const { harness, initiator, responder } = pair;
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
        const common = {
          clientNs: initiator.ns,
          serverNs: responder.ns,
          serverAddress: responder.addresses.tunnelV4,
          seconds: 2,
        };
        for (const reverse of [false, true]) {
          const tcp = await runIperf3(harness, { ...common, protocol: 'tcp', reverse });
          const what = `iperf3 TCP ${reverse ? 'responder → initiator' : 'initiator → responder'}`;
          assert.ok(tcp.receivedBytes > 0, `${what}: received data`);
          // iperf3 stops counting at the receiver when the test ends, so in-flight bytes
          // are never "received": received ≤ sent, not equal (byte-exactness is the digest test's job).
          assert.ok(
            tcp.receivedBytes <= tcp.sentBytes,
            `${what}: received ${tcp.receivedBytes} ≤ sent ${tcp.sentBytes}`,
          );
          assert.ok(
            tcp.receivedBitsPerSecond > 1e6,
            `${what}: at least 1 Mbit/s, got ${tcp.receivedBitsPerSecond}`,
          );
        }
        const namespaces = [initiator.ns, responder.ns];
        const dropsBefore = await dropSnapshot(harness, namespaces);
        const udp = await runIperf3(harness, {
          ...common,
          serverAddress: responder.addresses.tunnelV6,
          protocol: 'udp',
          bitrate: UDP_BITRATE,
        });
        const dropsAfter = await dropSnapshot(harness, namespaces);
        assert.ok(udp.packets !== undefined && udp.packets > 0, 'iperf3 UDP sent datagrams');
        assert.ok(udp.lostPackets !== undefined, 'iperf3 UDP reported its loss');
        // The iperf3 server's socket is the only IPv6 UDP socket this traffic reaches in the
        // responder's namespace. Its receive-buffer overflows are datagrams the tunnel
        // delivered that iperf3 did not read in time: seen in CI while the hypervisor took
        // 45 % of the machine (323 of 3,700 datagrams). They are not the tunnel's loss.
        const unreadAtReceiver = dropDelta(
          dropsBefore,
          dropsAfter,
          `${responder.ns} Udp6RcvbufErrors`,
        );
        assert.ok(
          unreadAtReceiver <= udp.lostPackets,
          `receiver-socket drops (${String(unreadAtReceiver)}) are among iperf3's lost datagrams (${String(udp.lostPackets)})`,
        );
        const lostInTunnel = (100 * (udp.lostPackets - unreadAtReceiver)) / udp.packets;
        if (!(lostInTunnel < MAX_UDP_LOSS_PERCENT)) {
          // Say where the datagrams went, so a failure on a loaded machine can be told apart.
          assert.fail(
            `iperf3 UDP at ${UDP_BITRATE}: ${lostInTunnel.toFixed(1)}% lost before the receiving socket, want < ${MAX_UDP_LOSS_PERCENT}% ` +
              `(iperf3 counted ${String(udp.lostPercent)}%, ${String(unreadAtReceiver)} datagrams overflowed its socket)\n` +
              describeDropDeltas(dropsBefore, dropsAfter),
          );
        }
        await assertPeersHealthy(pair, { family: 'ipv4', counters: 'lossy' });
      }));

    it('reuses the session for later traffic without a new handshake', () =>
      withPair({}, async (pair) => {
        const { harness, initiator, responder } = pair;
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
        const first = await assertPeersHealthy(pair, { family: 'ipv4', counters: 'lossless' });
        const burst = await ping(harness, initiator.ns, responder.addresses.tunnelV4, {
          count: 10,
          intervalSeconds: 0.05,
        });
        assert.equal(burst.received, 10, `all 10 pings answered:\n${burst.output}`);
        const second = await assertPeersHealthy(pair, { family: 'ipv4', counters: 'lossless' });
        assert.equal(
          second.atInitiator.latestHandshake,
          first.atInitiator.latestHandshake,
          'no new handshake was needed within REKEY_AFTER_TIME',
        );
        assert.ok(second.atInitiator.txBytes > first.atInitiator.txBytes, 'tx grew');
      }));
  });
}
