/**
 * Interop through the UDP fault proxy (test/harness/udp-proxy.ts), for each
 * [initiator, responder] pair: the initiator's endpoint is the proxy, which runs
 * in the responder's namespace on 192.0.2.2:PROXY_PORT and forwards to the
 * responder's WireGuard port on 127.0.0.1, so the responder sees the initiator
 * at 127.0.0.1:<proxy upstream port>.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { leftoversOfThisRun, requireRoot, withHarness } from './harness/netns.js';
import { INTEROP_PAIRS, selectPairs } from './harness/pairs.js';
import { createTunnelPair, formatEndpoint, RESPONDER_PORT } from './harness/topology.js';
import type { TunnelPair } from './harness/topology.js';
import { readPeerDumps } from './harness/checks.js';
import {
  expectPingsAnswered,
  ping,
  tcpTransferWithDigest,
  waitForPing,
} from './harness/traffic.js';
import { startUdpProxyInNamespace } from './harness/udp-proxy.js';
import type { FaultOptions, NamespacedUdpProxy } from './harness/udp-proxy.js';
import type { WireGuardImpl } from './harness/wireguard.js';

// [initiator, responder]. Override with WARREN_INTEROP_PAIRS=initiator:responder,…
const PAIRS = selectPairs(INTEROP_PAIRS);

const PROXY_PORT = 51900;
/** Fixed seed: a failure replays with the same faults. */
const PROXY_SEED = 20_240_601;

requireRoot();

after(async () => {
  assert.deepEqual(await leftoversOfThisRun(), [], 'this run left nothing behind');
});

/** A tunnel pair whose initiator reaches the responder only through the proxy. */
async function proxiedPair(
  initiatorImpl: WireGuardImpl,
  responderImpl: WireGuardImpl,
  faults: FaultOptions,
  body: (pair: TunnelPair, proxy: NamespacedUdpProxy) => Promise<void>,
): Promise<void> {
  await withHarness(async (harness) => {
    const pair = await createTunnelPair(harness, { initiatorImpl, responderImpl });
    const proxy = await startUdpProxyInNamespace(harness, pair.responder.ns, {
      listenAddress: pair.responder.addresses.outerV4,
      listenPort: PROXY_PORT,
      targetAddress: '127.0.0.1',
      targetPort: RESPONDER_PORT,
      seed: PROXY_SEED,
      ...faults,
    });
    await pair.initiator.wg.setPeer({
      publicKey: pair.responder.wg.publicKey,
      endpoint: formatEndpoint(pair.responder.addresses.outerV4, PROXY_PORT),
    });
    await body(pair, proxy);
  });
}

for (const [initiatorImpl, responderImpl] of PAIRS) {
  describe(`interop through a faulty path: ${initiatorImpl} (initiator) ↔ ${responderImpl} (responder)`, () => {
    it('rejects every duplicated packet (replay protection)', () =>
      proxiedPair(
        initiatorImpl,
        responderImpl,
        { duplicate: 1 },
        async ({ harness, initiator, responder }, proxy) => {
          // The handshake initiation arrives twice too. wireguard-go (0.0.20220316) checks an
          // initiation's timestamp under a read lock and records it later under the write
          // lock, so two copies handled at once by its parallel handshake goroutines can both
          // pass and be answered with two responses. The initiator keeps the first, the
          // responder the second, and data gets no reply until the initiator starts a new
          // handshake after KEEPALIVE_TIMEOUT + REKEY_TIMEOUT (15 s, whitepaper §6.2; seen
          // once in CI). The deadline lets that recovery happen.
          await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4, {
            deadlineMs: 25_000,
          });
          // Every datagram arrives twice. A receiver that accepted the copy would answer
          // each echo request twice, and ping would print "DUP!" (whitepaper §5.4.6, replay).
          const result = await ping(harness, initiator.ns, responder.addresses.tunnelV4, {
            count: 10,
            intervalSeconds: 0.1,
          });
          assert.equal(result.received, 10, `every ping answered:\n${result.output}`);
          assert.doesNotMatch(result.output, /DUP!/, 'no duplicated echo reply');
          const stats = await proxy.stop();
          assert.ok(
            stats.clientToTarget.duplicated >= 10,
            'the proxy really duplicated the requests',
          );
          assert.ok(stats.targetToClient.duplicated >= 10, 'and the replies');
        },
      ));

    it('handshakes and carries byte-exact TCP through loss, duplication, reordering and jitter', () =>
      proxiedPair(
        initiatorImpl,
        responderImpl,
        { loss: 0.05, duplicate: 0.05, reorder: 0.1, jitterMs: 3 },
        async ({ harness, initiator, responder }, proxy) => {
          // A lost handshake message is retried after REKEY_TIMEOUT (5 s, whitepaper §6.4).
          await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4, {
            deadlineMs: 25_000,
          });
          const pings = await ping(harness, initiator.ns, responder.addresses.tunnelV4, {
            count: 20,
            intervalSeconds: 0.05,
          });
          // 5% loss each way: ~90% answered on average; well below that means the
          // tunnel itself loses packets (e.g. reordered ones rejected as replays).
          assert.ok(pings.received >= 14, `at least 14 of 20 pings answered:\n${pings.output}`);
          assert.doesNotMatch(pings.output, /DUP!/, 'duplicates were rejected');
          const transfer = await tcpTransferWithDigest(harness, {
            fromNs: initiator.ns,
            toNs: responder.ns,
            toAddress: responder.addresses.tunnelV4,
            port: 5003,
            bytes: 2 * 1024 * 1024,
            timeoutMs: 90_000,
          });
          assert.equal(transfer.receivedBytes, transfer.bytes, 'every byte arrived');
          assert.equal(transfer.receivedSha256, transfer.sentSha256, 'content intact');
          const stats = await proxy.stop();
          for (const direction of [stats.clientToTarget, stats.targetToClient]) {
            assert.ok(
              direction.dropped > 0 && direction.duplicated > 0 && direction.reordered > 0,
              'faults happened',
            );
          }
        },
      ));

    it('follows a NAT rebinding: the responder learns the new source port', () =>
      proxiedPair(initiatorImpl, responderImpl, {}, async (pair, proxy) => {
        const { harness, initiator, responder } = pair;
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
        const learned = async () => (await readPeerDumps(pair)).atResponder.endpoint;
        assert.equal(
          await learned(),
          formatEndpoint('127.0.0.1', proxy.upstreamPort()),
          'endpoint via the proxy',
        );
        const newPort = await proxy.rebind();
        // Replies to the old port now go nowhere: pings succeed only if the responder follows.
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
        await expectPingsAnswered(harness, initiator.ns, responder.addresses.tunnelV6, {
          count: 3,
        });
        assert.equal(
          await learned(),
          formatEndpoint('127.0.0.1', newPort),
          'endpoint followed the rebinding',
        );
      }));
  });
}
