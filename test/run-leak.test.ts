/**
 * `warren run` leaks nothing (issue 3): whatever the program tries — HTTP over
 * IPv4 and IPv6, DNS, the client host's own LAN — the only packets that leave
 * the client host are WireGuard's UDP to the server's endpoint, with the tunnel
 * up and with the server gone. Proven by a capture (tcpdump, every outgoing
 * packet, no filter) on the client host's only link, started before the
 * program, and by the internet's services, which must not see the attempts.
 * Topology: test/harness/internet.ts.
 */
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { IPPROTO_TCP, IPPROTO_UDP, PacketCapture, unexpectedPackets } from './harness/capture.js';
import type { CapturedPacket } from './harness/capture.js';
import {
  CLIENT_HOST,
  createInternetTopology,
  dnsLog,
  DNS,
  httpLog,
  SERVER_NAT,
  SERVER_OUTER,
  SERVER_PORT,
  SITE_NAME,
  WEB,
  wgQuickConfig,
} from './harness/internet.js';
import type { InternetTopology } from './harness/internet.js';
import { NetnsHarness, requireRoot } from './harness/netns.js';
import {
  createRunUser,
  runAsUser,
  waitForNoLeftovers,
  warrenRun,
  writeUserFile,
  explain,
  findings,
  useRunTestHooks,
} from './harness/warren-run.js';
import type { RunUser } from './harness/warren-run.js';

requireRoot();

useRunTestHooks();

/** WireGuard from the client host to the server's endpoint: the one thing allowed out. */
function isWireGuardToEndpoint(packet: CapturedPacket): boolean {
  return (
    packet.ipVersion === 4 &&
    packet.protocol === IPPROTO_UDP &&
    packet.source === CLIENT_HOST.v4 &&
    packet.destination === SERVER_OUTER.v4 &&
    packet.destinationPort === SERVER_PORT
  );
}

/**
 * Every way out a program could try, all at once (in the background, so the
 * time-outs overlap), each reporting "KEY=EXIT_STATUS": the internet over IPv4
 * and IPv6 by address and by name, DNS (getent, glibc's resolver, one try of one
 * second), and the client host's own LAN (the server's outer addresses).
 */
const TRY_EVERY_WAY_OUT = [
  'export RES_OPTIONS="timeout:1 attempts:1"',
  `(curl -sS --max-time 2 http://${WEB.v4}/; echo "http4=$?") &`,
  `(curl -sS --max-time 2 -g 'http://[${WEB.v6}]/'; echo "http6=$?") &`,
  `(curl -sS --max-time 2 http://${SITE_NAME}/; echo "byname=$?") &`,
  `(getent ahosts ${SITE_NAME}; echo "getent=$?") &`,
  `(curl -sS --max-time 2 http://${SERVER_OUTER.v4}/; echo "lan4=$?") &`,
  `(curl -sS --max-time 2 -g 'http://[${SERVER_OUTER.v6}]/'; echo "lan6=$?") &`,
  'wait',
].join('\n');
const WAYS_OUT = ['http4', 'http6', 'byname', 'getent', 'lan4', 'lan6'];

describe('warren run leaks nothing (wireguard-go server)', () => {
  let harness: NetnsHarness;
  let topology: InternetTopology;
  let user: RunUser;
  let dualConfig: string;
  let v4onlyConfig: string;

  before(async () => {
    harness = new NetnsHarness();
    topology = await createInternetTopology(harness, { serverImpl: 'wireguard-go' });
    user = await createRunUser(harness);
    dualConfig = await writeUserFile(user, 'dual.conf', wgQuickConfig(topology, topology.dual));
    v4onlyConfig = await writeUserFile(
      user,
      'v4only.conf',
      wgQuickConfig(topology, topology.v4only, { dns: [DNS.v4, DNS.v6] }),
    );
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

  const capture = () => PacketCapture.start(harness, topology.clientNs, topology.clientDev, 'out');

  it('control: the capture sees a program that runs without warren reach the internet directly', async () => {
    const tcpdump = await capture();
    const direct = await runAsUser(harness, topology.clientNs, user, [
      'curl',
      '-sS',
      '--max-time',
      '5',
      `http://${WEB.v4}/`,
    ]);
    const packets = await tcpdump.stop();
    assert.equal(direct.exitCode, 0, explain(direct));
    assert.match(
      direct.stdout,
      new RegExp(`you came from ${CLIENT_HOST.v4}`),
      'un-NATed, from the client host',
    );
    assert.ok(
      packets.some(
        (p) => p.protocol === IPPROTO_TCP && p.destination === WEB.v4 && p.destinationPort === 80,
      ),
      `the capture shows the direct connection: ${packets.map((p) => p.summary).join('\n')}`,
    );
  });

  it('with the tunnel up, the program’s IPv4, IPv6 and DNS traffic leaves only as UDP to the endpoint', async () => {
    const tcpdump = await capture();
    const result = await warrenRun(
      harness,
      topology.clientNs,
      user,
      ['-c', dualConfig],
      [
        'sh',
        '-c',
        [
          `curl -sS --max-time 10 http://${SITE_NAME}/`,
          `curl -sS --max-time 10 -g 'http://[${WEB.v6}]/'`,
        ].join('\n'),
      ],
    );
    const packets = await tcpdump.stop();
    assert.equal(result.exitCode, 0, explain(result));
    assert.match(
      result.stdout,
      new RegExp(
        `you came from (${SERVER_NAT.v4}|${SERVER_NAT.v6})\\n.*you came from ${SERVER_NAT.v6}`,
      ),
    );
    assert.deepEqual(
      unexpectedPackets(packets, isWireGuardToEndpoint),
      [],
      'nothing but WireGuard left',
    );
    assert.ok(packets.length >= 2, 'WireGuard carried the traffic');
  });

  it('with a config without IPv6, IPv6 connections fail at once, IPv4 works, and no IPv6 leaves', async () => {
    const tcpdump = await PacketCapture.start(
      harness,
      topology.clientNs,
      topology.clientDev,
      'out',
    );
    const timed = (key: string, command: string) =>
      `s=$(date +%s%N); ${command}; echo "${key}=$? $(( ($(date +%s%N) - s) / 1000000 ))"`;
    const result = await warrenRun(
      harness,
      topology.clientNs,
      user,
      ['-c', v4onlyConfig],
      [
        'sh',
        '-c',
        [
          timed('http6', `curl -sS --max-time 5 -g 'http://[${WEB.v6}]/'`),
          timed('byname6', `curl -6 -sS --max-time 5 http://${SITE_NAME}/`),
          timed('lan6', `curl -sS --max-time 5 -g 'http://[${SERVER_OUTER.v6}]/'`),
          `echo "http4=$(curl -sS --max-time 10 http://${SITE_NAME}/)"`,
        ].join('\n'),
      ],
    );
    const packets = await tcpdump.stop();
    assert.equal(result.exitCode, 0, explain(result));
    const found = findings(result);
    for (const key of ['http6', 'byname6', 'lan6']) {
      const [status = '', elapsed = ''] = (found.get(key) ?? '').split(' ');
      assert.notEqual(status, '0', `${key} failed\n${explain(result)}`);
      assert.ok(status !== '', `${key} ran\n${explain(result)}`);
      assert.ok(
        Number(elapsed) < 1000,
        `${key} failed at once, not by time-out (${elapsed} ms)\n${explain(result)}`,
      );
    }
    assert.equal(
      found.get('http4'),
      `hello from the internet; you came from ${SERVER_NAT.v4}`,
      explain(result),
    );
    assert.deepEqual(
      packets.filter((p) => p.ipVersion === 6).map((p) => p.summary),
      [],
      'no IPv6 packet left the client host',
    );
    assert.deepEqual(
      unexpectedPackets(packets, isWireGuardToEndpoint),
      [],
      'nothing but WireGuard left',
    );
  });

  for (const how of ['interface down', 'daemon stopped'] as const) {
    it(`with the server’s ${how}, every way out fails and nothing but UDP to the endpoint leaves`, async () => {
      if (how === 'interface down') {
        await topology.server.setDown();
      } else {
        await topology.server.process.stop();
      }
      const httpBefore = httpLog(topology).length;
      const dnsBefore = dnsLog(topology).length;
      const tcpdump = await capture();
      // With the daemon gone no handshake can complete: warren must say so (after 1 s here).
      const result = await warrenRun(
        harness,
        topology.clientNs,
        user,
        ['-c', dualConfig, '--handshake-warning', '1'],
        ['sh', '-c', TRY_EVERY_WAY_OUT],
      );
      const packets = await tcpdump.stop();
      if (how === 'interface down') await topology.server.setUp();

      assert.equal(result.exitCode, 0, explain(result));
      const found = findings(result);
      for (const key of WAYS_OUT) {
        const status = found.get(key);
        assert.ok(
          status !== undefined && status !== '0',
          `${key} failed (exit ${String(status)})\n${explain(result)}`,
        );
      }
      if (how === 'daemon stopped') {
        assert.match(
          result.stderr,
          /no WireGuard handshake/,
          `the stalled handshake is reported\n${explain(result)}`,
        );
      }
      assert.deepEqual(httpLog(topology).slice(httpBefore), [], 'the web server saw nothing');
      assert.deepEqual(dnsLog(topology).slice(dnsBefore), [], 'the DNS responder saw nothing');
      assert.deepEqual(
        unexpectedPackets(packets, isWireGuardToEndpoint),
        [],
        'nothing but WireGuard left',
      );
      assert.ok(
        packets.some(isWireGuardToEndpoint),
        'warren tried to reach the endpoint (handshake initiations)',
      );
    });
  }
});
