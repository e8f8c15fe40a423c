/**
 * Network-namespace test harness.
 *
 * A "network" in a test is a set of namespaces this harness creates itself
 * (DESIGN.md, "Test hosts and the network"): names carry the test process's pid
 * (`wrn-<pid>-<n>-<role>`) so parallel or crashed runs never collide, addresses
 * come only from documentation ranges, and everything the harness created —
 * processes (killed by pid, only ours), namespaces, temp files, UAPI sockets — is
 * removed by `cleanup()`, which tests call from `finally`/`after()`. A synchronous
 * last-resort cleanup also runs on process exit and on SIGINT/SIGTERM.
 */
import { spawn as spawnChild, execFileSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Default time limit of a one-shot command. Every command has one: tests fail, never hang. */
export const DEFAULT_EXEC_TIMEOUT_MS = 15_000;
/** How much of a background process's output is kept for diagnostics. */
const OUTPUT_TAIL_BYTES = 64 * 1024;
/** Upper bound on captured output of one-shot commands. */
const MAX_CAPTURE_BYTES = 32 * 1024 * 1024;

export interface ExecOptions {
  /** Kill the command (SIGKILL) after this long. Default DEFAULT_EXEC_TIMEOUT_MS. */
  readonly timeoutMs?: number;
  /** Written to the command's stdin, which is then closed. */
  readonly input?: string | Uint8Array;
  /** Added to (and overriding) this process's environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** Resolve instead of rejecting when the command exits nonzero (timeouts still reject). */
  readonly allowFailure?: boolean;
}

export interface ExecResult {
  readonly argv: readonly string[];
  /** null when the command was killed by a signal. */
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A command that failed, timed out or could not be started; the message says which and shows its output. */
export class ExecError extends Error {
  readonly result: ExecResult | undefined;
  constructor(message: string, result?: ExecResult, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ExecError';
    this.result = result;
  }
}

function describeArgv(argv: readonly string[]): string {
  return argv.map((arg) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : JSON.stringify(arg))).join(' ');
}

function checkArgv(argv: readonly string[], name: string): [string, ...string[]] {
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string')) {
    throw new TypeError(`${name} must be a non-empty array of strings`);
  }
  return argv as [string, ...string[]];
}

function checkTimeout(timeoutMs: number | undefined): number {
  const value = timeoutMs ?? DEFAULT_EXEC_TIMEOUT_MS;
  if (!Number.isFinite(value) || value <= 0) {
    throw new RangeError(`timeoutMs must be a positive number, got ${String(timeoutMs)}`);
  }
  return value;
}

/** Runs one command in this process's namespace, capturing output, with a time limit. */
export function runCommand(
  argv: readonly string[],
  options: ExecOptions = {},
): Promise<ExecResult> {
  const [file, ...args] = checkArgv(argv, 'argv');
  const timeoutMs = checkTimeout(options.timeoutMs);
  return new Promise((resolve, reject) => {
    const child = spawnChild(file, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...options.env },
    });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    let captured = 0;
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      if (captured < MAX_CAPTURE_BYTES) {
        into.push(chunk);
        captured += chunk.length;
      }
    };
    child.stdout.on('data', collect(stdout));
    child.stderr.on('data', collect(stderr));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(
        new ExecError(`cannot run ${describeArgv(argv)}: ${error.message}`, undefined, {
          cause: error,
        }),
      );
    });
    child.on('close', (exitCode, signal) => {
      clearTimeout(timer);
      const result: ExecResult = {
        argv,
        exitCode,
        signal,
        stdout: Buffer.concat(stdout).toString('utf8'),
        stderr: Buffer.concat(stderr).toString('utf8'),
      };
      const output = `\n--- stdout ---\n${result.stdout}\n--- stderr ---\n${result.stderr}`;
      if (timedOut) {
        reject(
          new ExecError(`timed out after ${timeoutMs} ms: ${describeArgv(argv)}${output}`, result),
        );
      } else if (exitCode !== 0 && options.allowFailure !== true) {
        const how = exitCode === null ? `killed by ${String(signal)}` : `exit code ${exitCode}`;
        reject(new ExecError(`command failed (${how}): ${describeArgv(argv)}${output}`, result));
      } else {
        resolve(result);
      }
    });
    // A command that exits before reading stdin makes the write fail with EPIPE; that is not our error.
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input);
  });
}

/** A background process started by the harness; only these are ever killed. */
export class TrackedProcess {
  readonly label: string;
  readonly argv: readonly string[];
  readonly pid: number;
  /** Settles when the process has exited (never rejects). */
  readonly exited: Promise<{ exitCode: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;
  private outputTail = '';
  private exitStatus: { exitCode: number | null; signal: NodeJS.Signals | null } | undefined;

  constructor(label: string, argv: readonly string[], env: Readonly<Record<string, string>>) {
    const [file, ...args] = checkArgv(argv, 'argv');
    this.label = label;
    this.argv = argv;
    this.child = spawnChild(file, args, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    const append = (chunk: Buffer) => {
      this.outputTail += chunk.toString('utf8');
      if (this.outputTail.length > OUTPUT_TAIL_BYTES) {
        this.outputTail = this.outputTail.slice(-OUTPUT_TAIL_BYTES);
      }
    };
    this.child.stdout?.on('data', append);
    this.child.stderr?.on('data', append);
    this.exited = new Promise((resolve) => {
      this.child.on('error', (error) => {
        append(Buffer.from(`\n[harness] cannot start: ${error.message}\n`));
        this.exitStatus ??= { exitCode: null, signal: null };
        resolve(this.exitStatus);
      });
      this.child.on('exit', (exitCode, signal) => {
        this.exitStatus = { exitCode, signal };
        resolve(this.exitStatus);
      });
    });
    if (this.child.pid === undefined) {
      // spawn failed synchronously (e.g. ENOENT); 'error' is emitted on the next tick.
      this.pid = -1;
    } else {
      this.pid = this.child.pid;
    }
  }

  /** The last OUTPUT_TAIL_BYTES of combined stdout and stderr. */
  output(): string {
    return this.outputTail;
  }

  hasExited(): boolean {
    return this.exitStatus !== undefined || this.pid < 0;
  }

  /** Exit status once exited, undefined while running. */
  status(): { exitCode: number | null; signal: NodeJS.Signals | null } | undefined {
    return this.exitStatus;
  }

  /** Resolves true once the process has exited, or false after `ms` (without keeping the event loop alive). */
  async exitedWithin(ms: number): Promise<boolean> {
    if (this.hasExited()) return true;
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => {
        resolve(false);
      }, ms);
      timer.unref();
    });
    const result = await Promise.race([this.exited.then(() => true), expired]);
    clearTimeout(timer);
    return result;
  }

  /** SIGTERM, then SIGKILL after graceMs. Signals only this pid, and only while it is our live child. */
  async stop(graceMs = 3000): Promise<void> {
    if (this.hasExited()) return;
    this.child.kill('SIGTERM');
    if (!(await this.exitedWithin(graceMs))) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }

  /** Sends `signal` to this process; refused once it has exited (its pid may be reused). */
  signal(signal: NodeJS.Signals): void {
    if (this.hasExited()) throw new Error(`${this.label} (pid ${this.pid}) has already exited`);
    this.child.kill(signal);
  }

  /** Synchronous last resort (process exit): SIGKILL if still running. */
  killNow(): void {
    if (!this.hasExited()) this.child.kill('SIGKILL');
  }
}

export interface SpawnOptions {
  /** Name used in diagnostics, e.g. "wireguard-go A". */
  readonly label?: string;
  readonly env?: Readonly<Record<string, string>>;
}

export interface VethPair {
  readonly nsA: string;
  readonly devA: string;
  readonly nsB: string;
  readonly devB: string;
}

/** Documentation and ULA ranges (RFC 5737, RFC 3849, RFC 4193) — the only addresses tests may use. */
const ALLOWED_V4_PREFIXES = ['192.0.2.', '198.51.100.', '203.0.113.'];
function isTestAddress(address: string): boolean {
  if (address.includes(':')) {
    const lower = address.toLowerCase();
    return (
      lower.startsWith('2001:db8:') ||
      lower.startsWith('2001:0db8:') ||
      /^fd[0-9a-f]{2}:/.test(lower)
    );
  }
  return ALLOWED_V4_PREFIXES.some((prefix) => address.startsWith(prefix));
}

/** Throws unless `cidr` ("addr/len") is inside a documentation or ULA range. */
export function checkTestCidr(
  cidr: string,
  name = 'cidr',
): { address: string; prefixLength: number; family: 4 | 6 } {
  const match = /^([0-9a-fA-F.:]+)\/(\d{1,3})$/.exec(cidr);
  const address = match?.[1];
  const prefix = match?.[2];
  if (address === undefined || prefix === undefined) {
    throw new TypeError(
      `${name} must look like "address/prefix-length", got ${JSON.stringify(cidr)}`,
    );
  }
  if (!isTestAddress(address)) {
    throw new RangeError(`${name} ${cidr} is outside the documentation/ULA ranges tests may use`);
  }
  const family = address.includes(':') ? 6 : 4;
  const prefixLength = Number(prefix);
  if (prefixLength > (family === 4 ? 32 : 128)) {
    throw new RangeError(`${name} ${cidr} has an impossible prefix length`);
  }
  return { address, prefixLength, family };
}

let namespaceCounter = 0;
let interfaceCounter = 0;
let vethCounter = 0;
const liveHarnesses = new Set<NetnsHarness>();
let exitHooksInstalled = false;

function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.once('exit', () => {
    for (const harness of liveHarnesses) harness.cleanupSync();
  });
  for (const [signal, code] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const) {
    process.once(signal, () => {
      for (const harness of liveHarnesses) harness.cleanupSync();
      process.exit(code);
    });
  }
}

/** Prefix of every namespace this process creates. */
export function namespacePrefix(): string {
  return `wrn-${process.pid}-`;
}

/** Names of existing namespaces (from `ip netns list`). */
export async function listNamespaces(): Promise<string[]> {
  const result = await runCommand(['ip', 'netns', 'list']);
  return result.stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name !== '');
}

/**
 * Everything of this process's that should be gone once all harnesses are
 * cleaned up: `wrn-<pid>-*` namespaces, `wg<pid>-*` UAPI sockets, temp dirs.
 * Test files assert it is empty in their final `after()`.
 */
export async function leftoversOfThisRun(): Promise<string[]> {
  const namespaces = (await listNamespaces()).filter((name) => name.startsWith(namespacePrefix()));
  const inDir = async (dir: string, prefix: string): Promise<string[]> => {
    try {
      return (await readdir(dir))
        .filter((name) => name.startsWith(prefix))
        .map((name) => join(dir, name));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
  };
  return [
    ...namespaces.map((name) => `netns ${name}`),
    ...(await inDir('/var/run/wireguard', `wg${process.pid}-`)),
    ...(await inDir(tmpdir(), `wrn-${process.pid}-`)),
  ];
}

/** Throws a clear error unless running as root: these tests create namespaces and TUN devices. */
export function requireRoot(): void {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new Error(
      'these integration tests must run as root (they create network namespaces, veth pairs and TUN devices); run them with sudo',
    );
  }
}

export class NetnsHarness {
  private readonly namespaces: string[] = [];
  private readonly processes: TrackedProcess[] = [];
  private readonly tempDirs: string[] = [];
  private readonly socketPaths: string[] = [];
  private cleanedUp = false;

  /** Checks for root and registers the harness for last-resort cleanup. */
  constructor() {
    requireRoot();
    installExitHooks();
    liveHarnesses.add(this);
  }

  /** Namespaces created and not yet deleted. */
  get namespaceNames(): readonly string[] {
    return this.namespaces;
  }

  /** Creates namespace `wrn-<pid>-<n>-<role>` with `lo` up. */
  async addNamespace(role: string): Promise<string> {
    if (!/^[a-z0-9]{1,12}$/.test(role)) {
      throw new TypeError(
        `role must be 1-12 lowercase letters/digits, got ${JSON.stringify(role)}`,
      );
    }
    this.assertUsable();
    namespaceCounter += 1;
    const name = `${namespacePrefix()}${namespaceCounter}-${role}`;
    await runCommand(['ip', 'netns', 'add', name]);
    this.namespaces.push(name);
    await runCommand(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  }

  /**
   * A name for a network interface that is unique on the whole machine for this
   * run: /var/run/wireguard/IFNAME.sock is shared by all namespaces (one mount
   * namespace), so two runs must never pick the same one. At most 15 characters (IFNAMSIZ).
   */
  uniqueInterfaceName(prefix = 'wg'): string {
    if (!/^[a-z]{1,3}$/.test(prefix)) throw new TypeError(`prefix must be 1-3 lowercase letters`);
    interfaceCounter += 1;
    const name = `${prefix}${process.pid}-${interfaceCounter}`;
    if (name.length > 15) throw new RangeError(`interface name ${name} exceeds 15 characters`);
    return name;
  }

  /** A veth pair from nsA to nsB, both ends up. Device names are local to each namespace. */
  async addVeth(
    nsA: string,
    nsB: string,
    names?: { devA?: string; devB?: string; mtu?: number },
  ): Promise<VethPair> {
    this.checkOwnNamespace(nsA, 'nsA');
    this.checkOwnNamespace(nsB, 'nsB');
    vethCounter += 1;
    const devA = names?.devA ?? `veth${vethCounter}a`;
    const devB = names?.devB ?? `veth${vethCounter}b`;
    // Created from inside nsA, so no device ever appears in the host's namespace.
    await runCommand([
      'ip',
      '-n',
      nsA,
      'link',
      'add',
      devA,
      'type',
      'veth',
      'peer',
      'name',
      devB,
      'netns',
      nsB,
    ]);
    if (names?.mtu !== undefined) {
      await runCommand(['ip', '-n', nsA, 'link', 'set', devA, 'mtu', String(names.mtu)]);
      await runCommand(['ip', '-n', nsB, 'link', 'set', devB, 'mtu', String(names.mtu)]);
    }
    await runCommand(['ip', '-n', nsA, 'link', 'set', devA, 'up']);
    await runCommand(['ip', '-n', nsB, 'link', 'set', devB, 'up']);
    return { nsA, devA, nsB, devB };
  }

  /** Adds a documentation-range address; IPv6 ones with `nodad` so they are usable at once. */
  async addAddress(ns: string, dev: string, cidr: string): Promise<void> {
    this.checkOwnNamespace(ns, 'ns');
    const { family } = checkTestCidr(cidr);
    const argv = ['ip', '-n', ns, `-${family}`, 'addr', 'add', cidr, 'dev', dev];
    if (family === 6) argv.push('nodad');
    await runCommand(argv);
  }

  async removeAddress(ns: string, dev: string, cidr: string): Promise<void> {
    this.checkOwnNamespace(ns, 'ns');
    const { family } = checkTestCidr(cidr);
    await runCommand(['ip', '-n', ns, `-${family}`, 'addr', 'del', cidr, 'dev', dev]);
  }

  /** Waits until no IPv6 address in `ns` is tentative (duplicate address detection finished). */
  async waitForDad(ns: string, timeoutMs = 5000): Promise<void> {
    this.checkOwnNamespace(ns, 'ns');
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const result = await runCommand(['ip', '-n', ns, '-6', 'addr', 'show', 'tentative']);
      if (result.stdout.trim() === '') return;
      if (Date.now() > deadline) {
        throw new Error(
          `IPv6 addresses in ${ns} still tentative after ${timeoutMs} ms:\n${result.stdout}`,
        );
      }
      await sleep(50);
    }
  }

  /** Runs a command inside `ns` (via `ip netns exec`) with a time limit. */
  exec(ns: string, argv: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    this.checkOwnNamespace(ns, 'ns');
    checkArgv(argv, 'argv');
    return runCommand(['ip', 'netns', 'exec', ns, ...argv], options);
  }

  /**
   * Starts a background command inside `ns`, tracked by pid and stopped in
   * cleanup. `ip netns exec` execs the command, so the pid is the command's own.
   */
  spawn(ns: string, argv: readonly string[], options: SpawnOptions = {}): TrackedProcess {
    this.checkOwnNamespace(ns, 'ns');
    checkArgv(argv, 'argv');
    this.assertUsable();
    const tracked = new TrackedProcess(
      options.label ?? `${argv[0] ?? ''} in ${ns}`,
      ['ip', 'netns', 'exec', ns, ...argv],
      options.env ?? {},
    );
    this.processes.push(tracked);
    return tracked;
  }

  /** A fresh private (0700) temporary directory, removed in cleanup. */
  async makeTempDir(): Promise<string> {
    this.assertUsable();
    const dir = await mkdtemp(join(tmpdir(), `wrn-${process.pid}-`));
    this.tempDirs.push(dir);
    return dir;
  }

  /** Registers a path (e.g. a UAPI socket) to delete in cleanup if it is still there. */
  registerPathForCleanup(path: string): void {
    if (typeof path !== 'string' || path === '')
      throw new TypeError('path must be a non-empty string');
    this.socketPaths.push(path);
  }

  /** Output of every tracked process, for failure messages. */
  diagnostics(): string {
    return this.processes
      .map((p) => {
        const status = p.status();
        const state =
          status === undefined
            ? 'running'
            : `exited code=${String(status.exitCode)} signal=${String(status.signal)}`;
        return `--- ${p.label} (pid ${p.pid}, ${state}) ---\n${p.output() || '(no output)'}`;
      })
      .join('\n');
  }

  /**
   * Kills our processes (by pid), deletes our namespaces (which removes the veths
   * and TUNs inside them), temp dirs and registered sockets; then verifies that
   * none of our namespaces is left. Safe to call more than once.
   */
  async cleanup(): Promise<void> {
    if (this.cleanedUp) return;
    this.cleanedUp = true;
    const problems: string[] = [];
    await Promise.all(this.processes.map((p) => p.stop()));
    for (const ns of this.namespaces) {
      try {
        await runCommand(['ip', 'netns', 'del', ns]);
      } catch (error) {
        problems.push(error instanceof Error ? error.message : String(error));
      }
    }
    for (const path of [...this.socketPaths, ...this.tempDirs]) {
      await rm(path, { recursive: true, force: true });
    }
    liveHarnesses.delete(this);
    const leftover = (await listNamespaces()).filter((name) => this.namespaces.includes(name));
    if (leftover.length > 0) problems.push(`namespaces left behind: ${leftover.join(', ')}`);
    this.namespaces.length = 0;
    if (problems.length > 0) throw new Error(`cleanup incomplete:\n${problems.join('\n')}`);
  }

  /** Last-resort synchronous cleanup for process exit / signals. */
  cleanupSync(): void {
    if (this.cleanedUp) return;
    this.cleanedUp = true;
    for (const p of this.processes) p.killNow();
    for (const ns of this.namespaces) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 });
      } catch {
        // Nothing more can be done while the process is exiting.
      }
    }
    for (const path of [...this.socketPaths, ...this.tempDirs]) {
      rmSync(path, { recursive: true, force: true });
    }
    liveHarnesses.delete(this);
  }

  private assertUsable(): void {
    if (this.cleanedUp) throw new Error('harness already cleaned up');
  }

  private checkOwnNamespace(ns: string, name: string): void {
    if (!this.namespaces.includes(ns)) {
      throw new RangeError(
        `${name} ${JSON.stringify(ns)} is not a namespace created by this harness`,
      );
    }
  }
}

/** Runs `body` with a fresh harness and always cleans up; on failure the error carries every tracked process's output. */
export async function withHarness<T>(body: (harness: NetnsHarness) => Promise<T>): Promise<T> {
  const harness = new NetnsHarness();
  let result: T;
  try {
    result = await body(harness);
  } catch (error) {
    const diagnostics = harness.diagnostics();
    if (error instanceof Error && diagnostics !== '') {
      error.message = `${error.message}\n\n===== process output =====\n${diagnostics}`;
    }
    // A cleanup problem must not hide the test's own failure; it is appended to it.
    await harness.cleanup().catch((cleanupError: unknown) => {
      if (error instanceof Error)
        error.message = `${error.message}\n\n===== cleanup =====\n${String(cleanupError)}`;
    });
    throw error;
  }
  await harness.cleanup();
  return result;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
