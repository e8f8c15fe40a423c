/**
 * The relay under hostile input (the seed: "a tunnel that crashes on malformed
 * input takes down every customer on the same node"): slowloris clients,
 * garbage on the agent and HTTP ports, malformed control messages, oversized
 * heads, rate and connection limits, revocation of a live session and graceful
 * shutdown. Each bad connection must fail alone while a good client keeps
 * being served.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { connect as connectTls } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Agent } from '../../src/relay/agent.js';
import { FrameDecoder, encodeFrame, parseRelayMessage } from '../../src/relay/control.js';
import type { RelayMessage } from '../../src/relay/control.js';
import type { AgentRejectedEvent } from '../../src/relay/diagnostics.js';
import { relayDiagnostics } from '../../src/relay/diagnostics.js';
import { RelayClosedError, RelayError, TokenRevokedError } from '../../src/relay/errors.js';
import { Session, YamuxStreamResetError } from '../../src/relay/mux/index.js';
import { AGENT_ALPN } from '../../src/relay/relay.js';
import { openRelayStore } from '../../src/relay/store/open.js';
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
} from './relay-fixture.js';

function get(path: string, extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: app.${DOMAIN}\r\n${extra}\r\n`;
}

/** Keeps making requests on fresh connections until stopped; resolves with [ok, failed]. */
function goodClient(port: number, stop: () => boolean): Promise<[number, string[]]> {
  return (async () => {
    let ok = 0;
    const failures: string[] = [];
    while (!stop()) {
      try {
        const socket = await tcpConnect(port);
        const [response] = await exchange(socket, get(`/good/${ok}`));
        socket.destroy();
        if (statusOf(response) === 200 && bodyOf(response) === 'ok') ok++;
        else failures.push(response ?? 'no response');
      } catch (error) {
        failures.push(String(error));
      }
      await sleep(10);
    }
    return [ok, failures];
  })();
}

/** True if the relay closes (ends or resets) the connection within `ms`. */
async function closedWithin(socket: Socket, ms: number): Promise<boolean> {
  if (socket.destroyed || socket.readableEnded) return true;
  const closed = new Promise<boolean>((resolve) => {
    socket.once('end', () => {
      resolve(true);
    });
    socket.once('close', () => {
      resolve(true);
    });
  });
  socket.resume(); // 'end' comes only to a reader
  return Promise.race([closed, sleep(ms).then(() => false)]);
}

/** An agent-port TLS connection as an agent would open it, without the agent. */
async function agentTls(port: number, ca: Buffer): Promise<TLSSocket> {
  const socket = connectTls({
    host: '127.0.0.1',
    port,
    servername: DOMAIN,
    ca,
    ALPNProtocols: [AGENT_ALPN],
  });
  socket.on('error', () => undefined);
  await once(socket, 'secureConnect');
  return socket;
}

/** The size of /big, and how much of it the local service has handed to its socket. */
const BIG_BYTES = 512 * 1024 * 1024;
let bigWritten = 0;

/** Streams BIG_BYTES of 'a', writing only as fast as the socket takes it (backpressure). */
function serveBig(response: ServerResponse): void {
  bigWritten = 0;
  response.writeHead(200, { 'content-length': String(BIG_BYTES) });
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const pump = (): void => {
    while (bigWritten < BIG_BYTES) {
      bigWritten += chunk.length;
      if (!response.write(chunk)) {
        response.once('drain', pump);
        return;
      }
    }
    response.end();
  };
  pump();
}

describe('relay robustness', () => {
  let fixture: RelayFixture;
  let agent: Agent;
  const rejected: AgentRejectedEvent[] = [];
  const onRejected = (message: unknown): void => {
    rejected.push(message as AgentRejectedEvent);
  };

  before(async () => {
    subscribe(relayDiagnostics.agentRejected.name, onRejected);
    fixture = await RelayFixture.create();
    await fixture.startRelay({
      headersTimeoutMs: 400,
      authTimeoutMs: 400,
      handshakeTimeoutMs: 400,
      tokenRecheckIntervalMs: 100,
    });
    const app = await fixture.httpServer((request, response) => {
      if (request.url === '/big') {
        serveBig(response);
        return;
      }
      response.end('ok');
    });
    const token = await fixture.token({ name: 'laptop', subdomains: ['app'] });
    agent = fixture.agent(token, [{ proto: 'http', localPort: app.port, subdomain: 'app' }]);
    await agent.ready();
  });

  after(async () => {
    unsubscribe(relayDiagnostics.agentRejected.name, onRejected);
    await fixture.close();
  });

  it('answers slowloris clients 408 and closes them while a good client keeps working', async () => {
    const sessionBefore = fixture.relay?.sessionsInfo()[0]?.id;
    const slow: Socket[] = [];
    for (let i = 0; i < 20; i++) {
      const socket = fixture.track(await tcpConnect(fixture.ports.http));
      socket.write(`GET /slow HTTP/1.1\r\nHost: app.${DOMAIN}\r\n`);
      slow.push(socket);
    }
    const replies = slow.map((socket) => readUntil(socket, () => false, 5_000));
    let stopped = false;
    const good = goodClient(fixture.ports.http, () => stopped);
    // Trickle one header byte per socket every 50 ms: never a complete head.
    for (let tick = 0; tick < 12; tick++) {
      for (const socket of slow) if (!socket.destroyed && socket.writable) socket.write('X');
      await sleep(50);
    }
    const answers = (await Promise.all(replies)).map((bytes) => bytes.toString('latin1'));
    stopped = true;
    const [ok, failures] = await good;
    for (const answer of answers) assert.equal(statusOf(answer), 408);
    assert.deepEqual(failures, []);
    assert.ok(ok >= 10, `the good client got ${ok} answers`);
    assert.equal(
      fixture.relay?.sessionsInfo()[0]?.id,
      sessionBefore,
      'the agent session is untouched',
    );
  });

  it('holds a client that stops reading a large response to bounded buffers, then delivers all of it', async () => {
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    let received = 0;
    let headBytes = -1;
    let head = '';
    let stopAt: number | null = 4 * 1024 * 1024;
    socket.on('data', (chunk: Buffer) => {
      if (headBytes < 0) {
        head += chunk.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end >= 0) headBytes = end + 4;
      }
      received += chunk.length;
      if (stopAt !== null && received > stopAt) {
        stopAt = null;
        socket.pause();
      }
    });
    const memoryBefore = process.memoryUsage().arrayBuffers;
    socket.write(get('/big'));
    await waitFor(() => socket.isPaused(), 'the first 4 MiB', 10_000);
    // The service goes on writing until every buffer on the way is full: the
    // kernel's socket buffers (up to 32 MiB each here) and the yamux windows.
    let last = -1;
    const deadline = performance.now() + 20_000;
    while (bigWritten !== last) {
      assert.ok(performance.now() < deadline, 'the service never stalled');
      last = bigWritten;
      await sleep(300);
    }
    assert.ok(bigWritten < BIG_BYTES / 3, `only ${bigWritten >> 20} MiB of 512 left the service`);
    const held = process.memoryUsage().arrayBuffers - memoryBefore;
    assert.ok(held < 64 * 1024 * 1024, `relay and agent hold ${held >> 20} MiB`);
    // Other clients of the same tunnel are not held up meanwhile.
    const other = fixture.track(await tcpConnect(fixture.ports.http));
    const [answer] = await exchange(other, get('/other'));
    assert.equal(bodyOf(answer), 'ok');
    other.destroy();
    // Reading again, the client gets every byte.
    const done = new Promise<void>((resolve) => {
      socket.on('data', () => {
        if (received - headBytes === BIG_BYTES) resolve();
      });
    });
    socket.resume();
    await done;
    assert.match(head, /^HTTP\/1\.1 200 /);
    socket.destroy();
  });

  it('holds a client sending faster than the service behind a TCP tunnel reads to bounded buffers', async () => {
    // The service accepts and reads nothing until told to.
    let service: Socket | undefined;
    let serviceReceived = 0;
    const server = createNetServer((socket) => {
      socket.on('error', () => undefined);
      socket.pause();
      socket.on('data', (chunk: Buffer) => (serviceReceived += chunk.length));
      service = socket;
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const token = await fixture.token({ name: 'uploader', tcp: true });
      const uploader = fixture.agent(token, [{ proto: 'tcp', localPort: portOf(server) }]);
      const [status] = await uploader.ready();
      assert.ok(status?.port !== undefined);
      const client = fixture.track(await tcpConnect(status.port));
      const memoryBefore = process.memoryUsage().arrayBuffers;
      // Write as fast as the tunnel takes it, until it stops taking it.
      const chunk = Buffer.alloc(64 * 1024, 0x62);
      let sent = 0;
      let stalled = false;
      while (!stalled && sent < BIG_BYTES) {
        while (sent < BIG_BYTES && client.write(chunk)) sent += chunk.length;
        if (sent >= BIG_BYTES) break;
        sent += chunk.length; // the write that returned false was still taken
        stalled = !(await Promise.race([
          once(client, 'drain').then(() => true),
          sleep(1_000).then(() => false),
        ]));
      }
      assert.ok(stalled, 'the client was held back');
      assert.ok(sent < BIG_BYTES / 3, `only ${sent >> 20} MiB of 512 left the client`);
      const held = process.memoryUsage().arrayBuffers - memoryBefore;
      assert.ok(held < 64 * 1024 * 1024, `relay and agent hold ${held >> 20} MiB`);
      // The service reads: everything the client wrote arrives, nothing more.
      assert.ok(service !== undefined);
      service.resume();
      client.end();
      await waitFor(() => serviceReceived === sent, `all ${sent} bytes at the service`, 15_000);
      client.destroy();
      await uploader.close();
    } finally {
      service?.destroy();
      server.close();
    }
  });

  it('survives garbage floods on the agent and HTTP ports, each bad connection closed alone', async () => {
    const sessionBefore = fixture.relay?.sessionsInfo()[0]?.id;
    rejected.length = 0;
    let stopped = false;
    const good = goodClient(fixture.ports.http, () => stopped);
    const victims: Promise<boolean>[] = [];
    // Not TLS at all.
    for (let i = 0; i < 10; i++) {
      const socket = fixture.track(await tcpConnect(fixture.ports.agent));
      socket.on('error', () => undefined);
      socket.write(randomBytes(2048));
      victims.push(closedWithin(socket, 3_000));
    }
    // TLS, then garbage instead of yamux frames.
    for (let i = 0; i < 5; i++) {
      const socket = await agentTls(fixture.ports.agent, fixture.ca);
      fixture.track(socket);
      socket.write(randomBytes(4096));
      victims.push(closedWithin(socket, 3_000));
    }
    // TLS, then silence: the authentication timeout.
    for (let i = 0; i < 3; i++) {
      const socket = await agentTls(fixture.ports.agent, fixture.ca);
      fixture.track(socket);
      victims.push(closedWithin(socket, 3_000));
    }
    // TCP, then silence: the TLS handshake timeout.
    const silent = fixture.track(await tcpConnect(fixture.ports.agent));
    silent.on('error', () => undefined);
    victims.push(closedWithin(silent, 3_000));
    // Garbage on the public HTTP port.
    for (let i = 0; i < 10; i++) {
      const socket = fixture.track(await tcpConnect(fixture.ports.http));
      socket.on('error', () => undefined);
      socket.write(Buffer.concat([randomBytes(512), Buffer.from('\r\n\r\n')]));
      victims.push(closedWithin(socket, 3_000));
    }
    const closed = await Promise.all(victims);
    stopped = true;
    const [ok, failures] = await good;
    assert.deepEqual(
      closed.map((value, index) => (value ? 'closed' : `open ${index}`)),
      closed.map(() => 'closed'),
    );
    assert.deepEqual(failures, []);
    assert.ok(ok >= 5, `the good client got ${ok} answers`);
    assert.equal(
      fixture.relay?.sessionsInfo()[0]?.id,
      sessionBefore,
      'the agent session is untouched',
    );
    const codes = new Set(
      rejected.map((event) =>
        event.error instanceof RelayError ? event.error.code : event.error.name,
      ),
    );
    assert.ok(codes.has('ERR_RELAY_HANDSHAKE'), [...codes].join());
    assert.ok(codes.has('ERR_RELAY_AUTH_TIMEOUT'), [...codes].join());
  });

  it('answers malformed control messages with a clear error and closes only that session', async () => {
    const cases: [Buffer, string][] = [
      [Buffer.from([0, 0, 0, 5, 0x7b, 0x22, 0x74, 0x22, 0x3a]), 'ERR_RELAY_PROTOCOL'], // {"t":
      [encodeFrame({ t: 'close', tunnel: 'x' }), 'ERR_RELAY_PROTOCOL'], // before hello
      [Buffer.from([0xff, 0xff, 0xff, 0xff]), 'ERR_RELAY_PROTOCOL'], // 4 GiB frame
      [encodeFrame({ t: 'hello', v: 2, token: 'x' }), 'ERR_RELAY_PROTOCOL'],
      [encodeFrame({ t: 'hello', v: 1, token: 'not-a-token' }), 'ERR_RELAY_TOKEN_INVALID'],
    ];
    for (const [bytes, code] of cases) {
      const socket = fixture.track(await agentTls(fixture.ports.agent, fixture.ca));
      const session = Session.client(socket, { keepaliveInterval: 0 });
      session.on('error', () => undefined);
      const control = session.open();
      control.on('error', () => undefined);
      const decoder = new FrameDecoder();
      const messages: RelayMessage[] = [];
      control.on('data', (chunk: Buffer) => {
        for (const frame of decoder.push(chunk)) messages.push(parseRelayMessage(frame));
      });
      control.write(bytes);
      await once(session, 'close');
      assert.deepEqual(
        messages.map((message) => (message.t === 'error' ? message.code : message.t)),
        [code],
        bytes.toString('latin1'),
      );
    }
    // A stream the agent opens beyond its control stream is refused.
    const socket = fixture.track(await agentTls(fixture.ports.agent, fixture.ca));
    const session = Session.client(socket, { keepaliveInterval: 0 });
    session.on('error', () => undefined);
    session.open().on('error', () => undefined);
    const extra = session.open();
    const [error] = (await once(extra, 'error')) as [Error];
    assert.ok(error instanceof YamuxStreamResetError, String(error));
    session.destroy();
  });

  it('refuses an oversized request head with 431', async () => {
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    const [response] = await exchange(socket, get('/', `X-Big: ${'x'.repeat(40_000)}\r\n`));
    assert.equal(statusOf(response), 431);
    socket.destroy();
  });

  it('ends a live session whose token gets revoked (periodic re-check)', async () => {
    const app = await fixture.httpServer((_request, response) => response.end('x'));
    const token = await fixture.token({ name: 'short-lived', subdomains: ['short'] });
    const victim = fixture.agent(token, [{ proto: 'http', localPort: app.port }]);
    await victim.ready();
    const fatal = once(victim, 'fatal') as Promise<[RelayError]>;
    const store = await openRelayStore({ dataDir: fixture.dir });
    await store.revokeToken('short-lived');
    await store.close();
    const [error] = await fatal;
    assert.ok(error instanceof TokenRevokedError);
    await waitFor(
      () => !(fixture.relay?.tunnelsInfo() ?? []).some((tunnel) => tunnel.name === 'short'),
      'the tunnel is gone',
    );
  });
});

describe('relay limits and shutdown', () => {
  let fixture: RelayFixture;
  let agent: Agent;
  let release: () => void = () => undefined;

  before(async () => {
    fixture = await RelayFixture.create();
    await fixture.startRelay({ requestsPerSecond: 1, requestBurst: 3, maxConnectionsPerIp: 6 });
    const app = await fixture.httpServer((request, response) => {
      if (request.url === '/slow') {
        release = () => response.end('slow done');
        return;
      }
      response.end('ok');
    });
    const token = await fixture.token({ name: 'laptop', subdomains: ['app', 'slow'] });
    agent = fixture.agent(token, [
      { proto: 'http', localPort: app.port, subdomain: 'app' },
      { proto: 'http', localPort: app.port, subdomain: 'slow' },
    ]);
    await agent.ready();
  });

  after(async () => {
    await fixture.close();
  });

  it('answers 429 past the tunnel request rate', async () => {
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    const responses = await exchange(socket, get('/1') + get('/2') + get('/3') + get('/4'), 4);
    assert.deepEqual(responses.map(statusOf), [200, 200, 200, 429]);
    socket.destroy();
  });

  it('closes connections beyond the per-IP limit at once, keeping the others', async () => {
    const sockets: Socket[] = [];
    for (let i = 0; i < 6; i++) sockets.push(fixture.track(await tcpConnect(fixture.ports.http)));
    const seventh = fixture.track(await tcpConnect(fixture.ports.http));
    assert.equal(await closedWithin(seventh, 2_000), true);
    assert.equal(
      sockets.some((socket) => socket.destroyed),
      false,
    );
    for (const socket of sockets) socket.destroy();
    await sleep(50);
  });

  it('drains on close: a request in flight completes, agents are told to come back later', async () => {
    const httpPort = fixture.ports.http;
    const socket = fixture.track(await tcpConnect(httpPort));
    const answer = exchange(socket, `GET /slow HTTP/1.1\r\nHost: slow.${DOMAIN}\r\n\r\n`);
    await waitFor(
      () => fixture.relay?.tunnelsInfo().find((tunnel) => tunnel.name === 'slow')?.requests === 1,
      'the slow request reached the agent',
    );
    const disconnected = once(agent, 'disconnected') as Promise<[Error | undefined, number]>;
    const closing = fixture.relay?.close({ drainTimeoutMs: 3_000 });
    await sleep(100);
    // No new connections while draining.
    const refused = await tcpConnect(httpPort).then(
      (late) => {
        late.destroy();
        return false;
      },
      () => true,
    );
    assert.equal(refused, true);
    release();
    const [response] = await answer;
    assert.equal(bodyOf(response), 'slow done');
    const started = performance.now();
    await closing;
    assert.ok(
      performance.now() - started < 1_000,
      'closed once the answer was out, not at the deadline',
    );
    const [error] = await disconnected;
    assert.ok(error instanceof RelayClosedError, String(error));
  });
});

describe('relay shutdown with connections that never got anywhere', () => {
  let fixture: RelayFixture;

  before(async () => {
    fixture = await RelayFixture.create();
    await fixture.startRelay();
  });

  after(async () => {
    await fixture.close();
  });

  it('closes at once despite a TLS handshake in progress and a half-closed agent socket', async () => {
    const { agent, https } = fixture.ports;
    // Mid-handshake: TCP connected, not one TLS byte sent (the handshake timeout is 10 s).
    const silent = fixture.track(await tcpConnect(https));
    // Handshake done, agent protocol chosen, then half-closed without a word.
    const halfClosed = connectTls({
      host: '127.0.0.1',
      port: agent,
      servername: DOMAIN,
      ca: fixture.ca,
      ALPNProtocols: [AGENT_ALPN],
    });
    fixture.track(halfClosed);
    halfClosed.on('error', () => undefined);
    await once(halfClosed, 'secureConnect');
    halfClosed.end();
    await sleep(50);
    const started = performance.now();
    await fixture.stopRelay(0);
    const elapsed = performance.now() - started;
    assert.ok(elapsed < 3_000, `the relay took ${Math.round(elapsed)} ms to close`);
    await waitFor(() => silent.destroyed || silent.readableEnded, 'the silent socket closed');
  });
});
