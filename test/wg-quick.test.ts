/**
 * wg-quick with a userspace implementation, as users run it on a kernel without
 * the WireGuard module: `WG_QUICK_USERSPACE_IMPLEMENTATION=<impl> wg-quick up
 * ./IFNAME.conf` inside a namespace (wg-quick starts `<impl> IFNAME`, which
 * daemonizes), ping a wireguard-go peer through it, `wg-quick down`, and check
 * that interface, UAPI socket and daemon are gone. The config routes only the
 * tunnel subnet: no default route, no DNS (which would need resolvconf).
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { leftoversOfThisRun, requireRoot, sleep, withHarness } from './harness/netns.js';
import type { NetnsHarness } from './harness/netns.js';
import { selectImpls } from './harness/pairs.js';
import {
  formatEndpoint,
  hostRoutes,
  INITIATOR_ADDRESSES,
  INITIATOR_PORT,
  OUTER_PREFIX_V4,
  OUTER_PREFIX_V6,
  RESPONDER_ADDRESSES,
  RESPONDER_PORT,
  TUNNEL_PREFIX_V4,
  TUNNEL_PREFIX_V6,
} from './harness/topology.js';
import { expectPingsAnswered, waitForPing } from './harness/traffic.js';
import {
  generateKeyPair,
  startWireGuard,
  uapiSocketPath,
  WARREN_WG_CLI,
} from './harness/wireguard.js';
import type { WireGuardImpl } from './harness/wireguard.js';

// Implementations wg-quick starts. Override with WARREN_IMPLS=warren-wg,wireguard-go.
const IMPLS = selectImpls(['warren-wg']);

const WG_QUICK_MTU = 1380;
const WG_QUICK_TIMEOUT_MS = 30_000;

requireRoot();

after(async () => {
  assert.deepEqual(await leftoversOfThisRun(), [], 'this run left nothing behind');
});

/**
 * wg-quick runs `$WG_QUICK_USERSPACE_IMPLEMENTATION IFNAME` from PATH. For
 * warren-wg, a directory with a `warren-wg` shim goes first on PATH.
 */
async function userspaceEnvironment(
  harness: NetnsHarness,
  impl: WireGuardImpl,
): Promise<Record<string, string>> {
  const path = process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin';
  switch (impl) {
    case 'wireguard-go':
      return { WG_QUICK_USERSPACE_IMPLEMENTATION: 'wireguard-go', PATH: path };
    case 'warren-wg': {
      if (!existsSync(WARREN_WG_CLI))
        throw new Error(`warren-wg is not built: ${WARREN_WG_CLI} is missing`);
      const binDir = await harness.makeTempDir();
      const shim = join(binDir, 'warren-wg');
      await writeFile(shim, `#!/bin/sh\nexec '${process.execPath}' '${WARREN_WG_CLI}' "$@"\n`);
      await chmod(shim, 0o755);
      return { WG_QUICK_USERSPACE_IMPLEMENTATION: 'warren-wg', PATH: `${binDir}:${path}` };
    }
  }
}

/** Pids of running processes whose last argument is exactly `ifname` (our unique name): the daemon wg-quick started. */
function daemonPidsFor(ifname: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = readFileSync(`/proc/${entry}/cmdline`, 'utf8')
        .split('\0')
        .filter((arg) => arg !== '');
      if (argv.at(-1) === ifname && !argv.includes('wg-quick')) pids.push(Number(entry));
    } catch {
      // The process exited while we looked.
    }
  }
  return pids;
}

function isAlive(pid: number): boolean {
  return existsSync(`/proc/${pid}`);
}

async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await condition()) return true;
    await sleep(50);
  }
  return condition();
}

/** wg-quick's namespace and the peer's, joined by a veth with the outer addresses. */
async function quickAndPeer(
  harness: NetnsHarness,
  options: { ipv6: boolean },
): Promise<{ nsQuick: string; nsPeer: string }> {
  const nsQuick = await harness.addNamespace('q');
  const nsPeer = await harness.addNamespace('p');
  const veth = await harness.addVeth(nsQuick, nsPeer, { devA: 'to-p', devB: 'to-q' });
  await harness.addAddress(nsQuick, veth.devA, `${INITIATOR_ADDRESSES.outerV4}/${OUTER_PREFIX_V4}`);
  await harness.addAddress(nsPeer, veth.devB, `${RESPONDER_ADDRESSES.outerV4}/${OUTER_PREFIX_V4}`);
  if (options.ipv6) {
    await harness.addAddress(
      nsQuick,
      veth.devA,
      `${INITIATOR_ADDRESSES.outerV6}/${OUTER_PREFIX_V6}`,
    );
    await harness.addAddress(
      nsPeer,
      veth.devB,
      `${RESPONDER_ADDRESSES.outerV6}/${OUTER_PREFIX_V6}`,
    );
  }
  return { nsQuick, nsPeer };
}

for (const impl of IMPLS) {
  describe(`wg-quick with WG_QUICK_USERSPACE_IMPLEMENTATION=${impl}`, () => {
    it('brings the tunnel up from a config file, carries pings, and tears everything down', () =>
      withHarness(async (harness) => {
        const { nsQuick, nsPeer } = await quickAndPeer(harness, { ipv6: true });

        // The known-good peer: wireguard-go started by the harness, no endpoint for wg-quick's side.
        const peer = await startWireGuard(harness, 'wireguard-go', nsPeer, {
          listenPort: RESPONDER_PORT,
          addresses: [
            `${RESPONDER_ADDRESSES.tunnelV4}/${TUNNEL_PREFIX_V4}`,
            `${RESPONDER_ADDRESSES.tunnelV6}/${TUNNEL_PREFIX_V6}`,
          ],
        });

        const dir = await harness.makeTempDir();
        const keys = await generateKeyPair(dir);
        const ifname = harness.uniqueInterfaceName();
        harness.registerPathForCleanup(uapiSocketPath(ifname));
        const configFile = join(dir, `${ifname}.conf`);
        const privateKey = (await readFile(keys.privateKeyFile, 'utf8')).trim();
        await writeFile(
          configFile,
          [
            '[Interface]',
            `Address = ${INITIATOR_ADDRESSES.tunnelV4}/${TUNNEL_PREFIX_V4}, ${INITIATOR_ADDRESSES.tunnelV6}/${TUNNEL_PREFIX_V6}`,
            `ListenPort = ${INITIATOR_PORT}`,
            `PrivateKey = ${privateKey}`,
            `MTU = ${WG_QUICK_MTU}`,
            '',
            '[Peer]',
            `PublicKey = ${peer.publicKey}`,
            // Only the tunnel subnet: wg-quick adds a route for it inside the namespace.
            `AllowedIPs = ${RESPONDER_ADDRESSES.tunnelV4}/32, ${RESPONDER_ADDRESSES.tunnelV6}/128`,
            `Endpoint = ${formatEndpoint(RESPONDER_ADDRESSES.outerV4, RESPONDER_PORT)}`,
            'PersistentKeepalive = 25',
            '',
          ].join('\n'),
          { mode: 0o600 },
        );
        await peer.setPeer({
          publicKey: keys.publicKey,
          allowedIps: hostRoutes(INITIATOR_ADDRESSES),
        });

        const env = await userspaceEnvironment(harness, impl);
        try {
          const up = await harness.exec(nsQuick, ['wg-quick', 'up', configFile], {
            env,
            timeoutMs: WG_QUICK_TIMEOUT_MS,
          });
          assert.match(
            up.stderr,
            /Falling back to slow userspace implementation/,
            'wg-quick used the userspace implementation',
          );
          const daemonPids = daemonPidsFor(ifname);
          assert.equal(
            daemonPids.length,
            1,
            `exactly one ${impl} daemon serves ${ifname}: ${daemonPids.join(',')}`,
          );

          const dump = (await harness.exec(nsQuick, ['wg', 'show', ifname, 'dump'])).stdout;
          const [interfaceLine = '', peerLine = ''] = dump.trim().split('\n');
          assert.equal(
            interfaceLine.split('\t')[1],
            keys.publicKey,
            'interface has the configured key',
          );
          assert.equal(
            interfaceLine.split('\t')[2],
            String(INITIATOR_PORT),
            'interface listens on ListenPort',
          );
          assert.equal(peerLine.split('\t')[0], peer.publicKey, 'peer configured');
          assert.equal(peerLine.split('\t')[7], '25', 'persistent keepalive configured');
          const link = (await harness.exec(nsQuick, ['ip', '-o', 'link', 'show', ifname])).stdout;
          assert.match(link, new RegExp(` mtu ${WG_QUICK_MTU} `), 'MTU from the config');
          assert.match(link, /[<,]UP[,>]/, 'interface is up');
          const routes = (await harness.exec(nsQuick, ['ip', '-4', 'route', 'show', 'dev', ifname]))
            .stdout;
          assert.match(routes, /198\.51\.100\.0\/24/, `tunnel subnet routed via ${ifname}`);

          await waitForPing(harness, nsQuick, RESPONDER_ADDRESSES.tunnelV4);
          await expectPingsAnswered(harness, nsQuick, RESPONDER_ADDRESSES.tunnelV4, { count: 3 });
          await expectPingsAnswered(harness, nsQuick, RESPONDER_ADDRESSES.tunnelV6, { count: 3 });
          await expectPingsAnswered(harness, nsPeer, INITIATOR_ADDRESSES.tunnelV4, { count: 3 });
          const learned = (await peer.peerDump(keys.publicKey)).endpoint;
          assert.equal(
            learned,
            formatEndpoint(INITIATOR_ADDRESSES.outerV4, INITIATOR_PORT),
            'peer learned the endpoint',
          );

          await harness.exec(nsQuick, ['wg-quick', 'down', configFile], {
            env,
            timeoutMs: WG_QUICK_TIMEOUT_MS,
          });
          const linkGone = await waitUntil(
            async () =>
              (await harness.exec(nsQuick, ['ip', 'link', 'show', ifname], { allowFailure: true }))
                .exitCode !== 0,
            5000,
          );
          assert.ok(linkGone, `${ifname} is gone after wg-quick down`);
          assert.ok(
            await waitUntil(() => !existsSync(uapiSocketPath(ifname)), 5000),
            'UAPI socket is gone',
          );
          const [daemonPid] = daemonPids;
          assert.ok(
            daemonPid !== undefined && (await waitUntil(() => !isAlive(daemonPid), 5000)),
            `the ${impl} daemon (pid ${String(daemonPid)}) exited after wg-quick down`,
          );
        } finally {
          // wg-quick's daemon is not our child: if a failure left it running, stop it by
          // pid — found by its command line ending in this run's unique interface name.
          for (const pid of daemonPidsFor(ifname)) process.kill(pid, 'SIGKILL');
        }
      }));
  });
}

/** An address only the peer's namespace has, reachable from wg-quick's side through the tunnel alone. */
const BEYOND_PEER_V4 = '203.0.113.80';
const FWMARK = 51820;

for (const impl of IMPLS) {
  describe(`wg-quick full tunnel (AllowedIPs = 0.0.0.0/0) with ${impl}`, () => {
    it('sets fwmark and policy routing, and the daemon sends around its own tunnel', () =>
      withHarness(async (harness) => {
        const { nsQuick, nsPeer } = await quickAndPeer(harness, { ipv6: false });
        // Before the tunnel, everything would leave through the veth: the routing wg-quick must override.
        await harness.exec(nsQuick, [
          'ip',
          'route',
          'add',
          'default',
          'via',
          RESPONDER_ADDRESSES.outerV4,
        ]);
        await harness.exec(nsPeer, ['ip', 'addr', 'add', `${BEYOND_PEER_V4}/32`, 'dev', 'lo']);

        const peer = await startWireGuard(harness, 'wireguard-go', nsPeer, {
          listenPort: RESPONDER_PORT,
          addresses: [`${RESPONDER_ADDRESSES.tunnelV4}/${TUNNEL_PREFIX_V4}`],
        });
        const dir = await harness.makeTempDir();
        const keys = await generateKeyPair(dir);
        const ifname = harness.uniqueInterfaceName();
        harness.registerPathForCleanup(uapiSocketPath(ifname));
        const configFile = join(dir, `${ifname}.conf`);
        const privateKey = (await readFile(keys.privateKeyFile, 'utf8')).trim();
        await writeFile(
          configFile,
          [
            '[Interface]',
            `Address = ${INITIATOR_ADDRESSES.tunnelV4}/${TUNNEL_PREFIX_V4}`,
            `PrivateKey = ${privateKey}`,
            '[Peer]',
            `PublicKey = ${peer.publicKey}`,
            'AllowedIPs = 0.0.0.0/0',
            `Endpoint = ${formatEndpoint(RESPONDER_ADDRESSES.outerV4, RESPONDER_PORT)}`,
            '',
          ].join('\n'),
          { mode: 0o600 },
        );
        await peer.setPeer({
          publicKey: keys.publicKey,
          allowedIps: [`${INITIATOR_ADDRESSES.tunnelV4}/32`],
        });

        const env = await userspaceEnvironment(harness, impl);
        try {
          await harness.exec(nsQuick, ['wg-quick', 'up', configFile], {
            env,
            timeoutMs: WG_QUICK_TIMEOUT_MS,
          });
          const fwmark = (
            await harness.exec(nsQuick, ['wg', 'show', ifname, 'fwmark'])
          ).stdout.trim();
          assert.equal(
            Number.parseInt(fwmark, 16),
            FWMARK,
            'wg-quick set the fwmark on the daemon',
          );
          const route = (await harness.exec(nsQuick, ['ip', 'route', 'get', BEYOND_PEER_V4]))
            .stdout;
          assert.match(
            route,
            new RegExp(`dev ${ifname} table ${FWMARK}`),
            'ordinary traffic goes into the tunnel',
          );

          const before = (await peer.peerDump(keys.publicKey)).rxBytes;
          // The daemon's own datagrams carry the fwmark, so they take the main table to the
          // endpoint instead of looping back into the tunnel.
          await waitForPing(harness, nsQuick, BEYOND_PEER_V4);
          await expectPingsAnswered(harness, nsQuick, BEYOND_PEER_V4, { count: 3 });
          const after = (await peer.peerDump(keys.publicKey)).rxBytes;
          assert.ok(
            after > before,
            `the pings arrived through the tunnel (peer rx ${before} -> ${after})`,
          );

          await harness.exec(nsQuick, ['wg-quick', 'down', configFile], {
            env,
            timeoutMs: WG_QUICK_TIMEOUT_MS,
          });
          const rules = (await harness.exec(nsQuick, ['ip', '-4', 'rule', 'show'])).stdout;
          assert.doesNotMatch(rules, new RegExp(String(FWMARK)), 'wg-quick down removed its rules');
        } finally {
          for (const pid of daemonPidsFor(ifname)) process.kill(pid, 'SIGKILL');
        }
      }));
  });
}
