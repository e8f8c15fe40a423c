/**
 * `warren relay` and `warren expose` as commands, in child processes: token
 * management, a relay with --dev-ca, an agent from the command line, curl
 * through HTTPS with the dev CA's wildcard certificate, revocation, SIGTERM.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { CLI_RUNNER, devRelayArgs, exitOf, startCli, untilPrinted } from './cli-process.js';
import type { RunningCli } from './cli-process.js';
import { portOf } from './relay-fixture.js';

const run = promisify(execFile);

describe('warren relay / warren expose commands', () => {
  let dir: string;
  let local: Server;
  const children: RunningCli[] = [];

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

  /** `warren relay token create` for SUBDOMAIN.tunnel.test: the token it prints. */
  const createToken = async (name: string, subdomain: string): Promise<string> =>
    (
      await run(process.execPath, [
        CLI_RUNNER,
        'relay',
        'token',
        'create',
        '--data-dir',
        dir,
        '--name',
        name,
        '--subdomain',
        subdomain,
      ])
    ).stdout.trim();

  /** A dev-CA relay with `extra` flags, and the ports it printed. */
  const startRelay = async (
    extra: string[],
  ): Promise<{ relay: RunningCli; ports: { agent: number; https: number } }> => {
    const relay = startCli(devRelayArgs(dir, extra));
    children.push(relay);
    const ports = JSON.parse((await untilPrinted(relay, /^\{.*\}$/m))[0]) as {
      agent: number;
      https: number;
    };
    return { relay, ports };
  };

  /** `warren expose http LOCAL_PORT` through the relay, trusting its dev CA: the agent and its URL. */
  const startExposeHttp = async (
    localPort: number,
    agentPort: number,
    subdomain: string,
    extra: string[],
  ): Promise<{ expose: RunningCli; url: string }> => {
    const expose = startCli([
      'expose',
      'http',
      String(localPort),
      '--relay',
      `127.0.0.1:${String(agentPort)}`,
      '--server-name',
      'tunnel.test',
      '--ca',
      join(dir, 'dev-ca', 'ca.crt'),
      ...extra,
    ]);
    children.push(expose);
    const printed = new RegExp(
      `^(https://${subdomain}\\.tunnel\\.test:\\d+) -> http://127\\.0\\.0\\.1:${String(localPort)}$`,
      'm',
    );
    return { expose, url: (await untilPrinted(expose, printed))[1] ?? '' };
  };

  /** curl through a tunnel's HTTPS URL (resolved to 127.0.0.1), trusting the dev CA. */
  const curlTunnel = async (url: string, path: string, ...options: string[]): Promise<string> => {
    const { hostname, port } = new URL(url);
    const { stdout } = await run('curl', [
      '-sS',
      ...options,
      '--cacert',
      join(dir, 'dev-ca', 'ca.crt'),
      '--resolve',
      `${hostname}:${port}:127.0.0.1`,
      `${url}${path}`,
    ]);
    return stdout;
  };

  it('creates, lists and revokes tokens', async () => {
    const created = await run(process.execPath, [
      CLI_RUNNER,
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
      CLI_RUNNER,
      'relay',
      'token',
      'list',
      '--data-dir',
      dir,
    ]);
    assert.match(listed.stdout, /^[0-9a-f]{32} {2}ci {2}\[web\] {2}no tcp {2}expires 20\d\d-/);
    const revoked = await run(process.execPath, [
      CLI_RUNNER,
      'relay',
      'token',
      'revoke',
      '--data-dir',
      dir,
      'ci',
    ]);
    assert.match(revoked.stderr, /revoked token 'ci'/);
    assert.match(
      (await run(process.execPath, [CLI_RUNNER, 'relay', 'token', 'list', '--data-dir', dir]))
        .stdout,
      /REVOKED/,
    );
    await assert.rejects(
      run(process.execPath, [
        CLI_RUNNER,
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
    const tokenFile = join(dir, 'agent-token');
    await writeFile(tokenFile, await createToken('laptop', 'web'), { mode: 0o600 });
    const { relay, ports } = await startRelay([
      '--tcp-host',
      '127.0.0.1',
      '--tcp-ports',
      '43000-43099',
      '--limit',
      'requests-per-second=1',
      '--limit',
      'request-burst=2',
    ]);
    const { expose, url } = await startExposeHttp(portOf(local), ports.agent, 'web', [
      '--token-file',
      tokenFile,
    ]);
    assert.equal(url, `https://web.tunnel.test:${ports.https}`);
    const curl = (path: string, ...options: string[]): Promise<string> =>
      curlTunnel(url, path, ...options);
    assert.equal(
      await curl('/hello', '--fail'),
      `local saw /hello for web.tunnel.test:${ports.https}`,
    );
    // --limit took effect: a burst of 2 at 1 request/s lets five at once not all pass.
    const statuses = await Promise.all(
      Array.from({ length: 5 }, () => curl('/burst', '-o', '/dev/null', '-w', '%{http_code}')),
    );
    assert.ok(statuses.includes('429'), `a 429 among ${statuses.join(', ')}`);
    assert.match(relay.stderr, /limits changed: requests-per-second=1, request-burst=2\n/);
    assert.ok(statuses.includes('200'), `a 200 among ${statuses.join(', ')}`);

    relay.child.kill('SIGTERM');
    assert.equal(await exitOf(relay), 0);
    await untilPrinted(expose, /reconnecting in/, 'stderr');
    assert.equal(expose.child.exitCode, null, 'the agent keeps trying');
    expose.child.kill('SIGTERM');
    assert.equal(await exitOf(expose), 0);
  });

  it('says once, without -v, that the local service is not reachable', async () => {
    const token = await createToken('down', 'down');
    const { relay, ports } = await startRelay([]);
    // A port nothing listens on: bound, then closed.
    const probe = createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const deadPort = portOf(probe);
    probe.close();
    const { expose, url } = await startExposeHttp(deadPort, ports.agent, 'down', [
      '--token',
      token,
      '--no-inspect',
    ]);
    for (let i = 0; i < 3; i++) {
      assert.equal(await curlTunnel(url, '/', '-o', '/dev/null', '-w', '%{http_code}'), '502');
    }
    await untilPrinted(expose, /could not be served/, 'stderr');
    assert.equal(
      expose.stderr.match(
        /a connection could not be served: .*ECONNREFUSED.* \(-v reports every one\)/g,
      )?.length,
      1,
      expose.stderr,
    );
    expose.child.kill('SIGTERM');
    assert.equal(await exitOf(expose), 0);
    relay.child.kill('SIGTERM');
    assert.equal(await exitOf(relay), 0);
  });

  it('exits 1 when the relay refuses the token, 2 on bad usage', async () => {
    const relay = startCli(devRelayArgs(dir, [], 'off'));
    children.push(relay);
    const ports = JSON.parse((await untilPrinted(relay, /^\{.*\}$/m))[0]) as { agent: number };
    /** `warren expose http 8080` to this relay with a bogus token, and `extra`. */
    const exposeWithBogusToken = (...extra: string[]): RunningCli => {
      const running = startCli([
        'expose',
        'http',
        '8080',
        '--relay',
        `127.0.0.1:${ports.agent}`,
        '--token',
        'wrn1.bogus.token',
        ...extra,
      ]);
      children.push(running);
      return running;
    };
    const expose = exposeWithBogusToken('--ca', join(dir, 'dev-ca', 'ca.crt'));
    assert.equal(await exitOf(expose), 1);
    assert.match(expose.stderr, /ERR_RELAY_TOKEN_INVALID/);
    // Without the dev CA the relay's certificate is refused, with a hint said once.
    const noCa = exposeWithBogusToken('--no-inspect');
    await untilPrinted(
      noCa,
      /certificate of the relay .* was refused[^]*reconnecting[^]*reconnecting/,
      'stderr',
    );
    noCa.child.kill('SIGTERM');
    assert.equal(await exitOf(noCa), 0);
    assert.equal(
      noCa.stderr.match(/hint: a relay with a private or dev CA needs that CA: --ca FILE/g)?.length,
      1,
    );
    const usage = startCli(['expose', 'ftp', '21', '--relay', 'x']);
    assert.equal(await exitOf(usage), 2);
    for (const [args, message] of [
      [['expose', 'http', '--relay', 'x'], /say which local port to expose: 'http PORT'/],
      [['expose', 'http', '0', '--relay', 'x'], /the local port: '0' is not a port/],
      [['expose', 'tcp', '22', '--remote-port', '70000', '--relay', 'x'], /--remote-port: '70000'/],
    ] as const) {
      const bad = startCli(args);
      assert.equal(await exitOf(bad), 2, args.join(' '));
      assert.match(bad.stderr, message);
    }
    const badLimit = startCli([
      'relay',
      '--domain',
      'tunnel.test',
      '--data-dir',
      dir,
      '--dev-ca',
      '--limit',
      'requests-per-minute=5',
    ]);
    assert.equal(await exitOf(badLimit), 2);
    assert.match(badLimit.stderr, /unknown limit 'requests-per-minute'/);
    const missingCert = startCli([
      'relay',
      '--domain',
      'tunnel.test',
      '--data-dir',
      dir,
      '--tls-cert',
      join(dir, 'no.crt'),
      '--tls-key',
      join(dir, 'no.key'),
      '--agent-listen',
      '127.0.0.1:0',
    ]);
    assert.equal(await exitOf(missingCert), 1);
    assert.match(missingCert.stderr, /cannot read --tls-cert \S+no\.crt: no such file/);
    relay.child.kill('SIGTERM');
    assert.equal(await exitOf(relay), 0);
  });
});
