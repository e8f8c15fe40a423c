/**
 * Test fixture: a throw-away PostgreSQL cluster for the store's tests.
 *
 * Debian's server binaries (/usr/lib/postgresql/15/bin, the `postgresql`
 * package) run as the `postgres` user (PostgreSQL refuses to run as root):
 * `initdb` into a temporary directory, then `postgres` itself as our child, so
 * we hold its pid. It listens on no TCP address at all (listen_addresses=''),
 * only on a unix socket inside that directory. Durability is off (fsync,
 * synchronous_commit, full_page_writes): the data is thrown away, and start-up
 * and every test are faster. stop() sends SIGINT (PostgreSQL's "fast shutdown")
 * to that pid, waits for it to exit, and removes the directory.
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { chown, mkdtemp, rm, stat } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';

export const POSTGRES_BIN = '/usr/lib/postgresql/15/bin';
/** The unprivileged user the cluster runs as when the tests run as root. */
const CLUSTER_USER = 'postgres';
const PORT = 5432;

interface UserIds {
  readonly uid: number;
  readonly gid: number;
}

async function run(command: string, args: readonly string[]): Promise<void> {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  if (code !== 0)
    throw new Error(`${command} ${args.join(' ')} failed (${String(code)}): ${stderr}`);
}

async function userIds(name: string): Promise<UserIds> {
  const child = spawn('id', ['-u', name], { stdio: ['ignore', 'pipe', 'ignore'] });
  let uid = '';
  child.stdout.on('data', (chunk: Buffer) => (uid += chunk.toString()));
  await once(child, 'exit');
  const group = spawn('id', ['-g', name], { stdio: ['ignore', 'pipe', 'ignore'] });
  let gid = '';
  group.stdout.on('data', (chunk: Buffer) => (gid += chunk.toString()));
  await once(group, 'exit');
  const ids = { uid: Number(uid.trim()), gid: Number(gid.trim()) };
  if (!Number.isInteger(ids.uid) || !Number.isInteger(ids.gid) || uid.trim() === '') {
    throw new Error(`no user '${name}' to run PostgreSQL as`);
  }
  return ids;
}

/** The command prefix that runs a binary as the cluster's user (nothing when not root). */
function asClusterUser(
  ids: UserIds | null,
  binary: string,
  args: readonly string[],
): [string, string[]] {
  if (ids === null) return [binary, [...args]];
  // setpriv execs (no fork, unlike runuser/su): the child's pid is postgres's own.
  return [
    'setpriv',
    [
      `--reuid=${String(ids.uid)}`,
      `--regid=${String(ids.gid)}`,
      '--init-groups',
      '--',
      binary,
      ...args,
    ],
  ];
}

export class PostgresCluster {
  private stopped = false;

  private constructor(
    /** The temporary directory: data/ and the unix socket. */
    readonly dir: string,
    private readonly server: ChildProcess,
    private readonly log: () => string,
  ) {}

  /** initdb + start; resolves once the server accepts connections. */
  static async start(): Promise<PostgresCluster> {
    const ids = userInfo().uid === 0 ? await userIds(CLUSTER_USER) : null;
    const dir = await mkdtemp(join(tmpdir(), 'warren-pg-test-'));
    let server: ChildProcess | null = null;
    try {
      if (ids !== null) await chown(dir, ids.uid, ids.gid);
      const data = join(dir, 'data');
      await run(
        ...asClusterUser(ids, join(POSTGRES_BIN, 'initdb'), [
          '-D',
          data,
          '-U',
          'postgres',
          '--auth=trust',
          '--no-sync',
          '--no-instructions',
          '-E',
          'UTF8',
          '--locale=C',
        ]),
      );
      const [command, args] = asClusterUser(ids, join(POSTGRES_BIN, 'postgres'), [
        '-D',
        data,
        '-k',
        dir,
        '-p',
        String(PORT),
        '-c',
        'listen_addresses=', // no TCP at all: the unix socket only
        '-c',
        'fsync=off',
        '-c',
        'synchronous_commit=off',
        '-c',
        'full_page_writes=off',
        '-c',
        'max_connections=40',
        '-c',
        'shared_buffers=16MB',
      ]);
      server = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      let log = '';
      server.stderr?.on('data', (chunk: Buffer) => {
        log = (log + chunk.toString()).slice(-8192);
      });
      const cluster = new PostgresCluster(dir, server, () => log);
      await cluster.waitReady();
      return cluster;
    } catch (error) {
      if (server?.pid !== undefined && server.exitCode === null) {
        server.kill('SIGKILL');
        await once(server, 'exit');
      }
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /** The URL of database `name` on this cluster (over the unix socket). */
  url(name = 'postgres'): string {
    return `postgresql://postgres@/${name}?host=${encodeURIComponent(this.dir)}&port=${String(PORT)}`;
  }

  /** Creates an empty database with a fresh name and returns its URL. */
  async createDatabase(): Promise<string> {
    const name = `warren_${randomBytes(6).toString('hex')}`;
    const client = new pg.Client({ connectionString: this.url() });
    await client.connect();
    try {
      await client.query(`CREATE DATABASE ${name}`);
    } finally {
      await client.end();
    }
    return this.url(name);
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.server.exitCode === null && this.server.signalCode === null) {
      const exited = once(this.server, 'exit');
      // SIGINT: fast shutdown (disconnect clients, stop cleanly).
      this.server.kill('SIGINT');
      const timer = setTimeout(() => this.server.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    await rm(this.dir, { recursive: true, force: true });
  }

  private async waitReady(): Promise<void> {
    const socket = join(this.dir, `.s.PGSQL.${String(PORT)}`);
    const deadline = performance.now() + 30_000;
    for (;;) {
      if (this.server.exitCode !== null) {
        throw new Error(`postgres exited (${String(this.server.exitCode)}): ${this.log()}`);
      }
      if (performance.now() > deadline) throw new Error(`postgres did not start: ${this.log()}`);
      try {
        await stat(socket);
        const client = new pg.Client({ connectionString: this.url() });
        await client.connect();
        await client.end();
        return;
      } catch {
        await sleep(25);
      }
    }
  }
}
