/**
 * `warren relay --admin-listen/--admin-token-file` in a child process: the
 * bound admin port is printed, /metrics needs the token, a non-loopback admin
 * address without a token is refused, and 'off' disables the listener.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { devRelayArgs, startCli } from './cli-process.js';
import type { RunningCli } from './cli-process.js';

const ADMIN_TOKEN = 'cli-admin-token-abcdef0123456789';

interface Ports {
  agent: number;
  https: number;
  http: number;
  admin: number | null;
}

describe('warren relay admin options', () => {
  let dir: string;
  const children: RunningCli[] = [];

  const start = (extra: string[]): RunningCli => {
    const running = startCli(devRelayArgs(dir, extra));
    children.push(running);
    return running;
  };

  const portsOf = async (running: RunningCli): Promise<Ports> => {
    const deadline = performance.now() + 15_000;
    for (;;) {
      const line = /^\{.*\}$/m.exec(running.stdout);
      if (line !== null) return JSON.parse(line[0]) as Ports;
      if (running.child.exitCode !== null || performance.now() > deadline) {
        throw new Error(`no ports; stdout ${running.stdout}; stderr ${running.stderr}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };

  const exitOf = async (running: RunningCli): Promise<number | null> => {
    if (running.child.exitCode !== null) return running.child.exitCode;
    const [code] = (await once(running.child, 'exit')) as [number | null];
    return code;
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-dashboard-cli-'));
  });

  after(async () => {
    for (const running of children) {
      if (running.child.exitCode === null) running.child.kill('SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
  });

  it('serves /metrics on --admin-listen behind --admin-token-file', async () => {
    const tokenFile = join(dir, 'admin-token');
    await writeFile(tokenFile, `${ADMIN_TOKEN}\n`, { mode: 0o600 });
    const relay = start(['--admin-listen', '127.0.0.1:0', '--admin-token-file', tokenFile]);
    const ports = await portsOf(relay);
    assert.ok(ports.admin !== null && ports.admin > 0);
    assert.match(relay.stderr, /admin on http:\/\/127\.0\.0\.1:\d+\/ \(bearer token/);
    const url = `http://127.0.0.1:${ports.admin}/metrics`;
    assert.equal((await fetch(url)).status, 401);
    const scraped = await fetch(url, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    assert.equal(scraped.status, 200);
    assert.match(await scraped.text(), /^warren_relay_agents_connected 0$/m);
    relay.child.kill('SIGTERM');
    assert.equal(await exitOf(relay), 0);
  });

  it('refuses a non-loopback admin address without a token, and says why', async () => {
    const relay = start(['--admin-listen', '0.0.0.0:0']);
    assert.equal(await exitOf(relay), 1);
    assert.match(relay.stderr, /without an admin token the admin listener must be on loopback/);
  });

  it('has no admin listener with --admin-listen off, and says loopback-only otherwise', async () => {
    const off = start(['--admin-listen', 'off']);
    assert.equal((await portsOf(off)).admin, null);
    off.child.kill('SIGTERM');
    assert.equal(await exitOf(off), 0);

    const open = start(['--admin-listen', '127.0.0.1:0']);
    const ports = await portsOf(open);
    assert.match(open.stderr, /no --admin-token-file: loopback only/);
    const reply = await fetch(`http://127.0.0.1:${ports.admin ?? 0}/api/status`);
    assert.equal(reply.status, 200);
    assert.equal(((await reply.json()) as { domain: string }).domain, 'tunnel.test');
    open.child.kill('SIGTERM');
    assert.equal(await exitOf(open), 0);
  });
});
