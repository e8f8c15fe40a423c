import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { duplexPair, tcpPair } from '../../../test/relay/duplex-pair.js';
import { YamuxError, YamuxStreamResetError } from './errors.js';
import {
  Flag,
  FrameReader,
  FrameType,
  GoAwayCode,
  INITIAL_STREAM_WINDOW,
  encodeHeader,
} from './frame.js';
import type { FrameHeader } from './frame.js';
import { Session, diagnostics } from './session.js';
import type { SessionCloseEvent, SessionOptions } from './session.js';
import type { Stream } from './stream.js';

// ---- helpers ----------------------------------------------------------------------

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

/**
 * Reads a stream to its end. (Not with `for await`: its iterator destroys the
 * stream when the loop ends, which would reset a half-closed yamux stream.)
 */
function readAll(stream: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => {
      resolve(Buffer.concat(chunks));
    });
    stream.once('error', reject);
    stream.resume(); // a 'data' listener alone does not restart an explicitly paused stream
  });
}

/** Streams a test leaves open when it tears the session down fail; that is expected. */
function expectTeardown(...streams: Stream[]): void {
  for (const stream of streams) stream.on('error', () => undefined);
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The error a stream emits (resolves) — fails if it ends without one. */
function streamError(stream: Stream): Promise<Error> {
  return new Promise((resolve, reject) => {
    stream.once('error', resolve);
    stream.once('close', () => {
      setImmediate(() => {
        reject(new Error(`stream ${stream.id} closed without an error`));
      });
    });
  });
}

function isYamuxError(error: unknown, code: string): boolean {
  return error instanceof YamuxError && error.code === code;
}

interface SessionPair {
  client: Session;
  server: Session;
  closed: Promise<unknown>;
}

async function tcpSessions(
  clientOptions: SessionOptions = {},
  serverOptions: SessionOptions = {},
): Promise<SessionPair> {
  const [clientSocket, serverSocket] = await tcpPair();
  const client = Session.client(clientSocket, clientOptions);
  const server = Session.server(serverSocket, serverOptions);
  const closed = Promise.all([
    new Promise((resolve) => client.once('close', resolve)),
    new Promise((resolve) => server.once('close', resolve)),
  ]);
  return { client, server, closed };
}

async function destroyPair(pair: SessionPair): Promise<void> {
  pair.client.destroy();
  pair.server.destroy();
  await pair.closed;
}

/** Echoes every accepted stream back to its opener. */
function serveEcho(session: Session): void {
  session.on('stream', (stream) => {
    stream.on('error', () => undefined);
    stream.pipe(stream);
  });
}

/**
 * A session under test whose peer is the test itself: raw bytes go in, the
 * frames the session sends come out decoded.
 */
class RawPeer {
  readonly session: Session;
  readonly frames: FrameHeader[] = [];
  readonly closed: Promise<[YamuxError | undefined]>;
  private readonly wire: Duplex;

  constructor(role: 'client' | 'server', options: SessionOptions = {}) {
    const [mine, theirs] = duplexPair();
    this.wire = theirs;
    this.session =
      role === 'server'
        ? Session.server(mine, { keepaliveInterval: 0, ...options })
        : Session.client(mine, { keepaliveInterval: 0, ...options });
    // Not events.once(): it rejects when 'error' comes first.
    this.closed = new Promise((resolve) => {
      this.session.once('close', (error) => {
        resolve([error]);
      });
    });
    const reader = new FrameReader();
    theirs.on('data', (chunk: Buffer) => {
      reader.push(chunk, {
        header: (header) => this.frames.push(header),
        payload: () => undefined,
        end: () => undefined,
      });
    });
    theirs.on('end', () => theirs.end());
  }

  send(...frames: Buffer[]): void {
    this.wire.write(Buffer.concat(frames));
  }

  end(): void {
    this.wire.end();
  }

  async waitForFrame(what: string, match: (header: FrameHeader) => boolean): Promise<FrameHeader> {
    let found: FrameHeader | undefined;
    await waitFor(() => (found = this.frames.find(match)) !== undefined, what);
    if (found === undefined) throw new Error(`no ${what}`);
    return found;
  }

  /** Expects the session to fail with `code` and to have sent GoAway(protocol error). */
  async expectProtocolFailure(pattern: RegExp): Promise<void> {
    const [error] = await this.closed;
    assert.ok(
      isYamuxError(error, 'ERR_YAMUX_PROTOCOL'),
      `expected ERR_YAMUX_PROTOCOL, got ${String(error)}`,
    );
    assert.match(error?.message ?? '', pattern);
    assert.equal(this.session.error, error);
    const goAway = this.frames.find((header) => header.type === FrameType.GoAway);
    assert.equal(goAway?.length, GoAwayCode.ProtocolError, 'GoAway(protocol error) was sent');
  }
}

const frame = (
  type: FrameType,
  flags: number,
  streamId: number,
  length: number,
  payload?: Buffer,
): Buffer =>
  payload === undefined
    ? encodeHeader(type, flags, streamId, length)
    : Buffer.concat([encodeHeader(type, flags, streamId, length), payload]);
const syn = (id: number): Buffer => frame(FrameType.WindowUpdate, Flag.SYN, id, 0);
const data = (id: number, payload: Buffer, flags = 0): Buffer =>
  frame(FrameType.Data, flags, id, payload.length, payload);

// ---- streams between two sessions ------------------------------------------------

describe('Session between two warren peers over TCP', () => {
  it('opens odd ids from the client and even ids from the server, and carries data both ways', async () => {
    const pair = await tcpSessions();
    serveEcho(pair.client);
    serveEcho(pair.server);
    const fromClient = [pair.client.open(), pair.client.open(), pair.client.open()];
    const fromServer = [pair.server.open(), pair.server.open()];
    assert.deepEqual(
      fromClient.map((stream) => stream.id),
      [1, 3, 5],
    );
    assert.deepEqual(
      fromServer.map((stream) => stream.id),
      [2, 4],
    );
    const replies = await Promise.all(
      [...fromClient, ...fromServer].map(async (stream) => {
        stream.end(`hello from ${stream.id}`);
        return (await readAll(stream)).toString();
      }),
    );
    assert.deepEqual(replies, [
      'hello from 1',
      'hello from 3',
      'hello from 5',
      'hello from 2',
      'hello from 4',
    ]);
    await waitFor(
      () => pair.client.streamCount === 0 && pair.server.streamCount === 0,
      'streams to close',
    );
    assert.ok(fromClient.every((stream) => stream.acknowledged));
    await destroyPair(pair);
  });

  it('keeps 100 concurrent streams apart (checksums match per stream)', async () => {
    const pair = await tcpSessions();
    serveEcho(pair.server);
    const results = await Promise.all(
      Array.from({ length: 100 }, async (_, index) => {
        const payload = randomBytes(1000 + index * 997);
        const stream = pair.client.open();
        // Write in pieces so frames of different streams interleave on the wire.
        for (let offset = 0; offset < payload.length; offset += 4096) {
          stream.write(payload.subarray(offset, offset + 4096));
        }
        stream.end();
        const echoed = await readAll(stream);
        return sha256(echoed) === sha256(payload);
      }),
    );
    assert.equal(results.filter(Boolean).length, 100);
    await destroyPair(pair);
  });

  it('half-closes: a FIN ends the peer reader while the other direction goes on', async () => {
    const pair = await tcpSessions();
    const serverSaw: string[] = [];
    pair.server.on('stream', (stream) => {
      void (async () => {
        const request = await readAll(stream); // ends at the client's FIN
        serverSaw.push(request.toString());
        stream.write('response after your FIN: ');
        stream.end(request);
      })();
    });
    const stream = pair.client.open();
    stream.end('request');
    const reply = await readAll(stream);
    assert.equal(reply.toString(), 'response after your FIN: request');
    assert.deepEqual(serverSaw, ['request']);
    await waitFor(() => stream.closed, 'the stream to close after both FINs');
    await waitFor(
      () => pair.server.streamCount === 0 && pair.client.streamCount === 0,
      'both sides to forget it',
    );
    await destroyPair(pair);
  });

  it('reset() sends RST: the peer stream fails with ERR_YAMUX_STREAM_RESET', async () => {
    const pair = await tcpSessions();
    const accepted: Stream[] = [];
    pair.server.on('stream', (stream) => accepted.push(stream));
    const stream = pair.client.open();
    stream.write('partial');
    await waitFor(() => accepted.length === 1, 'the stream to be accepted');
    const serverStream = accepted[0];
    assert.ok(serverStream !== undefined);
    const failure = streamError(serverStream);
    stream.reset();
    const error = await failure;
    assert.ok(error instanceof YamuxStreamResetError);
    assert.equal(error.code, 'ERR_YAMUX_STREAM_RESET');
    assert.equal(error.refused, false);
    assert.equal(error.streamId, 1);
    await waitFor(
      () => pair.server.streamCount === 0 && pair.client.streamCount === 0,
      'the stream to be gone',
    );
    // The session itself is unharmed.
    serveEcho(pair.server);
    const next = pair.client.open();
    next.end('still fine');
    assert.equal((await readAll(next)).toString(), 'still fine');
    await destroyPair(pair);
  });

  it('refuses streams nobody listens for (RST before ACK: refused)', async () => {
    const pair = await tcpSessions();
    const stream = pair.client.open();
    const error = await streamError(stream);
    assert.ok(error instanceof YamuxStreamResetError);
    assert.equal(error.refused, true);
    assert.equal(stream.acknowledged, false);
    await destroyPair(pair);
  });

  it('maxStreams: extra SYNs are refused with RST; open() beyond it throws ERR_YAMUX_STREAM_LIMIT', async () => {
    const pair = await tcpSessions({ maxStreams: 3 }, { maxStreams: 2 });
    const held: Stream[] = [];
    pair.server.on('stream', (stream) => {
      expectTeardown(stream);
      held.push(stream);
    });
    const streams = [pair.client.open(), pair.client.open(), pair.client.open()];
    expectTeardown(...streams);
    const third = streams[2];
    assert.ok(third !== undefined);
    const error = await streamError(third);
    assert.ok(error instanceof YamuxStreamResetError && error.refused);
    assert.equal(held.length, 2);
    expectTeardown(pair.client.open()); // 3 open on the client side now (two held, one new)
    assert.equal(pair.client.streamCount, 3);
    assert.throws(
      () => pair.client.open(),
      (thrown: unknown) => isYamuxError(thrown, 'ERR_YAMUX_STREAM_LIMIT'),
    );
    await destroyPair(pair);
  });

  it('a closed stream whose data was not read yet still counts against maxStreams', async () => {
    const pair = await tcpSessions({}, { maxStreams: 1 });
    const accepted: Stream[] = [];
    pair.server.on('stream', (stream) => {
      expectTeardown(stream);
      accepted.push(stream);
      stream.pause();
      stream.end(); // our FIN at once; the peer's data stays unread
    });
    const first = pair.client.open();
    first.end('unread');
    const firstReply = readAll(first);
    await firstReply; // the server's FIN arrived: both sides have sent FIN
    await sleep(10);
    assert.equal(pair.server.streamCount, 1, 'the unread stream still counts');
    const refused = pair.client.open();
    const refusal = await streamError(refused);
    assert.ok(refusal instanceof YamuxStreamResetError && refusal.refused);
    const firstAccepted = accepted[0];
    assert.ok(firstAccepted !== undefined);
    assert.equal((await readAll(firstAccepted)).toString(), 'unread');
    await waitFor(() => pair.server.streamCount === 0, 'the read stream to leave the session');
    const next = pair.client.open();
    next.end();
    await readAll(next);
    assert.equal(accepted.length, 2);
    await destroyPair(pair);
  });

  it('maxBufferedBytes: an initialWindow beyond 256 KiB that does not fit is refused, windows stop growing', async () => {
    const initialWindow = 2 * INITIAL_STREAM_WINDOW;
    // Room for two streams' extra 256 KiB, not three.
    const serverOptions = { initialWindow, maxBufferedBytes: 2 * INITIAL_STREAM_WINDOW };
    const pair = await tcpSessions({}, serverOptions);
    const held: Stream[] = [];
    pair.server.on('stream', (stream) => {
      expectTeardown(stream);
      held.push(stream);
    });
    const first = pair.client.open();
    const second = pair.client.open();
    const third = pair.client.open();
    expectTeardown(first, second, third);
    const error = await streamError(third);
    assert.ok(error instanceof YamuxStreamResetError && error.refused);
    assert.equal(held.length, 2);
    // No budget left: a fast reader's window cannot grow either.
    const firstAccepted = held[0];
    assert.ok(firstAccepted !== undefined);
    const received = readAll(firstAccepted);
    first.end(randomBytes(8 * 1024 * 1024));
    assert.equal((await received).length, 8 * 1024 * 1024);
    assert.equal(firstAccepted.receiveWindow, initialWindow);
    await destroyPair(pair);
  });

  it('maxBufferedBytes bounds window growth, never how many streams may open', async () => {
    // Before, every stream's whole window came out of the budget: 32 MiB held
    // 128 streams, and a relay refused the 129th public connection (wrk -c200).
    const budget = 1024 * 1024;
    const pair = await tcpSessions(
      { maxStreams: 1000 },
      { maxStreams: 1000, maxBufferedBytes: budget },
    );
    try {
      const accepted: Stream[] = [];
      pair.server.on('stream', (stream) => {
        expectTeardown(stream);
        accepted.push(stream);
      });
      // One fast stream grows its window until the budget is spent...
      const bulk = pair.client.open();
      expectTeardown(bulk);
      await waitFor(() => accepted.length === 1, 'the bulk stream');
      const bulkAccepted = accepted[0];
      assert.ok(bulkAccepted !== undefined);
      const bulkReceived = readAll(bulkAccepted);
      bulk.end(randomBytes(32 * 1024 * 1024));
      assert.equal((await bulkReceived).length, 32 * 1024 * 1024);
      assert.ok(
        bulkAccepted.receiveWindow > INITIAL_STREAM_WINDOW,
        `the window grew (${bulkAccepted.receiveWindow})`,
      );
      assert.ok(bulkAccepted.receiveWindow <= INITIAL_STREAM_WINDOW + budget, 'within the budget');
      // ...and 600 more streams still open at once, each with the spec's window.
      const many = Array.from({ length: 600 }, () => pair.client.open());
      expectTeardown(...many);
      await waitFor(() => accepted.length === 601, 'all 600 streams to be accepted');
      const contents = accepted.slice(1).map((stream) => readAll(stream));
      many.forEach((stream, index) => stream.end(`stream ${index}`));
      const texts = (await Promise.all(contents)).map((data) => data.toString());
      assert.deepEqual(
        texts,
        many.map((_, index) => `stream ${index}`),
      );
    } finally {
      await destroyPair(pair);
    }
  });

  it('backpressure: a reader that stops reading stops the writer within one window', async () => {
    const pair = await tcpSessions();
    let accepted: Stream | undefined;
    pair.server.on('stream', (stream) => {
      accepted = stream;
      stream.pause();
    });
    const payload = randomBytes(4 * 1024 * 1024);
    const stream = pair.client.open();
    expectTeardown(stream);
    const flowing = stream.write(payload);
    assert.equal(flowing, false, 'write() reports backpressure for 4 MiB');
    await waitFor(() => stream.sendWindow === 0, 'the send window to run out');
    await sleep(50);
    assert.ok(accepted !== undefined);
    assert.equal(accepted.readableLength, INITIAL_STREAM_WINDOW, 'exactly one window arrived');
    assert.ok(stream.writableLength > 0, 'the rest waits in the writer');
    stream.end();
    const received = await readAll(accepted);
    assert.equal(sha256(received), sha256(payload));
    await destroyPair(pair);
  });

  it('grows the receive window for a fast reader, up to maxWindow', async () => {
    const pair = await tcpSessions({}, { maxWindow: 2 * 1024 * 1024 });
    const accepted: Stream[] = [];
    pair.server.on('stream', (stream) => accepted.push(stream));
    await pair.client.ping(); // the server measures its RTT from its own start-up ping
    await waitFor(() => pair.server.rtt !== undefined, 'the server to know the RTT');
    const stream = pair.client.open();
    expectTeardown(stream);
    const payload = randomBytes(16 * 1024 * 1024);
    stream.end(payload);
    await waitFor(() => accepted.length === 1, 'accept');
    const serverStream = accepted[0];
    assert.ok(serverStream !== undefined);
    const received = await readAll(serverStream);
    assert.equal(sha256(received), sha256(payload));
    assert.ok(
      serverStream.receiveWindow > INITIAL_STREAM_WINDOW,
      `window ${serverStream.receiveWindow} grew`,
    );
    assert.ok(
      serverStream.receiveWindow <= 2 * 1024 * 1024,
      `window ${serverStream.receiveWindow} within max`,
    );
    await destroyPair(pair);

    const fixed = await tcpSessions({}, { maxWindow: INITIAL_STREAM_WINDOW });
    const fixedAccepted: Stream[] = [];
    fixed.server.on('stream', (s) => fixedAccepted.push(s));
    const fixedStream = fixed.client.open();
    expectTeardown(fixedStream);
    fixedStream.end(randomBytes(4 * 1024 * 1024));
    await waitFor(() => fixedAccepted.length === 1, 'accept');
    const fixedServerStream = fixedAccepted[0];
    assert.ok(fixedServerStream !== undefined);
    assert.equal((await readAll(fixedServerStream)).length, 4 * 1024 * 1024);
    assert.equal(fixedServerStream.receiveWindow, INITIAL_STREAM_WINDOW);
    await destroyPair(fixed);
  });

  it('ping() resolves with the round-trip time', async () => {
    const pair = await tcpSessions();
    const rtts = await Promise.all([pair.client.ping(), pair.server.ping(), pair.client.ping()]);
    for (const rtt of rtts) assert.ok(rtt >= 0 && rtt < 5000, `rtt ${rtt}`);
    assert.equal(pair.client.rtt, rtts[2]);
    await destroyPair(pair);
  });

  it('close() sends GoAway: the peer may not open, open streams finish, then both sides close', async () => {
    const pair = await tcpSessions();
    serveEcho(pair.client);
    const accepted: Stream[] = [];
    pair.server.on('stream', (stream) => accepted.push(stream));
    const stream = pair.client.open();
    stream.write('before ');
    await waitFor(() => accepted.length === 1, 'accept');
    const serverStream = accepted[0];
    assert.ok(serverStream !== undefined);
    serverStream.pipe(serverStream);

    const goaway = once(pair.client, 'goaway');
    const closing = pair.server.close();
    await goaway;
    assert.equal(pair.client.goneAway, true);
    assert.throws(
      () => pair.client.open(),
      (error: unknown) => isYamuxError(error, 'ERR_YAMUX_GOAWAY'),
    );
    assert.throws(
      () => pair.server.open(),
      (error: unknown) => isYamuxError(error, 'ERR_YAMUX_SESSION_CLOSED'),
    );
    // The open stream still works both ways.
    stream.end('after GoAway');
    assert.equal((await readAll(stream)).toString(), 'before after GoAway');
    await closing;
    await pair.closed;
    assert.equal(pair.server.error, undefined);
    assert.equal(pair.client.error, undefined);
    assert.equal(pair.client.closed, true);
  });

  it('destroy() fails the open streams on both sides with ERR_YAMUX_SESSION_CLOSED', async () => {
    const pair = await tcpSessions();
    const accepted: Stream[] = [];
    pair.server.on('stream', (stream) => accepted.push(stream));
    const stream = pair.client.open();
    stream.write('x');
    await waitFor(() => accepted.length === 1, 'accept');
    const serverStream = accepted[0];
    assert.ok(serverStream !== undefined);
    const clientFailure = streamError(stream);
    const serverFailure = streamError(serverStream);
    pair.client.destroy();
    assert.ok(isYamuxError(await clientFailure, 'ERR_YAMUX_SESSION_CLOSED'));
    assert.ok(isYamuxError(await serverFailure, 'ERR_YAMUX_SESSION_CLOSED'));
    await pair.closed;
    await assert.rejects(pair.client.ping(), (error: unknown) =>
      isYamuxError(error, 'ERR_YAMUX_SESSION_CLOSED'),
    );
  });

  it('a protocol error on one session leaves another session untouched', async () => {
    const good = await tcpSessions();
    serveEcho(good.server);
    const bad = new RawPeer('server');
    bad.send(Buffer.from('GET / HTTP/1.1\r\nHost: example\r\n\r\n'));
    await bad.expectProtocolFailure(/version/);
    const stream = good.client.open();
    stream.end('unaffected');
    assert.equal((await readAll(stream)).toString(), 'unaffected');
    await destroyPair(good);
  });

  it('keepalive pings keep a healthy session open and measure the RTT', async () => {
    const pair = await tcpSessions(
      { keepaliveInterval: 10, pingTimeout: 1000 },
      { keepaliveInterval: 10 },
    );
    await sleep(80);
    assert.equal(pair.client.closed, false);
    assert.equal(pair.server.closed, false);
    assert.ok(pair.client.rtt !== undefined && pair.server.rtt !== undefined);
    await destroyPair(pair);
  });

  it('publishes the close of a session on diagnostics_channel', async () => {
    const events: SessionCloseEvent[] = [];
    const listener = (message: unknown): void => {
      events.push(message as SessionCloseEvent);
    };
    subscribe(diagnostics.sessionClose.name, listener);
    try {
      const peer = new RawPeer('server');
      peer.send(Buffer.from([7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7]));
      await peer.closed;
      const event = events.find((candidate) => candidate.session === peer.session);
      assert.ok(event !== undefined);
      assert.equal(event.error?.code, 'ERR_YAMUX_PROTOCOL');
    } finally {
      unsubscribe(diagnostics.sessionClose.name, listener);
    }
  });

  it('checks its arguments', async () => {
    const [a] = duplexPair();
    // Values of the wrong type, smuggled past the compiler to test the runtime checks.
    const notADuplex: unknown = {};
    const plainError: unknown = new Error('plain');
    assert.throws(() => Session.client(notADuplex as Duplex), /transport must be a Duplex/);
    assert.throws(() => Session.client(a, { maxStreams: 0 }), /options\.maxStreams/);
    assert.throws(() => Session.client(a, { initialWindow: 1024 }), /options\.initialWindow/);
    assert.throws(
      () => Session.client(a, { maxWindow: 300_000, initialWindow: 400_000 }),
      /options\.maxWindow/,
    );
    assert.throws(() => Session.client(a, { maxBufferedBytes: 1.5 }), /options\.maxBufferedBytes/);
    assert.throws(() => Session.client(a, { keepaliveInterval: -1 }), /options\.keepaliveInterval/);
    const session = Session.client(a, { keepaliveInterval: 0, closeTimeout: 0 });
    assert.throws(() => {
      session.destroy(plainError as YamuxError);
    }, /YamuxError/);
    session.destroy();
    await new Promise((resolve) => session.once('close', resolve));
  });
});

// ---- a raw peer: exact frames in, exact frames out ---------------------------------

describe('Session against a raw peer', () => {
  // The in-memory transport holds no libuv handle and the session's timers are
  // unref'd (a library must not keep a process alive): something must.
  let keepLoopAlive: NodeJS.Timeout | undefined;
  before(() => {
    keepLoopAlive = setInterval(() => undefined, 1000);
  });
  after(() => {
    clearInterval(keepLoopAlive);
  });

  it('accepts a SYN with ACK, announcing a larger initial window in it', async () => {
    const peer = new RawPeer('server', { initialWindow: 1024 * 1024 });
    const accepted: Stream[] = [];
    peer.session.on('stream', (stream) => accepted.push(stream));
    peer.send(syn(1), data(1, Buffer.from('hi'), Flag.FIN));
    const ack = await peer.waitForFrame(
      'ACK',
      (h) => h.type === FrameType.WindowUpdate && h.flags === Flag.ACK,
    );
    assert.equal(ack.streamId, 1);
    assert.equal(ack.length, 1024 * 1024 - INITIAL_STREAM_WINDOW);
    const stream = accepted[0];
    assert.ok(stream !== undefined);
    assert.equal((await readAll(stream)).toString(), 'hi');
    peer.session.destroy();
    await peer.closed;
  });

  it('accepts data carried by the SYN frame itself', async () => {
    const peer = new RawPeer('client');
    const accepted: Stream[] = [];
    peer.session.on('stream', (stream) => accepted.push(stream));
    peer.send(data(2, Buffer.from('syn+data'), Flag.SYN | Flag.FIN));
    await waitFor(() => accepted.length === 1, 'accept');
    const stream = accepted[0];
    assert.ok(stream !== undefined);
    assert.equal(stream.id, 2);
    assert.equal((await readAll(stream)).toString(), 'syn+data');
    peer.session.destroy();
    await peer.closed;
  });

  it('answers a ping with the same opaque value', async () => {
    const peer = new RawPeer('server');
    peer.send(frame(FrameType.Ping, Flag.SYN, 0, 0xdeadbeef));
    const pong = await peer.waitForFrame(
      'ping ACK',
      (h) => h.type === FrameType.Ping && h.flags === Flag.ACK,
    );
    assert.equal(pong.length, 0xdeadbeef);
    peer.session.destroy();
    await peer.closed;
  });

  it('a ping nobody answers rejects with ERR_YAMUX_TIMEOUT; a missed keepalive ends the session', async () => {
    const peer = new RawPeer('client', { pingTimeout: 30, maxWindow: INITIAL_STREAM_WINDOW });
    await assert.rejects(peer.session.ping(), (error: unknown) =>
      isYamuxError(error, 'ERR_YAMUX_TIMEOUT'),
    );
    assert.equal(peer.session.closed, false, 'a failed ping() alone does not end the session');
    peer.session.destroy();
    await peer.closed;

    const silent = new RawPeer('client', { keepaliveInterval: 20, pingTimeout: 30 });
    const [error] = await silent.closed;
    assert.ok(isYamuxError(error, 'ERR_YAMUX_TIMEOUT'), String(error));
    assert.match(error?.message ?? '', /keepalive/);
  });

  it('a stream the peer neither ACKs nor refuses times out with ERR_YAMUX_TIMEOUT and is reset', async () => {
    const peer = new RawPeer('client', { openTimeout: 30 });
    const stream = peer.session.open();
    const error = await streamError(stream);
    assert.ok(isYamuxError(error, 'ERR_YAMUX_TIMEOUT'), String(error));
    const rst = await peer.waitForFrame('RST', (h) => (h.flags & Flag.RST) !== 0);
    assert.equal(rst.streamId, 1);
    assert.equal(peer.session.streamCount, 0);
    peer.session.destroy();
    await peer.closed;
  });

  it('drops frames for a stream it reset (they may have been in flight)', async () => {
    const peer = new RawPeer('client');
    const stream = peer.session.open();
    stream.on('error', () => undefined);
    stream.reset();
    await peer.waitForFrame('RST', (h) => (h.flags & Flag.RST) !== 0);
    peer.send(
      data(1, Buffer.from('late data')),
      frame(FrameType.WindowUpdate, Flag.FIN, 1, 1000),
      frame(FrameType.Ping, Flag.ACK, 0, 12345), // an answer to no ping: ignored too
      frame(FrameType.Ping, Flag.SYN, 0, 77),
    );
    const pong = await peer.waitForFrame(
      'ping ACK',
      (h) => h.type === FrameType.Ping && h.length === 77,
    );
    assert.equal(pong.flags, Flag.ACK);
    assert.equal(peer.session.closed, false);
    assert.equal(peer.session.error, undefined);
    peer.session.destroy();
    await peer.closed;
  });

  it('a GoAway with an error code ends the session with ERR_YAMUX_REMOTE_ERROR', async () => {
    const peer = new RawPeer('client');
    peer.send(frame(FrameType.GoAway, 0, 0, GoAwayCode.InternalError));
    const [error] = await peer.closed;
    assert.ok(isYamuxError(error, 'ERR_YAMUX_REMOTE_ERROR'), String(error));
    assert.match(error?.message ?? '', /internal error/);
    assert.equal(
      peer.frames.some((h) => h.type === FrameType.GoAway),
      false,
      'no GoAway is sent back to a peer that already left',
    );
  });

  it('a clean EOF keeps the data of streams the peer finished, and fails the others', async () => {
    const peer = new RawPeer('server');
    const accepted: Stream[] = [];
    peer.session.on('stream', (stream) => accepted.push(stream));
    peer.send(
      syn(1),
      data(1, Buffer.from('complete'), Flag.FIN),
      syn(3),
      data(3, Buffer.from('cut')),
    );
    await waitFor(() => accepted.length === 2, 'accept');
    const [finished, cut] = accepted;
    assert.ok(finished !== undefined && cut !== undefined);
    const cutFailure = streamError(cut);
    peer.end();
    const [error] = await peer.closed;
    assert.equal(error, undefined, 'a clean EOF is not a session error');
    assert.equal((await readAll(finished)).toString(), 'complete');
    assert.ok(isYamuxError(await cutFailure, 'ERR_YAMUX_SESSION_CLOSED'));
  });

  const malformed: readonly { name: string; frames: () => Buffer[]; pattern: RegExp }[] = [
    {
      name: 'a version other than 0',
      frames: () => [Buffer.from([1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])],
      pattern: /version 1/,
    },
    {
      name: 'an unknown frame type',
      frames: () => [Buffer.from([0, 9, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0])],
      pattern: /unknown frame type 9/,
    },
    {
      name: 'data beyond the receive window',
      frames: () => [syn(1), data(1, Buffer.alloc(INITIAL_STREAM_WINDOW + 1))],
      pattern: /exceed the receive window/,
    },
    {
      name: 'a Data length above maxWindow',
      frames: () => [syn(1), frame(FrameType.Data, 0, 1, 0xffff_fff0)],
      pattern: /exceeds the limit/,
    },
    {
      name: 'a frame for a stream never opened',
      frames: () => [data(7, Buffer.from('who?'))],
      pattern: /never opened/,
    },
    {
      name: 'a SYN with an id of our side',
      frames: () => [syn(2)],
      pattern: /id of our side/,
    },
    {
      name: 'a duplicate SYN',
      frames: () => [syn(1), syn(1)],
      pattern: /already open/,
    },
    {
      name: 'a Ping on a stream',
      frames: () => [frame(FrameType.Ping, Flag.SYN, 5, 0)],
      pattern: /Ping frame on stream 5/,
    },
    {
      name: 'data after FIN',
      frames: () => [
        syn(1),
        frame(FrameType.WindowUpdate, Flag.FIN, 1, 0),
        data(1, Buffer.from('more')),
      ],
      pattern: /data after the peer's FIN/,
    },
    {
      name: 'a second FIN',
      frames: () => [
        syn(1),
        frame(FrameType.WindowUpdate, Flag.FIN, 1, 0),
        frame(FrameType.WindowUpdate, Flag.FIN, 1, 0),
      ],
      pattern: /second FIN/,
    },
    {
      name: 'a window update past 2^32-1',
      frames: () => [syn(1), frame(FrameType.WindowUpdate, 0, 1, 0xffff_ffff)],
      pattern: /overflows/,
    },
    {
      // Found by the fuzz test below: the stream was failed before anyone could
      // listen to it, and its 'error' became an uncaught exception.
      name: 'a SYN whose own window update passes 2^32-1',
      frames: () => [frame(FrameType.WindowUpdate, Flag.SYN, 1, 0xffff_ffff)],
      pattern: /overflows/,
    },
  ];
  for (const { name, frames, pattern } of malformed) {
    it(`fails the session with ERR_YAMUX_PROTOCOL and GoAway(protocol error) on ${name}`, async () => {
      const peer = new RawPeer('server');
      const streamErrors: Error[] = [];
      peer.session.on('stream', (stream) => {
        stream.on('error', (error) => streamErrors.push(error));
        stream.resume();
      });
      const sessionErrors: YamuxError[] = [];
      peer.session.on('error', (error) => sessionErrors.push(error));
      // Split every input into 5-byte chunks: the checks must not depend on chunking.
      const bytes = Buffer.concat(frames());
      for (let offset = 0; offset < bytes.length; offset += 5)
        peer.send(bytes.subarray(offset, offset + 5));
      await peer.expectProtocolFailure(pattern);
      assert.equal(sessionErrors.length, 1);
      assert.ok(streamErrors.every((error) => isYamuxError(error, 'ERR_YAMUX_PROTOCOL')));
      assert.equal(peer.session.streamCount, 0);
    });
  }

  it('fuzz: arbitrary frames never throw out of the session and never leave it half-alive', async () => {
    const fieldArbitrary = fc.record({
      version: fc.constantFrom(0, 0, 0, 0, 0, 1),
      type: fc.integer({ min: 0, max: 4 }),
      flags: fc.integer({ min: 0, max: 15 }),
      streamId: fc.integer({ min: 0, max: 8 }),
      length: fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 0, max: 0xffff_ffff })),
      payload: fc.uint8Array({ maxLength: 64 }),
    });
    const chunkArbitrary = fc.oneof(
      {
        weight: 4,
        arbitrary: fieldArbitrary.map((f) =>
          Buffer.concat([headerBytes(f), Buffer.from(f.payload)]),
        ),
      },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((bytes) => Buffer.from(bytes)) },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.array(chunkArbitrary, { maxLength: 24 }),
        fc.boolean(),
        async (chunks, asClient) => {
          const peer = new RawPeer(asClient ? 'client' : 'server', {
            maxStreams: 4,
            closeTimeout: 0,
          });
          peer.session.on('stream', (stream) => {
            stream.on('error', () => undefined);
            stream.resume();
          });
          for (const chunk of chunks) peer.send(chunk);
          await sleep(0);
          const error = peer.session.error;
          if (error !== undefined) {
            assert.ok(
              isYamuxError(error, 'ERR_YAMUX_PROTOCOL') ||
                isYamuxError(error, 'ERR_YAMUX_REMOTE_ERROR'),
              `unexpected ${String(error)}`,
            );
            assert.equal(peer.session.streamCount, 0);
          }
          assert.ok(peer.session.streamCount <= 4);
          peer.session.destroy();
          await peer.closed;
        },
      ),
      { numRuns: 300 },
    );
  });
});

function headerBytes(fields: {
  version: number;
  type: number;
  flags: number;
  streamId: number;
  length: number;
}): Buffer {
  const bytes = Buffer.alloc(12);
  bytes[0] = fields.version;
  bytes[1] = fields.type;
  bytes.writeUInt16BE(fields.flags, 2);
  bytes.writeUInt32BE(fields.streamId, 4);
  bytes.writeUInt32BE(fields.length, 8);
  return bytes;
}
