import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  challengeResponseBytes,
  interceptAcmeChallenge,
  peekChallengeRequest,
} from './http-challenge.js';

const TOKEN = 'evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA';
const KEY_AUTHORIZATION = `${TOKEN}.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI`;

function request(path: string, host = 'app.example.com', extra = ''): Buffer {
  return Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: v\r\n${extra}\r\n`);
}

describe('peekChallengeRequest', () => {
  it('recognizes a complete challenge request and its host (port and trailing dot dropped)', () => {
    assert.deepEqual(peekChallengeRequest(request(`/.well-known/acme-challenge/${TOKEN}`), 8192), {
      kind: 'challenge',
      token: TOKEN,
      host: 'app.example.com',
    });
    const withPort = request(`/.well-known/acme-challenge/${TOKEN}`, 'App.Example.com.:80');
    assert.deepEqual(peekChallengeRequest(withPort, 8192), {
      kind: 'challenge',
      token: TOKEN,
      host: 'app.example.com',
    });
  });

  it('says "other" as soon as the first bytes cannot be a challenge request', () => {
    assert.deepEqual(peekChallengeRequest(Buffer.from('POST'), 8192), { kind: 'other' });
    assert.deepEqual(peekChallengeRequest(Buffer.from('GET /index.html'), 8192), { kind: 'other' });
    assert.deepEqual(peekChallengeRequest(Buffer.from([0x16, 0x03, 0x01]), 8192), {
      kind: 'other',
    });
  });

  it('waits while the bytes could still be one', () => {
    assert.deepEqual(peekChallengeRequest(Buffer.from('GE'), 8192), { kind: 'incomplete' });
    const partial = request(`/.well-known/acme-challenge/${TOKEN}`).subarray(0, 60);
    assert.deepEqual(peekChallengeRequest(partial, 8192), { kind: 'incomplete' });
  });

  it('leaves malformed or unusual requests to the normal path', () => {
    const cases = [
      request('/.well-known/acme-challenge/'), // no token
      request('/.well-known/acme-challenge/bad+token'),
      request(`/.well-known/acme-challenge/${TOKEN}?x=1`),
      Buffer.from(`GET /.well-known/acme-challenge/${TOKEN} HTTP/1.1\r\n\r\n`), // no Host
      request(`/.well-known/acme-challenge/${TOKEN}`, 'a.example.com', 'Host: b.example.com\r\n'),
      request(`/.well-known/acme-challenge/${TOKEN}`, 'bad host'),
      Buffer.from(`GET /.well-known/acme-challenge/${TOKEN} HTTP/2.0\r\nHost: a.b\r\n\r\n`),
    ];
    for (const bytes of cases) {
      assert.deepEqual(peekChallengeRequest(bytes, 8192), { kind: 'other' }, bytes.toString());
    }
  });

  it('gives up on a head longer than the limit', () => {
    const long = request(
      `/.well-known/acme-challenge/${TOKEN}`,
      'a.b',
      `X: ${'y'.repeat(200)}\r\n`,
    );
    assert.deepEqual(peekChallengeRequest(long, 128), { kind: 'other' });
    assert.deepEqual(peekChallengeRequest(long.subarray(0, 100), 128), { kind: 'incomplete' });
  });

  it('never throws and answers only for base64url tokens (fuzz)', () => {
    const prefix = Buffer.from('GET /.well-known/acme-challenge/');
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
          fc
            .tuple(fc.string({ maxLength: 80 }), fc.string({ maxLength: 80 }))
            .map(([token, rest]) =>
              Buffer.concat([prefix, Buffer.from(`${token} HTTP/1.1\r\n${rest}\r\n\r\n`)]),
            ),
        ),
        fc.integer({ min: 32, max: 400 }),
        (bytes, limit) => {
          const peek = peekChallengeRequest(bytes, limit);
          if (peek.kind === 'challenge') {
            assert.match(peek.token, /^[A-Za-z0-9_-]+$/);
            assert.match(peek.host, /^[a-z0-9.\-[\]:]+$/);
          }
        },
      ),
    );
  });

  it('checks its arguments', () => {
    assert.throws(() => peekChallengeRequest('GET' as unknown as Buffer, 100), TypeError);
    assert.throws(() => peekChallengeRequest(Buffer.alloc(0), 4), RangeError);
  });
});

describe('interceptAcmeChallenge on real sockets', () => {
  let server: Server;
  /** What the "normal path" received, per connection. */
  const handedOn: Promise<Buffer>[] = [];
  const answeredTokens: string[] = [];

  before(async () => {
    server = createServer((socket) => {
      interceptAcmeChallenge(
        socket,
        {
          lookup: (token, host) =>
            token === TOKEN && host === 'app.example.com' ? KEY_AUTHORIZATION : null,
          maxHeadBytes: 8192,
          timeoutMs: 300,
          onAnswered: (_host, token) => answeredTokens.push(token),
        },
        (passed) => {
          handedOn.push(
            new Promise((resolve) => {
              const chunks: Buffer[] = [];
              passed.on('data', (chunk: Buffer) => chunks.push(chunk));
              passed.on('end', () => {
                resolve(Buffer.concat(chunks));
                passed.end('routed');
              });
            }),
          );
        },
      );
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
  });

  after(() => {
    server.close();
  });

  async function exchange(parts: Buffer[], endAfter = true): Promise<string> {
    const address = server.address();
    assert.ok(address !== null && typeof address === 'object');
    const socket: Socket = connect(address.port, '127.0.0.1');
    await once(socket, 'connect');
    const closed = once(socket, 'close');
    const received: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => received.push(chunk));
    for (const part of parts) {
      socket.write(part);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    if (endAfter) socket.end();
    await closed;
    return Buffer.concat(received).toString('latin1');
  }

  it('answers a known token with the key authorization, even when the head comes in pieces', async () => {
    const bytes = request(`/.well-known/acme-challenge/${TOKEN}`);
    const answer = await exchange(
      [bytes.subarray(0, 10), bytes.subarray(10, 50), bytes.subarray(50)],
      false,
    );
    assert.equal(answer, challengeResponseBytes(KEY_AUTHORIZATION).toString('latin1'));
    assert.match(answer, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(answer.endsWith(`\r\n\r\n${KEY_AUTHORIZATION}`));
    assert.deepEqual(answeredTokens, [TOKEN]);
  });

  it('hands other requests on with every byte intact', async () => {
    const before = handedOn.length;
    const bytes = Buffer.concat([request('/index.html'), Buffer.from('tail')]);
    assert.equal(await exchange([bytes.subarray(0, 3), bytes.subarray(3)]), 'routed');
    assert.deepEqual(await handedOn[before], bytes);
  });

  it('hands on an unknown token, or a known token for another host', async () => {
    const before = handedOn.length;
    const unknown = request('/.well-known/acme-challenge/someoneelsestoken');
    const otherHost = request(`/.well-known/acme-challenge/${TOKEN}`, 'other.example.com');
    assert.equal(await exchange([unknown]), 'routed');
    assert.equal(await exchange([otherHost]), 'routed');
    assert.deepEqual(await handedOn[before], unknown);
    assert.deepEqual(await handedOn[before + 1], otherHost);
  });

  it('hands on a head that does not finish in time', async () => {
    const before = handedOn.length;
    const partial = Buffer.from('GET /.well-known/acme-challenge/abc HTTP/1.1\r\nHost: a');
    const address = server.address();
    assert.ok(address !== null && typeof address === 'object');
    const socket = connect(address.port, '127.0.0.1');
    socket.write(partial);
    await new Promise((resolve) => setTimeout(resolve, 450));
    assert.equal(handedOn.length, before + 1, 'handed on after timeoutMs');
    socket.end();
    assert.deepEqual(await handedOn[before], partial);
    socket.destroy();
  });
});
