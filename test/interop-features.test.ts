/**
 * Interop of interface features, for each [initiator, responder] pair: big MTU,
 * allowed-IPs enforcement on receive, peer removal, private-key change, moving
 * the interface to another namespace, and roaming to a new outer address.
 * Topology: test/harness/topology.ts (the initiator has the responder's
 * endpoint; the responder learns the initiator's).
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { leftoversOfThisRun, requireRoot, withHarness } from './harness/netns.js';
import { INTEROP_PAIRS, selectPairs } from './harness/pairs.js';
import {
  createTunnelPair,
  formatEndpoint,
  hostRoutes,
  INITIATOR_ADDRESSES,
  OUTER_PREFIX_V4,
  OUTER_PREFIX_V6,
  RESPONDER_ADDRESSES,
  TUNNEL_PREFIX_V4,
  TUNNEL_PREFIX_V6,
} from './harness/topology.js';
import type { TunnelPair, TunnelPairOptions } from './harness/topology.js';
import { assertPeersHealthy, readPeerDumps } from './harness/checks.js';
import {
  expectPingsAnswered,
  expectPingsLost,
  linkCounters,
  waitForPing,
} from './harness/traffic.js';
import { generateKeyPair } from './harness/wireguard.js';

// [initiator, responder]. Override with WARREN_INTEROP_PAIRS=initiator:responder,…
const PAIRS = selectPairs(INTEROP_PAIRS);

const BIG_MTU = 8000;
/** ICMP payload that fits BIG_MTU unfragmented but not the 1500-byte underlay. */
const BIG_PING_PAYLOAD = 7000;

requireRoot();

after(async () => {
  assert.deepEqual(await leftoversOfThisRun(), [], 'this run left nothing behind');
});

for (const [initiatorImpl, responderImpl] of PAIRS) {
  describe(`interop features: ${initiatorImpl} (initiator) ↔ ${responderImpl} (responder)`, () => {
    const withPair = (
      options: Partial<TunnelPairOptions>,
      body: (pair: TunnelPair) => Promise<void>,
    ) =>
      withHarness(async (harness) =>
        body(await createTunnelPair(harness, { initiatorImpl, responderImpl, ...options })),
      );

    it(`carries ${BIG_PING_PAYLOAD}-byte pings unfragmented at MTU ${BIG_MTU} over a 1500-byte underlay`, () =>
      withPair({ mtu: BIG_MTU }, async ({ harness, initiator, responder }) => {
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
        // -M do: the inner packet must not be fragmented; the daemons' UDP datagrams
        // (≈ 7.1 kB) are fragmented by the underlay's IP layer and reassembled.
        for (const address of [responder.addresses.tunnelV4, responder.addresses.tunnelV6]) {
          await expectPingsAnswered(harness, initiator.ns, address, {
            count: 3,
            size: BIG_PING_PAYLOAD,
            dontFragment: true,
          });
        }
        await expectPingsAnswered(harness, responder.ns, initiator.addresses.tunnelV4, {
          count: 3,
          size: BIG_PING_PAYLOAD,
          dontFragment: true,
        });
      }));

    it('drops received packets whose source is outside the peer’s allowed IPs', () =>
      withPair({}, async (pair) => {
        const { harness, initiator, responder } = pair;
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
        // The responder no longer allows the initiator's tunnel addresses (whitepaper §2.1:
        // a decrypted packet is accepted only if its source is in the sending peer's allowed IPs).
        await responder.wg.setPeer({
          publicKey: initiator.wg.publicKey,
          allowedIps: ['198.51.100.77/32', '2001:db8:2::77/128'],
        });
        const tunBefore = await linkCounters(harness, responder.ns, responder.wg.ifname);
        const peerBefore = (await readPeerDumps(pair)).atResponder;
        await expectPingsLost(harness, initiator.ns, responder.addresses.tunnelV4, { count: 3 });
        await expectPingsLost(harness, initiator.ns, responder.addresses.tunnelV6, { count: 3 });
        const tunAfter = await linkCounters(harness, responder.ns, responder.wg.ifname);
        const peerAfter = (await readPeerDumps(pair)).atResponder;
        assert.ok(
          peerAfter.rxBytes > peerBefore.rxBytes,
          `the pings reached the responder's daemon (rx ${peerBefore.rxBytes} → ${peerAfter.rxBytes})`,
        );
        assert.equal(
          tunAfter.rxPackets,
          tunBefore.rxPackets,
          'the responder wrote none of them into its TUN device',
        );
        await responder.wg.setPeer({
          publicKey: initiator.wg.publicKey,
          allowedIps: hostRoutes(INITIATOR_ADDRESSES),
        });
        await expectPingsAnswered(harness, initiator.ns, responder.addresses.tunnelV4, {
          count: 3,
        });
        await expectPingsAnswered(harness, initiator.ns, responder.addresses.tunnelV6, {
          count: 3,
        });
      }));

    it('stops traffic when a peer is removed on either side', () =>
      withPair({}, async (pair) => {
        const { harness, initiator, responder } = pair;
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
        await responder.wg.removePeer(initiator.wg.publicKey);
        assert.deepEqual((await responder.wg.dump()).peers, [], 'responder lists no peer');
        // The initiator still holds a session, but the responder no longer knows its index.
        await expectPingsLost(harness, initiator.ns, responder.addresses.tunnelV4, { count: 3 });
        await initiator.wg.removePeer(responder.wg.publicKey);
        assert.deepEqual((await initiator.wg.dump()).peers, [], 'initiator lists no peer');
        await expectPingsLost(harness, initiator.ns, responder.addresses.tunnelV4, { count: 2 });
        // Interfaces still answer UAPI and can be given the peer back.
        await responder.wg.setPeer({
          publicKey: initiator.wg.publicKey,
          allowedIps: hostRoutes(INITIATOR_ADDRESSES),
        });
        await initiator.wg.setPeer({
          publicKey: responder.wg.publicKey,
          allowedIps: hostRoutes(RESPONDER_ADDRESSES),
          endpoint: responder.endpoint('ipv4'),
        });
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
        // Both peers were created afresh, so their counters start together again.
        await assertPeersHealthy(pair, { family: 'ipv4', counters: 'lossless' });
      }));

    it('resumes after the initiator’s private key changes and the responder learns the new public key', () =>
      withPair({}, async (pair) => {
        const { harness, initiator, responder } = pair;
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
        const oldPublicKey = initiator.wg.publicKey;
        const newKeys = await generateKeyPair(await harness.makeTempDir());
        await initiator.wg.setPrivateKey(newKeys);
        assert.equal(
          (await initiator.wg.dump()).interface.publicKey,
          newKeys.publicKey,
          'initiator reports the new key',
        );
        // The responder does not know the new static key: its handshakes are refused.
        await expectPingsLost(harness, initiator.ns, responder.addresses.tunnelV4, { count: 3 });
        await responder.wg.removePeer(oldPublicKey);
        await responder.wg.setPeer({
          publicKey: newKeys.publicKey,
          allowedIps: hostRoutes(INITIATOR_ADDRESSES),
        });
        // A handshake retry may wait REKEY_TIMEOUT (5 s, whitepaper §6.1).
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4, {
          deadlineMs: 15_000,
        });
        await expectPingsAnswered(harness, initiator.ns, responder.addresses.tunnelV6, {
          count: 3,
        });
        await assertPeersHealthy(pair, { family: 'ipv4', counters: 'peer-recreated' });
      }));

    it('keeps working after the interface is moved to another namespace', () =>
      withPair({}, async (pair) => {
        const { harness, initiator, responder } = pair;
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
        const nsC = await harness.addNamespace('c');
        await initiator.wg.moveToNamespace(nsC);
        const gone = await harness.exec(initiator.ns, ['ip', 'link', 'show', initiator.wg.ifname], {
          allowFailure: true,
        });
        assert.notEqual(gone.exitCode, 0, 'the interface left the daemon’s namespace');
        // Moving a link drops its addresses; the TUN fd and the daemon's UDP socket stay.
        await initiator.wg.addAddress(`${initiator.addresses.tunnelV4}/${TUNNEL_PREFIX_V4}`);
        await initiator.wg.addAddress(`${initiator.addresses.tunnelV6}/${TUNNEL_PREFIX_V6}`);
        await initiator.wg.setUp();
        await waitForPing(harness, nsC, responder.addresses.tunnelV4, { deadlineMs: 15_000 });
        await expectPingsAnswered(harness, nsC, responder.addresses.tunnelV4, { count: 3 });
        await expectPingsAnswered(harness, nsC, responder.addresses.tunnelV6, { count: 3 });
        // The UDP socket stayed in the daemon's namespace: same outer endpoint as before.
        await assertPeersHealthy(pair, { family: 'ipv4', counters: 'lossy' });
        // UAPI still works for the moved interface.
        assert.equal(
          (await initiator.wg.dump()).peers.length,
          1,
          'the moved interface still has its peer',
        );
      }));

    it('follows the initiator to a new port and a new address (roaming)', () =>
      withPair({}, async (pair) => {
        const { harness, initiator, responder } = pair;
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
        const learned = async () => (await readPeerDumps(pair)).atResponder.endpoint;
        assert.equal(
          await learned(),
          initiator.endpoint('ipv4'),
          'responder learned the first endpoint',
        );

        // New source port: replies to the old one would be lost, so pings only come back
        // if the responder updates the endpoint from the next authenticated packet (§2.1).
        const newPort = initiator.wg.listenPort + 10;
        await initiator.wg.wg(['set', initiator.wg.ifname, 'listen-port', String(newPort)]);
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
        assert.equal(
          await learned(),
          formatEndpoint(initiator.addresses.outerV4, newPort),
          'responder followed the port',
        );

        // New address. The initiator re-points its endpoint, as a roaming host's network
        // scripts do; that also drops wireguard-go's cached source address (see below).
        const movedV4 = '192.0.2.11';
        await moveOuterAddress(
          pair,
          `${initiator.addresses.outerV4}/${OUTER_PREFIX_V4}`,
          `${movedV4}/${OUTER_PREFIX_V4}`,
        );
        await initiator.wg.setPeer({
          publicKey: responder.wg.publicKey,
          endpoint: responder.endpoint('ipv4'),
        });
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
        await expectPingsAnswered(harness, initiator.ns, responder.addresses.tunnelV6, {
          count: 3,
        });
        assert.equal(
          await learned(),
          formatEndpoint(movedV4, newPort),
          'responder followed the new IPv4 address',
        );

        // And over the outer IPv6 network.
        const movedV6 = '2001:db8:1::11';
        await moveOuterAddress(
          pair,
          `${initiator.addresses.outerV6}/${OUTER_PREFIX_V6}`,
          `${movedV6}/${OUTER_PREFIX_V6}`,
        );
        await initiator.wg.setPeer({
          publicKey: responder.wg.publicKey,
          endpoint: responder.endpoint('ipv6'),
        });
        await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
        assert.equal(
          await learned(),
          formatEndpoint(movedV6, newPort),
          'responder followed the new IPv6 address',
        );
      }));

    // wireguard-go 0.0.20220316 caches the source address of each endpoint and, when
    // that address disappears, gets ENETUNREACH and keeps retrying with it (it drops
    // the cache only on EINVAL: conn/bind_linux.go, send4/send6); the kernel module
    // and warren-wg let the kernel pick a valid source again. So this runs only when
    // warren-wg is the initiator.
    if (initiatorImpl === 'warren-wg') {
      it('keeps reaching the responder when its own outer address changes, without reconfiguration', () =>
        withPair({}, async (pair) => {
          const { harness, initiator, responder } = pair;
          await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
          const movedV4 = '192.0.2.12';
          await moveOuterAddress(
            pair,
            `${initiator.addresses.outerV4}/${OUTER_PREFIX_V4}`,
            `${movedV4}/${OUTER_PREFIX_V4}`,
          );
          await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
          await expectPingsAnswered(harness, initiator.ns, responder.addresses.tunnelV6, {
            count: 3,
          });
          assert.equal(
            (await readPeerDumps(pair)).atResponder.endpoint,
            formatEndpoint(movedV4, initiator.wg.listenPort),
            'responder followed the initiator to its new address',
          );
        }));
    }
  });
}

/** Replaces one of the initiator's outer addresses: the old one is gone afterwards. */
async function moveOuterAddress(pair: TunnelPair, oldCidr: string, newCidr: string): Promise<void> {
  const { harness, initiator } = pair;
  await harness.removeAddress(initiator.ns, initiator.outerDev, oldCidr);
  await harness.addAddress(initiator.ns, initiator.outerDev, newCidr);
}
