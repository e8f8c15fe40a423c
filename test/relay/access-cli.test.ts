/**
 * `warren expose … --basic-auth / --basic-auth-file / --allow-ip` as a command
 * in a child process: the flags reach the relay (401 without, 200 with the
 * credentials, through an in-process relay on 127.0.0.1), and bad values stop
 * the command with a non-zero exit and a message naming the flag.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exitOf, startCli, untilPrinted } from './cli-process.js';
import type { RunningCli } from './cli-process.js';
import { DOMAIN, RelayFixture, exchange, statusOf, tcpConnect } from './relay-fixture.js';

/** `warren expose ARGS…` */
function start(args: string[]): RunningCli {
  return startCli(['expose', ...args]);
}

describe('warren expose access flags', () => {
  let fixture: RelayFixture;
  let token: string;
  const children: RunningCli[] = [];

  before(async () => {
    fixture = await RelayFixture.create();
    await fixture.startRelay();
    token = await fixture.token({ name: 'cli', subdomains: ['*'], tcp: true });
  });

  after(async () => {
    for (const running of children) {
      if (running.child.exitCode === null) {
        running.child.kill('SIGTERM');
        await exitOf(running);
      }
    }
    await fixture.close();
  });

  it('passes --basic-auth, --basic-auth-file and --allow-ip to the relay', async () => {
    const app = await fixture.httpServer((request, response) => {
      response.end(request.headers.authorization ?? 'no authorization header');
    });
    const authFile = join(fixture.dir, 'users.txt');
    await writeFile(authFile, '# tunnel users\nbob:from-file\n\n');
    const expose = start([
      'http',
      String(app.port),
      '--relay',
      `127.0.0.1:${fixture.ports.agent}`,
      '--server-name',
      DOMAIN,
      '--ca',
      fixture.cert.caCertPath,
      '--token',
      token,
      '--subdomain',
      'cli',
      '--no-inspect',
      '--basic-auth',
      'ann:pw1',
      '--basic-auth-file',
      authFile,
      '--allow-ip',
      '203.0.113.0/24',
      '--allow-ip',
      '127.0.0.0/8',
    ]);
    children.push(expose);
    await untilPrinted(expose, /^https:\/\/cli\.tunnel\.test:\d+ -> /m);
    const host = `cli.${DOMAIN}`;
    const request = (extra: string): string => `GET / HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`;
    const basic = (text: string): string =>
      `Authorization: Basic ${Buffer.from(text).toString('base64')}\r\n`;
    for (const [extra, status] of [
      ['', 401],
      [basic('ann:pw1'), 200],
      [basic('bob:from-file'), 200],
      [basic('bob:pw1'), 401],
    ] as const) {
      const socket = fixture.track(await tcpConnect(fixture.ports.http));
      const [response] = await exchange(socket, request(extra));
      assert.equal(statusOf(response), status, extra);
      if (status === 200) assert.match(response ?? '', /no authorization header$/);
      socket.destroy();
    }
    expose.child.kill('SIGTERM');
    assert.equal(await exitOf(expose), 0);
  });

  it('exits non-zero naming the flag for bad values', async () => {
    const common = ['--relay', '127.0.0.1:1', '--token', 'T', '--no-inspect'];
    const tooMany = Array.from({ length: 65 }, (_, i) => ['--allow-ip', `192.0.2.${i}`]).flat();
    const cases: [string[], number, RegExp][] = [
      [['http', '3000', '--allow-ip', '203.0.113.0/33'], 2, /--allow-ip\[0\].*prefix length/],
      [['tcp', '5432', '--allow-ip', 'not-an-ip'], 2, /--allow-ip\[0\].*bad address/],
      [['http', '3000', ...tooMany], 2, /--allow-ip must list 1-64/],
      [['http', '3000', '--basic-auth', 'no-colon'], 2, /--basic-auth\[0\] must be USER:PASSWORD/],
      [['tcp', '5432', '--basic-auth', 'a:b'], 2, /--basic-auth is for http/],
      [
        ['http', '3000', '--basic-auth-file', '/nonexistent/users'],
        1,
        /cannot read --basic-auth-file \/nonexistent\/users: no such file/,
      ],
      [['http', '3000', '--ca', '/nonexistent/ca.crt'], 1, /cannot read the CA file/],
    ];
    for (const [args, code, pattern] of cases) {
      const running = start([...args, ...common]);
      assert.equal(await exitOf(running), code, args.join(' ').slice(0, 80));
      assert.match(running.stderr, pattern);
    }
  });

  it('documents the flags in --help', async () => {
    const help = start(['--help']);
    assert.equal(await exitOf(help), 0);
    for (const flag of ['--basic-auth USER:PASS', '--basic-auth-file FILE', '--allow-ip CIDR']) {
      assert.ok(help.stdout.includes(flag), flag);
    }
  });
});
