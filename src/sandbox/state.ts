/**
 * Per-sandbox state on disk, and the cleanup of sandboxes whose `warren run`
 * died without cleaning up (`kill -9`, a crash, a power cut of the session).
 *
 * Layout: a per-user root, `$XDG_RUNTIME_DIR/warren` (systemd's per-user
 * tmpfs, gone at logout) or else `/tmp/warren-<uid>`, mode 0700 and owned by
 * the user (checked, never trusted: /tmp is shared). In it, one directory per
 * running sandbox, `sandbox-<parent pid>-XXXXXX/`, holding:
 *   state.json  who runs it: parent pid, sandbox init pid, unshare pid, each
 *               with its start time (/proc/PID/stat field 22) so a recycled
 *               pid is never mistaken for ours (proc(5));
 *   etc/        the generated resolv.conf, hosts and nsswitch.conf the init
 *               bind-mounts (they must stay readable while it runs).
 * Like vopono's lockfiles (shared/seeds/000), the next `warren run` calls
 * cleanupOrphans(): state whose parent is dead is removed and its leftover
 * processes are killed.
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { SandboxSetupError } from './errors.js';

/** Contents of state.json. */
export interface SandboxState {
  version: 1;
  parentPid: number;
  parentStartTime: string;
  /** The `unshare` process (host pid), once spawned. */
  unsharePid: number | null;
  unshareStartTime: string | null;
  /** The sandbox's init (host pid; it is pid 1 inside), once it reported in. */
  initPid: number | null;
  initStartTime: string | null;
  createdAt: string;
}

const STATE_FILE = 'state.json';
const SANDBOX_PREFIX = 'sandbox-';
/** A directory without a readable state file younger than this is still being created. */
const UNFINISHED_GRACE_MS = 60_000;

function currentUid(): number {
  return process.getuid?.() ?? 0;
}

/** The per-user state root (not created). */
export function stateRoot(env: NodeJS.ProcessEnv = process.env): string {
  const runtime = env.XDG_RUNTIME_DIR;
  if (runtime?.startsWith('/')) return join(runtime, 'warren');
  return `/tmp/warren-${currentUid()}`;
}

/**
 * The start time of process `pid` (clock ticks since boot, field 22 of
 * /proc/PID/stat), or null if there is no such process. Together with the pid
 * it names one process for the lifetime of the system.
 */
export function processStartTime(pid: number): string | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Field 2 (comm) is parenthesised and may hold spaces or ')': fields after
  // the LAST ')' are space-separated; starttime is field 22, i.e. index 19 there.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return rest[19] ?? null;
}

/** True when `pid` is alive AND is the same process that had `startTime`. */
export function isSameProcess(pid: number | null, startTime: string | null): boolean {
  if (pid === null || startTime === null || !Number.isInteger(pid) || pid <= 0) return false;
  return processStartTime(pid) === startTime;
}

/** Creates (or checks) the state root: a real directory, ours, mode 0700. */
export async function ensureStateRoot(root: string = stateRoot()): Promise<string> {
  try {
    await mkdir(root, { mode: 0o700 });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new SandboxSetupError(
        'ERR_SANDBOX_STATE_DIR',
        `cannot create the state directory ${root}: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }
  const info = await lstat(root);
  const problem = !info.isDirectory()
    ? 'is not a directory (a symlink?)'
    : info.uid !== currentUid()
      ? `is owned by uid ${info.uid}, not by you (uid ${currentUid()})`
      : (info.mode & 0o077) !== 0
        ? `has mode ${(info.mode & 0o777).toString(8)}, not 700`
        : null;
  if (problem !== null) {
    throw new SandboxSetupError(
      'ERR_SANDBOX_STATE_DIR',
      `the state directory ${root} ${problem}; remove it (warren recreates it)`,
    );
  }
  return root;
}

/** One sandbox's state directory. */
export class StateDirectory {
  private state: SandboxState;
  private removed = false;

  private constructor(
    readonly path: string,
    parentStartTime: string,
  ) {
    this.state = {
      version: 1,
      parentPid: process.pid,
      parentStartTime,
      unsharePid: null,
      unshareStartTime: null,
      initPid: null,
      initStartTime: null,
      createdAt: new Date().toISOString(),
    };
  }

  /** Where the generated name-service files go. */
  get etcDir(): string {
    return join(this.path, 'etc');
  }

  /** Creates a new state directory (with etc/) and writes the parent's part of the state. */
  static async create(root?: string): Promise<StateDirectory> {
    const base = await ensureStateRoot(root);
    const parentStartTime = processStartTime(process.pid);
    if (parentStartTime === null) {
      throw new SandboxSetupError(
        'ERR_SANDBOX_STATE_DIR',
        'cannot read /proc/self/stat (is /proc mounted?)',
      );
    }
    const path = await mkdtemp(join(base, `${SANDBOX_PREFIX}${process.pid}-`));
    const directory = new StateDirectory(path, parentStartTime);
    await mkdir(directory.etcDir, { mode: 0o700 });
    directory.save();
    return directory;
  }

  /** Records the processes of the sandbox (host pids) and saves. */
  update(fields: Partial<Pick<SandboxState, 'unsharePid' | 'initPid'>>): void {
    if (fields.unsharePid !== undefined) {
      this.state.unsharePid = fields.unsharePid;
      this.state.unshareStartTime =
        fields.unsharePid === null ? null : processStartTime(fields.unsharePid);
    }
    if (fields.initPid !== undefined) {
      this.state.initPid = fields.initPid;
      this.state.initStartTime = fields.initPid === null ? null : processStartTime(fields.initPid);
    }
    this.save();
  }

  get snapshot(): Readonly<SandboxState> {
    return this.state;
  }

  /** Writes state.json atomically (write + rename), so readers never see half a file. */
  private save(): void {
    if (this.removed) return;
    const temporary = join(this.path, `.${STATE_FILE}.tmp`);
    writeFileSync(temporary, `${JSON.stringify(this.state)}\n`, { mode: 0o600 });
    renameSync(temporary, join(this.path, STATE_FILE));
  }

  /** Removes the directory; idempotent. */
  remove(): void {
    if (this.removed) return;
    this.removed = true;
    rmSync(this.path, { recursive: true, force: true });
  }

  get exists(): boolean {
    return !this.removed && existsSync(this.path);
  }
}

function parseState(text: string): SandboxState | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const state = value as Partial<SandboxState>;
  if (
    state.version !== 1 ||
    typeof state.parentPid !== 'number' ||
    typeof state.parentStartTime !== 'string'
  ) {
    return null;
  }
  return state as SandboxState;
}

/** SIGKILLs `pid` if it is still the process that had `startTime`. Returns whether it sent. */
function killIfSame(pid: number | null, startTime: string | null): boolean {
  if (pid === null || !isSameProcess(pid, startTime)) return false;
  try {
    process.kill(pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

/**
 * Removes the state of every sandbox whose `warren run` is gone, killing its
 * leftover processes (the init first: its death ends the whole pid namespace,
 * then `unshare`). Processes are identified by pid AND start time, so a
 * recycled pid is never killed. Returns how many sandboxes were cleaned.
 * Sandboxes of running `warren run`s are left alone.
 */
export async function cleanupOrphans(root: string = stateRoot()): Promise<number> {
  let entries: string[];
  try {
    entries = await readdir(root);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw error;
  }
  let cleaned = 0;
  for (const entry of entries) {
    if (!entry.startsWith(SANDBOX_PREFIX)) continue;
    const directory = join(root, entry);
    let state: SandboxState | null;
    try {
      state = parseState(await readFile(join(directory, STATE_FILE), 'utf8'));
    } catch {
      state = null;
    }
    if (state === null) {
      // Being created right now, or a crash before the first write.
      let age: number;
      try {
        age = Date.now() - (await stat(directory)).mtimeMs;
      } catch {
        continue;
      }
      if (age < UNFINISHED_GRACE_MS) continue;
    } else {
      if (isSameProcess(state.parentPid, state.parentStartTime)) continue;
      killIfSame(state.initPid, state.initStartTime);
      killIfSame(state.unsharePid, state.unshareStartTime);
    }
    await rm(directory, { recursive: true, force: true });
    cleaned++;
  }
  return cleaned;
}
