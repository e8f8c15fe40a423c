/**
 * The rootless sandbox under `warren run`: one program in throw-away user,
 * network, mount, pid and UTS namespaces whose only way out is a TUN device
 * the engine (outside, in this process) reads.
 *
 * Process model (shared/DESIGN.md, "Process and namespace model"): this
 * process never unshares itself (Node is multi-threaded; the race that broke
 * the Go wirecage). It spawns util-linux `unshare`, which creates the
 * namespaces and forks the init (init.ts, pid 1 inside). The init opens the
 * TUN inside, configures the namespace and sends the fd back over a socketpair
 * (SCM_RIGHTS). The program starts only when launch() says so, after the
 * engine reads the TUN.
 *
 *   warren run (this process, host namespaces, UDP socket, engine)
 *     └─ unshare --user --map-root-user --net --mount --pid --uts --fork --kill-child
 *          └─ node init.js            pid 1, root of the sandbox user namespace
 *               └─ PROGRAM            the caller's uid/gid (nested user namespace),
 *                                     own process group owning the terminal
 *
 * Teardown: the init exits when the program does (or its last process, with
 * keepAlive) and when this process's end of the socketpair closes -- also when
 * this process is SIGKILLed; pid 1 exiting kills the rest of the namespace.
 * `unshare --kill-child` kills the init if `unshare` itself is killed. State
 * in the per-user runtime directory (state.ts) lets the next `warren run`
 * clean up after a crash (cleanupOrphans).
 *
 * Terminal (job control, as a shell runs a job): the program always runs in
 * a process group of its own. When one of stdin/stdout/stderr is warren's
 * controlling terminal and warren is in its foreground, the program's group
 * becomes the terminal's foreground group, so Ctrl-C/Ctrl-Z and terminal
 * reads reach the program and not warren (no signal is delivered twice).
 * When the program stops (Ctrl-Z, or SIGTTIN reading the terminal from the
 * background), warren takes the terminal back and stops itself with the same
 * signal, so the shell shows the job stopped; on SIGCONT (`fg`/`bg`) it
 * continues the program and, if it is in the foreground again (`fg`), hands
 * the terminal over. When the program exits, the terminal returns to
 * warren's process group. Without a job-control shell above warren (an
 * orphaned process group), a stop is ignored, as the kernel would.
 */
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { constants as fsConstants, readFileSync } from 'node:fs';
import { access, readFile, stat, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { constants as osConstants, hostname as hostHostname } from 'node:os';
import { join, resolve } from 'node:path';
import { isatty } from 'node:tty';
import { fileURLToPath } from 'node:url';
import * as native from '../native/index.js';
import {
  CommandNotFoundError,
  SandboxError,
  SandboxOptionError,
  SandboxSetupError,
  ToolMissingError,
  TunDeviceError,
  UserNamespacesDisabledError,
} from './errors.js';
import type { SandboxErrorCode } from './errors.js';
import {
  NAME_SERVICE_FILES,
  RESOLVER_SOCKET_DIRS,
  hostsFile,
  isValidHostname,
  nsswitchConf,
  resolvConf,
} from './nameservice.js';
import { SYSTEM_PATH, checkPrerequisites, findTool } from './prerequisites.js';
import { ControlChannel } from './protocol.js';
import type { ConfigMessage, ErrorMessage, InitMessage, Received } from './protocol.js';
import { StateDirectory, isSameProcess } from './state.js';

export { checkPrerequisites } from './prerequisites.js';
export { cleanupOrphans, stateRoot } from './state.js';
export * from './errors.js';

/** The sandbox's network: the TUN device and what the program's resolver uses. */
export interface SandboxNetwork {
  /** Interface name inside the sandbox (1..15 bytes). */
  tunName: string;
  mtu: number;
  /** The TUN's addresses; a default route per family goes into the TUN (IPv6 only with a v6 address). */
  addresses: { family: 4 | 6; address: string; prefix: number }[];
  /** resolv.conf nameservers (reached through the tunnel); may be empty. */
  dns: string[];
  /** The sandbox's hostname (own UTS namespace); default: the host's. */
  hostname?: string;
}

export interface SandboxOptions {
  /** argv of the program; command[0] is searched in env.PATH like execvp(3). */
  command: string[];
  /** Working directory of the program; default: this process's. */
  cwd?: string;
  /** Environment of the program; default: this process's. */
  env?: NodeJS.ProcessEnv;
  network: SandboxNetwork;
  /** Keep the sandbox until the LAST process in it exits (programs that daemonize). */
  keepAlive?: boolean;
}

/** How the program ended: an exit code, or the signal that killed it. */
export interface SandboxExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** Test and diagnostic knobs; not part of the stable API. */
export interface SandboxInternals {
  /** The per-user state root (default: stateRoot()). */
  stateRoot?: string;
  /** Override the paths inside the sandbox that the name-service files replace. */
  nameServicePaths?: Partial<Record<keyof typeof NAME_SERVICE_FILES, string>>;
  /** Override the resolver socket directories hidden inside. */
  hideDirectories?: readonly string[];
  /** How long start() waits for the init (default 20 s). */
  startTimeoutMs?: number;
}

const INIT_SCRIPT = fileURLToPath(new URL('./init.js', import.meta.url));
const DEFAULT_START_TIMEOUT_MS = 20_000;
/** execvp's search path when PATH is unset (glibc posix/execvpe.c uses "/bin:/usr/bin"). */
const DEFAULT_PATH = '/usr/local/bin:/usr/bin:/bin';
const UNSHARE_FLAGS = [
  '--user',
  '--map-root-user',
  '--net',
  '--mount',
  '--pid',
  '--uts',
  '--fork',
  // SIGKILL the init if unshare dies (PR_SET_PDEATHSIG).
  '--kill-child',
  // Nothing mounted inside propagates out (the util-linux default, made explicit).
  '--propagation',
  'private',
];
const SIGNAL_NUMBERS: Readonly<Record<string, number>> = osConstants.signals;

// ---- option checking ----

function checkString(value: unknown, option: string): string {
  if (typeof value !== 'string') throw new SandboxOptionError(option, 'must be a string');
  if (value.includes('\0')) throw new SandboxOptionError(option, 'must not contain NUL characters');
  return value;
}

function checkInterfaceName(value: unknown): string {
  const name = checkString(value, 'network.tunName');
  // The kernel's dev_valid_name (net/core/dev.c): 1..15 bytes, not . or .., no / : or whitespace.
  if (Buffer.byteLength(name) < 1 || Buffer.byteLength(name) > 15) {
    throw new SandboxOptionError('network.tunName', 'must be 1 to 15 bytes long');
  }
  if (name === '.' || name === '..' || /[/:\s]/.test(name)) {
    throw new SandboxOptionError('network.tunName', `'${name}' is not a valid interface name`);
  }
  return name;
}

interface Checked {
  command: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  network: SandboxNetwork;
  keepAlive: boolean;
}

function checkOptions(options: SandboxOptions): Checked {
  // Callers from plain JavaScript may pass anything.
  const raw = options as unknown;
  if (typeof raw !== 'object' || raw === null) {
    throw new SandboxOptionError('options', 'must be an object');
  }
  if (!Array.isArray(options.command) || options.command.length === 0) {
    throw new SandboxOptionError('command', 'must be a non-empty array of strings');
  }
  const command = options.command.map((part, i) => checkString(part, `command[${i}]`));
  if (command[0] === '') throw new SandboxOptionError('command[0]', 'must not be empty');
  const cwd = resolve(options.cwd === undefined ? process.cwd() : checkString(options.cwd, 'cwd'));
  const env = options.env ?? process.env;
  if (typeof env !== 'object') throw new SandboxOptionError('env', 'must be an object');
  for (const [name, value] of Object.entries(env)) {
    if (name === '' || name.includes('=') || name.includes('\0')) {
      throw new SandboxOptionError(`env.${name}`, 'is not a valid variable name');
    }
    if (value !== undefined) checkString(value, `env.${name}`);
  }
  const network = options.network as SandboxNetwork | undefined;
  if (typeof network !== 'object') throw new SandboxOptionError('network', 'must be an object');
  const tunName = checkInterfaceName(network.tunName);
  if (!Array.isArray(network.addresses)) {
    throw new SandboxOptionError('network.addresses', 'must be an array');
  }
  const addresses = network.addresses.map((entry, i) => {
    const where = `network.addresses[${i}]`;
    const family = entry.family as number;
    if (family !== 4 && family !== 6)
      throw new SandboxOptionError(`${where}.family`, 'must be 4 or 6');
    if (typeof entry.address !== 'string' || isIP(entry.address) !== family) {
      throw new SandboxOptionError(`${where}.address`, `must be an IPv${family} address`);
    }
    const maxPrefix = family === 4 ? 32 : 128;
    if (!Number.isInteger(entry.prefix) || entry.prefix < 0 || entry.prefix > maxPrefix) {
      throw new SandboxOptionError(`${where}.prefix`, `must be an integer in [0, ${maxPrefix}]`);
    }
    return { family: entry.family, address: entry.address, prefix: entry.prefix };
  });
  const hasIpv6 = addresses.some((entry) => entry.family === 6);
  // 68: the IPv4 minimum (RFC 791); IPv6 needs 1280 (RFC 8200 section 5).
  const minimumMtu = hasIpv6 ? 1280 : 68;
  if (!Number.isInteger(network.mtu) || network.mtu < minimumMtu || network.mtu > 65535) {
    throw new SandboxOptionError(
      'network.mtu',
      `must be an integer in [${minimumMtu}, 65535]${hasIpv6 ? ' (IPv6 needs 1280)' : ''}`,
    );
  }
  if (!Array.isArray(network.dns)) throw new SandboxOptionError('network.dns', 'must be an array');
  const dns = network.dns.map((server, i) => {
    if (typeof server !== 'string' || isIP(server) === 0) {
      throw new SandboxOptionError(`network.dns[${i}]`, 'must be an IP address');
    }
    return server;
  });
  const checked: SandboxNetwork = { tunName, mtu: network.mtu, addresses, dns };
  if (network.hostname !== undefined) {
    if (typeof network.hostname !== 'string' || !isValidHostname(network.hostname)) {
      throw new SandboxOptionError(
        'network.hostname',
        'must be a hostname (RFC 1123 labels, at most 64 bytes)',
      );
    }
    checked.hostname = network.hostname;
  }
  if (options.keepAlive !== undefined && typeof options.keepAlive !== 'boolean') {
    throw new SandboxOptionError('keepAlive', 'must be a boolean');
  }
  return { command, cwd, env, network: checked, keepAlive: options.keepAlive ?? false };
}

/**
 * The candidate paths for command[0], as execvp(3) searches them: a name
 * with a '/' is used as is (relative to cwd); otherwise every PATH entry (an
 * empty one meaning cwd). Throws CommandNotFoundError unless one of them is
 * an executable regular file -- before anything starts. The candidates from
 * the first executable one on go to the init, whose child tries them in
 * order with execve.
 */
export async function resolveCommand(
  name: string,
  path: string | undefined,
  cwd: string,
): Promise<string[]> {
  const isRunnable = async (candidate: string): Promise<string | null> => {
    try {
      const info = await stat(candidate);
      if (!info.isFile()) return 'EACCES';
      await access(candidate, fsConstants.X_OK);
      return null;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code ?? 'ENOENT';
    }
  };
  if (name.includes('/')) {
    const full = resolve(cwd, name);
    const problem = await isRunnable(full);
    if (problem !== null) {
      throw new CommandNotFoundError(
        name,
        problem,
        problem === 'ENOENT' ? 'no such file' : `not an executable file (${problem})`,
      );
    }
    return [full];
  }
  const searchPath = path ?? DEFAULT_PATH;
  const candidates = searchPath
    .split(':')
    .map((directory) => (directory === '' ? join(cwd, name) : resolve(cwd, directory, name)));
  for (let i = 0; i < candidates.length; i++) {
    const candidate = candidates[i];
    if (candidate !== undefined && (await isRunnable(candidate)) === null)
      return candidates.slice(i);
  }
  throw new CommandNotFoundError(name, 'ENOENT', `command not found in PATH (${searchPath})`);
}

// ---- the terminal ----

/**
 * The first of fds 0..2 that is our controlling terminal (tcgetpgrp works
 * only on that), and whether our process group is its foreground group.
 */
function controllingTerminal(): { fd: number; foreground: boolean } | null {
  for (const fd of [0, 1, 2]) {
    if (!isatty(fd)) continue;
    try {
      return { fd, foreground: native.tcgetpgrp(fd) === native.getpgrp() };
    } catch {
      // a terminal, but not our controlling one
    }
  }
  return null;
}

/** Fields of /proc/PID/stat after the command name: state, ppid, pgrp, session. */
function processIds(pid: number): { ppid: number; pgrp: number; session: number } | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { ppid: Number(fields[1]), pgrp: Number(fields[2]), session: Number(fields[3]) };
}

/**
 * Whether a stop signal would stop this process: the kernel discards
 * SIGTSTP/SIGTTIN/SIGTTOU for a member of an ORPHANED process group, one
 * where no member's parent is in another group of the same session -- no
 * job-control shell could ever continue it (POSIX "orphaned process group";
 * kernel/signal.c, is_current_pgrp_orphaned). Walks up the ancestors that
 * share our group looking for such a parent.
 */
function processGroupCanStop(): boolean {
  const self = processIds(process.pid);
  if (self === null) return false;
  let current = self;
  for (let hops = 0; hops < 64; hops++) {
    const parent = processIds(current.ppid);
    if (parent === null) return false;
    if (parent.session === self.session && parent.pgrp !== self.pgrp) return true;
    if (parent.pgrp !== self.pgrp || current.ppid <= 1) return false;
    current = parent;
  }
  return false;
}

// ---- errors from the init ----

function errorFromInit(message: ErrorMessage): SandboxError {
  const code: SandboxErrorCode = message.code;
  switch (code) {
    case 'ERR_SANDBOX_TUN_CREATE':
    case 'ERR_SANDBOX_TUN_ACCESS':
    case 'ERR_SANDBOX_TUN_MISSING':
      return new TunDeviceError(code, message.message, message.errno ?? undefined);
    case 'ERR_SANDBOX_NETWORK_SETUP':
    case 'ERR_SANDBOX_FILESYSTEM_SETUP':
    case 'ERR_SANDBOX_INIT_FAILED':
    case 'ERR_SANDBOX_STATE_DIR':
      return new SandboxSetupError(code, message.message);
    case 'ERR_SANDBOX_INVALID_OPTION':
    case 'ERR_SANDBOX_USERNS_DISABLED':
    case 'ERR_SANDBOX_TOOL_MISSING':
    case 'ERR_SANDBOX_COMMAND_NOT_FOUND':
      return new SandboxError(code, message.message);
  }
}

/**
 * Why `unshare` failed before the init reported anything: rerun the same
 * namespace creation with `true`, its stderr captured.
 */
function diagnoseUnshareFailure(
  unsharePath: string,
  code: number | null,
  signal: string | null,
): SandboxError {
  const probe = spawnSync(unsharePath, [...UNSHARE_FLAGS, 'true'], {
    encoding: 'utf8',
    timeout: 5000,
  });
  const detail = probe.stderr.trim();
  if (probe.status !== 0 && detail !== '') {
    return new UserNamespacesDisabledError(
      'unknown',
      `cannot create the sandbox's namespaces: ${detail} (no known sysctl forbids them: a seccomp filter or an LSM may; ` +
        'inside a container, the container runtime must allow nested user namespaces)',
    );
  }
  return new SandboxSetupError(
    'ERR_SANDBOX_INIT_FAILED',
    `the sandbox init exited before it was ready (${signal ?? `exit code ${code}`})`,
  );
}

function signalOf(name: unknown): NodeJS.Signals {
  if (typeof name !== 'string' || SIGNAL_NUMBERS[name] === undefined) {
    throw new TypeError(
      `Sandbox.kill: argument 'signal' must be a signal name like 'SIGTERM', got ${String(name)}`,
    );
  }
  return name as NodeJS.Signals;
}

type Phase = 'starting' | 'ready' | 'launched' | 'exited';

export class Sandbox {
  private receivedTunFd = -1;
  private receivedTunName = '';
  private receivedInitPid = -1;
  /** Things that did not work but do not stop the sandbox (e.g. no private /proc). */
  readonly warnings: string[] = [];
  /** Resolves once the program and the sandbox are gone, with the program's status. */
  readonly exited: Promise<SandboxExit>;

  private phase: Phase = 'starting';
  private resolveExited: (exit: SandboxExit) => void = () => undefined;
  private settleStart: ((error: SandboxError | null) => void) | null = null;
  private programExit: SandboxExit | null = null;
  private terminalFd = -1;
  private ownProcessGroup = 0;
  /** Whether the program currently owns the terminal (we must take it back). */
  private programHasTerminal = false;
  private disposing: Promise<void> | null = null;
  private readonly onContinue = (): void => {
    this.resumeAfterStop();
  };

  /** The TUN device's fd (non-blocking, close-on-exec); the caller owns and closes it. */
  get tunFd(): number {
    return this.receivedTunFd;
  }

  /** The TUN device's name inside the sandbox. */
  get tunName(): string {
    return this.receivedTunName;
  }

  /** The init's pid in this process's pid namespace (it is 1 inside). */
  get initPid(): number {
    return this.receivedInitPid;
  }

  private constructor(
    private readonly child: ChildProcess,
    private readonly channel: ControlChannel<InitMessage>,
    private readonly state: StateDirectory,
    private readonly unsharePath: string,
  ) {
    this.exited = new Promise((resolveExit) => {
      this.resolveExited = resolveExit;
    });
  }

  /**
   * Creates the namespaces, the TUN device and the name-service files.
   * Resolves once the network namespace is configured and the TUN fd has
   * arrived; the program has NOT started (call launch()). Throws the typed
   * errors of errors.ts, having cleaned everything up.
   */
  static async start(options: SandboxOptions, internals: SandboxInternals = {}): Promise<Sandbox> {
    const checked = checkOptions(options);
    await checkPrerequisites();
    const unsharePath = await findTool('unshare');
    if (unsharePath === null) throw new ToolMissingError('unshare', 'util-linux');
    const ipPath = await findTool('ip');
    if (ipPath === null) throw new ToolMissingError('ip', 'iproute2');
    const [programName] = checked.command;
    const paths = await resolveCommand(programName ?? '', checked.env.PATH, checked.cwd);
    try {
      if (!(await stat(checked.cwd)).isDirectory()) throw new Error('not a directory');
    } catch {
      throw new SandboxOptionError('cwd', `'${checked.cwd}' is not an existing directory`);
    }

    const state = await StateDirectory.create(internals.stateRoot);
    let channel: ControlChannel<InitMessage> | null = null;
    let sandbox: Sandbox | null = null;
    try {
      const config = await prepareConfig(checked, paths, ipPath, state, internals);
      const [parentEnd, childEnd] = native.socketpair();
      channel = new ControlChannel<InitMessage>(parentEnd, 'init');
      // Queued in the socket before the init exists: it reads it first thing.
      channel.send(config);
      let child: ChildProcess;
      try {
        child = spawn(unsharePath, [...UNSHARE_FLAGS, '--', process.execPath, INIT_SCRIPT], {
          stdio: ['inherit', 'inherit', 'inherit', childEnd],
          // A clean environment: nothing of the caller's (NODE_OPTIONS...) reaches the init.
          env: { PATH: SYSTEM_PATH },
          cwd: '/',
        });
      } finally {
        native.close(childEnd);
      }
      sandbox = new Sandbox(child, channel, state, unsharePath);
      await sandbox.waitUntilReady(internals.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS);
      return sandbox;
    } catch (error) {
      if (sandbox !== null) {
        await sandbox.dispose();
        if (sandbox.tunFd >= 0) native.close(sandbox.tunFd);
      } else {
        channel?.close();
        state.remove();
      }
      throw error;
    }
  }

  private waitUntilReady(timeoutMs: number): Promise<void> {
    return new Promise<void>((resolveReady, rejectReady) => {
      const timer = setTimeout(() => {
        settle(
          new SandboxSetupError(
            'ERR_SANDBOX_INIT_FAILED',
            `the sandbox init did not get ready within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      const settle = (error: SandboxError | null): void => {
        if (this.settleStart === null) return;
        this.settleStart = null;
        clearTimeout(timer);
        if (error === null) resolveReady();
        else rejectReady(error);
      };
      this.settleStart = settle;
      // 'on', not 'once': a later failed kill() would emit 'error' again.
      this.child.on('error', (error: NodeJS.ErrnoException) => {
        settle(
          error.code === 'ENOENT'
            ? new ToolMissingError('unshare', 'util-linux')
            : new SandboxSetupError(
                'ERR_SANDBOX_INIT_FAILED',
                `cannot start unshare: ${error.message}`,
                {
                  cause: error,
                },
              ),
        );
        this.finish(null, 'SIGKILL');
      });
      this.child.once('exit', (code, signal) => {
        this.finish(code, signal);
      });
      const pid = this.child.pid;
      if (pid !== undefined) this.state.update({ unsharePid: pid });
      this.channel.start(
        (received) => {
          this.onMessage(received);
        },
        () => {
          // The init closed its end: it is exiting; 'exit' of unshare follows.
        },
      );
    });
  }

  private onMessage({ message, fds, pid }: Received<InitMessage>): void {
    switch (message.type) {
      case 'ready': {
        const [tunFd, ...extra] = fds;
        for (const fd of extra) native.close(fd);
        if (tunFd === undefined || this.phase !== 'starting') {
          if (tunFd !== undefined) native.close(tunFd);
          return;
        }
        this.receivedTunFd = tunFd;
        this.receivedTunName = message.tunName;
        this.receivedInitPid = pid;
        this.warnings.push(...message.warnings);
        this.phase = 'ready';
        this.state.update({ initPid: pid > 0 ? pid : null });
        this.settleStart?.(null);
        return;
      }
      case 'error':
        for (const fd of fds) native.close(fd);
        if (this.settleStart === null) {
          // After start: the init is going down; exited reports the status.
          this.warnings.push(`sandbox init: ${message.message}`);
        } else {
          this.settleStart(errorFromInit(message));
        }
        return;
      case 'started':
        return;
      case 'stopped':
        this.onProgramStopped(message.signal);
        return;
      case 'exit':
        this.programExit = { code: message.code, signal: message.signal };
        return;
    }
  }

  /**
   * Starts the program (once the engine reads the TUN). Its status arrives
   * in {@link exited}.
   */
  launch(): void {
    if (this.phase === 'exited') return;
    if (this.phase !== 'ready') {
      throw new Error(
        `Sandbox.launch: the sandbox is ${this.phase}, not ready (launch() runs once, after start())`,
      );
    }
    this.phase = 'launched';
    // On a terminal the program is a job of its own. It gets the terminal only
    // if warren is in the foreground; launched in the background
    // (`warren run ... &`) it stays there, and reading the terminal stops it
    // (SIGTTIN) as it would stop warren -- then `fg` hands the terminal over.
    const terminal = controllingTerminal();
    if (terminal !== null) {
      this.terminalFd = terminal.fd;
      this.ownProcessGroup = native.getpgrp();
      this.programHasTerminal = terminal.foreground;
      process.on('SIGCONT', this.onContinue);
    }
    this.channel.send({
      type: 'launch',
      terminalFd: this.programHasTerminal ? this.terminalFd : -1,
    });
  }

  /**
   * Sends `signal` to the program (SIGINT/SIGTERM/SIGHUP forwarding). Before
   * launch(), any signal ends the sandbox and {@link exited} reports it; with
   * keepAlive after the program exited, it reaches every process left.
   */
  kill(signal: NodeJS.Signals): void {
    const checked = signalOf(signal);
    if (this.phase === 'exited') return;
    try {
      this.channel.send({ type: 'signal', signal: checked });
    } catch {
      // The init is gone; exited settles on its own.
    }
  }

  /**
   * The program stopped (Ctrl-Z, or SIGTTIN reading the terminal from the
   * background): take the terminal back and stop ourselves with the same
   * signal, so the shell sees the job stop.
   */
  private onProgramStopped(signal: NodeJS.Signals): void {
    if (this.terminalFd < 0) return;
    if (this.programHasTerminal) {
      this.programHasTerminal = false;
      this.reclaimTerminal();
    }
    if (!processGroupCanStop()) {
      // Nobody could continue us (no job-control shell above): the kernel
      // ignores Ctrl-Z for such a group, so do the same for the program.
      this.resumeAfterStop();
      return;
    }
    try {
      process.kill(process.pid, signal);
    } catch {
      process.kill(process.pid, 'SIGSTOP');
    }
  }

  /** SIGCONT after a stop: continue the program, with the terminal if we are in the foreground (`fg`). */
  private resumeAfterStop(): void {
    if (this.phase !== 'launched' || this.terminalFd < 0) return;
    let foreground: boolean;
    try {
      foreground = native.tcgetpgrp(this.terminalFd) === this.ownProcessGroup;
    } catch {
      foreground = false;
    }
    this.programHasTerminal = foreground;
    try {
      this.channel.send({ type: 'continue', terminalFd: foreground ? this.terminalFd : -1 });
    } catch {
      // The init is gone.
    }
  }

  private reclaimTerminal(): void {
    try {
      native.tcsetpgrp(this.terminalFd, this.ownProcessGroup);
    } catch {
      // The terminal is gone (hangup); nothing to give back.
    }
  }

  /** unshare exited: the init and everything in the namespaces are gone. */
  private finish(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.phase === 'exited') return;
    const wasStarting = this.phase === 'starting';
    // Messages the init sent just before exiting ('exit', 'error') are still queued.
    this.channel.drain(
      (received) => {
        this.onMessage(received);
      },
      () => undefined,
    );
    this.phase = 'exited';
    if (wasStarting && this.settleStart !== null) {
      this.settleStart(diagnoseUnshareFailure(this.unsharePath, code, signal));
    }
    if (this.terminalFd >= 0) {
      process.off('SIGCONT', this.onContinue);
      if (this.programHasTerminal) this.reclaimTerminal();
      this.programHasTerminal = false;
    }
    this.channel.close();
    this.state.remove();
    this.resolveExited(this.programExit ?? { code: signal === null ? code : null, signal });
  }

  /**
   * Ends the sandbox if it still runs (SIGKILL to its init: the pid namespace
   * dies with it) and removes its state. Idempotent. The TUN fd is the
   * caller's to close.
   */
  dispose(): Promise<void> {
    this.disposing ??= (async () => {
      if (this.phase !== 'exited') {
        const initStartTime = this.state.snapshot.initStartTime;
        if (this.initPid > 0 && isSameProcess(this.initPid, initStartTime)) {
          try {
            process.kill(this.initPid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
        if (this.child.exitCode === null && this.child.signalCode === null)
          this.child.kill('SIGKILL');
        await this.exited;
      }
      this.state.remove();
    })();
    return this.disposing;
  }
}

async function prepareConfig(
  checked: Checked,
  paths: string[],
  ipPath: string,
  state: StateDirectory,
  internals: SandboxInternals,
): Promise<ConfigMessage> {
  const { network } = checked;
  const hasIpv6 = network.addresses.some((entry) => entry.family === 6);
  let hostNsswitch: string | null;
  try {
    hostNsswitch = await readFile('/etc/nsswitch.conf', 'utf8');
  } catch {
    hostNsswitch = null;
  }
  const targets = { ...NAME_SERVICE_FILES, ...internals.nameServicePaths };
  const contents: Record<keyof typeof NAME_SERVICE_FILES, string> = {
    resolvConf: resolvConf(network.dns),
    hosts: hostsFile(network.hostname ?? hostHostname(), hasIpv6),
    nsswitchConf: nsswitchConf(hostNsswitch),
  };
  const files: ConfigMessage['filesystem']['files'] = [];
  for (const key of Object.keys(contents) as (keyof typeof NAME_SERVICE_FILES)[]) {
    const source = join(state.etcDir, key);
    await writeFile(source, contents[key], { mode: 0o644 });
    files.push({ source, target: targets[key] });
  }
  const env: string[] = [];
  for (const [name, value] of Object.entries(checked.env)) {
    if (value !== undefined) env.push(`${name}=${value}`);
  }
  return {
    type: 'config',
    tunName: network.tunName,
    mtu: network.mtu,
    addresses: network.addresses,
    hostname: network.hostname ?? null,
    filesystem: { files, hide: [...(internals.hideDirectories ?? RESOLVER_SOCKET_DIRS)] },
    ipPath,
    program: {
      paths,
      argv: checked.command,
      env,
      cwd: checked.cwd,
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
    },
    keepAlive: checked.keepAlive,
  };
}
