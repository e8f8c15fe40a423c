/**
 * The agent's local inspector end to end on 127.0.0.1: requests through a real
 * relay and agent are recorded (GET, POST, chunked, keep-alive, truncated
 * bodies, unparseable responses), listed by the inspector's API and its SSE
 * stream, and replayed to the local service; the inspector's web defences
 * (Host check against DNS rebinding, CSRF on replay, no XSS in the page).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { createServer } from 'node:net';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Script } from 'node:vm';
import { InspectorServer, REPLAY_HEADER } from '../../src/relay/inspector/server.js';
import { TrafficRecorder } from '../../src/relay/inspector/recorder.js';
import type { RecordedExchange } from '../../src/relay/inspector/recorder.js';
import {
  DOMAIN,
  RelayFixture,
  bodyOf,
  exchange,
  portOf,
  readUntil,
  statusOf,
  tcpConnect,
  waitFor,
  httpAsk,
} from './relay-fixture.js';
import type { HttpAnswer } from './relay-fixture.js';

type Answer = HttpAnswer;

interface BodyJson {
  size: number;
  capturedSize: number;
  truncated: boolean;
  encoding: 'text' | 'base64';
  data: string;
}
interface Details {
  id: number;
  state: string;
  replayOf: number | null;
  tunnel: string | null;
  method: string | null;
  target: string | null;
  status: number | null;
  error: string | null;
  upgrade: boolean;
  request: { method: string; target: string; headers: [string, string][]; body: BodyJson } | null;
  response: { status: number; headers: [string, string][]; body: BodyJson } | null;
  rawSample: BodyJson | null;
}

function parseJson(answer: Answer): unknown {
  assert.equal(answer.status, 200, answer.body);
  assert.match(String(answer.headers['content-type']), /^application\/json/);
  return JSON.parse(answer.body);
}

function parseList(answer: Answer): Details[] {
  return parseJson(answer) as Details[];
}

function parseOne(answer: Answer): Details {
  return parseJson(answer) as Details;
}

describe('the local inspector', () => {
  let fixture: RelayFixture;
  let recorder: TrafficRecorder;
  let inspector: InspectorServer;
  let seenBodies: string[];
  let countCalls: number;
  let closeRaw: () => void = () => undefined;
  let appPort: number;
  let inspectToken: string;

  before(async () => {
    fixture = await RelayFixture.create();
    await fixture.startRelay();
    seenBodies = [];
    countCalls = 0;
    const app = await fixture.httpServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        const url = request.url ?? '/';
        if (url === '/chunked') {
          response.write('first,');
          response.write('second,');
          response.end('third');
        } else if (url === '/big') {
          response.end(Buffer.alloc(100 * 1024, 0x62));
        } else if (url === '/xss') {
          response.setHeader('X-Evil', '<script>alert(1)</script>');
          response.end('<script>alert(2)</script><img src=x onerror=alert(3)>');
        } else if (url.startsWith('/count')) {
          countCalls++;
          seenBodies.push(body);
          response.end(`call ${countCalls} body ${body.length}`);
        } else {
          response.setHeader('content-type', 'application/json');
          response.end(JSON.stringify({ method: request.method, url, body }));
        }
      });
    });
    // A "service" that answers /garbage with bytes that are not HTTP.
    const raw = createServer((socket: Socket) => {
      socket.on('error', () => undefined);
      socket.on('data', (chunk: Buffer) => {
        if (chunk.toString('latin1').startsWith('GET /garbage')) {
          socket.end('\x00\x01 NOT HTTP AT ALL\r\n\r\n');
        } else {
          socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok');
        }
      });
    });
    raw.listen(0, '127.0.0.1');
    await once(raw, 'listening');
    closeRaw = () => {
      raw.close();
    };

    appPort = app.port;
    recorder = new TrafficRecorder({ bodyLimit: 64 * 1024 });
    inspector = await InspectorServer.start({ recorder, port: 0 });
    inspectToken = await fixture.token({ name: 'inspect', subdomains: ['app', 'raw', 'boom'] });
    const agent = fixture.agent(
      inspectToken,
      [
        { proto: 'http', localPort: app.port, subdomain: 'app' },
        { proto: 'http', localPort: portOf(raw), subdomain: 'raw' },
      ],
      { inspector: recorder },
    );
    const tunnels = await agent.ready();
    assert.deepEqual(
      tunnels.map((tunnel) => tunnel.state),
      ['open', 'open'],
    );
  });

  after(async () => {
    await inspector.close();
    await fixture.close();
    closeRaw();
  });

  function recorded(predicate: (exchange: RecordedExchange) => boolean): RecordedExchange[] {
    return recorder.list().filter(predicate);
  }

  async function settled(target: string): Promise<RecordedExchange> {
    let found: RecordedExchange | undefined;
    await waitFor(() => {
      found = recorded((entry) => entry.request?.target === target && entry.state !== 'pending').at(
        -1,
      );
      return found !== undefined;
    }, `the exchange for ${target}`);
    assert.ok(found !== undefined);
    return found;
  }

  it('records GET, POST, chunked, keep-alive and truncated exchanges and lists them', async () => {
    const host = `app.${DOMAIN}`;
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    // A keep-alive pair on one connection.
    const [first] = await exchange(socket, `GET /hello?a=1 HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    const [posted] = await exchange(
      socket,
      `POST /form HTTP/1.1\r\nHost: ${host}\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world`,
    );
    assert.equal(statusOf(first), 200);
    assert.equal(statusOf(posted), 200);
    // A chunked response (read until its last chunk).
    socket.write(`GET /chunked HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    const chunked = await readUntil(socket, (bytes) => bytes.includes('\r\n0\r\n\r\n'));
    assert.match(chunked.toString(), /transfer-encoding: chunked/i);
    // A large response body, truncated in the record.
    const [big] = await exchange(socket, `GET /big HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    assert.equal(bodyOf(big).length, 100 * 1024);
    socket.destroy();

    const hello = await settled('/hello?a=1');
    const form = await settled('/form');
    const chunkedExchange = await settled('/chunked');
    const bigExchange = await settled('/big');

    const list = parseList(await httpAsk(inspector.port, 'GET', '/api/requests'));
    const byTarget = new Map(list.map((summary) => [summary.target, summary]));
    assert.equal(byTarget.get('/hello?a=1')?.method, 'GET');
    assert.equal(byTarget.get('/hello?a=1')?.status, 200);
    assert.equal(byTarget.get('/form')?.method, 'POST');
    assert.equal(byTarget.get('/chunked')?.state, 'complete');
    assert.equal(byTarget.get('/big')?.tunnel, `https://app.${DOMAIN}:${fixture.ports.https}`);

    const formDetails = parseOne(await httpAsk(inspector.port, 'GET', `/api/requests/${form.id}`));
    assert.equal(formDetails.request?.body.data, 'hello world');
    assert.equal(formDetails.request.body.encoding, 'text');
    assert.ok(
      formDetails.request.headers.some(
        ([name, value]) => name.toLowerCase() === 'x-forwarded-for' && value === '127.0.0.1',
      ),
      'the request as the local service got it, relay headers included',
    );
    assert.equal(
      (JSON.parse(formDetails.response?.body.data ?? '{}') as { body: string }).body,
      'hello world',
    );

    const helloDetails = parseOne(
      await httpAsk(inspector.port, 'GET', `/api/requests/${hello.id}`),
    );
    assert.equal(helloDetails.state, 'complete');
    assert.equal(helloDetails.request?.body.size, 0);

    const chunkedDetails = parseOne(
      await httpAsk(inspector.port, 'GET', `/api/requests/${chunkedExchange.id}`),
    );
    assert.equal(chunkedDetails.response?.body.data, 'first,second,third', 'de-chunked');

    const bigDetails = parseOne(
      await httpAsk(inspector.port, 'GET', `/api/requests/${bigExchange.id}`),
    );
    assert.equal(bigDetails.response?.body.size, 100 * 1024);
    assert.equal(bigDetails.response.body.capturedSize, 64 * 1024);
    assert.equal(bigDetails.response.body.truncated, true);

    assert.equal((await httpAsk(inspector.port, 'GET', '/api/requests/999999')).status, 404);
  });

  it('replays a request to the local service and records it as a replay', async () => {
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    const [answer] = await exchange(
      socket,
      `POST /count HTTP/1.1\r\nHost: app.${DOMAIN}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n`,
    );
    socket.destroy();
    assert.equal(bodyOf(answer), `call ${countCalls} body 3`);
    const original = await settled('/count');
    const callsBefore = countCalls;

    const replayed = parseOne(
      await httpAsk(inspector.port, 'POST', `/api/requests/${original.id}/replay`, {
        [REPLAY_HEADER]: 'replay',
        origin: `http://127.0.0.1:${inspector.port}`,
      }),
    );
    assert.equal(countCalls, callsBefore + 1, 'the local service got the replay');
    assert.equal(seenBodies.at(-1), 'abc');
    assert.equal(replayed.replayOf, original.id);
    assert.equal(replayed.state, 'complete');
    assert.equal(replayed.response?.body.data, `call ${countCalls} body 3`);
    assert.notEqual(replayed.id, original.id);
    const listed = parseList(await httpAsk(inspector.port, 'GET', '/api/requests'));
    assert.equal(listed.find((summary) => summary.id === replayed.id)?.replayOf, original.id);
  });

  it('refuses to replay a truncated request body', async () => {
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    const body = 'x'.repeat(70 * 1024);
    const [answer] = await exchange(
      socket,
      `POST /count/big HTTP/1.1\r\nHost: app.${DOMAIN}\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
    );
    socket.destroy();
    assert.equal(statusOf(answer), 200);
    const original = await settled('/count/big');
    assert.equal(original.request?.body.truncated, true);
    const calls = countCalls;
    const refused = await httpAsk(inspector.port, 'POST', `/api/requests/${original.id}/replay`, {
      [REPLAY_HEADER]: '1',
    });
    assert.equal(refused.status, 409);
    assert.match(refused.body, /truncated/);
    assert.equal(countCalls, calls);
  });

  it('protects replay against CSRF', async () => {
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    await exchange(socket, `GET /count/csrf HTTP/1.1\r\nHost: app.${DOMAIN}\r\n\r\n`);
    socket.destroy();
    const original = await settled('/count/csrf');
    const calls = countCalls;
    const path = `/api/requests/${original.id}/replay`;
    // A cross-site form post: no custom header.
    assert.equal(
      (
        await httpAsk(inspector.port, 'POST', path, {
          origin: 'http://evil.example',
          'content-type': 'application/x-www-form-urlencoded',
        })
      ).status,
      403,
    );
    assert.equal((await httpAsk(inspector.port, 'POST', path)).status, 403);
    // The header, but from another origin or site.
    assert.equal(
      (
        await httpAsk(inspector.port, 'POST', path, {
          [REPLAY_HEADER]: '1',
          origin: 'http://evil.example',
        })
      ).status,
      403,
    );
    assert.equal(
      (
        await httpAsk(inspector.port, 'POST', path, {
          [REPLAY_HEADER]: '1',
          'sec-fetch-site': 'cross-site',
        })
      ).status,
      403,
    );
    assert.equal((await httpAsk(inspector.port, 'GET', path)).status, 405);
    assert.equal(countCalls, calls, 'nothing was replayed');
    assert.equal(
      (
        await httpAsk(inspector.port, 'POST', path, {
          [REPLAY_HEADER]: '1',
          'sec-fetch-site': 'same-origin',
        })
      ).status,
      200,
    );
    assert.equal(countCalls, calls + 1);
  });

  it('answers only to localhost or an IP literal with its port (DNS rebinding)', async () => {
    const port = inspector.port;
    for (const host of [
      `evil.example:${port}`,
      `127.0.0.1:${port + 1}`,
      '127.0.0.1',
      `localhost.evil.example:${port}`,
    ]) {
      const answer = await httpAsk(port, 'GET', '/api/requests', { host });
      assert.equal(answer.status, 403, host);
      assert.doesNotMatch(answer.body, /\[/, 'no data leaks');
    }
    assert.equal(
      (await httpAsk(port, 'GET', '/api/requests', { host: `localhost:${port}` })).status,
      200,
    );
    assert.equal((await httpAsk(port, 'GET', '/', { host: `[::1]:${port}` })).status, 200);
  });

  it('serves a page with a strict CSP that never embeds recorded data', async () => {
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    const [answer] = await exchange(
      socket,
      `GET /xss HTTP/1.1\r\nHost: app.${DOMAIN}\r\nX-Also: <script>alert(4)</script>\r\n\r\n`,
    );
    socket.destroy();
    assert.match(answer ?? '', /<script>alert\(2\)/);
    const xss = await settled('/xss');

    const page = await httpAsk(inspector.port, 'GET', '/');
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    const csp = String(page.headers['content-security-policy']);
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/=]+'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.doesNotMatch(page.body, /alert\(/, 'no recorded data in the page');
    assert.equal(page.body.match(/<script/g)?.length, 1, 'only the page own script');
    assert.doesNotMatch(page.body, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/);
    assert.match(page.body, /textContent/);
    // The CSP hashes must match the inline script and style, or browsers block them.
    const script = /<script>([\s\S]*)<\/script>/.exec(page.body)?.[1] ?? '';
    const style = /<style>([\s\S]*)<\/style>/.exec(page.body)?.[1] ?? '';
    assert.ok(
      csp.includes(`script-src 'sha256-${createHash('sha256').update(script).digest('base64')}'`),
    );
    assert.ok(
      csp.includes(`style-src 'sha256-${createHash('sha256').update(style).digest('base64')}'`),
    );
    assert.doesNotThrow(() => new Script(script), 'the page script compiles');

    // The data itself is served as JSON, never as HTML.
    const details = await httpAsk(inspector.port, 'GET', `/api/requests/${xss.id}`);
    assert.match(String(details.headers['content-type']), /^application\/json/);
    assert.equal(details.headers['x-content-type-options'], 'nosniff');
    const parsed = parseOne(details);
    assert.ok(parsed.response?.headers.some(([, value]) => value === '<script>alert(1)</script>'));
    assert.ok(parsed.request?.headers.some(([, value]) => value === '<script>alert(4)</script>'));
  });

  it('streams new exchanges as Server-Sent Events', async () => {
    const events = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
      const request = httpRequest(
        {
          host: '127.0.0.1',
          port: inspector.port,
          path: '/api/events',
          headers: { host: `127.0.0.1:${inspector.port}` },
        },
        resolve,
      );
      request.on('error', reject);
      request.end();
    });
    assert.match(String(events.headers['content-type']), /^text\/event-stream/);
    let text = '';
    events.on('data', (chunk: Buffer) => (text += chunk.toString()));
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    await exchange(socket, `GET /sse-check HTTP/1.1\r\nHost: app.${DOMAIN}\r\n\r\n`);
    socket.destroy();
    await waitFor(
      () =>
        text
          .split('\n\n')
          .some(
            (event) =>
              event.startsWith('event: exchange\ndata: {') &&
              event.includes('"target":"/sse-check"') &&
              event.includes('"state":"complete"'),
          ),
      'an SSE event for the exchange',
    );
    events.destroy();
  });

  it('records an unparseable response and the tunnel keeps working', async () => {
    const host = `raw.${DOMAIN}`;
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    socket.write(`GET /garbage HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    await readUntil(socket, () => false, 2_000).catch(() => Buffer.alloc(0));
    socket.destroy();
    let garbage: RecordedExchange | undefined;
    await waitFor(() => {
      garbage = recorded((entry) => entry.request?.target === '/garbage')[0];
      return garbage?.state === 'unparseable';
    }, 'the unparseable exchange');
    const details = parseOne(
      await httpAsk(inspector.port, 'GET', `/api/requests/${garbage?.id ?? 0}`),
    );
    assert.equal(details.state, 'unparseable');
    assert.match(details.error ?? '', /status line/);
    assert.equal(details.rawSample?.encoding, 'text');
    assert.match(details.rawSample.data, /NOT HTTP AT ALL/);

    // Both tunnels still work, and are still recorded.
    for (const [name, path] of [
      ['raw', '/fine'],
      ['app', '/after-garbage'],
    ] as const) {
      const again = fixture.track(await tcpConnect(fixture.ports.http));
      const [ok] = await exchange(again, `GET ${path} HTTP/1.1\r\nHost: ${name}.${DOMAIN}\r\n\r\n`);
      again.destroy();
      assert.equal(statusOf(ok), 200);
      assert.equal((await settled(path)).state, 'complete');
    }
  });

  it('keeps the tunnel working when the inspector itself fails', async () => {
    const failing = fixture.agent(
      inspectToken,
      [{ proto: 'http', localPort: appPort, subdomain: 'boom' }],
      {
        inspector: {
          openStream: () => ({
            fromClient: () => {
              throw new Error('inspector bug');
            },
            fromService: () => {
              throw new Error('inspector bug');
            },
            close: () => {
              throw new Error('inspector bug');
            },
          }),
        },
      },
    );
    assert.equal((await failing.ready())[0]?.state, 'open');
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    for (let i = 0; i < 3; i++) {
      const [answer] = await exchange(
        socket,
        `POST /echo HTTP/1.1\r\nHost: boom.${DOMAIN}\r\nContent-Length: 2\r\n\r\nhi`,
      );
      assert.equal(statusOf(answer), 200);
      assert.equal((JSON.parse(bodyOf(answer)) as { body: string }).body, 'hi');
    }
    socket.destroy();
    await failing.close();
  });

  it('keeps a bounded ring, also through the API', async () => {
    const small = new TrafficRecorder({ ringSize: 3 });
    const server = await InspectorServer.start({ recorder: small, port: 0 });
    try {
      for (let i = 0; i < 7; i++) {
        const tap = small.openStream({
          tunnelId: 't',
          url: undefined,
          localHost: '127.0.0.1',
          localPort: 9,
        });
        tap.fromClient(Buffer.from(`GET /r${i} HTTP/1.1\r\nHost: a\r\n\r\n`));
        tap.fromService(Buffer.from('HTTP/1.1 204 No Content\r\n\r\n'));
        tap.close();
      }
      const list = parseList(await httpAsk(server.port, 'GET', '/api/requests'));
      assert.deepEqual(
        list.map((summary) => summary.target),
        ['/r4', '/r5', '/r6'],
      );
      assert.equal((await httpAsk(server.port, 'GET', `/api/requests/1`)).status, 404);
    } finally {
      await server.close();
    }
  });

  it('tries the next ports when its port is taken', async () => {
    const blocker = createServer();
    blocker.listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const taken = portOf(blocker);
    try {
      const server = await InspectorServer.start({
        recorder: new TrafficRecorder(),
        port: taken,
        fallbackPorts: 9,
      });
      try {
        assert.ok(server.port > taken && server.port <= taken + 9, String(server.port));
        assert.equal(server.url, `http://127.0.0.1:${server.port}`);
      } finally {
        await server.close();
      }
      await assert.rejects(
        InspectorServer.start({ recorder: new TrafficRecorder(), port: taken }),
        /EADDRINUSE/,
      );
    } finally {
      blocker.close();
    }
  });
});
