/**
 * `warren run` end to end (issue 3): an unprivileged user in a client host
 * namespace runs programs through a WireGuard server (wireguard-go, then
 * warren-wg) that NATs them to an "internet" namespace with an HTTP server and
 * a DNS responder. Topology: test/harness/internet.ts.
 */
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { NetnsHarness, requireRoot } from './harness/netns.js';
import {
  createInternetTopology,
  DNS,
  ENDPOINT_NAME,
  SERVER_NAT,
  SERVER_PORT,
  dnsLog,
  httpLog,
  SITE_NAME,
  WEB,
  wgQuickConfig,
  CLIENT_HOST,
} from './harness/internet.js';
import type { InternetTopology } from './harness/internet.js';
import { selectImpls } from './harness/pairs.js';
import {
  createRunUser,
  spawnWarrenRun,
  waitForNoLeftovers,
  warrenRun,
  writeUserFile,
  explain,
  findings,
  useRunTestHooks,
} from './harness/warren-run.js';
import type { RunUser } from './harness/warren-run.js';

// Override with WARREN_IMPLS=warren-wg (or wireguard-go).
const SERVER_IMPLS = selectImpls(['wireguard-go', 'warren-wg']);

requireRoot();

useRunTestHooks();

/** What the HTTP server says it saw, in the body it returns. */
function seenFrom(address: string): string {
  return `hello from the internet; you came from ${address}`;
}

/**
 * A shell script for the sandbox: prints `id -u`, then fetches the web server by
 * name (each family) and by address (each family), one KEY=BODY line each.
 */
const FETCH_EVERYTHING = [
  'echo "uid=$(id -u)"',
  `echo "name4=$(curl -4 -sS --max-time 10 http://${SITE_NAME}/ 2>&1)"`,
  `echo "name6=$(curl -6 -sS --max-time 10 http://${SITE_NAME}/ 2>&1)"`,
  `echo "addr4=$(curl -sS --max-time 10 http://${WEB.v4}/ 2>&1)"`,
  `echo "addr6=$(curl -sS --max-time 10 -g 'http://[${WEB.v6}]/' 2>&1)"`,
].join('\n');

for (const serverImpl of SERVER_IMPLS) {
  describe(`warren run through a ${serverImpl} server`, () => {
    let harness: NetnsHarness;
    let topology: InternetTopology;
    let user: RunUser;
    let dualConfig: string;
    let dualKeyFile: string;

    before(async () => {
      harness = new NetnsHarness();
      topology = await createInternetTopology(harness, { serverImpl });
      user = await createRunUser(harness);
      dualConfig = await writeUserFile(user, 'dual.conf', wgQuickConfig(topology, topology.dual));
      dualKeyFile = await writeUserFile(user, 'dual.key', `${topology.dual.privateKey}\n`);
    });
    after(async () => {
      await harness.cleanup();
    });
    afterEach(async () => {
      assert.deepEqual(
        await waitForNoLeftovers(harness, topology.clientNs, user, 3000),
        [],
        'warren run left nothing behind',
      );
    });

    const run = (
      args: readonly string[],
      command: readonly string[],
      env?: Record<string, string>,
    ) =>
      warrenRun(harness, topology.clientNs, user, args, command, env === undefined ? {} : { env });

    it('reaches the internet by name and by address over IPv4 and IPv6, NATed by the server, as the caller', async () => {
      const httpBefore = httpLog(topology).length;
      const dnsBefore = dnsLog(topology).length;
      const result = await run(['-c', dualConfig], ['sh', '-c', FETCH_EVERYTHING]);
      assert.equal(result.exitCode, 0, explain(result));
      const found = findings(result);
      assert.equal(
        found.get('uid'),
        String(user.uid),
        `id -u inside is the caller's uid\n${explain(result)}`,
      );
      assert.equal(found.get('name4'), seenFrom(SERVER_NAT.v4), explain(result));
      assert.equal(found.get('name6'), seenFrom(SERVER_NAT.v6), explain(result));
      assert.equal(found.get('addr4'), seenFrom(SERVER_NAT.v4), explain(result));
      assert.equal(found.get('addr6'), seenFrom(SERVER_NAT.v6), explain(result));

      const http = httpLog(topology).slice(httpBefore);
      assert.equal(http.length, 4, `the web server saw 4 requests: ${JSON.stringify(http)}`);
      assert.deepEqual(
        new Set(http.map((entry) => entry.remote)),
        new Set([SERVER_NAT.v4, SERVER_NAT.v6]),
        'every request came from the server’s NAT address, none from the client host',
      );
      const dns = dnsLog(topology)
        .slice(dnsBefore)
        .filter((entry) => entry.name === SITE_NAME);
      assert.ok(dns.length > 0, `the DNS responder was asked for ${SITE_NAME}`);
      for (const entry of dns) {
        assert.equal(
          entry.remote,
          SERVER_NAT.v4,
          `DNS went through the tunnel: ${JSON.stringify(entry)}`,
        );
        assert.equal(entry.local, DNS.v4, 'to the config’s DNS server');
      }

      // The server saw the client's handshake and traffic arrive on its WireGuard socket.
      const peer = await topology.server.peerDump(topology.dual.publicKey);
      assert.ok(
        peer.latestHandshake > 0,
        `the server has a handshake with the client: ${JSON.stringify(peer)}`,
      );
      assert.ok(peer.rxBytes > 0, 'the server received tunnel traffic from the client');
      assert.match(
        peer.endpoint ?? '',
        new RegExp(`^${CLIENT_HOST.v4.replaceAll('.', '\\.')}:\\d+$`),
        'from the client host’s address',
      );
    });

    it('propagates exit status 0, exit status 7 and death by a signal', async () => {
      const zero = await run(['-c', dualConfig], ['true']);
      assert.equal(zero.exitCode, 0, explain(zero));
      const seven = await run(['-c', dualConfig], ['sh', '-c', 'exit 7']);
      assert.equal(seven.exitCode, 7, explain(seven));
      const killed = await run(['-c', dualConfig], ['sh', '-c', 'kill -TERM $$']);
      assert.equal(
        killed.signal,
        'SIGTERM',
        `warren died of the program's signal\n${explain(killed)}`,
      );
      assert.equal(killed.exitCode, null, explain(killed));
    });

    it('forwards SIGINT, SIGTERM and SIGHUP to the program', async () => {
      for (const [signal, trapName, status] of [
        ['SIGINT', 'INT', 41],
        ['SIGTERM', 'TERM', 42],
        ['SIGHUP', 'HUP', 43],
      ] as const) {
        const warren = spawnWarrenRun(
          harness,
          topology.clientNs,
          user,
          ['-c', dualConfig],
          [
            'sh',
            '-c',
            `trap "echo got-${trapName}; exit ${status}" ${trapName}; echo ready; while :; do sleep 0.05; done`,
          ],
        );
        const deadline = Date.now() + 10_000;
        while (!warren.output().includes('ready')) {
          assert.ok(
            !warren.hasExited() && Date.now() < deadline,
            `the program started:\n${warren.output()}`,
          );
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        warren.signal(signal);
        assert.ok(
          await warren.exitedWithin(5000),
          `warren exited after ${signal}:\n${warren.output()}`,
        );
        assert.deepEqual(
          warren.status(),
          { exitCode: status, signal: null },
          `the program's trap decided warren's status:\n${warren.output()}`,
        );
        assert.match(warren.output(), new RegExp(`got-${trapName}`), `the program got ${signal}`);
      }
    });

    it('builds the same tunnel from --wg-* flags and WARREN_WG_* variables, with flags over variables over the file', async () => {
      const fetch = [
        'sh',
        '-c',
        `id -u; curl -sS --max-time 10 http://${WEB.v4}/; curl -sS --max-time 10 -g http://[${WEB.v6}]/`,
      ];
      const expected = `${user.uid}\n${seenFrom(SERVER_NAT.v4)}\n${seenFrom(SERVER_NAT.v6)}\n`;
      const flags = [
        '--wg-endpoint',
        topology.endpoint,
        '--wg-public-key',
        topology.server.publicKey,
        '--wg-private-key-file',
        dualKeyFile,
        '--wg-address',
        topology.dual.addresses.join(','),
        '--dns',
        DNS.v4,
      ];
      const byFlags = await run(flags, fetch);
      assert.equal(byFlags.exitCode, 0, explain(byFlags));
      assert.equal(byFlags.stdout, expected, explain(byFlags));

      // The environment alone, with the endpoint given by name: the client host resolves it.
      const dnsBefore = dnsLog(topology).length;
      const byEnv = await run([], fetch, {
        WARREN_WG_ENDPOINT: `${ENDPOINT_NAME}:${SERVER_PORT}`,
        WARREN_WG_PUBLIC_KEY: topology.server.publicKey,
        WARREN_WG_PRIVATE_KEY_FILE: dualKeyFile,
        WARREN_WG_ADDRESS: topology.dual.addresses.join(','),
        WARREN_WG_DNS: DNS.v4,
      });
      assert.equal(byEnv.exitCode, 0, explain(byEnv));
      assert.equal(byEnv.stdout, expected, explain(byEnv));
      const endpointLookups = dnsLog(topology)
        .slice(dnsBefore)
        .filter((entry) => entry.name === ENDPOINT_NAME);
      assert.ok(endpointLookups.length > 0, `warren resolved ${ENDPOINT_NAME} before starting`);
      for (const entry of endpointLookups) {
        assert.equal(entry.remote, CLIENT_HOST.v4, 'on the client host, outside the tunnel');
      }

      // Precedence: a wrong endpoint in the file is overridden by the variable, a wrong
      // variable by the flag.
      const wrongEndpoint = '192.0.2.99:51820';
      const badFile = await writeUserFile(
        user,
        'wrong-endpoint.conf',
        wgQuickConfig(topology, topology.dual, { endpoint: wrongEndpoint }),
      );
      const envOverFile = await run(['-c', badFile], fetch, {
        WARREN_WG_ENDPOINT: topology.endpoint,
      });
      assert.equal(envOverFile.exitCode, 0, explain(envOverFile));
      assert.equal(envOverFile.stdout, expected, explain(envOverFile));
      const flagOverEnv = await run(['-c', badFile, '--wg-endpoint', topology.endpoint], fetch, {
        WARREN_WG_ENDPOINT: wrongEndpoint,
      });
      assert.equal(flagOverEnv.exitCode, 0, explain(flagOverEnv));
      assert.equal(flagOverEnv.stdout, expected, explain(flagOverEnv));
    });

    it('gives the program a resolv.conf with the config’s DNS (or --dns) and leaves the host’s alone', async () => {
      const hostBefore = await readFile('/etc/resolv.conf', 'utf8');
      const clientHostBefore = await readFile(user.hostResolvConf, 'utf8');
      const nameservers = (text: string) =>
        text
          .split('\n')
          .filter((line) => /^\s*nameserver\s/.test(line))
          .map((line) => line.trim().split(/\s+/)[1]);

      const fromConfig = await run(['-c', dualConfig], ['cat', '/etc/resolv.conf']);
      assert.equal(fromConfig.exitCode, 0, explain(fromConfig));
      assert.deepEqual(nameservers(fromConfig.stdout), [DNS.v4], explain(fromConfig));

      const overridden = await run(
        ['-c', dualConfig, '--dns', DNS.v6],
        ['sh', '-c', `cat /etc/resolv.conf; getent ahostsv4 ${SITE_NAME}`],
      );
      assert.equal(overridden.exitCode, 0, explain(overridden));
      assert.deepEqual(nameservers(overridden.stdout), [DNS.v6], explain(overridden));
      assert.match(
        overridden.stdout,
        new RegExp(`^${WEB.v4.replaceAll('.', '\\.')}\\s`, 'm'),
        'the name resolved',
      );
      const lastLookup = dnsLog(topology)
        .filter((entry) => entry.name === SITE_NAME)
        .at(-1);
      assert.ok(lastLookup !== undefined, 'the DNS responder was asked');
      assert.equal(lastLookup.local, DNS.v6, 'through the --dns server');
      assert.equal(lastLookup.remote, SERVER_NAT.v6, 'reached through the tunnel');

      assert.equal(
        await readFile('/etc/resolv.conf', 'utf8'),
        hostBefore,
        'the host’s resolv.conf is unchanged',
      );
      assert.equal(
        await readFile(user.hostResolvConf, 'utf8'),
        clientHostBefore,
        'the client host’s too',
      );
    });
  });
}
