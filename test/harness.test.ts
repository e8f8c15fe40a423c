/**
 * The namespace harness checks itself: command time limits and errors, address
 * range guards, `wg show dump` parsing, namespaces/veths/processes created and
 * every one of them gone after cleanup, and a wireguard-go daemon started and
 * stopped through startWireGuard.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import {
  checkTestCidr,
  ExecError,
  listNamespaces,
  NetnsHarness,
  namespacePrefix,
  requireRoot,
  runCommand,
} from './harness/netns.js';
import { selectPairs } from './harness/pairs.js';
import { expectPingsAnswered } from './harness/traffic.js';
import { parseWgDump, startWireGuard, uapiSocketPath } from './harness/wireguard.js';

requireRoot();

const PUBLIC_A = 'buhLyzFgWMxI2eWi7pSCsWhyJ3ZslV72wW1OVdIaVnc=';
const PUBLIC_B = 'f4E+8KsInMEtFLa41T5uT1xjAKX9O73QSlnzjc0W/HY=';
const PRIVATE = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=';

describe('harness: commands', () => {
  it('runCommand captures output and exit codes', async () => {
    const ok = await runCommand(['sh', '-c', 'echo out; echo err >&2']);
    assert.equal(ok.stdout, 'out\n');
    assert.equal(ok.stderr, 'err\n');
    assert.equal(ok.exitCode, 0);
    const failed = await runCommand(['sh', '-c', 'exit 3'], { allowFailure: true });
    assert.equal(failed.exitCode, 3);
    await assert.rejects(runCommand(['sh', '-c', 'echo why >&2; exit 4']), (error: unknown) => {
      assert.ok(error instanceof ExecError);
      assert.match(error.message, /exit code 4/);
      assert.match(error.message, /why/);
      return true;
    });
    const echoed = await runCommand(['cat'], { input: 'fed to stdin' });
    assert.equal(echoed.stdout, 'fed to stdin');
  });

  it('runCommand kills a command at its time limit', async () => {
    const started = Date.now();
    await assert.rejects(runCommand(['sleep', '30'], { timeoutMs: 300 }), /timed out after 300 ms/);
    assert.ok(Date.now() - started < 5000, 'did not wait for the command');
  });

  it('checkTestCidr admits only documentation and ULA ranges', () => {
    for (const good of [
      '192.0.2.1/24',
      '198.51.100.7/32',
      '203.0.113.9/24',
      '2001:db8:1::1/64',
      'fd00::1/64',
    ]) {
      assert.doesNotThrow(() => checkTestCidr(good), good);
    }
    for (const bad of [
      '10.0.0.1/8',
      '8.8.8.8/32',
      '2001:4860::1/64',
      '127.0.0.1/8',
      'fe80::1/64',
    ]) {
      assert.throws(() => checkTestCidr(bad), /outside the documentation/, bad);
    }
    assert.throws(() => checkTestCidr('192.0.2.1'), /address\/prefix-length/);
    assert.throws(() => checkTestCidr('192.0.2.1/40'), /prefix length/);
  });

  it('parseWgDump reads the interface and peer lines', () => {
    const dump = parseWgDump(
      [
        [PRIVATE, PUBLIC_A, '51820', 'off'].join('\t'),
        [
          PUBLIC_B,
          '(none)',
          '192.0.2.2:51821',
          '198.51.100.2/32,2001:db8:2::2/128',
          '1700000000',
          '836',
          '780',
          '25',
        ].join('\t'),
        [PUBLIC_A, PRIVATE, '(none)', '(none)', '0', '0', '0', 'off'].join('\t'),
        '',
      ].join('\n'),
    );
    assert.deepEqual(dump.interface, {
      privateKey: PRIVATE,
      publicKey: PUBLIC_A,
      listenPort: 51820,
      fwmark: null,
    });
    assert.deepEqual(dump.peers[0], {
      publicKey: PUBLIC_B,
      presharedKey: null,
      endpoint: '192.0.2.2:51821',
      allowedIps: ['198.51.100.2/32', '2001:db8:2::2/128'],
      latestHandshake: 1700000000,
      rxBytes: 836,
      txBytes: 780,
      persistentKeepalive: 25,
    });
    const second = dump.peers[1];
    assert.ok(second !== undefined);
    assert.equal(second.endpoint, null);
    assert.deepEqual(second.allowedIps, []);
    assert.equal(second.presharedKey, PRIVATE);
    assert.throws(() => parseWgDump(''), /empty/);
    assert.throws(() => parseWgDump('a\tb\n'), /interface line/);
  });

  it('selectPairs reads WARREN_INTEROP_PAIRS and rejects unknown implementations', () => {
    const saved = process.env.WARREN_INTEROP_PAIRS;
    try {
      const table = [['warren-wg', 'wireguard-go']] as const;
      delete process.env.WARREN_INTEROP_PAIRS;
      assert.deepEqual(selectPairs(table), table);
      process.env.WARREN_INTEROP_PAIRS = 'wireguard-go:wireguard-go, warren-wg:warren-wg';
      assert.deepEqual(selectPairs(table), [
        ['wireguard-go', 'wireguard-go'],
        ['warren-wg', 'warren-wg'],
      ]);
      process.env.WARREN_INTEROP_PAIRS = 'boringtun:wireguard-go';
      assert.throws(() => selectPairs(table), /unknown implementation "boringtun"/);
    } finally {
      if (saved === undefined) delete process.env.WARREN_INTEROP_PAIRS;
      else process.env.WARREN_INTEROP_PAIRS = saved;
    }
  });
});

describe('harness: namespaces', () => {
  it('creates pid-named namespaces joined by a veth, and cleanup removes everything it made', async () => {
    const harness = new NetnsHarness();
    let trackedPid: number;
    const names: string[] = [];
    try {
      const a = await harness.addNamespace('a');
      const b = await harness.addNamespace('b');
      names.push(a, b);
      assert.match(a, new RegExp(`^wrn-${process.pid}-\\d+-a$`));
      const veth = await harness.addVeth(a, b);
      await harness.addAddress(a, veth.devA, '192.0.2.1/24');
      await harness.addAddress(b, veth.devB, '192.0.2.2/24');
      await harness.addAddress(a, veth.devA, '2001:db8:1::1/64');
      await harness.addAddress(b, veth.devB, '2001:db8:1::2/64');
      await harness.waitForDad(a);
      await expectPingsAnswered(harness, a, '192.0.2.2', { count: 2 });
      await expectPingsAnswered(harness, a, '2001:db8:1::2', { count: 2 });
      // The host's namespace never sees the veth.
      const hostLinks = (await runCommand(['ip', '-o', 'link', 'show'])).stdout;
      assert.doesNotMatch(hostLinks, new RegExp(`${veth.devA}|${veth.devB}`));
      await assert.rejects(
        harness.addAddress(a, veth.devA, '10.1.2.3/24'),
        /outside the documentation/,
      );
      assert.throws(
        () => harness.exec('not-ours', ['true']),
        /not a namespace created by this harness/,
      );
      const sleeper = harness.spawn(b, ['sleep', '300'], { label: 'sleeper' });
      trackedPid = sleeper.pid;
      assert.ok(existsSync(`/proc/${trackedPid}`), 'tracked process runs');
    } finally {
      await harness.cleanup();
    }
    assert.ok(!existsSync(`/proc/${trackedPid}`), 'tracked process was killed');
    const left = await listNamespaces();
    for (const name of names) assert.ok(!left.includes(name), `${name} deleted`);
    await harness.cleanup(); // idempotent
    await assert.rejects(harness.addNamespace('z'), /already cleaned up/);
  });

  it('startWireGuard runs wireguard-go in a namespace, configured and answering UAPI, and cleanup stops it', async () => {
    const harness = new NetnsHarness();
    let socketPath: string;
    let daemonPid: number;
    try {
      const ns = await harness.addNamespace('w');
      const wg = await startWireGuard(harness, 'wireguard-go', ns, {
        listenPort: 51999,
        addresses: ['198.51.100.9/24', '2001:db8:2::9/64'],
        mtu: 1400,
      });
      socketPath = uapiSocketPath(wg.ifname);
      daemonPid = wg.process.pid;
      assert.ok(existsSync(socketPath), 'UAPI socket exists');
      const dump = await wg.dump();
      assert.equal(dump.interface.listenPort, 51999);
      assert.equal(dump.interface.publicKey, wg.publicKey);
      assert.deepEqual(dump.peers, []);
      const link = (await wg.ip(['-o', 'link', 'show', wg.ifname])).stdout;
      assert.match(link, / mtu 1400 /);
      assert.match(link, /[<,]UP[,>]/);
      const addresses = (await wg.ip(['-o', 'addr', 'show', 'dev', wg.ifname])).stdout;
      assert.match(addresses, /198\.51\.100\.9\/24/);
      assert.match(addresses, /2001:db8:2::9\/64/);
    } finally {
      await harness.cleanup();
    }
    assert.ok(!existsSync(socketPath), 'UAPI socket removed');
    assert.ok(!existsSync(`/proc/${daemonPid}`), 'daemon stopped');
    const ours = (await listNamespaces()).filter((name) => name.startsWith(namespacePrefix()));
    assert.deepEqual(ours, []);
  });
});
