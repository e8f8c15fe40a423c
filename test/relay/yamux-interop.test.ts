/**
 * Interop of warren's yamux (src/relay/mux) with hashicorp/yamux, the reference
 * implementation, as Debian packages it (golang-github-hashicorp-yamux-dev),
 * through the Go peer in test/go-yamux. Both ways round: our client with a Go
 * server, a Go client with our server. Everything on 127.0.0.1.
 *
 * Needs the Debian packages golang-go and golang-github-hashicorp-yamux-dev.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { YamuxError, YamuxStreamResetError } from '../../src/relay/mux/errors.js';
import { INITIAL_STREAM_WINDOW } from '../../src/relay/mux/frame.js';
import { Session } from '../../src/relay/mux/session.js';
import type { SessionOptions } from '../../src/relay/mux/session.js';
import { GoYamuxPeer, buildGoYamuxPeer } from './go-yamux-peer.js';

type Role = 'our client, Go server' | 'Go client, our server';
const ROLES: readonly Role[] = ['our client, Go server', 'Go client, our server'];
const MiB = 1024 * 1024;

// ---- helpers ----------------------------------------------------------------------

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

/** Reads to the end without destroying the stream (as `for await` would). */
function readAll(stream: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    stream.once('end', () => {
      resolve(Buffer.concat(chunks));
    });
    stream.once('error', reject);
    stream.resume();
  });
}

/** Reads exactly `length` bytes (then stops listening). */
function readExactly(stream: Duplex, length: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      total += chunk.length;
      if (total >= length) {
        stream.off('data', onData);
        stream.off('error', reject);
        resolve(Buffer.concat(chunks).subarray(0, length));
      }
    };
    stream.on('data', onData);
    stream.once('error', reject);
  });
}

/** Reads one "\n"-terminated line and puts back what followed it. */
function readLine(stream: Duplex): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      const newline = buffered.indexOf(0x0a);
      if (newline < 0) return;
      stream.off('data', onData);
      stream.off('error', reject);
      stream.pause();
      const rest = buffered.subarray(newline + 1);
      if (rest.length > 0) stream.unshift(rest);
      resolve(buffered.subarray(0, newline).toString());
    };
    stream.on('data', onData);
    stream.once('error', reject);
  });
}

/** Sends one command to the Go peer on a new stream, half-closes, returns the whole answer. */
async function command(session: Session, line: string, input?: Buffer): Promise<string> {
  const stream = session.open();
  stream.write(`${line}\n`);
  if (input !== undefined) stream.write(input);
  stream.end();
  return (await readAll(stream)).toString();
}

/**
 * Our side of the streams the Go peer opens (its open-* commands): the first
 * line says what to do, as in test/go-yamux/main.go.
 */
interface OurHandlerLog {
  acceptedIds: number[];
  afterOurFin: string[];
  errors: Error[];
}

function serveGoStreams(session: Session): OurHandlerLog {
  const log: OurHandlerLog = { acceptedIds: [], afterOurFin: [], errors: [] };
  session.on('stream', (stream) => {
    log.acceptedIds.push(stream.id);
    stream.on('error', (error) => log.errors.push(error));
    void readLine(stream)
      .then(async (line) => {
        const [name, argument] = line.split(' ');
        const size = Number(argument);
        switch (name) {
          case 'echo':
            stream.pipe(stream);
            stream.resume();
            return;
          case 'sink': {
            const data = await readExactly(stream, size);
            stream.resume();
            stream.end(`${size} ${sha256(data)}\n`);
            return;
          }
          case 'source': {
            const data = randomBytes(size);
            stream.write(data);
            stream.end(createHash('sha256').update(data).digest()); // our FIN …
            log.afterOurFin.push((await readAll(stream)).toString()); // … and the Go side still writes
            return;
          }
          default:
            stream.destroy(new Error(`unknown command ${line}`));
        }
      })
      .catch((error: unknown) => {
        log.errors.push(error instanceof Error ? error : new Error(String(error)));
      });
  });
  return log;
}

interface Fixture {
  session: Session;
  go: GoYamuxPeer;
  log: OurHandlerLog;
  /** The parity of stream ids the Go side opens (1 odd, 0 even). */
  goParity: number;
}

// ---- the tests --------------------------------------------------------------------

for (const role of ROLES) {
  describe(`yamux interop with hashicorp/yamux: ${role}`, () => {
    let binary = '';
    const started: GoYamuxPeer[] = [];
    const sessions: Session[] = [];

    before(async () => {
      binary = await buildGoYamuxPeer();
    });

    after(async () => {
      for (const session of sessions) session.destroy();
      await Promise.all(started.map((peer) => peer.stop()));
    });

    /** A fresh Go peer and our session to it, in this describe's role. */
    async function connectToGo(
      options: SessionOptions = {},
      goArgs: readonly string[] = [],
    ): Promise<Fixture> {
      let socket: Socket;
      let go: GoYamuxPeer;
      if (role === 'our client, Go server') {
        const { peer, firstLine } = await GoYamuxPeer.start(binary, ['-listen', ...goArgs]);
        go = peer;
        started.push(peer);
        const match = /^listening 127\.0\.0\.1:(\d+)$/.exec(firstLine);
        assert.ok(match?.[1] !== undefined, `unexpected first line ${firstLine}`);
        socket = connect(Number(match[1]), '127.0.0.1');
        await once(socket, 'connect');
      } else {
        const server = createServer();
        server.listen(0, '127.0.0.1');
        await once(server, 'listening');
        const address = server.address();
        assert.ok(address !== null && typeof address === 'object');
        const accepted = once(server, 'connection') as Promise<[Socket]>;
        const { peer, firstLine } = await GoYamuxPeer.start(binary, [
          '-connect',
          `127.0.0.1:${address.port}`,
          ...goArgs,
        ]);
        go = peer;
        started.push(peer);
        assert.equal(firstLine, 'connected');
        [socket] = await accepted;
        server.close();
      }
      socket.setNoDelay(true);
      const session =
        role === 'our client, Go server'
          ? Session.client(socket, { keepaliveInterval: 0, ...options })
          : Session.server(socket, { keepaliveInterval: 0, ...options });
      sessions.push(session);
      const log = serveGoStreams(session);
      return { session, go, log, goParity: role === 'our client, Go server' ? 0 : 1 };
    }

    it('echoes 64 concurrent streams opened by each side, checksums intact', async () => {
      const { session, log, goParity } = await connectToGo();
      const ours = await Promise.all(
        Array.from({ length: 64 }, async (_, index) => {
          const payload = randomBytes(1 + ((index * 7919) % (128 * 1024)));
          const stream = session.open();
          stream.write('echo\n');
          stream.end(payload);
          const echoed = await readAll(stream);
          return sha256(echoed) === sha256(payload);
        }),
      );
      assert.equal(ours.filter(Boolean).length, 64);
      assert.equal(await command(session, 'open-echo 64 65536'), 'ok\n');
      assert.equal(log.acceptedIds.length, 64);
      assert.ok(
        log.acceptedIds.every((id) => id % 2 === goParity),
        `Go opened ids of its parity: ${log.acceptedIds.join(',')}`,
      );
      assert.deepEqual(log.errors, []);
      await waitFor(() => session.streamCount === 0, 'every stream to close on both sides');
    });

    it('moves 32 MiB over one stream each way, with the receive window growing', async (t) => {
      const { session } = await connectToGo({}, ['-window', String(8 * MiB)]);
      const payload = randomBytes(32 * MiB);
      let started = performance.now();
      const answer = await command(session, 'sink', payload);
      const upMs = performance.now() - started;
      assert.equal(answer, `${payload.length} ${sha256(payload)}\n`);

      started = performance.now();
      const stream = session.open();
      stream.end(`source ${32 * MiB}\n`);
      const received = await readAll(stream);
      const downMs = performance.now() - started;
      assert.equal(received.length, 32 * MiB + 32);
      assert.equal(
        sha256(received.subarray(0, 32 * MiB)),
        received.subarray(32 * MiB).toString('hex'),
        'the data matches the SHA-256 the Go side sent after it',
      );
      assert.ok(
        stream.receiveWindow > INITIAL_STREAM_WINDOW,
        `our receive window grew past 256 KiB (it is ${stream.receiveWindow})`,
      );
      t.diagnostic(
        `32 MiB to Go in ${upMs.toFixed(0)} ms, from Go in ${downMs.toFixed(0)} ms (window ${stream.receiveWindow})`,
      );
    });

    it('half-closes: after either side FINs, the other direction still flows', async () => {
      const { session, log } = await connectToGo();
      // We FIN first, then read what Go writes after our FIN.
      const stream = session.open();
      stream.write('echo\n');
      stream.end('written before our FIN');
      assert.equal((await readAll(stream)).toString(), 'written before our FIN');
      // Go opens a stream; our side sends 100 000 bytes and FINs; Go checks them
      // and still writes "thanks" afterwards, which we receive.
      assert.equal(await command(session, 'open-halfclose 100000'), 'ok\n');
      await waitFor(() => log.afterOurFin.length === 1, 'the bytes Go sent after our FIN');
      assert.deepEqual(log.afterOurFin, ['thanks\n']);
      assert.deepEqual(log.errors, []);
    });

    it('our RST reaches Go; our maxStreams refuses Go with RST', async () => {
      const { session } = await connectToGo({ maxStreams: 5 });
      const stream = session.open();
      stream.write('echo\nabc');
      assert.equal((await readExactly(stream, 3)).toString(), 'abc');
      stream.reset();
      let stats = '';
      for (let attempt = 0; attempt < 50 && stats !== 'resets=1\n'; attempt++) {
        stats = await command(session, 'stats');
        if (stats !== 'resets=1\n') await sleep(10);
      }
      assert.equal(stats, 'resets=1\n', 'Go saw ErrConnectionReset on the stream we reset');
      // The command stream is one of our 5; Go opens 8 and keeps them all open.
      assert.equal(await command(session, 'open-many 8'), 'ok=4 reset=4\n');
    });

    it("Go's RST reaches us: it refuses streams beyond its accept backlog", async () => {
      const { session } = await connectToGo({}, ['-backlog', '2']);
      const control = session.open();
      control.write('hold\n');
      assert.equal(await readLine(control), 'held');
      control.resume();
      let refusedCount = 0;
      const outcomes = Array.from({ length: 6 }, () => {
        const stream = session.open();
        stream.write('echo\nx');
        return new Promise<'echoed' | YamuxStreamResetError>((resolve, reject) => {
          stream.once('data', () => {
            resolve('echoed');
            stream.end();
          });
          stream.once('error', (error) => {
            if (error instanceof YamuxStreamResetError) {
              refusedCount++;
              resolve(error);
            } else {
              reject(error);
            }
          });
        });
      });
      // While Go holds its accept loop, one stream is taken and `backlog` wait:
      // the rest are refused with RST.
      await waitFor(() => refusedCount >= 3, 'Go to refuse the streams beyond its backlog');
      control.write('release\n');
      const results = await Promise.all(outcomes);
      const resets = results.filter((result) => result instanceof YamuxStreamResetError);
      const echoed = results.filter((result) => result === 'echoed');
      assert.ok(resets.length >= 3 && resets.length <= 4, `${resets.length} streams were refused`);
      assert.equal(resets.length + echoed.length, 6);
      assert.ok(resets.every((error) => error.refused && error.code === 'ERR_YAMUX_STREAM_RESET'));
      control.end();
    });

    it('ping works both ways', async () => {
      const { session } = await connectToGo();
      const rtt = await session.ping();
      assert.ok(rtt >= 0 && rtt < 5000, `our ping rtt ${rtt} ms`);
      const answer = await command(session, 'ping');
      const match = /^rtt (\d+)\n$/.exec(answer);
      assert.ok(match?.[1] !== undefined, `Go answered ${JSON.stringify(answer)}`);
      assert.ok(Number(match[1]) > 0, 'Go measured a positive RTT through us');
    });

    it("GoAway both ways: Go's stops our opens; ours stops Go's, then the session drains and closes", async () => {
      const { session } = await connectToGo();
      // A stream opened before Go's GoAway keeps working after it.
      const early = session.open();
      early.write('echo\n');
      const goaway = once(session, 'goaway');
      assert.equal(await command(session, 'goaway'), 'ok\n');
      await goaway;
      assert.throws(
        () => session.open(),
        (error: unknown) => error instanceof YamuxError && error.code === 'ERR_YAMUX_GOAWAY',
      );
      early.end('still echoed after GoAway');
      assert.equal((await readAll(early)).toString(), 'still echoed after GoAway');

      const { session: second } = await connectToGo();
      const control = second.open();
      const closed = second.close(); // GoAway(normal) goes out before the command
      control.end('try-open\n');
      assert.equal(
        (await readAll(control)).toString(),
        'refused remote end is not accepting connections\n',
        'Go refuses to open streams after our GoAway',
      );
      await closed;
      assert.equal(second.closed, true);
      assert.equal(second.error, undefined);
    });
  });
}
