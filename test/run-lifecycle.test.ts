/**
 * `warren run`'s life cycle (issue 3): the tunnel is there before the program
 * starts, every time; nothing is left behind after a run, nor after `kill -9`
 * of warren (the next run removes the orphan's state); and bad input is
 * refused with a clear message before anything starts.
 * Topology: test/harness/internet.ts (wireguard-go server).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chown, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  createInternetTopology,
  dnsLog,
  CLIENT_HOST,
  SERVER_NAT,
  SERVER_PORT,
  WEB,
  wgQuickConfig,
} from './harness/internet.js';
import type { InternetTopology } from './harness/internet.js';
import { listNamespaces, NetnsHarness, requireRoot, sleep } from './harness/netns.js';
import type { ExecResult } from './harness/netns.js';
import { runtimeRoot } from './harness/runtime.js';
import {
  asUser,
  createRunUser,
  leftoversOfUser,
  listDirectory,
  processesOfUid,
  spawnWarrenRun,
  userCanRead,
  waitForNoLeftovers,
  WARREN_CLI,
  warrenRun,
  writeUserFile,
  explain,
  useRunTestHooks,
} from './harness/warren-run.js';
import type { RunUser } from './harness/warren-run.js';

const LOOP_RUNS = 100;
const TUNNEL_NAME = 'wg0';
/** Printed by the program in the error cases: it must never appear. */
const PROGRAM_RAN = 'PROGRAM-RAN';

requireRoot();

useRunTestHooks();

async function waitFor(
  what: string,
  condition: () => Promise<boolean> | boolean,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(20);
  }
}

describe('warren run life cycle (wireguard-go server)', () => {
  let harness: NetnsHarness;
  let topology: InternetTopology;
  let user: RunUser;
  let config: string;

  before(async () => {
    harness = new NetnsHarness();
    topology = await createInternetTopology(harness, { serverImpl: 'wireguard-go' });
    user = await createRunUser(harness);
    config = await writeUserFile(user, 'dual.conf', wgQuickConfig(topology, topology.dual));
  });
  after(async () => {
    await harness.cleanup();
  });

  const run = (args: readonly string[], command: readonly string[]) =>
    warrenRun(harness, topology.clientNs, user, args, command);

  it('can be run by an unprivileged user: the build, the addon, node_modules and node are readable', async () => {
    const needed = [
      process.execPath,
      WARREN_CLI,
      join(runtimeRoot(), 'dist', 'src', 'sandbox', 'init.js'),
      join(runtimeRoot(), 'build', 'Release', 'warren_native.node'),
      join(runtimeRoot(), 'node_modules', '@noble', 'hashes', 'package.json'),
      join(runtimeRoot(), 'node_modules', '@noble', 'ciphers', 'package.json'),
    ];
    const unreadable: string[] = [];
    for (const path of needed) if (!(await userCanRead(user, path))) unreadable.push(path);
    assert.deepEqual(unreadable, [], `uid ${user.uid} can read everything warren run needs`);
  });

  it(`shows exactly lo and the tunnel, up, in ${LOOP_RUNS} runs out of ${LOOP_RUNS}`, async (t) => {
    // One shell loop as the user: the only cost per iteration is `warren run` itself.
    const loop = [
      'i=0',
      `while [ "$i" -lt ${LOOP_RUNS} ]; do`,
      '  i=$((i + 1))',
      '  echo "=== run $i"',
      `  "$0" "$1" run -c "$2" -- ip -o link`,
      '  echo "=== exit $?"',
      'done',
    ].join('\n');
    const started = process.hrtime.bigint();
    const result = await harness.exec(
      topology.clientNs,
      asUser(user, ['sh', '-c', loop, process.execPath, WARREN_CLI, config]),
      { timeoutMs: 120_000 },
    );
    const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
    t.diagnostic(
      `${LOOP_RUNS} sequential runs in ${(elapsedMs / 1000).toFixed(1)} s (${(elapsedMs / LOOP_RUNS).toFixed(0)} ms per run)`,
    );
    const runs = result.stdout.split(/^=== run \d+\n/m).slice(1);
    assert.equal(runs.length, LOOP_RUNS, explain(result));
    const bad: string[] = [];
    runs.forEach((output, index) => {
      const lines = output.split('\n').filter((line) => line !== '');
      const exit = lines.pop();
      const names = lines.map((line) => /^\d+: ([^:@]+)[:@]/.exec(line)?.[1] ?? `?${line}`);
      const tunnel = lines.find((line) => line.includes(`: ${TUNNEL_NAME}:`)) ?? '';
      const tunnelUp = /<[^>]*\bUP\b[^>]*>/.test(tunnel);
      if (exit !== '=== exit 0' || names.join(',') !== `lo,${TUNNEL_NAME}` || !tunnelUp) {
        bad.push(`run ${index + 1}: ${JSON.stringify(output)}`);
      }
    });
    assert.deepEqual(bad, [], `every run saw exactly lo and ${TUNNEL_NAME} (up)\n${result.stderr}`);
    assert.deepEqual(await waitForNoLeftovers(harness, topology.clientNs, user, 3000), []);
  });

  it('leaves no process, sandbox state, socket or namespace behind, even of a program that left a child running', async () => {
    const namespacesBefore = await listNamespaces();
    // While it runs, the process scan does see the sandbox (so an empty one afterwards means something).
    const warren = spawnWarrenRun(
      harness,
      topology.clientNs,
      user,
      ['-c', config],
      ['sh', '-c', 'sleep 30 & echo started; wait'],
    );
    await waitFor('the program to start', () => warren.output().includes('started'), 10_000);
    const running = await processesOfUid(user.uid);
    assert.ok(
      running.some((p) => p.command.includes('sleep 30')),
      `the program runs as uid ${user.uid}: ${JSON.stringify(running)}`,
    );
    assert.equal(
      (await listDirectory(user.stateRoot)).length,
      1,
      'one sandbox state directory while it runs',
    );
    warren.signal('SIGTERM');
    assert.ok(await warren.exitedWithin(5000), warren.output());
    assert.deepEqual(
      await waitForNoLeftovers(harness, topology.clientNs, user, 2000),
      [],
      'all gone after SIGTERM',
    );

    // The program exits, leaving a background child: the sandbox ends with it (no --keep-alive).
    const result = await run(['-c', config], ['sh', '-c', 'sleep 30 & echo "child=$!"']);
    assert.equal(result.exitCode, 0, explain(result));
    assert.deepEqual(
      await leftoversOfUser(harness, topology.clientNs, user),
      [],
      'nothing left once warren returned',
    );
    assert.deepEqual(
      await listNamespaces(),
      namespacesBefore,
      'no network namespace added to ip netns',
    );
  });

  it('with --keep-alive, waits for a daemonized child, which still reaches the internet through the tunnel', async () => {
    const late = join(user.home, 'late-child.txt');
    const started = Date.now();
    const result = await run(
      ['-c', config, '--keep-alive'],
      ['sh', '-c', `(sleep 1; curl -sS --max-time 5 http://${WEB.v4}/ > "${late}") & exit 3`],
    );
    const elapsedMs = Date.now() - started;
    assert.equal(result.exitCode, 3, `the program's own status\n${explain(result)}`);
    assert.ok(elapsedMs >= 1000, `warren waited for the child (${elapsedMs} ms)`);
    assert.equal(
      await readFile(late, 'utf8'),
      `hello from the internet; you came from ${SERVER_NAT.v4}\n`,
    );
    assert.deepEqual(
      await leftoversOfUser(harness, topology.clientNs, user),
      [],
      'nothing left after the child',
    );
  });

  it('after kill -9 of warren, the sandbox dies within seconds and the next run removes the orphaned state', async (t) => {
    const warren = spawnWarrenRun(
      harness,
      topology.clientNs,
      user,
      ['-c', config],
      ['sh', '-c', 'echo started; exec sleep 60'],
    );
    await waitFor('the program to start', () => warren.output().includes('started'), 10_000);
    const sandboxProcesses = (await processesOfUid(user.uid)).filter((p) => p.pid !== warren.pid);
    assert.ok(
      sandboxProcesses.length >= 2,
      `the sandbox has its init and the program: ${JSON.stringify(sandboxProcesses)}`,
    );
    const [stateDir] = await listDirectory(user.stateRoot);
    assert.ok(stateDir !== undefined, 'the sandbox has a state directory');

    warren.signal('SIGKILL');
    await warren.exited;
    const killedAt = Date.now();
    await waitFor(
      'every process of the sandbox to exit',
      async () => (await processesOfUid(user.uid)).length === 0,
      5000,
    );
    t.diagnostic(`sandbox gone ${Date.now() - killedAt} ms after kill -9`);
    assert.deepEqual(
      await listDirectory(user.stateRoot),
      [stateDir],
      'warren could not remove its state: it is an orphan',
    );

    // An orphan whose processes are still running (its parent died without the
    // pdeathsig chain, e.g. a crash before it was armed): the next run kills them.
    const deadParent = harness.spawn(topology.clientNs, ['true'], { label: 'a dead parent' });
    await deadParent.exited;
    const orphanDir = join(user.stateRoot, `sandbox-${deadParent.pid}-test01`);
    const victim = harness.spawn(topology.clientNs, asUser(user, ['sleep', '60']), {
      label: 'orphaned sandbox process',
    });
    await waitFor(
      'the orphan process to run as the user',
      async () =>
        (await processesOfUid(user.uid)).some(
          (p) => p.pid === victim.pid && p.command === 'sleep 60',
        ),
      5000,
    );
    // proc(5): starttime is field 22 of /proc/PID/stat, the 20th after the ")" ending comm.
    const victimStat = await readFile(`/proc/${victim.pid}/stat`, 'utf8');
    const startTime = victimStat.slice(victimStat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
    await mkdir(orphanDir, { mode: 0o700 });
    await writeFile(
      join(orphanDir, 'state.json'),
      `${JSON.stringify({
        version: 1,
        parentPid: deadParent.pid,
        parentStartTime: '1',
        unsharePid: null,
        unshareStartTime: null,
        initPid: victim.pid,
        initStartTime: startTime,
        createdAt: new Date().toISOString(),
      })}\n`,
      { mode: 0o600 },
    );
    await chown(orphanDir, user.uid, user.gid);
    await chown(join(orphanDir, 'state.json'), user.uid, user.gid);

    const next = await run(['-c', config, '-v'], ['true']);
    assert.equal(next.exitCode, 0, explain(next));
    assert.match(next.stderr, /cleaned up 2 orphaned sandbox/, explain(next));
    assert.deepEqual(await listDirectory(user.stateRoot), [], 'both orphans’ state is gone');
    assert.ok(await victim.exitedWithin(3000), 'the orphan’s leftover process was killed');
    assert.deepEqual(await waitForNoLeftovers(harness, topology.clientNs, user, 3000), []);
  });

  describe('refuses bad input before anything starts', () => {
    const expectRefused = async (args: readonly string[], message: RegExp): Promise<ExecResult> => {
      const result = await run(args, ['sh', '-c', `echo ${PROGRAM_RAN}`]);
      assert.notEqual(result.exitCode, 0, explain(result));
      assert.equal(result.signal, null, explain(result));
      assert.ok(
        !result.stdout.includes(PROGRAM_RAN),
        `the program did not run\n${explain(result)}`,
      );
      assert.match(result.stderr, message, explain(result));
      assert.deepEqual(await listDirectory(user.stateRoot), [], 'no sandbox state was created');
      assert.deepEqual(await leftoversOfUser(harness, topology.clientNs, user), [], 'nothing runs');
      return result;
    };

    it('a malformed config, naming the file and the line', async () => {
      const lines = wgQuickConfig(topology, topology.dual).split('\n');
      const addressLine = lines.findIndex((line) => line.startsWith('Address'));
      lines[addressLine] = 'Address = 198.51.100.2/33';
      const path = await writeUserFile(user, 'malformed.conf', lines.join('\n'));
      await expectRefused(
        ['-c', path],
        new RegExp(`${path.replaceAll('.', '\\.')}:${addressLine + 1}\\b`),
      );
    });

    it('a missing config file', async () => {
      const path = join(user.home, 'does-not-exist.conf');
      await expectRefused(
        ['-c', path],
        new RegExp(`${path.replaceAll('.', '\\.')}.*(ENOENT|no such file|not found)`, 'i'),
      );
    });

    it('an unreadable config file', async () => {
      const path = join(user.home, 'root-only.conf');
      await writeFile(path, wgQuickConfig(topology, topology.dual), { mode: 0o600 });
      await expectRefused(
        ['-c', path],
        new RegExp(`${path.replaceAll('.', '\\.')}.*(EACCES|permission)`, 'i'),
      );
    });

    it('an endpoint hostname that does not resolve', async () => {
      const name = 'nowhere.test';
      const path = await writeUserFile(
        user,
        'unresolvable.conf',
        wgQuickConfig(topology, topology.dual, { endpoint: `${name}:${SERVER_PORT}` }),
      );
      const before = dnsLog(topology).length;
      await expectRefused(['-c', path], new RegExp(name.replaceAll('.', '\\.')));
      const lookups = dnsLog(topology)
        .slice(before)
        .filter((entry) => entry.name === name);
      assert.ok(lookups.length > 0, 'warren asked the client host’s resolver');
      assert.ok(
        lookups.every((entry) => entry.remote === CLIENT_HOST.v4 && entry.rcode === 3),
        JSON.stringify(lookups),
      );
    });
  });
});
