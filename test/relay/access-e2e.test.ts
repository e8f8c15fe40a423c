/**
 * Per-tunnel basic auth and IP allowlists end to end on 127.0.0.1: 401 with a
 * challenge, 200 with the right credentials, every keep-alive request checked,
 * the Authorization header never reaching the local service, allowlists that
 * admit or refuse the (loopback) client for HTTP and TCP tunnels, and the
 * refusals counted by rule.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Agent } from '../../src/relay/agent.js';
import type { RefusalCount } from '../../src/relay/relay.js';
import {
  DOMAIN,
  RelayFixture,
  bodyOf,
  exchange,
  readUntil,
  statusOf,
  tcpConnect,
} from './relay-fixture.js';

function get(path: string, host: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`;
}

function authorization(userPassword: string): string {
  return `Authorization: Basic ${Buffer.from(userPassword).toString('base64')}\r\n`;
}

function headerOf(response: string | undefined, name: string): string | undefined {
  const head = (response ?? '').split('\r\n\r\n')[0] ?? '';
  const match = new RegExp(`^${name}: *(.*)$`, 'im').exec(head);
  return match?.[1];
}

describe('per-tunnel basic auth and IP allowlists', () => {
  let fixture: RelayFixture;
  let seenAuthorization: (string | undefined)[];
  let appPort: number;
  let token: string;

  async function openAgent(
    tunnels: Parameters<RelayFixture['agent']>[1],
  ): Promise<{ agent: Agent; urls: string[] }> {
    const agent = fixture.agent(token, tunnels);
    const statuses = await agent.ready();
    for (const status of statuses) assert.equal(status.state, 'open', status.error?.message);
    return { agent, urls: statuses.map((status) => status.url ?? '') };
  }

  function refusals(reason: string): RefusalCount[] {
    const relay = fixture.relay;
    if (relay === null) throw new Error('no relay');
    return relay.stats().refusedTotal.filter((refusal) => refusal.reason === reason);
  }

  before(async () => {
    fixture = await RelayFixture.create();
    await fixture.startRelay();
    seenAuthorization = [];
    const app = await fixture.httpServer((request, response) => {
      seenAuthorization.push(request.headers.authorization);
      response.setHeader('content-type', 'text/plain');
      response.end(`hello ${request.url ?? ''}`);
    });
    appPort = app.port;
    token = await fixture.token({ name: 'laptop', subdomains: ['*'], tcp: true });
    await openAgent([
      {
        proto: 'http',
        localPort: appPort,
        subdomain: 'locked',
        basicAuth: ['ann:s3cret', 'bob:x:y'],
      },
      {
        proto: 'http',
        localPort: appPort,
        subdomain: 'loopback',
        allowIps: ['127.0.0.0/8', '::1'],
      },
      {
        proto: 'http',
        localPort: appPort,
        subdomain: 'faraway',
        allowIps: ['203.0.113.0/24', '::1'],
      },
      {
        proto: 'http',
        localPort: appPort,
        subdomain: 'both',
        allowIps: ['127.0.0.1'],
        basicAuth: ['ann:s3cret'],
      },
    ]);
  });

  after(async () => {
    await fixture.close();
  });

  it('answers 401 with a challenge without credentials and with wrong ones', async () => {
    const before = seenAuthorization.length;
    const host = `locked.${DOMAIN}`;
    for (const extra of [
      '',
      authorization('ann:wrong'),
      authorization('eve:s3cret'),
      'Authorization: Bearer x\r\n',
    ]) {
      const socket = fixture.track(await tcpConnect(fixture.ports.http));
      const [response] = await exchange(socket, get('/', host, extra));
      assert.equal(statusOf(response), 401, extra);
      assert.equal(
        headerOf(response, 'WWW-Authenticate'),
        `Basic realm="${host}", charset="UTF-8"`,
      );
      socket.destroy();
    }
    assert.equal(seenAuthorization.length, before, 'no refused request reached the local app');
    const [counted, ...others] = refusals('basic-auth');
    assert.equal(others.length, 0);
    assert.ok(counted !== undefined);
    assert.equal(counted.status, 401);
    assert.equal(counted.listener, 'http');
    assert.ok(counted.count >= 4);
  });

  it('forwards with the right credentials and strips Authorization before the local app', async () => {
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    const host = `locked.${DOMAIN}`;
    const [first] = await exchange(socket, get('/a', host, authorization('ann:s3cret')));
    assert.equal(statusOf(first), 200);
    assert.equal(bodyOf(first), 'hello /a');
    const [second] = await exchange(socket, get('/b', host, authorization('bob:x:y')));
    assert.equal(statusOf(second), 200, 'a second user, a password with a colon');
    assert.deepEqual(seenAuthorization.slice(-2), [undefined, undefined]);
    socket.destroy();
  });

  it('checks every request on a kept-alive connection', async () => {
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    const host = `locked.${DOMAIN}`;
    const before = seenAuthorization.length;
    const [ok] = await exchange(socket, get('/1', host, authorization('ann:s3cret')));
    assert.equal(statusOf(ok), 200);
    const [refused] = await exchange(socket, get('/2', host));
    assert.equal(statusOf(refused), 401, 'the second request had no credentials');
    assert.equal(seenAuthorization.length - before, 1);
    socket.destroy();
  });

  it('admits clients inside the HTTP allowlist and refuses the rest with 403', async () => {
    const inside = fixture.track(await tcpConnect(fixture.ports.http));
    const [ok] = await exchange(inside, get('/in', `loopback.${DOMAIN}`));
    assert.equal(statusOf(ok), 200);
    assert.equal(bodyOf(ok), 'hello /in');
    inside.destroy();

    const before = seenAuthorization.length;
    const outside = fixture.track(await tcpConnect(fixture.ports.http));
    // X-Forwarded-For is the client's word, not its address: it changes nothing.
    const [refused] = await exchange(
      outside,
      get('/out', `faraway.${DOMAIN}`, 'X-Forwarded-For: 203.0.113.5\r\n'),
    );
    assert.equal(statusOf(refused), 403);
    assert.equal(seenAuthorization.length, before);
    outside.destroy();
    const counted = refusals('ip-allowlist').filter((refusal) => refusal.listener === 'http');
    assert.equal(counted[0]?.status, 403);
  });

  it('applies both rules on one tunnel', async () => {
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    const host = `both.${DOMAIN}`;
    const [refused] = await exchange(socket, get('/', host));
    assert.equal(statusOf(refused), 401);
    socket.destroy();
    const again = fixture.track(await tcpConnect(fixture.ports.http));
    const [ok] = await exchange(again, get('/', host, authorization('ann:s3cret')));
    assert.equal(statusOf(ok), 200);
    again.destroy();
  });

  it('admits TCP clients inside the allowlist and closes the others at accept', async () => {
    const echo = await fixture.echoServer();
    const { urls } = await openAgent([
      { proto: 'tcp', localPort: echo.port, allowIps: ['127.0.0.1/32'] },
      { proto: 'tcp', localPort: echo.port, allowIps: ['198.51.100.0/24', '::1/128'] },
    ]);
    const portOfUrl = (url: string | undefined): number => Number(/:(\d+)$/.exec(url ?? '')?.[1]);

    const allowed = fixture.track(await tcpConnect(portOfUrl(urls[0])));
    allowed.write('ping');
    const echoed = await readUntil(allowed, (bytes) => bytes.length >= 4);
    assert.equal(echoed.toString(), 'ping');
    allowed.destroy();

    const before = refusals('ip-allowlist').find((r) => r.listener === 'tcp')?.count ?? 0;
    const denied = fixture.track(await tcpConnect(portOfUrl(urls[1])));
    denied.on('error', () => undefined);
    denied.write('ping');
    const received = await readUntil(denied, () => false);
    assert.equal(received.length, 0, 'closed without a byte');
    const after = refusals('ip-allowlist').find((r) => r.listener === 'tcp');
    assert.equal(after?.status, 0);
    assert.equal(after.count, before + 1);
  });
});
