/**
 * Replying from the address a packet came to, on a host with several addresses,
 * without being too sticky when that address goes away (issue 2, §3).
 *
 * The responder (warren-wg) has two outer addresses on one link: its primary one
 * and a second one, which the initiator uses as the responder's endpoint. If the
 * responder answered from the kernel's default source (the primary address), the
 * initiator would roam its endpoint to that address (whitepaper §2.1: the endpoint
 * follows the source of authenticated packets); so the initiator's `wg show`
 * endpoint, and a packet capture on the initiator's side, show which source the
 * responder used. wireguard-go and the kernel module do the same: they remember
 * the local address each peer's packets arrived on and send from it
 * (wireguard-go conn/bind_linux.go, IP_PKTINFO / IPV6_PKTINFO; the kernel's
 * socket.c, endpoint src4/src6).
 *
 * Then the second address is removed. The kernel now refuses to send from it, and the
 * responder must fall back to a source the kernel picks, so its next packets come
 * from the primary address and the initiator roams there: traffic recovers within
 * seconds.
 *
 * The initiator is warren-wg, and wireguard-go too: as initiator it only has to
 * roam, and its own addresses never change here, so its own stickiness problem
 * (it keeps a vanished local source address, see interop-features.test.ts) does not
 * come into play.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { leftoversOfThisRun, requireRoot, sleep, withHarness } from './harness/netns.js';
import type { NetnsHarness, TrackedProcess } from './harness/netns.js';
import { selectImpls } from './harness/pairs.js';
import {
  createTunnelPair,
  formatEndpoint,
  OUTER_PREFIX_V4,
  OUTER_PREFIX_V6,
  RESPONDER_PORT,
} from './harness/topology.js';
import type { OuterFamily, TunnelPair } from './harness/topology.js';
import { readPeerDumps } from './harness/checks.js';
import { expectPingsAnswered, waitForPing } from './harness/traffic.js';

requireRoot();

after(async () => {
  assert.deepEqual(await leftoversOfThisRun(), [], 'this run left nothing behind');
});

// Initiators to run against a warren-wg responder. Override with WARREN_IMPLS=a,b.
const INITIATORS = selectImpls(['warren-wg', 'wireguard-go']);
const FAMILIES: readonly OuterFamily[] = ['ipv4', 'ipv6'];

/**
 * The responder's second outer address, chosen so that the kernel's own source
 * selection would never pick it for the initiator (the test checks this premise):
 * for IPv4 a secondary address in the primary's subnet (the kernel sends from the
 * primary one); for IPv6 an address in another /64 (reached by the initiator through
 * an on-link route), since Linux caps RFC 6724 rule 8 (longest matching prefix) at
 * the prefix length and would otherwise prefer the newer of two addresses in one /64.
 */
const SECOND_ADDRESS: Readonly<
  Record<OuterFamily, { address: string; prefix: number; onLinkRoute: string | null }>
> = {
  ipv4: { address: '192.0.2.3', prefix: OUTER_PREFIX_V4, onLinkRoute: null },
  ipv6: { address: '2001:db8:5::100', prefix: OUTER_PREFIX_V6, onLinkRoute: '2001:db8:5::/64' },
};
/** "Not too sticky": how fast traffic must recover once the sticky address is gone. */
const RECOVERY_DEADLINE_MS = 5000;

/**
 * tcpdump on `dev` in `ns`, recording the source address of every UDP packet from
 * `sourcePort`: what the initiator actually receives from the responder.
 */
class SourceCapture {
  private constructor(
    private readonly process: TrackedProcess,
    private readonly sourcePort: number,
  ) {}

  static async start(
    harness: NetnsHarness,
    ns: string,
    dev: string,
    sourcePort: number,
  ): Promise<SourceCapture> {
    const process = harness.spawn(
      ns,
      ['tcpdump', '-n', '-l', '-t', '-i', dev, `udp and src port ${sourcePort}`],
      { label: `tcpdump on ${dev}` },
    );
    const deadline = Date.now() + 5000;
    while (!process.output().includes('listening on')) {
      if (process.hasExited() || Date.now() > deadline) {
        throw new Error(`tcpdump did not start:\n${process.output()}`);
      }
      await sleep(25);
    }
    return new SourceCapture(process, sourcePort);
  }

  /** Source addresses in the order captured. "IP 192.0.2.3.51821 > …" / "IP6 2001:db8:1::100.51821 > …". */
  sources(): string[] {
    const pattern = new RegExp(`^IP6? (\\S+)\\.${this.sourcePort} > `, 'gm');
    return [...this.process.output().matchAll(pattern)].map((match) => match[1] ?? '');
  }
}

async function initiatorsEndpointForResponder(pair: TunnelPair): Promise<string | null> {
  return (await readPeerDumps(pair)).atInitiator.endpoint;
}

/** Polls (tcpdump prints asynchronously) until the capture has grown past `count` packets. */
async function capturedMoreThan(capture: SourceCapture, count: number): Promise<string[]> {
  const deadline = Date.now() + 2000;
  while (capture.sources().length <= count && Date.now() < deadline) await sleep(25);
  return capture.sources();
}

for (const initiatorImpl of INITIATORS) {
  describe(`source address: ${initiatorImpl} (initiator) → warren-wg (responder) on a two-address host`, () => {
    for (const family of FAMILIES) {
      it(`replies from the address it was reached at, and lets go when it disappears (outer ${family})`, () =>
        withHarness(async (harness) => {
          const pair = await createTunnelPair(harness, {
            initiatorImpl,
            responderImpl: 'warren-wg',
            outerFamily: family,
          });
          const { initiator, responder } = pair;
          const primary = responder.outerAddress(family);
          const second = SECOND_ADDRESS[family];
          await harness.addAddress(
            responder.ns,
            responder.outerDev,
            `${second.address}/${second.prefix}`,
          );
          if (second.onLinkRoute !== null) {
            await harness.exec(initiator.ns, [
              'ip',
              'route',
              'add',
              second.onLinkRoute,
              'dev',
              initiator.outerDev,
            ]);
          }
          // The premise: left to itself, the kernel would send from the primary address.
          const route = await harness.exec(responder.ns, [
            'ip',
            'route',
            'get',
            initiator.outerAddress(family),
          ]);
          assert.match(
            route.stdout,
            new RegExp(`\\bsrc ${primary.replaceAll('.', '\\.')}\\b`),
            `kernel default source is ${primary}: ${route.stdout}`,
          );
          const secondEndpoint = formatEndpoint(second.address, RESPONDER_PORT);
          const primaryEndpoint = formatEndpoint(primary, RESPONDER_PORT);
          // Before any packet: the initiator knows the responder only by its second address.
          await initiator.wg.setPeer({
            publicKey: responder.wg.publicKey,
            endpoint: secondEndpoint,
          });
          const capture = await SourceCapture.start(
            harness,
            initiator.ns,
            initiator.outerDev,
            RESPONDER_PORT,
          );

          // Handshake and traffic both ways; the responder also starts some (its pings).
          await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
          await expectPingsAnswered(harness, initiator.ns, responder.addresses.tunnelV6, {
            count: 3,
          });
          await expectPingsAnswered(harness, responder.ns, initiator.addresses.tunnelV4, {
            count: 3,
          });
          await sleep(200);
          const before = await capturedMoreThan(capture, 0);
          assert.ok(before.length >= 4, `captured the responder's packets: ${before.join(', ')}`);
          assert.deepEqual(
            [...new Set(before)],
            [second.address],
            'every packet from the responder came from the address the initiator sent to',
          );
          assert.equal(
            await initiatorsEndpointForResponder(pair),
            secondEndpoint,
            'so the initiator never roamed away from it',
          );
          assert.equal(
            (await readPeerDumps(pair)).atResponder.endpoint,
            initiator.endpoint(family),
            'the responder learned the initiator’s endpoint',
          );

          // The sticky address goes away; the responder has something to send.
          await harness.removeAddress(
            responder.ns,
            responder.outerDev,
            `${second.address}/${second.prefix}`,
          );
          const removedAt = Date.now();
          await waitForPing(harness, responder.ns, initiator.addresses.tunnelV4, {
            deadlineMs: RECOVERY_DEADLINE_MS,
          });
          const recoveryMs = Date.now() - removedAt;
          console.log(
            `${initiatorImpl}/${family}: traffic recovered ${recoveryMs} ms after the address was removed`,
          );
          assert.ok(
            recoveryMs <= RECOVERY_DEADLINE_MS + 1000,
            `recovered in ${recoveryMs} ms (limit ${RECOVERY_DEADLINE_MS})`,
          );
          assert.equal(
            await initiatorsEndpointForResponder(pair),
            primaryEndpoint,
            'the initiator roamed to the responder’s remaining address',
          );
          await expectPingsAnswered(harness, initiator.ns, responder.addresses.tunnelV4, {
            count: 3,
          });
          await expectPingsAnswered(harness, responder.ns, initiator.addresses.tunnelV6, {
            count: 3,
          });
          // The whole capture must be: the second address only, then the primary one only.
          // (Where exactly it switched is left open: tcpdump reports asynchronously.)
          await sleep(200);
          const all = await capturedMoreThan(capture, before.length);
          const switchedAt = all.indexOf(primary);
          assert.ok(
            switchedAt >= before.length,
            `the responder switched to ${primary}: ${all.join(', ')}`,
          );
          assert.deepEqual(
            [...new Set(all.slice(0, switchedAt))],
            [second.address],
            `until the switch only ${second.address}`,
          );
          assert.deepEqual(
            [...new Set(all.slice(switchedAt))],
            [primary],
            'after the switch the responder sends only from its primary address, never again from the removed one',
          );
        }));
    }
  });
}
