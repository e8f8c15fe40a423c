import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { HttpParseError } from './errors.js';
import {
  RequestReader,
  ResponseReader,
  parseChunkSizeLine,
  parseHostHeader,
  parseRequestHead,
  serializeForwardedHead,
} from './http1.js';
import type { PendingRequest, RequestHead } from './http1.js';

const FUZZ_RUNS = 300;

function head(text: string): Buffer {
  return Buffer.from(text.replaceAll('\n', '\r\n') + '\r\n', 'latin1');
}

function status(fn: () => unknown): number {
  try {
    fn();
  } catch (error) {
    if (error instanceof HttpParseError) return error.status;
    throw error;
  }
  return 0;
}

interface Framed {
  heads: RequestHead[];
  bodies: Buffer[];
  ends: number;
}

/** Feeds `chunks` to a RequestReader, collecting heads, body bytes per message and ends. */
function frameAll(chunks: readonly Buffer[]): Framed {
  const reader = new RequestReader();
  const framed: Framed = { heads: [], bodies: [], ends: 0 };
  let body: Buffer[] = [];
  for (const chunk of chunks) {
    const rest = reader.push(chunk, {
      headStart: () => undefined,
      head: (parsed) => {
        framed.heads.push(parsed);
        return true;
      },
      body: (bytes) => body.push(Buffer.from(bytes)),
      end: () => {
        framed.bodies.push(Buffer.concat(body));
        body = [];
        framed.ends++;
        return true;
      },
    });
    assert.equal(rest, null);
  }
  return framed;
}

function splitAt(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let previous = 0;
  for (const point of points) {
    if (point > previous) chunks.push(bytes.subarray(previous, point));
    previous = point;
  }
  if (previous < bytes.length) chunks.push(bytes.subarray(previous));
  return chunks;
}

describe('parseRequestHead', () => {
  it('parses an origin-form request and normalizes the Host', () => {
    const parsed = parseRequestHead(
      head('GET /a/b?c=d HTTP/1.1\nHost: App.Tunnel.Test.:8080\nAccept: */*\n'),
    );
    assert.equal(parsed.method, 'GET');
    assert.equal(parsed.target, '/a/b?c=d');
    assert.equal(parsed.minorVersion, 1);
    assert.equal(parsed.host, 'app.tunnel.test');
    assert.equal(parsed.hostHeader, 'App.Tunnel.Test.:8080');
    assert.deepEqual(parsed.body, { kind: 'none' });
    assert.equal(parsed.upgrade, false);
    assert.deepEqual(parsed.headers, [
      ['Host', 'App.Tunnel.Test.:8080'],
      ['Accept', '*/*'],
    ]);
  });

  it('frames bodies by Content-Length and chunked, and sees WebSocket upgrades', () => {
    assert.deepEqual(
      parseRequestHead(head('POST / HTTP/1.1\nHost: a.b\nContent-Length: 12\n')).body,
      { kind: 'length', length: 12 },
    );
    assert.deepEqual(
      parseRequestHead(head('POST / HTTP/1.1\nHost: a.b\nTransfer-Encoding: Chunked\n')).body,
      { kind: 'chunked' },
    );
    const upgrade = parseRequestHead(
      head('GET /ws HTTP/1.1\nHost: a.b\nConnection: keep-alive, Upgrade\nUpgrade: websocket\n'),
    );
    assert.equal(upgrade.upgrade, true);
    // Upgrade without Connection: upgrade is not an upgrade request.
    assert.equal(
      parseRequestHead(head('GET / HTTP/1.1\nHost: a.b\nUpgrade: websocket\n')).upgrade,
      false,
    );
  });

  it('refuses proxy requests, h2c and malformed heads with the right status', () => {
    const cases: [string, number][] = [
      ['GET http://evil.example/ HTTP/1.1\nHost: a.b\n', 400],
      ['CONNECT a.b:443 HTTP/1.1\nHost: a.b:443\n', 400],
      [
        'GET / HTTP/1.1\nHost: a.b\nConnection: Upgrade, HTTP2-Settings\nUpgrade: h2c\nHTTP2-Settings: AAA\n',
        400,
      ],
      ['GET / HTTP/1.1\nHost: a.b\nUpgrade: h2c\nConnection: upgrade\n', 400],
      ['GET / HTTP/1.1\nAccept: */*\n', 400],
      ['GET / HTTP/1.1\nHost: a.b\nHost: c.d\n', 400],
      ['POST / HTTP/1.1\nHost: a.b\nContent-Length: 3\nTransfer-Encoding: chunked\n', 400],
      ['POST / HTTP/1.1\nHost: a.b\nContent-Length: 3\nContent-Length: 3\n', 400],
      ['POST / HTTP/1.1\nHost: a.b\nContent-Length: -1\n', 400],
      ['POST / HTTP/1.1\nHost: a.b\nContent-Length: 1e3\n', 400],
      ['POST / HTTP/1.1\nHost: a.b\nTransfer-Encoding: gzip, chunked\n', 501],
      ['POST / HTTP/1.0\nHost: a.b\nTransfer-Encoding: chunked\n', 400],
      ['GET / HTTP/1.1\nHost: a.b\nX-Folded: one\n two\n', 400],
      ['GET / HTTP/1.1\nHost : a.b\n', 400],
      ['GET / HTTP/1.1\nHost: a.b\nBad\x01Value: x\n', 400],
      ['GET / HTTP/1.1\nHost: a.b\nX: va\x00lue\n', 400],
      ['GET / HTTP/2.0\nHost: a.b\n', 505],
      ['PRI * HTTP/2.0\n', 505],
      ['GET  / HTTP/1.1\nHost: a.b\n', 400],
      ['GET / HTTP/1.1 \nHost: a.b\n', 400],
      ['GET * HTTP/1.1\nHost: a.b\n', 400],
      ['GET /\x7f HTTP/1.1\nHost: a.b\n', 400],
      ['GET / HTTP/1.1\nHost: a..b\n', 400],
      ['GET / HTTP/1.1\nHost: a.b:99999x\n', 400],
      ['G(T / HTTP/1.1\nHost: a.b\n', 400],
    ];
    for (const [text, expected] of cases) {
      assert.equal(
        status(() => parseRequestHead(head(text))),
        expected,
        JSON.stringify(text),
      );
    }
    assert.equal(
      status(() => parseRequestHead(head('OPTIONS * HTTP/1.1\nHost: a.b\n'))),
      0,
    );
    // Bare LF line endings are refused.
    assert.equal(
      status(() => parseRequestHead(Buffer.from('GET / HTTP/1.1\nHost: a.b\r\n\r\n'))),
      400,
    );
  });

  it('enforces the head size and field count limits with 431', () => {
    const many = Array.from({ length: 101 }, (_, i) => `X-${i}: v\n`).join('');
    assert.equal(
      status(() => parseRequestHead(head(`GET / HTTP/1.1\nHost: a.b\n${many}`))),
      431,
    );
    const big = `GET / HTTP/1.1\nHost: a.b\nX-Big: ${'x'.repeat(40_000)}\n`;
    assert.equal(
      status(() => parseRequestHead(head(big))),
      431,
    );
  });
});

describe('parseHostHeader', () => {
  it('lower-cases, strips the port and a trailing dot, and keeps IP literals', () => {
    assert.equal(parseHostHeader('APP.example.COM:443'), 'app.example.com');
    assert.equal(parseHostHeader('app.example.com.'), 'app.example.com');
    assert.equal(parseHostHeader('[::1]:8080'), '[::1]');
    assert.equal(parseHostHeader('127.0.0.1'), '127.0.0.1');
    for (const bad of ['', ':80', 'a b', 'a/b', '-a.b', 'a.-b', '[::1', 'a.b:x']) {
      assert.equal(
        status(() => parseHostHeader(bad)),
        400,
        bad,
      );
    }
  });
});

describe('serializeForwardedHead', () => {
  it('replaces client-sent forwarding fields with the real connection', () => {
    const parsed = parseRequestHead(
      head(
        'GET /x HTTP/1.1\nHost: app.t.test\nX-Forwarded-For: 6.6.6.6\nx-forwarded-proto: https\n' +
          'X-Forwarded-Host: evil\nForwarded: for=6.6.6.6\nX-Real-IP: 6.6.6.6\nX-Forwarded-Port: 1\n' +
          'Connection: keep-alive, X-Forwarded-For\nAccept: text/html\n',
      ),
    );
    const text = serializeForwardedHead(parsed, {
      clientAddress: '198.51.100.7',
      proto: 'http',
    }).toString('latin1');
    assert.equal(
      text,
      'GET /x HTTP/1.1\r\nHost: app.t.test\r\nConnection: keep-alive\r\nAccept: text/html\r\n' +
        'X-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: app.t.test\r\n\r\n',
    );
  });
});

describe('RequestReader', () => {
  it('frames pipelined requests with Content-Length and chunked bodies, trailers included', () => {
    const wire = Buffer.from(
      '\r\nGET /1 HTTP/1.1\r\nHost: a.b\r\n\r\n' +
        'POST /2 HTTP/1.1\r\nHost: a.b\r\nContent-Length: 5\r\n\r\nhello' +
        'POST /3 HTTP/1.1\r\nHost: a.b\r\nTransfer-Encoding: chunked\r\n\r\n' +
        '4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Trailer: yes\r\n\r\n' +
        'GET /4 HTTP/1.0\r\nHost: a.b\r\n\r\n',
      'latin1',
    );
    const whole = frameAll([wire]);
    assert.deepEqual(
      whole.heads.map((parsed) => parsed.target),
      ['/1', '/2', '/3', '/4'],
    );
    assert.equal(whole.ends, 4);
    assert.equal(whole.bodies[1]?.toString(), 'hello');
    assert.equal(
      whole.bodies[2]?.toString(),
      '4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Trailer: yes\r\n\r\n',
    );
    // Byte by byte gives the same framing.
    const bytewise = frameAll([...wire].map((byte) => Buffer.from([byte])));
    assert.deepEqual(
      bytewise.heads.map((parsed) => parsed.target),
      ['/1', '/2', '/3', '/4'],
    );
    assert.deepEqual(bytewise.bodies, whole.bodies);
  });

  it('stops when end() says so and hands back the rest', () => {
    const reader = new RequestReader();
    const wire = Buffer.from(
      'GET /a HTTP/1.1\r\nHost: a.b\r\n\r\nGET /b HTTP/1.1\r\nHost: a.b\r\n\r\n',
    );
    const seen: string[] = [];
    const handler = {
      headStart: () => undefined,
      head: (parsed: RequestHead) => {
        seen.push(parsed.target);
        return true;
      },
      body: () => undefined,
      end: () => false,
    };
    const rest = reader.push(wire, handler);
    assert.deepEqual(seen, ['/a']);
    assert.ok(rest !== null);
    assert.equal(rest.toString(), 'GET /b HTTP/1.1\r\nHost: a.b\r\n\r\n');
    assert.equal(reader.idle, true);
    assert.equal(reader.push(rest, handler), null);
    assert.deepEqual(seen, ['/a', '/b']);
  });

  it('refuses malformed chunked framing before forwarding it', () => {
    for (const bad of ['zz\r\n', '4\r\nwikiX\r\n', '4\nwiki\r\n', '1234567890abcdef\r\n']) {
      const forwarded: Buffer[] = [];
      const reader = new RequestReader();
      const code = status(() =>
        reader.push(
          Buffer.from(`POST / HTTP/1.1\r\nHost: a.b\r\nTransfer-Encoding: chunked\r\n\r\n${bad}`),
          {
            headStart: () => undefined,
            head: () => true,
            body: (bytes) => forwarded.push(Buffer.from(bytes)),
            end: () => true,
          },
        ),
      );
      assert.equal(code, 400, JSON.stringify(bad));
      assert.ok(
        !Buffer.concat(forwarded).toString('latin1').includes('X'),
        'bad bytes not forwarded',
      );
    }
  });

  it('bounds an unterminated head', () => {
    const reader = new RequestReader({ maxHeadBytes: 1024, maxHeaderCount: 10 });
    const handler = {
      headStart: () => undefined,
      head: () => true,
      body: () => undefined,
      end: () => true,
    };
    reader.push(Buffer.from('GET / HTTP/1.1\r\nHost: a.b\r\n'), handler);
    assert.equal(
      status(() => reader.push(Buffer.alloc(2000, 0x61), handler)),
      431,
    );
    assert.equal(
      status(() => reader.push(Buffer.from('x'), handler)),
      400,
      'failed stays failed',
    );
  });

  it('fuzz: any bytes either frame or fail with HttpParseError', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }), (chunks) => {
        const reader = new RequestReader({ maxHeadBytes: 2048, maxHeaderCount: 20 });
        try {
          for (const chunk of chunks) {
            reader.push(Buffer.from(chunk), {
              headStart: () => undefined,
              head: () => true,
              body: () => undefined,
              end: () => true,
            });
          }
        } catch (error) {
          assert.ok(error instanceof HttpParseError, String(error));
          assert.ok([400, 408, 421, 431, 501, 505].includes(error.status));
        }
      }),
      { numRuns: FUZZ_RUNS * 3 },
    );
  });

  it('fuzz: generated request streams frame identically however they are split', () => {
    const token = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,11}$/);
    const fieldValue = fc.stringMatching(/^[\x21-\x7e]([\x20-\x7e]{0,20}[\x21-\x7e])?$/);
    const request = fc.record({
      method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH'),
      path: fc.stringMatching(/^\/[\x21-\x7e]{0,30}$/),
      fields: fc.array(
        fc.tuple(
          token.map((name) => `X-${name}`),
          fieldValue,
        ),
        { maxLength: 6 },
      ),
      body: fc.option(fc.uint8Array({ maxLength: 200 }), { nil: undefined }),
      chunked: fc.boolean(),
      chunkSizes: fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1, maxLength: 5 }),
    });
    fc.assert(
      fc.property(
        fc.array(request, { minLength: 1, maxLength: 5 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        (requests, cuts) => {
          const parts: Buffer[] = [];
          const expectedBodies: Buffer[] = [];
          for (const r of requests) {
            let text = `${r.method} ${r.path} HTTP/1.1\r\nHost: app.t.test\r\n`;
            for (const [name, value] of r.fields) text += `${name}: ${value}\r\n`;
            let body = Buffer.alloc(0);
            if (r.body !== undefined && r.chunked) {
              text += 'Transfer-Encoding: chunked\r\n';
              const pieces: Buffer[] = [];
              let offset = 0;
              let i = 0;
              while (offset < r.body.length) {
                const size = Math.min(
                  r.chunkSizes[i++ % r.chunkSizes.length] ?? 1,
                  r.body.length - offset,
                );
                pieces.push(Buffer.from(`${size.toString(16)}\r\n`));
                pieces.push(Buffer.from(r.body.subarray(offset, offset + size)));
                pieces.push(Buffer.from('\r\n'));
                offset += size;
              }
              pieces.push(Buffer.from('0\r\n\r\n'));
              body = Buffer.concat(pieces);
            } else if (r.body !== undefined) {
              text += `Content-Length: ${r.body.length}\r\n`;
              body = Buffer.from(r.body);
            }
            parts.push(Buffer.from(text + '\r\n', 'latin1'), body);
            expectedBodies.push(body);
          }
          const wire = Buffer.concat(parts);
          const framed = frameAll(splitAt(wire, cuts));
          assert.equal(framed.ends, requests.length);
          assert.deepEqual(
            framed.heads.map((parsed) => [parsed.method, parsed.target]),
            requests.map((r) => [r.method, r.path]),
          );
          assert.deepEqual(framed.bodies, expectedBodies);
          // The rewritten head parses back to the same request, forwarding fields ours.
          for (const parsed of framed.heads) {
            const again = parseRequestHead(
              serializeForwardedHead(parsed, { clientAddress: '192.0.2.1', proto: 'https' }),
            );
            assert.equal(again.target, parsed.target);
            assert.deepEqual(again.body, parsed.body);
            const forwardedFor = again.headers.filter(([name]) => name === 'X-Forwarded-For');
            assert.deepEqual(forwardedFor, [['X-Forwarded-For', '192.0.2.1']]);
          }
        },
      ),
      { numRuns: FUZZ_RUNS },
    );
  });
});

describe('parseChunkSizeLine', () => {
  it('reads hex sizes with extensions and refuses the rest', () => {
    assert.equal(parseChunkSizeLine(Buffer.from('1A\r\n')), 26);
    assert.equal(parseChunkSizeLine(Buffer.from('0;name="v"\r\n')), 0);
    assert.equal(parseChunkSizeLine(Buffer.from('ff ;x\r\n')), 255);
    for (const bad of ['\r\n', 'g\r\n', '1 \r\n', '-1\r\n', '12\n', '12345678901234\r\n']) {
      assert.equal(
        status(() => parseChunkSizeLine(Buffer.from(bad))),
        400,
        JSON.stringify(bad),
      );
    }
  });
});

describe('ResponseReader', () => {
  function observe(
    requests: readonly PendingRequest[],
    chunks: readonly Buffer[],
    endAfter = false,
  ): { statuses: [number, boolean][]; completes: number; reader: ResponseReader } {
    const reader = new ResponseReader();
    for (const request of requests) reader.expect(request);
    const statuses: [number, boolean][] = [];
    let completes = 0;
    const handler = {
      head: (code: number, final: boolean) => statuses.push([code, final]),
      complete: () => completes++,
    };
    for (const chunk of chunks) reader.push(chunk, handler);
    if (endAfter) reader.end(handler);
    return { statuses, completes, reader };
  }
  const plain: PendingRequest = { isHead: false, upgrade: false };

  it('follows Content-Length, chunked, HEAD, 204/304 and interim responses', () => {
    const wire = Buffer.from(
      'HTTP/1.1 100 Continue\r\n\r\n' +
        'HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc' +
        'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n' +
        'HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n' + // to a HEAD: no body
        'HTTP/1.1 204 No Content\r\n\r\n' +
        'HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n' +
        'HTTP/1.0 200\r\n\r\nuntil close',
    );
    const requests = [plain, plain, { isHead: true, upgrade: false }, plain, plain, plain];
    for (const chunks of [[wire], [...wire].map((byte) => Buffer.from([byte]))]) {
      const { statuses, completes, reader } = observe(requests, chunks, true);
      assert.deepEqual(statuses, [
        [100, false],
        [200, true],
        [200, true],
        [200, true],
        [204, true],
        [304, true],
        [200, true],
      ]);
      assert.equal(completes, 6);
      assert.equal(reader.outstanding, 0);
    }
  });

  it('switches on 101 only for an upgrade request', () => {
    const switched = observe(
      [{ isHead: false, upgrade: true }],
      [Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello')],
    );
    assert.equal(switched.reader.switched, true);
    assert.equal(
      status(() => observe([plain], [Buffer.from('HTTP/1.1 101 Switching\r\n\r\n')])),
      502,
    );
  });

  it('refuses a response to no request and malformed responses with 502', () => {
    assert.equal(
      status(() => observe([], [Buffer.from('HTTP/1.1 200 OK\r\n\r\n')])),
      502,
    );
    for (const bad of [
      'HTTP/1.1 2000 OK\r\n\r\n',
      'ICY 200 OK\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n',
      'HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n',
      'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
    ]) {
      assert.equal(
        status(() => observe([plain], [Buffer.from(bad)])),
        502,
        JSON.stringify(bad),
      );
    }
  });

  it('fuzz: any backend bytes are observed or fail with 502, never anything else', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 6 }),
        fc.array(fc.record({ isHead: fc.boolean(), upgrade: fc.boolean() }), { maxLength: 4 }),
        (chunks, requests) => {
          try {
            observe(
              requests,
              chunks.map((chunk) => Buffer.from(chunk)),
              true,
            );
          } catch (error) {
            assert.ok(error instanceof HttpParseError && error.status === 502, String(error));
          }
        },
      ),
      { numRuns: FUZZ_RUNS * 3 },
    );
  });

  it('fuzz: generated responses complete once each however they are split', () => {
    const response = fc.record({
      code: fc.constantFrom(200, 201, 204, 304, 404, 500),
      body: fc.uint8Array({ maxLength: 100 }),
      chunked: fc.boolean(),
      interim: fc.boolean(),
    });
    fc.assert(
      fc.property(
        fc.array(response, { minLength: 1, maxLength: 5 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (responses, cuts) => {
          const parts: Buffer[] = [];
          for (const r of responses) {
            if (r.interim) parts.push(Buffer.from('HTTP/1.1 100 Continue\r\n\r\n'));
            const bodyless = r.code === 204 || r.code === 304;
            if (r.chunked && !bodyless) {
              parts.push(Buffer.from(`HTTP/1.1 ${r.code} X\r\nTransfer-Encoding: chunked\r\n\r\n`));
              if (r.body.length > 0) {
                parts.push(
                  Buffer.from(`${r.body.length.toString(16)}\r\n`),
                  Buffer.from(r.body),
                  Buffer.from('\r\n'),
                );
              }
              parts.push(Buffer.from('0\r\n\r\n'));
            } else {
              const length = bodyless ? 0 : r.body.length;
              parts.push(Buffer.from(`HTTP/1.1 ${r.code} X\r\nContent-Length: ${length}\r\n\r\n`));
              if (!bodyless) parts.push(Buffer.from(r.body));
            }
          }
          const { completes, reader } = observe(
            responses.map(() => plain),
            splitAt(Buffer.concat(parts), cuts),
          );
          assert.equal(completes, responses.length);
          assert.equal(reader.outstanding, 0);
        },
      ),
      { numRuns: FUZZ_RUNS },
    );
  });
});
