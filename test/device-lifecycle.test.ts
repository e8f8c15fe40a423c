/**
 * warren-wg's life cycle as a daemon, checked against what wireguard-go does
 * (wireguard-go main.go): without -f it detaches into its own session and its
 * parent exits 0 once the TUN device and /var/run/wireguard/IFNAME.sock exist;
 * -f and WG_PROCESS_FOREGROUND=1 keep it in the foreground; it exits cleanly when
 * the interface is deleted, its socket file is removed, or on SIGTERM/SIGINT; a
 * name already in use, a bad name or a bad option fail with a clear message;
 * LOG_LEVEL controls its log.
 *
 * Every daemon runs inside a namespace this test creates (`ip netns exec`). A
 * detached daemon is not our child, so it is found with `ip netns pids` in its
 * own fresh namespace and remembered by pid and start time; only those are ever
 * signalled (see DetachedDaemons).
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import {
  leftoversOfThisRun,
  requireRoot,
  runCommand,
  sleep,
  withHarness,
} from './harness/netns.js';
import type { ExecResult, NetnsHarness, TrackedProcess } from './harness/netns.js';
import { createTunnelPair } from './harness/topology.js';
import { waitForPing } from './harness/traffic.js';
import {
  implementationArgv,
  REPO_ROOT,
  uapiRequest,
  uapiSocketPath,
  waitForUapi,
  WARREN_WG_CLI,
} from './harness/wireguard.js';

requireRoot();

/** How long a daemon may take to notice its end (the socket watch polls once a second). */
const EXIT_DEADLINE_MS = 5000;
/** Linux IFNAMSIZ is 16 bytes including the terminating NUL. */
const MAX_IFNAME_LENGTH = 15;

after(async () => {
  assert.deepEqual(await leftoversOfThisRun(), [], 'this run left nothing behind');
});

// ------------------------------------------------------------------ helpers

interface ProcStat {
  readonly pid: number;
  readonly state: string;
  readonly ppid: number;
  readonly processGroup: number;
  readonly session: number;
  /** Clock ticks after boot; with the pid it names one process, even after pid reuse. */
  readonly startTime: string;
}

/** /proc/PID/stat (proc(5)); undefined once the process is gone. */
function readProcStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses: split after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const [state = '', ppid = '', processGroup = '', session = ''] = fields;
  return {
    pid,
    state,
    ppid: Number(ppid),
    processGroup: Number(processGroup),
    session: Number(session),
    startTime: fields[19] ?? '',
  };
}

function readCommandLine(pid: number): string[] {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
  } catch {
    return [];
  }
}

interface DetachedDaemon {
  readonly pid: number;
  readonly startTime: string;
  readonly ifname: string;
}

/**
 * Daemons that detached from us (so TrackedProcess cannot hold them). A daemon is
 * adopted only when it is the one warren-wg process for IFNAME in a namespace of
 * this test, and it is signalled only while pid and start time still match.
 */
class DetachedDaemons {
  private readonly daemons: DetachedDaemon[] = [];
  private readonly exitHook = (): void => {
    for (const daemon of this.daemons)
      if (this.isAlive(daemon)) process.kill(daemon.pid, 'SIGKILL');
  };

  constructor() {
    process.once('exit', this.exitHook);
  }

  /** The warren-wg daemon serving `ifname` that runs in `ns`. */
  async adopt(harness: NetnsHarness, ns: string, ifname: string): Promise<DetachedDaemon> {
    const pids = await namespacePids(ns);
    const matching = pids.filter((pid) => {
      const argv = readCommandLine(pid);
      return argv.includes(WARREN_WG_CLI) && argv.includes(ifname);
    });
    const [pid, ...others] = matching;
    assert.ok(
      pid !== undefined && others.length === 0,
      `expected exactly one warren-wg ${ifname} process in ${ns}, found pids ${JSON.stringify(matching)} (all: ${JSON.stringify(pids)})`,
    );
    const stat = readProcStat(pid);
    assert.ok(stat !== undefined, `warren-wg pid ${pid} vanished while being adopted`);
    const daemon = { pid, startTime: stat.startTime, ifname };
    this.daemons.push(daemon);
    harness.registerPathForCleanup(uapiSocketPath(ifname));
    return daemon;
  }

  isAlive(daemon: DetachedDaemon): boolean {
    const stat = readProcStat(daemon.pid);
    return stat?.startTime === daemon.startTime && stat.state !== 'Z';
  }

  signal(daemon: DetachedDaemon, signal: NodeJS.Signals): void {
    assert.ok(this.isAlive(daemon), `daemon pid ${daemon.pid} is no longer running`);
    process.kill(daemon.pid, signal);
  }

  async exitedWithin(daemon: DetachedDaemon, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (this.isAlive(daemon)) {
      if (Date.now() > deadline) return false;
      await sleep(25);
    }
    return true;
  }

  /** SIGTERM, then SIGKILL after 3 s, for every adopted daemon still running. */
  async stopAll(): Promise<void> {
    for (const daemon of this.daemons) {
      if (!this.isAlive(daemon)) continue;
      process.kill(daemon.pid, 'SIGTERM');
      if (!(await this.exitedWithin(daemon, 3000)) && this.isAlive(daemon)) {
        process.kill(daemon.pid, 'SIGKILL');
        await this.exitedWithin(daemon, 3000);
      }
    }
    process.removeListener('exit', this.exitHook);
  }
}

/** Runs `body` with a harness and a DetachedDaemons list that is emptied before the harness cleans up. */
function withDaemons(
  body: (harness: NetnsHarness, daemons: DetachedDaemons) => Promise<void>,
): Promise<void> {
  return withHarness(async (harness) => {
    const daemons = new DetachedDaemons();
    try {
      await body(harness, daemons);
    } finally {
      await daemons.stopAll();
    }
  });
}

async function namespacePids(ns: string): Promise<number[]> {
  const result = await runCommand(['ip', 'netns', 'pids', ns]);
  return result.stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map(Number);
}

/**
 * argv running warren-wg with exactly the given environment overrides: LOG_LEVEL and
 * WG_PROCESS_FOREGROUND are removed first so the test runner's environment cannot leak in.
 */
function warrenWgArgv(
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
): string[] {
  return [
    'env',
    '-u',
    'LOG_LEVEL',
    '-u',
    'WG_PROCESS_FOREGROUND',
    ...Object.entries(env).map(([key, value]) => `${key}=${value}`),
    ...implementationArgv('warren-wg'),
    ...args,
  ];
}

/** Runs warren-wg to completion in `ns` (as a user's shell would) and returns its result. */
function runWarrenWg(
  harness: NetnsHarness,
  ns: string,
  args: readonly string[],
  env: Readonly<Record<string, string>> = {},
): Promise<ExecResult> {
  return harness.exec(ns, warrenWgArgv(args, env), { allowFailure: true, timeoutMs: 10_000 });
}

function isSocketFile(path: string): boolean {
  try {
    return statSync(path).isSocket();
  } catch {
    return false;
  }
}

async function linkExists(harness: NetnsHarness, ns: string, ifname: string): Promise<boolean> {
  const result = await harness.exec(ns, ['ip', 'link', 'show', 'dev', ifname], {
    allowFailure: true,
  });
  return result.exitCode === 0;
}

/** Starts the daemon the way wg-quick does (no -f) and adopts it; asserts the parent returned 0. */
async function startDetached(
  harness: NetnsHarness,
  daemons: DetachedDaemons,
  ns: string,
  ifname: string,
): Promise<DetachedDaemon> {
  harness.registerPathForCleanup(uapiSocketPath(ifname));
  const result = await runWarrenWg(harness, ns, [ifname]);
  assert.equal(result.exitCode, 0, `warren-wg ${ifname} failed:\n${result.stderr}`);
  return daemons.adopt(harness, ns, ifname);
}

/** Starts `warren-wg -f IFNAME` as our tracked child and waits until it answers. */
async function startForeground(
  harness: NetnsHarness,
  ns: string,
  ifname: string,
  how: 'flag' | 'environment' = 'flag',
  env: Readonly<Record<string, string>> = {},
): Promise<TrackedProcess> {
  harness.registerPathForCleanup(uapiSocketPath(ifname));
  const args = how === 'flag' ? ['-f', ifname] : [ifname];
  const extraEnv = how === 'flag' ? env : { ...env, WG_PROCESS_FOREGROUND: '1' };
  const daemon = harness.spawn(ns, warrenWgArgv(args, extraEnv), {
    label: `warren-wg ${ifname} (foreground by ${how})`,
  });
  await waitForUapi(ifname, daemon, 10_000);
  return daemon;
}

/** Asserts the interface and its socket file are gone. */
async function assertCleanedUp(harness: NetnsHarness, ns: string, ifname: string): Promise<void> {
  assert.ok(!existsSync(uapiSocketPath(ifname)), `${uapiSocketPath(ifname)} was removed`);
  assert.ok(!(await linkExists(harness, ns, ifname)), `interface ${ifname} is gone`);
}

// ------------------------------------------------------------------ tests

describe('warren-wg daemon: starting', () => {
  it('returns 0 once the TUN device and the UAPI socket exist, leaving a daemon in its own session', () =>
    withDaemons(async (harness, daemons) => {
      const ns = await harness.addNamespace('life');
      const ifname = harness.uniqueInterfaceName();
      harness.registerPathForCleanup(uapiSocketPath(ifname));
      // harness.exec waits for the command's stdout/stderr to close, so this also shows the
      // daemon did not keep the caller's pipes (it must not, without LOG_LEVEL: wireguard-go
      // hands it /dev/null then).
      const started = Date.now();
      const result = await runWarrenWg(harness, ns, [ifname]);
      const elapsedMs = Date.now() - started;
      // Checked at once, before anything else could give the daemon time to finish.
      const socketThere = isSocketFile(uapiSocketPath(ifname));
      const linkThere = await linkExists(harness, ns, ifname);
      assert.equal(
        result.exitCode,
        0,
        `warren-wg exited ${String(result.exitCode)}:\n${result.stderr}`,
      );
      assert.ok(socketThere, `${uapiSocketPath(ifname)} exists as a socket when warren-wg returns`);
      assert.ok(linkThere, `TUN ${ifname} exists in ${ns} when warren-wg returns`);
      console.log(`warren-wg returned after ${elapsedMs} ms`);

      const daemon = await daemons.adopt(harness, ns, ifname);
      assert.ok(daemons.isAlive(daemon), 'the daemon keeps running after its parent exited');
      const stat = readProcStat(daemon.pid);
      const runner = readProcStat(process.pid);
      assert.ok(stat !== undefined && runner !== undefined);
      assert.equal(stat.session, daemon.pid, 'the daemon leads its own session (setsid)');
      assert.notEqual(stat.session, runner.session, 'not in the test runner’s session');
      assert.notEqual(
        stat.processGroup,
        runner.processGroup,
        'not in the test runner’s process group',
      );
      assert.notEqual(stat.ppid, process.pid, 'not a child of the test runner');

      const shown = await harness.exec(ns, ['wg', 'show', ifname]);
      assert.match(shown.stdout, new RegExp(`^interface: ${ifname}$`, 'm'));
      await harness.exec(ns, ['ip', 'link', 'del', ifname]);
      assert.ok(
        await daemons.exitedWithin(daemon, EXIT_DEADLINE_MS),
        'daemon exits after ip link del',
      );
      await assertCleanedUp(harness, ns, ifname);
    }));

  for (const how of ['flag', 'environment'] as const) {
    const what = how === 'flag' ? '-f' : 'WG_PROCESS_FOREGROUND=1';
    it(`stays in the foreground with ${what}`, () =>
      withHarness(async (harness) => {
        const ns = await harness.addNamespace('fg');
        const ifname = harness.uniqueInterfaceName();
        const daemon = await startForeground(harness, ns, ifname, how);
        await sleep(300);
        assert.ok(
          !daemon.hasExited(),
          `warren-wg with ${what} is still running:\n${daemon.output()}`,
        );
        // `ip netns exec` execs the command, so our child is the daemon itself: no other process.
        assert.deepEqual(
          await namespacePids(ns),
          [daemon.pid],
          'the daemon is our own child, not a fork',
        );
        assert.ok(isSocketFile(uapiSocketPath(ifname)), 'UAPI socket exists');
        daemon.signal('SIGTERM');
        assert.ok(await daemon.exitedWithin(EXIT_DEADLINE_MS), 'exits on SIGTERM');
        assert.deepEqual(daemon.status(), { exitCode: 0, signal: null }, 'exit status 0');
        await assertCleanedUp(harness, ns, ifname);
      }));
  }

  it('accepts a 15-character interface name (IFNAMSIZ − 1)', () =>
    withDaemons(async (harness, daemons) => {
      const ns = await harness.addNamespace('name');
      const ifname = harness.uniqueInterfaceName().padEnd(MAX_IFNAME_LENGTH, 'x');
      const daemon = await startDetached(harness, daemons, ns, ifname);
      assert.ok(await linkExists(harness, ns, ifname), `${ifname} exists`);
      daemons.signal(daemon, 'SIGTERM');
      assert.ok(await daemons.exitedWithin(daemon, EXIT_DEADLINE_MS));
      await assertCleanedUp(harness, ns, ifname);
    }));
});

type ExitTrigger = 'ip link del' | 'socket file removed' | 'SIGTERM' | 'SIGINT';
const TRIGGERS: readonly ExitTrigger[] = [
  'ip link del',
  'socket file removed',
  'SIGTERM',
  'SIGINT',
];

async function pullTrigger(
  trigger: ExitTrigger,
  harness: NetnsHarness,
  ns: string,
  ifname: string,
  sendSignal: (signal: NodeJS.Signals) => void,
): Promise<void> {
  switch (trigger) {
    case 'ip link del':
      await harness.exec(ns, ['ip', 'link', 'del', ifname]);
      return;
    case 'socket file removed':
      await rm(uapiSocketPath(ifname));
      return;
    case 'SIGTERM':
    case 'SIGINT':
      sendSignal(trigger);
      return;
  }
}

describe('warren-wg daemon: exits cleanly', () => {
  for (const trigger of TRIGGERS) {
    it(`detached daemon exits on ${trigger}, removing its socket and interface`, () =>
      withDaemons(async (harness, daemons) => {
        const ns = await harness.addNamespace('exit');
        const ifname = harness.uniqueInterfaceName();
        const daemon = await startDetached(harness, daemons, ns, ifname);
        await pullTrigger(trigger, harness, ns, ifname, (signal) => {
          daemons.signal(daemon, signal);
        });
        assert.ok(
          await daemons.exitedWithin(daemon, EXIT_DEADLINE_MS),
          `daemon pid ${daemon.pid} exits within ${EXIT_DEADLINE_MS} ms of ${trigger}`,
        );
        await assertCleanedUp(harness, ns, ifname);
      }));

    it(`foreground daemon exits with status 0 on ${trigger}`, () =>
      withHarness(async (harness) => {
        const ns = await harness.addNamespace('exit');
        const ifname = harness.uniqueInterfaceName();
        const daemon = await startForeground(harness, ns, ifname);
        await pullTrigger(trigger, harness, ns, ifname, (signal) => {
          daemon.signal(signal);
        });
        assert.ok(
          await daemon.exitedWithin(EXIT_DEADLINE_MS),
          `warren-wg exits within ${EXIT_DEADLINE_MS} ms of ${trigger}:\n${daemon.output()}`,
        );
        assert.deepEqual(
          daemon.status(),
          { exitCode: 0, signal: null },
          `clean exit status after ${trigger}:\n${daemon.output()}`,
        );
        await assertCleanedUp(harness, ns, ifname);
      }));
  }
});

describe('warren-wg daemon: refusing to start', () => {
  it('fails with a clear message when the name is already in use, leaving the first daemon untouched', () =>
    withDaemons(async (harness, daemons) => {
      const ns = await harness.addNamespace('one');
      const otherNs = await harness.addNamespace('two');
      const ifname = harness.uniqueInterfaceName();
      const first = await startDetached(harness, daemons, ns, ifname);
      const socketInode = statSync(uapiSocketPath(ifname)).ino;

      const attempts: [string, string, readonly string[]][] = [
        // The TUN name is taken in this namespace.
        ['same namespace, detached', ns, [ifname]],
        ['same namespace, -f', ns, ['-f', ifname]],
        // The TUN could be created here, but the UAPI socket path is shared by all namespaces.
        ['other namespace, detached', otherNs, [ifname]],
        ['other namespace, -f', otherNs, ['-f', ifname]],
      ];
      for (const [what, where, args] of attempts) {
        const result = await runWarrenWg(harness, where, args);
        assert.notEqual(result.exitCode, 0, `${what}: a second warren-wg ${ifname} fails`);
        assert.ok(
          result.stderr.includes(ifname),
          `${what}: the message names the interface or its socket: ${result.stderr}`,
        );
        assert.match(
          result.stderr,
          /busy|in use|exists/i,
          `${what}: the message says the name is taken: ${result.stderr}`,
        );
      }
      // The refused daemon in the other namespace must leave nothing behind there.
      const deadline = Date.now() + 2000;
      while ((await namespacePids(otherNs)).length > 0 && Date.now() < deadline) await sleep(25);
      assert.deepEqual(await namespacePids(otherNs), [], 'no refused daemon lingers');
      assert.ok(
        !(await linkExists(harness, otherNs, ifname)),
        'the refused daemon removed its TUN',
      );

      assert.ok(daemons.isAlive(first), 'the first daemon still runs');
      assert.equal(
        statSync(uapiSocketPath(ifname)).ino,
        socketInode,
        'its socket file was not replaced',
      );
      await harness.exec(ns, ['wg', 'show', ifname]);
      await harness.exec(ns, ['ip', 'link', 'del', ifname]);
      assert.ok(await daemons.exitedWithin(first, EXIT_DEADLINE_MS));
      await assertCleanedUp(harness, ns, ifname);
    }));

  it('rejects bad interface names and options with exit status 2 and the usage', () =>
    withHarness(async (harness) => {
      const ns = await harness.addNamespace('bad');
      const tooLong = harness.uniqueInterfaceName().padEnd(MAX_IFNAME_LENGTH + 1, 'x');
      const withSlash = `${harness.uniqueInterfaceName()}/x`;
      const cases: [string, readonly string[]][] = [
        [`name of ${tooLong.length} characters`, [tooLong]],
        [`name of ${tooLong.length} characters with -f`, ['-f', tooLong]],
        ['name containing "/"', [withSlash]],
        ['name containing "/" with -f', ['-f', withSlash]],
        ['no name', []],
        ['unknown option', ['--no-such-option', harness.uniqueInterfaceName()]],
        ['two names', [harness.uniqueInterfaceName(), harness.uniqueInterfaceName()]],
      ];
      const problems: string[] = [];
      for (const [what, args] of cases) {
        const result = await runWarrenWg(harness, ns, args);
        const shown = `${what} (warren-wg ${args.join(' ')}): exit ${String(result.exitCode)}, stderr:\n${result.stderr}`;
        if (result.exitCode !== 2) problems.push(`expected exit status 2 for ${shown}`);
        if (!/^Usage: warren-wg /m.test(result.stderr))
          problems.push(`expected the usage on stderr for ${shown}`);
      }
      // Judged together so one run shows every case that misbehaves.
      assert.deepEqual(problems, [], problems.join('\n\n'));
      for (const name of [tooLong, withSlash]) {
        assert.ok(!existsSync(uapiSocketPath(name)), `no socket for ${name}`);
      }
      assert.ok(
        !existsSync(join('/var/run/wireguard', withSlash.split('/')[0] ?? '')),
        'no directory made from the name',
      );
      const links = await harness.exec(ns, ['ip', '-o', 'link', 'show']);
      assert.deepEqual(
        links.stdout.split('\n').filter((line) => line !== '').length,
        1,
        `only lo in the namespace:\n${links.stdout}`,
      );
      assert.deepEqual(await namespacePids(ns), [], 'nothing left running');
    }));

  it('prints help and version with exit status 0', () =>
    withHarness(async (harness) => {
      const ns = await harness.addNamespace('help');
      const packageJson: unknown = JSON.parse(
        await readFile(join(REPO_ROOT, 'package.json'), 'utf8'),
      );
      assert.ok(
        typeof packageJson === 'object' && packageJson !== null && 'version' in packageJson,
      );
      const version = String(packageJson.version);
      for (const flag of ['--help', '-h']) {
        const help = await runWarrenWg(harness, ns, [flag]);
        assert.equal(help.exitCode, 0, `${flag} exits 0: ${help.stderr}`);
        assert.match(help.stdout, /^Usage: warren-wg \[-f\/--foreground\] INTERFACE-NAME/m);
      }
      const shown = await runWarrenWg(harness, ns, ['--version']);
      assert.equal(shown.exitCode, 0, `--version exits 0: ${shown.stderr}`);
      assert.ok(shown.stdout.includes(version), `--version prints ${version}: ${shown.stdout}`);
      assert.deepEqual(await namespacePids(ns), [], 'nothing left running');
    }));
});

describe('warren-wg daemon: LOG_LEVEL', () => {
  it('LOG_LEVEL=verbose logs DEBUG lines about the handshake on both ends', () =>
    withHarness(async (harness) => {
      const pair = await createTunnelPair(harness, {
        initiatorImpl: 'warren-wg',
        responderImpl: 'warren-wg',
        logLevel: 'verbose',
      });
      await waitForPing(harness, pair.initiator.ns, pair.responder.addresses.tunnelV4);
      for (const side of [pair.initiator, pair.responder]) {
        const output = side.wg.process.output();
        const debugLines = output
          .split('\n')
          .filter((line) => line.startsWith(`DEBUG: (${side.wg.ifname}) `));
        assert.ok(debugLines.length > 0, `${side.wg.ifname} printed DEBUG lines:\n${output}`);
        assert.ok(
          debugLines.some((line) => /handshake|initiation|response/i.test(line)),
          `${side.wg.ifname} logged the handshake:\n${output}`,
        );
      }
    }));

  it('LOG_LEVEL=silent logs nothing, even through a handshake', () =>
    withHarness(async (harness) => {
      const pair = await createTunnelPair(harness, {
        initiatorImpl: 'warren-wg',
        responderImpl: 'warren-wg',
        logLevel: 'silent',
      });
      await waitForPing(harness, pair.initiator.ns, pair.responder.addresses.tunnelV4);
      // A bad UAPI request would be logged as an error at any level but silent.
      const reply = await uapiRequest(pair.responder.wg.ifname, 'set=1\nno_such_key=1\n\n');
      assert.match(reply, /^errno=-?[1-9]\d*\n\n$/, `an unknown key is refused: ${reply}`);
      await pair.initiator.wg.process.stop();
      await pair.responder.wg.process.stop();
      assert.equal(pair.initiator.wg.process.output(), '', 'initiator printed nothing');
      assert.equal(pair.responder.wg.process.output(), '', 'responder printed nothing');
    }));

  for (const level of ['verbose', 'silent'] as const) {
    it(`a detached daemon with LOG_LEVEL=${level} ${level === 'verbose' ? 'keeps logging to the caller’s stdout' : 'writes nothing'}`, () =>
      withDaemons(async (harness, daemons) => {
        const ns = await harness.addNamespace('log');
        const ifname = harness.uniqueInterfaceName();
        const logFile = join(await harness.makeTempDir(), 'daemon.log');
        harness.registerPathForCleanup(uapiSocketPath(ifname));
        // As with wireguard-go, a daemon started with LOG_LEVEL inherits stdout/stderr; a
        // file stands in for the terminal (a pipe would stay open as long as the daemon runs).
        const result = await harness.exec(
          ns,
          [
            'sh',
            '-c',
            'log="$1"; shift; exec "$@" >>"$log" 2>&1',
            'sh',
            logFile,
            ...warrenWgArgv([ifname], { LOG_LEVEL: level }),
          ],
          { allowFailure: true, timeoutMs: 10_000 },
        );
        assert.equal(result.exitCode, 0, `warren-wg failed:\n${await readFile(logFile, 'utf8')}`);
        const daemon = await daemons.adopt(harness, ns, ifname);
        await harness.exec(ns, ['ip', 'link', 'del', ifname]);
        assert.ok(await daemons.exitedWithin(daemon, EXIT_DEADLINE_MS), 'exits after ip link del');
        const log = await readFile(logFile, 'utf8');
        if (level === 'verbose') {
          assert.match(
            log,
            new RegExp(`^DEBUG: \\(${ifname}\\) `, 'm'),
            `DEBUG lines in the log:\n${log}`,
          );
        } else {
          assert.equal(log, '', 'nothing logged');
        }
      }));
  }
});
