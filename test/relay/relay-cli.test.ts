/**
 * `warren relay` and `warren expose` as commands, in child processes: token
 * management, a relay with --dev-ca, an agent from the command line, curl
 * through HTTPS with the dev CA's wildcard certificate, revocation, SIGTERM.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { portOf } from './relay-fixture.js';

const RUNNER = fileURLToPath(new URL('./cli-runner.js', import.meta.url));
const run = promisify(execFile);

interface Running {
  readonly child: ChildProcessWithoutNullStreams;
  stdout: string;
  stderr: string;
}

function start(args: string[]): Running {
  const child = spawn(process.execPath, [RUNNER, ...args], { stdio: 'pipe' });
  const running: Running = { child, stdout: '', stderr: '' };
  child.stdout.on('data', (chunk: Buffer) => (running.stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (running.stderr += chunk.toString()));
  return running;
}

async function until(
  running: Running,
  pattern: RegExp,
  stream: 'stdout' | 'stderr' = 'stdout',
  timeoutMs = 10_000,
): Promise<RegExpExecArray> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const match = pattern.exec(running[stream]);
    if (match !== null) return match;
    if (running.child.exitCode !== null || performance.now() > deadline) {
      throw new Error(`no ${String(pattern)}; stdout ${running.stdout}; stderr ${running.stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function exitOf(running: Running): Promise<number | null> {
  if (running.child.exitCode !== null) return running.child.exitCode;
  const [code] = (await once(running.child, 'exit')) as [number | null];
  return code;
}

describe('warren relay / warren expose commands', () => {
  let dir: string;
  let local: Server;
  const children: Running[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-relay-cli-'));
    local = createServer((request, response) => {
      response.end(
        `local saw ${request.url ?? ''} for ${String(request.headers['x-forwarded-host'])}`,
      );
    });
    local.listen(0, '127.0.0.1');
    await once(local, 'listening');
  });

  after(async () => {
    for (const running of children)
      if (running.child.exitCode === null) running.child.kill('SIGKILL');
    local.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('creates, lists and revokes tokens', async () => {
    const created = await run(process.execPath, [
      RUNNER,
      'relay',
      'token',
      'create',
      '--data-dir',
      dir,
      '--name',
      'ci',
      '--subdomain',
      'web',
      '--expires',
      '1d',
    ]);
    assert.match(created.stdout, /^wrn1\.\S+\n$/);
    const listed = await run(process.execPath, [
      RUNNER,
      'relay',
      'token',
      'list',
      '--data-dir',
      dir,
    ]);
    assert.match(listed.stdout, /^[0-9a-f]{32} {2}ci {2}\[web\] {2}no tcp {2}expires 20\d\d-/);
    const revoked = await run(process.execPath, [
      RUNNER,
      'relay',
      'token',
      'revoke',
      '--data-dir',
      dir,
      'ci',
    ]);
    assert.match(revoked.stderr, /revoked token 'ci'/);
    assert.match(
      (await run(process.execPath, [RUNNER, 'relay', 'token', 'list', '--data-dir', dir])).stdout,
      /REVOKED/,
    );
    await assert.rejects(
      run(process.execPath, [
        RUNNER,
        'relay',
        'token',
        'create',
        '--data-dir',
        dir,
        '--name',
        'x',
        '--subdomain',
        'a.b',
      ]),
      (error: { code?: number }) => error.code === 2,
    );
  });

  it('serves an exposed port over HTTPS with the dev CA, and both exit 0 on SIGTERM', async () => {
    const { stdout: token } = await run(process.execPath, [
      RUNNER,
      'relay',
      'token',
      'create',
      '--data-dir',
      dir,
      '--name',
      'laptop',
      '--subdomain',
      'web',
    ]);
    const tokenFile = join(dir, 'agent-token');
    await writeFile(tokenFile, token, { mode: 0o600 });
    const relay = start([
      'relay',
      '--domain',
      'tunnel.test',
      '--data-dir',
      dir,
      '--dev-ca',
      '--agent-listen',
      '127.0.0.1:0',
      '--https-listen',
      '127.0.0.1:0',
      '--http-listen',
      '127.0.0.1:0',
      '--tcp-host',
      '127.0.0.1',
      '--tcp-ports',
      '43000-43099',
    ]);
    children.push(relay);
    const ports = JSON.parse((await until(relay, /^\{.*\}$/m))[0]) as {
      agent: number;
      https: number;
      http: number;
    };
    const ca = join(dir, 'dev-ca', 'ca.crt');
    const expose = start([
      'expose',
      'http',
      String(portOf(local)),
      '--relay',
      `127.0.0.1:${ports.agent}`,
      '--server-name',
      'tunnel.test',
      '--token-file',
      tokenFile,
      '--ca',
      ca,
    ]);
    children.push(expose);
    const url = (
      await until(expose, /^(https:\/\/web\.tunnel\.test:\d+) -> http:\/\/127\.0\.0\.1:\d+$/m)
    )[1];
    assert.equal(url, `https://web.tunnel.test:${ports.https}`);
    const curl = await run('curl', [
      '-sS',
      '--fail',
      '--cacert',
      ca,
      '--resolve',
      `web.tunnel.test:${ports.https}:127.0.0.1`,
      `${url}/hello`,
    ]);
    assert.equal(curl.stdout, `local saw /hello for web.tunnel.test:${ports.https}`);

    relay.child.kill('SIGTERM');
    assert.equal(await exitOf(relay), 0);
    await until(expose, /reconnecting in/, 'stderr');
    assert.equal(expose.child.exitCode, null, 'the agent keeps trying');
    expose.child.kill('SIGTERM');
    assert.equal(await exitOf(expose), 0);
  });

  it('exits 1 when the relay refuses the token, 2 on bad usage', async () => {
    const relay = start([
      'relay',
      '--domain',
      'tunnel.test',
      '--data-dir',
      dir,
      '--dev-ca',
      '--agent-listen',
      '127.0.0.1:0',
      '--https-listen',
      'off',
      '--http-listen',
      '127.0.0.1:0',
    ]);
    children.push(relay);
    const ports = JSON.parse((await until(relay, /^\{.*\}$/m))[0]) as { agent: number };
    const expose = start([
      'expose',
      'http',
      '8080',
      '--relay',
      `127.0.0.1:${ports.agent}`,
      '--token',
      'wrn1.bogus.token',
      '--ca',
      join(dir, 'dev-ca', 'ca.crt'),
    ]);
    children.push(expose);
    assert.equal(await exitOf(expose), 1);
    assert.match(expose.stderr, /ERR_RELAY_TOKEN_INVALID/);
    const usage = start(['expose', 'ftp', '21', '--relay', 'x']);
    assert.equal(await exitOf(usage), 2);
    relay.child.kill('SIGTERM');
    assert.equal(await exitOf(relay), 0);
  });
});
