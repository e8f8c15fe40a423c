/**
 * `warren expose --inspect ADDR` / `--no-inspect` in child processes. No relay
 * is needed: the agent keeps retrying 127.0.0.1:1 (refused) while its
 * inspector serves.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { portOf } from './relay-fixture.js';

const RUNNER = fileURLToPath(new URL('./cli-runner.js', import.meta.url));

interface Running {
  readonly child: ChildProcessWithoutNullStreams;
  stdout: string;
  stderr: string;
}

const children: Running[] = [];

function start(args: string[]): Running {
  const child = spawn(process.execPath, [RUNNER, 'expose', ...args], { stdio: 'pipe' });
  const running: Running = { child, stdout: '', stderr: '' };
  child.stdout.on('data', (chunk: Buffer) => (running.stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (running.stderr += chunk.toString()));
  children.push(running);
  return running;
}

async function until(running: Running, pattern: RegExp): Promise<RegExpExecArray> {
  const deadline = performance.now() + 10_000;
  for (;;) {
    const match = pattern.exec(running.stderr);
    if (match !== null) return match;
    if (running.child.exitCode !== null || performance.now() > deadline) {
      throw new Error(`no ${String(pattern)}; stderr ${running.stderr}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function exitOf(running: Running): Promise<number | null> {
  if (running.child.exitCode !== null) return running.child.exitCode;
  const [code] = (await once(running.child, 'exit')) as [number | null];
  return code;
}

/** A port that was free a moment ago. */
async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = portOf(server);
  server.close();
  await once(server, 'close');
  return port;
}

const AGENT_ARGS = ['http', '3000', '--relay', '127.0.0.1:1', '--token', 'not-a-real-token'];

describe('warren expose --inspect', () => {
  after(() => {
    for (const running of children) {
      if (running.child.exitCode === null) running.child.kill('SIGKILL');
    }
  });

  it('serves the inspector on the address given and stops with the agent', async () => {
    const port = await freePort();
    const expose = start([...AGENT_ARGS, '--inspect', `127.0.0.1:${port}`]);
    const [, url] = await until(expose, /inspector: (http:\/\/127\.0\.0\.1:\d+)\n/);
    assert.equal(url, `http://127.0.0.1:${port}`);
    const list = await fetch(`${url}/api/requests`);
    assert.equal(list.status, 200);
    assert.deepEqual(await list.json(), []);
    const page = await fetch(`${url}/`);
    assert.match(await page.text(), /warren inspector/);
    await until(expose, /reconnecting in/);
    expose.child.kill('SIGTERM');
    assert.equal(await exitOf(expose), 0);
    await assert.rejects(fetch(`${url}/api/requests`), 'the inspector closed with the agent');
  });

  it('has no inspector with --no-inspect, and refuses contradictory or unusable flags', async () => {
    const quiet = start([...AGENT_ARGS, '--no-inspect']);
    await until(quiet, /reconnecting in/);
    assert.doesNotMatch(quiet.stderr, /inspector/);
    quiet.child.kill('SIGTERM');
    assert.equal(await exitOf(quiet), 0);

    const both = start([...AGENT_ARGS, '--no-inspect', '--inspect', '127.0.0.1:4999']);
    assert.equal(await exitOf(both), 2);
    assert.match(both.stderr, /contradict/);

    const blocker = createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    try {
      const taken = start([...AGENT_ARGS, '--inspect', `127.0.0.1:${portOf(blocker)}`]);
      assert.equal(await exitOf(taken), 1);
      assert.match(taken.stderr, /cannot start the inspector: .*EADDRINUSE/);
    } finally {
      blocker.close();
    }
  });
});
