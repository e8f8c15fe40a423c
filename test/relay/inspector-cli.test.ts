/**
 * `warren expose --inspect ADDR` / `--no-inspect` in child processes. No relay
 * is needed: the agent keeps retrying 127.0.0.1:1 (refused) while its
 * inspector serves.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { after, describe, it } from 'node:test';
import { exitOf, startCli, untilPrinted } from './cli-process.js';
import type { RunningCli } from './cli-process.js';
import { portOf } from './relay-fixture.js';

const children: RunningCli[] = [];

/** `warren expose ARGS…`, killed after the tests if still running. */
function start(args: string[]): RunningCli {
  const running = startCli(['expose', ...args]);
  children.push(running);
  return running;
}

/** What the agent prints about its inspector and its connection goes to stderr. */
function until(running: RunningCli, pattern: RegExp): Promise<RegExpExecArray> {
  return untilPrinted(running, pattern, 'stderr');
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
      assert.match(
        taken.stderr,
        /cannot start the inspector on 127\.0\.0\.1:\d+: .*EADDRINUSE.*--no-inspect/,
      );
    } finally {
      blocker.close();
    }
  });
});
