/**
 * The relay and agent end to end on 127.0.0.1: HTTP(S), keep-alive,
 * pipelining, WebSocket, TCP, two agents, authentication and authorization,
 * X-Forwarded-*, refused requests, and reconnecting after a relay restart.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Agent, TunnelStatus } from '../../src/relay/agent.js';
import {
  NotPermittedError,
  RelayCertificateError,
  RelayError,
  TokenExpiredError,
  TokenInvalidError,
  TokenRevokedError,
} from '../../src/relay/errors.js';
import { ensureDevCertificate } from '../../src/relay/dev-ca.js';
import { openRelayStore } from '../../src/relay/store/open.js';
import {
  DOMAIN,
  RelayFixture,
  bodyOf,
  clientTextFrame,
  exchange,
  portOf,
  readUntil,
  serveWebSocketEcho,
  serverTextFrame,
  statusOf,
  tcpConnect,
  tlsConnect,
  waitFor,
  websocketAccept,
} from './relay-fixture.js';

interface Echo {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function get(path: string, host: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}\r\n`;
}

function echoOf(response: string | undefined): Echo {
  return JSON.parse(bodyOf(response)) as Echo;
}

async function fatalOf(agent: Agent): Promise<RelayError> {
  const [error] = (await once(agent, 'fatal')) as [RelayError];
  return error;
}

describe('relay and agent end to end', () => {
  let fixture: RelayFixture;
  let appToken: string;
  let appPort: number;
  let appConnections: () => number;
  let appAgent: Agent;

  before(async () => {
    fixture = await RelayFixture.create();
    await fixture.startRelay();
    const app = await fixture.httpServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const body: Echo = {
          method: request.method ?? '',
          url: request.url ?? '',
          headers: request.headers,
          body: Buffer.concat(chunks).toString(),
        };
        response.setHeader('content-type', 'application/json');
        response.end(JSON.stringify(body));
      });
    });
    serveWebSocketEcho(app.server);
    appPort = app.port;
    appConnections = app.connections;
    appToken = await fixture.token({ name: 'laptop', subdomains: ['app', 'dev-*'], tcp: true });
    appAgent = fixture.agent(appToken, [{ proto: 'http', localPort: appPort, subdomain: 'app' }]);
    const [status] = await appAgent.ready();
    assert.equal(status?.state, 'open');
    assert.equal(status.url, `https://app.${DOMAIN}:${fixture.ports.https}`);
  });

  after(async () => {
    await fixture.close();
  });

  it('forwards HTTP requests, several on one kept-alive connection, to one local connection', async () => {
    const before = appConnections();
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    for (let i = 0; i < 5; i++) {
      const [response] = await exchange(socket, get(`/req/${i}?q=${i}`, `app.${DOMAIN}`));
      assert.equal(statusOf(response), 200);
      const echo = echoOf(response);
      assert.equal(echo.url, `/req/${i}?q=${i}`);
      assert.equal(echo.headers.host, `app.${DOMAIN}`);
    }
    // A body with Content-Length and a chunked one.
    const [posted] = await exchange(
      socket,
      `POST /upload HTTP/1.1\r\nHost: app.${DOMAIN}\r\nContent-Length: 11\r\n\r\nhello world`,
    );
    assert.equal(echoOf(posted).body, 'hello world');
    const [chunked] = await exchange(
      socket,
      `POST /c HTTP/1.1\r\nHost: app.${DOMAIN}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n`,
    );
    assert.equal(echoOf(chunked).body, 'hello world');
    assert.equal(appConnections() - before, 1, 'one local connection served all seven requests');
    socket.destroy();
  });

  it('serves 250 public connections open at once to one agent', async () => {
    // Each connection is a yamux stream with the spec's 256 KiB window. The
    // relay used to take every window out of its 32 MiB per-session budget, so
    // the 129th connection got 503; now only maxStreamsPerSession limits them
    // (and maxConnectionsPerIp, 256, all of these come from 127.0.0.1).
    const count = 250;
    const sockets = await Promise.all(
      Array.from({ length: count }, async () =>
        fixture.track(await tcpConnect(fixture.ports.http)),
      ),
    );
    try {
      const responses = await Promise.all(
        sockets.map(async (socket, index) => {
          const [response] = await exchange(socket, get(`/many/${index}`, `app.${DOMAIN}`));
          return response;
        }),
      );
      assert.deepEqual(
        responses.map((response) => statusOf(response)),
        sockets.map(() => 200),
      );
      assert.deepEqual(
        responses.map((response) => echoOf(response).url),
        sockets.map((_, index) => `/many/${index}`),
      );
    } finally {
      for (const socket of sockets) socket.destroy();
    }
  });

  it('answers pipelined requests in order', async () => {
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    const responses = await exchange(
      socket,
      get('/p1', `app.${DOMAIN}`) + get('/p2', `app.${DOMAIN}`) + get('/p3', `app.${DOMAIN}`),
      3,
    );
    assert.deepEqual(
      responses.map((response) => echoOf(response).url),
      ['/p1', '/p2', '/p3'],
    );
    socket.destroy();
  });

  it('sets X-Forwarded-For/-Proto/-Host from the connection, over client-sent copies, on every request', async () => {
    const spoof =
      'X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n' +
      'Forwarded: for=6.6.6.6\r\nX-Real-IP: 6.6.6.6\r\nConnection: keep-alive, X-Forwarded-For\r\n';
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    for (let i = 0; i < 2; i++) {
      const echo = echoOf((await exchange(socket, get('/xff', `app.${DOMAIN}:8080`, spoof)))[0]);
      assert.equal(echo.headers['x-forwarded-for'], '127.0.0.1');
      assert.equal(echo.headers['x-forwarded-proto'], 'http');
      assert.equal(echo.headers['x-forwarded-host'], `app.${DOMAIN}:8080`);
      assert.equal(echo.headers.forwarded, undefined);
      assert.equal(echo.headers['x-real-ip'], undefined);
      assert.equal(echo.headers.connection, 'keep-alive');
    }
    socket.destroy();

    // Over HTTPS the relay terminates TLS with the wildcard certificate.
    const secure = fixture.track(
      await tlsConnect(fixture.ports.https, `app.${DOMAIN}`, fixture.ca),
    );
    const echo = echoOf((await exchange(secure, get('/tls', `app.${DOMAIN}`, spoof)))[0]);
    assert.equal(echo.headers['x-forwarded-proto'], 'https');
    assert.equal(echo.headers['x-forwarded-for'], '127.0.0.1');
    secure.destroy();
  });

  it('passes a WebSocket upgrade through and echoes frames', async () => {
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    const key = randomBytes(16).toString('base64');
    socket.write(
      `GET /ws HTTP/1.1\r\nHost: app.${DOMAIN}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n` +
        `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n\r\n`,
    );
    const handshake = await readUntil(socket, (bytes) => bytes.includes('\r\n\r\n'));
    const text = handshake.toString('latin1');
    assert.equal(statusOf(text), 101);
    assert.match(
      text,
      new RegExp(`Sec-WebSocket-Accept: ${websocketAccept(key).replace(/[+/=]/g, '\\$&')}`),
    );
    for (const message of ['hello', 'through the tunnel', 'GET / HTTP/1.1']) {
      socket.write(clientTextFrame(message));
      const frame = await readUntil(socket, (bytes) => serverTextFrame(bytes) !== null);
      assert.equal(serverTextFrame(frame), message);
    }
    socket.destroy();
  });

  it('keeps framing (and rewriting) requests after a refused upgrade', async () => {
    // No Sec-WebSocket-Key: the local server answers 400 and keeps HTTP.
    const plain = await fixture.httpServer((request, response) => {
      response.end(JSON.stringify({ url: request.url, headers: request.headers }));
    });
    const token = await fixture.token({ name: 'plain', subdomains: ['plain'] });
    const agent = fixture.agent(token, [
      { proto: 'http', localPort: plain.port, subdomain: 'plain' },
    ]);
    await agent.ready();
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    // Without an 'upgrade' listener, Node's server answers the upgrade request as a plain one.
    const [refused] = await exchange(
      socket,
      get('/ws', `plain.${DOMAIN}`, 'Connection: Upgrade\r\nUpgrade: websocket\r\n'),
    );
    assert.equal(statusOf(refused), 200);
    const [next] = await exchange(
      socket,
      get('/after', `plain.${DOMAIN}`, 'X-Forwarded-For: 6.6.6.6\r\n'),
    );
    assert.equal(echoOf(next).headers['x-forwarded-for'], '127.0.0.1');
    socket.destroy();
    await agent.close();
  });

  it('pipes a TCP tunnel both ways, half-close included', async () => {
    const echo = await fixture.echoServer();
    const agent = fixture.agent(appToken, [{ proto: 'tcp', localPort: echo.port }]);
    const [status] = await agent.ready();
    assert.ok(status?.port !== undefined && status.port >= 42000 && status.port <= 42999);
    assert.equal(status.url, `tcp://${DOMAIN}:${status.port}`);
    const payload = randomBytes(3 * 1024 * 1024);
    const socket = fixture.track(await tcpConnect(status.port));
    const received = readUntil(socket, () => false, 15_000);
    socket.end(payload);
    const back = await received;
    assert.equal(
      createHash('sha256').update(back).digest('hex'),
      createHash('sha256').update(payload).digest('hex'),
    );
    await agent.close();
  });

  it('routes two agents with different subdomains to their own services', async () => {
    const one = await fixture.httpServer((_request, response) => response.end('one'));
    const two = await fixture.httpServer((_request, response) => response.end('two'));
    const tokenOne = await fixture.token({ name: 'one', subdomains: ['one'] });
    const tokenTwo = await fixture.token({ name: 'two', subdomains: ['two'] });
    const agentOne = fixture.agent(tokenOne, [{ proto: 'http', localPort: one.port }]);
    const agentTwo = fixture.agent(tokenTwo, [{ proto: 'http', localPort: two.port }]);
    assert.equal((await agentOne.ready())[0]?.name, 'one');
    assert.equal((await agentTwo.ready())[0]?.name, 'two');
    for (const [name, expected] of [
      ['one', 'one'],
      ['two', 'two'],
      ['one', 'one'],
    ] as const) {
      const socket = fixture.track(await tcpConnect(fixture.ports.http));
      assert.equal(bodyOf((await exchange(socket, get('/', `${name}.${DOMAIN}`)))[0]), expected);
      socket.destroy();
    }
    await agentOne.close();
    await agentTwo.close();
  });

  it('verifies a relay named by its IP address against that address, with no SNI (RFC 6066)', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => {
      warnings.push(warning);
    };
    process.on('warning', onWarning);
    try {
      const app = await fixture.httpServer((_request, response) => {
        response.end('by address');
      });
      const token = await fixture.token({ name: 'by-ip', subdomains: ['ip'] });
      // The dev certificate carries IP:127.0.0.1.
      const agent = fixture.agent(
        token,
        [{ proto: 'http', localPort: app.port, subdomain: 'ip' }],
        {
          servername: '127.0.0.1',
        },
      );
      assert.equal(
        (await agent.ready())[0]?.url,
        `https://ip.${DOMAIN}:${String(fixture.ports.https)}`,
      );
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(
        warnings.map((warning) => warning.message),
        [],
        'no DEP0123 (an IP address as TLS ServerName)',
      );

      // An address the certificate does not carry is refused, and said so.
      const wrong = fixture.agent(
        token,
        [{ proto: 'http', localPort: app.port, subdomain: 'ip' }],
        {
          servername: '127.0.0.2',
        },
      );
      const [error] = (await once(wrong, 'disconnected')) as [Error];
      assert.ok(error instanceof RelayCertificateError, String(error));
      assert.equal(error.code, 'ERR_RELAY_CERTIFICATE');
      assert.equal(error.reason, 'name');
      assert.match(error.message, /127\.0\.0\.2/);
      await wrong.close();
      await agent.close();
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('refuses a relay certificate from a CA it was not given (ERR_RELAY_CERTIFICATE, untrusted)', async () => {
    const otherCa = await ensureDevCertificate(join(fixture.dir, 'other'), 'other.test');
    const agent = fixture.agent(appToken, [{ proto: 'http', localPort: appPort }], {
      ca: readFileSync(otherCa.caCertPath),
    });
    const [error] = (await once(agent, 'disconnected')) as [Error];
    assert.ok(error instanceof RelayCertificateError, String(error));
    assert.equal(error.reason, 'untrusted');
    assert.match(error.message, /certificate of the relay at 127\.0\.0\.1:\d+ was refused/);
    await agent.close();
  });

  it('refuses a bad token, an expired one, and a subdomain or TCP the token does not allow', async () => {
    const forged = fixture.agent(appToken.slice(0, -2) + (appToken.endsWith('AA') ? 'BB' : 'AA'), [
      { proto: 'http', localPort: appPort },
    ]);
    assert.ok((await fatalOf(forged)) instanceof TokenInvalidError);

    const expiredToken = await fixture.token({
      name: 'old',
      expiresAt: Math.floor(Date.now() / 1000) - 1,
    });
    const expired = fixture.agent(expiredToken, [{ proto: 'http', localPort: appPort }]);
    assert.ok((await fatalOf(expired)) instanceof TokenExpiredError);

    const narrow = await fixture.token({ name: 'narrow', subdomains: ['app'] });
    const wrongName = fixture.agent(narrow, [
      { proto: 'http', localPort: appPort, subdomain: 'other' },
    ]);
    const refusal = once(wrongName, 'tunnel-refused') as Promise<[TunnelStatus, boolean]>;
    const gaveUp = fatalOf(wrongName);
    const [refusedStatus, permanent] = await refusal;
    assert.ok(refusedStatus.error instanceof NotPermittedError);
    assert.equal(permanent, true);
    assert.ok((await gaveUp) instanceof NotPermittedError, 'every tunnel refused: gives up');

    const partial = await fixture.token({ name: 'partial', subdomains: ['partial'] });
    const noTcp = fixture.agent(partial, [
      { proto: 'tcp', localPort: appPort },
      { proto: 'http', localPort: appPort },
    ]);
    const statuses = await noTcp.ready();
    assert.deepEqual(
      statuses.map((status) => [status.state, status.error?.code, status.name]),
      [
        ['refused', 'ERR_RELAY_NOT_PERMITTED', undefined],
        ['open', undefined, 'partial'],
      ],
    );
    await noTcp.close();
    // The name 'other' was never registered.
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    assert.equal(statusOf((await exchange(socket, get('/', `other.${DOMAIN}`)))[0]), 404);
  });

  it('refuses absolute-form, CONNECT and h2c requests with 400, an unknown host with 404', async () => {
    const requests = [
      `GET http://app.${DOMAIN}/ HTTP/1.1\r\nHost: app.${DOMAIN}\r\n\r\n`,
      `CONNECT app.${DOMAIN}:443 HTTP/1.1\r\nHost: app.${DOMAIN}:443\r\n\r\n`,
      get(
        '/',
        `app.${DOMAIN}`,
        'Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n',
      ),
    ];
    for (const request of requests) {
      const socket = fixture.track(await tcpConnect(fixture.ports.http));
      const [response] = await exchange(socket, request);
      assert.equal(statusOf(response), 400, request.split('\r\n')[0]);
      assert.match(response ?? '', /Connection: close/);
      await once(socket, 'end');
      socket.destroy();
    }
    for (const host of ['nothing.tunnel.test', DOMAIN, 'a.b.tunnel.test', 'example.org']) {
      const socket = fixture.track(await tcpConnect(fixture.ports.http));
      assert.equal(statusOf((await exchange(socket, get('/', host)))[0]), 404, host);
      socket.destroy();
    }
  });

  it('closes a kept-alive connection whose next request names another host (421)', async () => {
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    assert.equal(statusOf((await exchange(socket, get('/', `app.${DOMAIN}`)))[0]), 200);
    const [misdirected] = await exchange(socket, get('/', `other.${DOMAIN}`));
    assert.equal(statusOf(misdirected), 421);
    await once(socket, 'end');
    socket.destroy();
  });

  it('answers 502 for a tunnel whose agent left, and for a local service that is down', async () => {
    const token = await fixture.token({ name: 'gone', subdomains: ['gone', 'down'] });
    const agent = fixture.agent(token, [{ proto: 'http', localPort: appPort, subdomain: 'gone' }]);
    await agent.ready();
    await agent.close();
    await waitFor(
      () => !fixture.relay?.tunnelsInfo().some((tunnel) => tunnel.name === 'gone'),
      'tunnel removed',
    );
    let socket = fixture.track(await tcpConnect(fixture.ports.http));
    assert.equal(statusOf((await exchange(socket, get('/', `gone.${DOMAIN}`)))[0]), 502);
    socket.destroy();

    const closed = await fixture.httpServer(() => undefined);
    closed.server.close();
    const down = fixture.agent(token, [
      { proto: 'http', localPort: closed.port, subdomain: 'down' },
    ]);
    await down.ready();
    socket = fixture.track(await tcpConnect(fixture.ports.http));
    const [response] = await exchange(socket, get('/', `down.${DOMAIN}`));
    assert.equal(statusOf(response), 502);
    assert.match(bodyOf(response), /not reachable/);
    socket.destroy();
    await down.close();
  });

  it('refuses new tunnels once the token is revoked, ending the session', async () => {
    const token = await fixture.token({ name: 'revocable', subdomains: ['rev-*'] });
    const agent = fixture.agent(token, [{ proto: 'http', localPort: appPort, subdomain: 'rev-1' }]);
    await agent.ready();
    const store = await openRelayStore({ dataDir: fixture.dir });
    assert.equal((await store.revokeToken('revocable')).length, 1);
    await store.close();
    // A new agent with the revoked token is refused at hello.
    const again = fixture.agent(token, [{ proto: 'http', localPort: appPort, subdomain: 'rev-2' }]);
    assert.ok((await fatalOf(again)) instanceof TokenRevokedError);
  });

  it('reconnects after the relay restarts and serves the same URL again', async () => {
    const ports = fixture.ports;
    const urlBefore = appAgent.tunnels[0]?.url;
    const disconnected = once(appAgent, 'disconnected');
    await fixture.stopRelay(200);
    await disconnected;
    await fixture.startRelay({}, ports);
    const [reopened] = (await once(appAgent, 'tunnel')) as [TunnelStatus];
    assert.equal(reopened.url, urlBefore);
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    const [response] = await exchange(socket, get('/after-restart', `app.${DOMAIN}`));
    assert.equal(echoOf(response).url, '/after-restart');
    socket.destroy();
  });
});

describe('one TLS port for agents and HTTPS clients', () => {
  let fixture: RelayFixture;

  before(async () => {
    fixture = await RelayFixture.create();
  });

  after(async () => {
    await fixture.close();
  });

  it('tells agents (ALPN warren-relay/1) from HTTPS clients (http/1.1) on the same port', async () => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const port = portOf(probe);
    probe.close();
    await fixture.startRelay({}, { agent: port, https: port });
    assert.equal(fixture.ports.agent, fixture.ports.https);
    const app = await fixture.httpServer((request, response) => {
      response.end(`proto ${String(request.headers['x-forwarded-proto'])}`);
    });
    const token = await fixture.token({ name: 'shared', subdomains: ['app'] });
    const agent = fixture.agent(token, [{ proto: 'http', localPort: app.port }]);
    assert.equal((await agent.ready())[0]?.url, `https://app.${DOMAIN}:${port}`);
    const socket = fixture.track(await tlsConnect(port, `app.${DOMAIN}`, fixture.ca));
    const [response] = await exchange(socket, get('/', `app.${DOMAIN}`));
    assert.equal(bodyOf(response), 'proto https');
    socket.destroy();
  });
});
