/**
 * Running `warren run` the way a user does: as an unprivileged user, in the
 * client host namespace of test/harness/internet.ts.
 *
 * The user is a dedicated uid of this test process (no passwd entry needed:
 * setpriv takes numbers), not `nobody`, so "nothing of the user's is left
 * running" can be checked exactly even while other test runs use `nobody`.
 * Its HOME and XDG_RUNTIME_DIR are private directories of the harness, so the
 * sandbox's state root ($XDG_RUNTIME_DIR/warren, src/sandbox/state.ts) is this
 * test's alone.
 *
 * The client host's own resolver (used by warren to resolve an endpoint
 * hostname) is the internet's DNS responder: each command runs with a
 * resolv.conf naming it bind-mounted over /etc/resolv.conf in the mount
 * namespace `ip netns exec` creates (its / is a slave mount, so nothing
 * propagates to the host). The host's /etc is never written.
 */
import assert from 'node:assert/strict';
import { chmod, chown, mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { after, before } from 'node:test';
import { join } from 'node:path';
import { DNS } from './internet.js';
import { leftoversOfThisRun, runCommand } from './netns.js';
import type { ExecOptions, ExecResult, NetnsHarness, TrackedProcess } from './netns.js';
import { runtimeRoot } from './runtime.js';

/** The compiled `warren` entry point. */
/** The CLI as the unprivileged test user can read it (see runtime.ts). */
export const WARREN_CLI = join(runtimeRoot(), 'dist', 'src', 'cli', 'warren.js');

/** A uid (and gid) no account uses, unique to this test process. */
export const RUN_TEST_UID = 2_100_000 + (process.pid % 100_000);

/** The search path the user's commands get (as a login shell's default). */
export const USER_PATH = '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin';

export interface RunUser {
  readonly uid: number;
  readonly gid: number;
  /** HOME: 0700, owned by the user; configs and keys go here. */
  readonly home: string;
  /** XDG_RUNTIME_DIR: 0700, owned by the user. */
  readonly runtimeDir: string;
  /** Where the sandbox keeps its per-run state (src/sandbox/state.ts, stateRoot()). */
  readonly stateRoot: string;
  /** The client host's resolv.conf (bind-mounted over /etc/resolv.conf for each command). */
  readonly hostResolvConf: string;
}

/**
 * Creates the test user's directories in a harness temp dir (removed in cleanup)
 * and checks that no process already runs as its uid.
 */
export async function createRunUser(harness: NetnsHarness): Promise<RunUser> {
  const uid = RUN_TEST_UID;
  const gid = RUN_TEST_UID;
  const already = await processesOfUid(uid);
  if (already.length > 0) {
    throw new Error(`uid ${uid} is already in use by: ${already.map((p) => p.command).join('; ')}`);
  }
  const base = await harness.makeTempDir();
  // Others may traverse (not list) the base, to reach the user's own directories.
  await chmod(base, 0o711);
  const home = join(base, 'home');
  const runtimeDir = join(base, 'runtime');
  for (const dir of [home, runtimeDir]) {
    await mkdir(dir, { mode: 0o700 });
    await chown(dir, uid, gid);
  }
  const hostResolvConf = join(base, 'host-resolv.conf');
  await writeFile(hostResolvConf, `# the client host's resolver\nnameserver ${DNS.v4}\n`, {
    mode: 0o644,
  });
  return {
    uid,
    gid,
    home,
    runtimeDir,
    stateRoot: join(runtimeDir, 'warren'),
    hostResolvConf,
  };
}

/** Writes a file into the user's HOME, owned by the user (wg-quick configs are 0600). */
export async function writeUserFile(
  user: RunUser,
  name: string,
  content: string,
  mode = 0o600,
): Promise<string> {
  if (!/^[\w.-]+$/.test(name)) throw new TypeError(`name must be a plain file name, got ${name}`);
  const path = join(user.home, name);
  await writeFile(path, content, { mode });
  await chmod(path, mode);
  await chown(path, user.uid, user.gid);
  return path;
}

export interface UserCommandOptions {
  /** Added to the user's clean environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** Working directory (default: the user's HOME). */
  readonly cwd?: string;
}

/**
 * argv that runs `argv` as the test user with a clean environment, the client
 * host resolver bind-mounted over /etc/resolv.conf. Every step execs the next,
 * so the process started is, in the end, `argv[0]` itself (same pid: signals
 * and exit status are its own).
 */
export function asUser(
  user: RunUser,
  argv: readonly string[],
  options: UserCommandOptions = {},
): string[] {
  if (argv.length === 0) throw new TypeError('argv must not be empty');
  const env = {
    PATH: USER_PATH,
    HOME: user.home,
    XDG_RUNTIME_DIR: user.runtimeDir,
    LANG: 'C.UTF-8',
    ...options.env,
  };
  return [
    'sh',
    '-c',
    'mount --bind "$0" /etc/resolv.conf && cd "$1" && shift && exec "$@"',
    user.hostResolvConf,
    options.cwd ?? user.home,
    'setpriv',
    `--reuid=${user.uid}`,
    `--regid=${user.gid}`,
    '--clear-groups',
    '--',
    'env',
    '-i',
    ...Object.entries(env).map(([name, value]) => `${name}=${value}`),
    ...argv,
  ];
}

/** argv of `warren run ARGS… -- COMMAND…` (run it through asUser). */
export function warrenRunArgv(args: readonly string[], command: readonly string[]): string[] {
  if (command.length === 0) throw new TypeError('command must not be empty');
  return [process.execPath, WARREN_CLI, 'run', ...args, '--', ...command];
}

export interface WarrenRunOptions extends UserCommandOptions {
  readonly timeoutMs?: number;
  readonly input?: string;
}

/** Runs `warren run ARGS -- COMMAND` as the user in `ns`; resolves whatever the exit status. */
export function warrenRun(
  harness: NetnsHarness,
  ns: string,
  user: RunUser,
  args: readonly string[],
  command: readonly string[],
  options: WarrenRunOptions = {},
): Promise<ExecResult> {
  const execOptions: ExecOptions = {
    allowFailure: true,
    timeoutMs: options.timeoutMs ?? 20_000,
    ...(options.input === undefined ? {} : { input: options.input }),
  };
  return harness.exec(ns, asUser(user, warrenRunArgv(args, command), options), execOptions);
}

/** Starts `warren run ARGS -- COMMAND` as the user in `ns` in the background (tracked; its pid is warren's node). */
export function spawnWarrenRun(
  harness: NetnsHarness,
  ns: string,
  user: RunUser,
  args: readonly string[],
  command: readonly string[],
  options: UserCommandOptions = {},
): TrackedProcess {
  return harness.spawn(ns, asUser(user, warrenRunArgv(args, command), options), {
    label: `warren run … -- ${command.join(' ')}`,
  });
}

/** Runs any command as the user in `ns` (no warren), resolving whatever the exit status. */
export function runAsUser(
  harness: NetnsHarness,
  ns: string,
  user: RunUser,
  argv: readonly string[],
  options: WarrenRunOptions = {},
): Promise<ExecResult> {
  return harness.exec(ns, asUser(user, argv, options), {
    allowFailure: true,
    timeoutMs: options.timeoutMs ?? 20_000,
    ...(options.input === undefined ? {} : { input: options.input }),
  });
}

export interface ProcessInfo {
  readonly pid: number;
  readonly command: string;
}

/** Every live (not zombie) process whose real, effective, saved or filesystem uid is `uid` (from /proc). */
export async function processesOfUid(uid: number): Promise<ProcessInfo[]> {
  const found: ProcessInfo[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let status: string;
    let cmdline: string;
    try {
      status = await readFile(`/proc/${entry}/status`, 'utf8');
      cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const uids = /^Uid:\s+(.*)$/m.exec(status)?.[1]?.split(/\s+/).map(Number) ?? [];
    // A zombie has exited and holds nothing but its pid until its parent reaps it;
    // an orphan's zombie waits for pid 1, which on some machines reaps only every
    // few seconds. Only processes that still run count.
    const zombie = /^State:\s+Z/m.test(status);
    if (uids.includes(uid) && !zombie) {
      const name = /^Name:\s+(.*)$/m.exec(status)?.[1] ?? '?';
      found.push({
        pid: Number(entry),
        command: cmdline === '' ? `[${name}]` : cmdline.split('\0').join(' ').trim(),
      });
    }
  }
  return found;
}

/** Entries of `dir` (empty when it does not exist). */
export async function listDirectory(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/**
 * What a finished `warren run` may have left behind: processes of the user,
 * sandbox state directories (in the user's state root and the /tmp fallback
 * of state.ts), and UDP sockets in the client host namespace.
 */
export async function leftoversOfUser(
  harness: NetnsHarness,
  clientNs: string,
  user: RunUser,
): Promise<string[]> {
  const processes = (await processesOfUid(user.uid)).map(
    (p) => `process ${p.pid} of uid ${user.uid}: ${p.command}`,
  );
  const stateDirs = (await listDirectory(user.stateRoot)).map(
    (name) => `state ${join(user.stateRoot, name)}`,
  );
  const fallbackRoot = `/tmp/warren-${user.uid}`;
  const fallback = (await listDirectory(fallbackRoot)).map(
    (name) => `state ${join(fallbackRoot, name)}`,
  );
  const sockets = (await harness.exec(clientNs, ['ss', '-H', '-a', '-n', '-u', '-t', '-w'])).stdout
    .split('\n')
    // TIME-WAIT: a closed connection the kernel keeps for 2×MSL; no process holds it.
    .filter((line) => line.trim() !== '' && !line.includes('TIME-WAIT'))
    .map((line) => `socket in ${clientNs}: ${line.trim()}`);
  return [...processes, ...stateDirs, ...fallback, ...sockets];
}

/** Polls leftoversOfUser until empty or `timeoutMs`; returns the last list. */
export async function waitForNoLeftovers(
  harness: NetnsHarness,
  clientNs: string,
  user: RunUser,
  timeoutMs: number,
): Promise<string[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = await leftoversOfUser(harness, clientNs, user);
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const TUN_PATH = '/dev/net/tun';

/**
 * Makes /dev/net/tun usable by everyone (0666, the distributions' default; this
 * machine ships 0600: DESIGN.md) and returns a function that restores the mode
 * it had.
 */
export async function allowTunForEveryone(): Promise<() => Promise<void>> {
  const original = (await stat(TUN_PATH)).mode & 0o7777;
  await chmod(TUN_PATH, 0o666);
  return async () => {
    await chmod(TUN_PATH, original);
  };
}

/** Whether the user can read `path` (and, for a directory, traverse it): `test -r` as the user. */
export async function userCanRead(user: RunUser, path: string): Promise<boolean> {
  const test = await runCommand(
    [
      'setpriv',
      `--reuid=${user.uid}`,
      `--regid=${user.gid}`,
      '--clear-groups',
      '--',
      'sh',
      '-c',
      'test -r "$0" && { test ! -d "$0" || test -x "$0"; }',
      path,
    ],
    { allowFailure: true },
  );
  return test.exitCode === 0;
}

/**
 * The hooks every `warren run` test file needs: /dev/net/tun usable by the test
 * user while the file runs (restored after), and nothing of the run left behind.
 */
export function useRunTestHooks(): void {
  let restoreTun: (() => Promise<void>) | undefined;
  before(async () => {
    restoreTun = await allowTunForEveryone();
  });
  after(async () => {
    await restoreTun?.();
    assert.deepEqual(await leftoversOfThisRun(), [], 'this run left nothing behind');
  });
}

/** A run's status and output, for assertion messages. */
export function explain(result: ExecResult): string {
  return `exit ${String(result.exitCode)}, signal ${String(result.signal)}\n--- stdout ---\n${result.stdout}\n--- stderr ---\n${result.stderr}`;
}

/** Lines "KEY=VALUE" of a run's stdout as a map (the test scripts print their findings so). */
export function findings(result: ExecResult): Map<string, string> {
  const map = new Map<string, string>();
  for (const line of result.stdout.split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) map.set(line.slice(0, at), line.slice(at + 1));
  }
  return map;
}
