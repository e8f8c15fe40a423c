/**
 * The hashicorp/yamux peer of the interop tests: builds test/go-yamux (offline,
 * against Debian's golang-github-hashicorp-yamux-dev) into a cache under the
 * temp dir keyed by the sources' hash, and runs it as a child process that the
 * test stops by pid.
 */
import { spawn, execFile } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { access, copyFile, mkdir, mkdtemp, readFile, readdir, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The Debian packages the interop test needs. */
export const GO_YAMUX_APT_PACKAGES = ['golang-go', 'golang-github-hashicorp-yamux-dev'] as const;
/** Where golang-github-hashicorp-yamux-dev puts the Go sources (go.mod's replace points here). */
export const GO_YAMUX_MODULE_DIR = '/usr/share/gocode/src/github.com/hashicorp/yamux';

/** test/go-yamux in the source tree (this file runs from dist/test/relay/). */
const PEER_SOURCE_DIR = fileURLToPath(new URL('../../../test/go-yamux/', import.meta.url));
const PEER_SOURCES = ['main.go', 'go.mod'] as const;

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Go's environment for an offline module build that touches nothing outside the temp dir. */
function goEnvironment(): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: tmpdir(),
    GOCACHE: join(tmpdir(), 'warren-go-cache'),
    GOPATH: join(tmpdir(), 'warren-gopath'),
    GOFLAGS: '-mod=mod',
    GOPROXY: 'off',
    GOSUMDB: 'off',
    GOTOOLCHAIN: 'local',
    GO111MODULE: 'on',
    CGO_ENABLED: '0',
  };
}

/**
 * Builds the Go peer (once per source hash) and returns the binary's path.
 * Throws with the apt-get command when Go or the yamux sources are missing.
 */
export async function buildGoYamuxPeer(): Promise<string> {
  const missing = `install them with: apt-get install -y ${GO_YAMUX_APT_PACKAGES.join(' ')}`;
  if (!(await exists(join(GO_YAMUX_MODULE_DIR, 'session.go')))) {
    throw new Error(`hashicorp/yamux sources are not in ${GO_YAMUX_MODULE_DIR}; ${missing}`);
  }
  let goVersion: string;
  try {
    goVersion = (await execFileAsync('go', ['version'], { env: goEnvironment() })).stdout;
  } catch (error) {
    throw new Error(`the Go toolchain is not usable (${String(error)}); ${missing}`, {
      cause: error,
    });
  }
  const hash = createHash('sha256').update(goVersion);
  for (const name of PEER_SOURCES)
    hash.update(name).update(await readFile(join(PEER_SOURCE_DIR, name)));
  for (const name of (await readdir(GO_YAMUX_MODULE_DIR))
    .filter((file) => file.endsWith('.go'))
    .sort()) {
    hash.update(name).update(await readFile(join(GO_YAMUX_MODULE_DIR, name)));
  }
  const cacheDir = join(tmpdir(), `warren-go-yamux-${hash.digest('hex').slice(0, 16)}`);
  const binary = join(cacheDir, 'yamux-peer');
  if (await exists(binary)) return binary;

  const buildDir = await mkdtemp(join(tmpdir(), 'warren-go-yamux-build-'));
  try {
    for (const name of PEER_SOURCES)
      await copyFile(join(PEER_SOURCE_DIR, name), join(buildDir, name));
    const output = join(buildDir, 'yamux-peer');
    try {
      await execFileAsync('go', ['build', '-o', output, '.'], {
        cwd: buildDir,
        env: goEnvironment(),
        timeout: 180_000,
      });
    } catch (error) {
      const stderr = (error as { stderr?: string }).stderr ?? '';
      throw new Error(`building the Go yamux peer failed: ${stderr || String(error)}`, {
        cause: error,
      });
    }
    await mkdir(cacheDir, { recursive: true });
    await rename(output, binary); // atomic: a concurrent run sees all or nothing
  } finally {
    await rm(buildDir, { recursive: true, force: true });
  }
  return binary;
}

/** A running yamux-peer. */
export class GoYamuxPeer {
  readonly child: ChildProcessWithoutNullStreams;
  private readonly lines: string[] = [];
  private stderrText = '';
  private readonly waiters: (() => void)[] = [];

  private constructor(child: ChildProcessWithoutNullStreams) {
    this.child = child;
    createInterface({ input: child.stdout }).on('line', (line) => {
      this.lines.push(line);
      for (const wake of this.waiters.splice(0)) wake();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      this.stderrText += chunk.toString();
    });
    child.on('exit', () => {
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  /** Starts the peer and waits for its first line ("listening ADDR" or "connected"). */
  static async start(
    binary: string,
    args: readonly string[],
  ): Promise<{ peer: GoYamuxPeer; firstLine: string }> {
    const child = spawn(binary, [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const peer = new GoYamuxPeer(child);
    const firstLine = await peer.nextLine(10_000);
    return { peer, firstLine };
  }

  get stderr(): string {
    return this.stderrText;
  }

  /** The next line the peer prints (lines are consumed in order). */
  async nextLine(timeoutMs: number): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (this.lines.length === 0) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`yamux-peer exited (${String(this.child.exitCode)}): ${this.stderrText}`);
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0)
        throw new Error(`yamux-peer printed nothing in ${timeoutMs} ms: ${this.stderrText}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remaining);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    const line = this.lines.shift();
    if (line === undefined) throw new Error('no line');
    return line;
  }

  /** Stops the peer: closes its stdin (it exits by itself) and kills it by pid. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.stdin.end();
    if (child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGTERM');
      } catch {
        // Already gone.
      }
    }
    await exited;
  }
}
