import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ChunkedDecoder, TrafficRecorder } from './recorder.js';
import type { RecordedExchange, StreamTap, TunnelTarget } from './recorder.js';

const TARGET: TunnelTarget = {
  tunnelId: 't1',
  url: 'https://app.tunnel.test',
  localHost: '127.0.0.1',
  localPort: 3000,
};

/** Feeds bytes one at a time: framing must survive any split. */
function feedBytewise(feed: (chunk: Buffer) => void, text: string | Buffer): void {
  const bytes = Buffer.isBuffer(text) ? text : Buffer.from(text, 'latin1');
  for (let i = 0; i < bytes.length; i++) feed(bytes.subarray(i, i + 1));
}

function only(recorder: TrafficRecorder): RecordedExchange {
  const list = recorder.list();
  assert.equal(list.length, 1);
  const [exchange] = list;
  assert.ok(exchange !== undefined);
  return exchange;
}

function header(exchange: RecordedExchange, side: 'request' | 'response', name: string): string {
  const fields = exchange[side]?.headers ?? [];
  return fields.find(([field]) => field.toLowerCase() === name)?.[1] ?? '';
}

describe('TrafficRecorder', () => {
  it('records a keep-alive pair, with bodies, split at every byte', () => {
    const recorder = new TrafficRecorder();
    const tap: StreamTap = recorder.openStream(TARGET);
    feedBytewise((chunk) => {
      tap.fromClient(chunk);
    }, 'GET /one?x=1 HTTP/1.1\r\nHost: app\r\n\r\n' + 'POST /two HTTP/1.1\r\nHost: app\r\nContent-Length: 5\r\n\r\nhello');
    feedBytewise((chunk) => {
      tap.fromService(chunk);
    }, 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nX-A: b\r\n\r\none' + 'HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n');
    const [first, second] = recorder.list();
    assert.ok(first !== undefined && second !== undefined);
    assert.equal(first.state, 'complete');
    assert.equal(first.request?.method, 'GET');
    assert.equal(first.request.target, '/one?x=1');
    assert.equal(first.response?.status, 200);
    assert.equal(first.response.reason, 'OK');
    assert.equal(first.response.body.bytes.toString(), 'one');
    assert.equal(header(first, 'response', 'x-a'), 'b');
    assert.ok(first.durationMs !== null && first.durationMs >= 0);
    assert.equal(second.state, 'complete');
    assert.equal(second.request?.body.bytes.toString(), 'hello');
    assert.equal(second.request.body.size, 5);
    assert.equal(second.response?.status, 201);
    assert.equal(second.response.body.size, 0);
    assert.equal(first.target, TARGET);
  });

  it('de-chunks chunked request and response bodies, trailers included', () => {
    const recorder = new TrafficRecorder();
    const tap = recorder.openStream(TARGET);
    feedBytewise((chunk) => {
      tap.fromClient(chunk);
    }, 'POST /up HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n' + '3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-T: 1\r\n\r\n');
    feedBytewise((chunk) => {
      tap.fromService(chunk);
    }, 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n1\r\n!\r\n0\r\n\r\n');
    const exchange = only(recorder);
    assert.equal(exchange.state, 'complete');
    assert.equal(exchange.request?.body.bytes.toString(), 'abcde');
    assert.equal(exchange.response?.body.bytes.toString(), 'wxyz!');
    assert.equal(exchange.response.body.size, 5);
  });

  it('keeps bodies up to the limit and marks them truncated', () => {
    const recorder = new TrafficRecorder({ bodyLimit: 10 });
    const tap = recorder.openStream(TARGET);
    const big = Buffer.alloc(1000, 0x61);
    tap.fromClient(
      Buffer.concat([
        Buffer.from('PUT /big HTTP/1.1\r\nHost: app\r\nContent-Length: 1000\r\n\r\n'),
        big,
      ]),
    );
    tap.fromService(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nfine'));
    const exchange = only(recorder);
    assert.equal(exchange.request?.body.size, 1000);
    assert.equal(exchange.request.body.bytes.length, 10);
    assert.equal(exchange.request.body.truncated, true);
    assert.equal(exchange.response?.body.truncated, false);
  });

  it('records garbage as unparseable, ignores the rest of the stream and never throws', () => {
    const recorder = new TrafficRecorder();
    const tap = recorder.openStream(TARGET);
    tap.fromClient(Buffer.from('\x16\x03\x01 this is not HTTP\r\n\r\n'));
    tap.fromClient(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n'));
    tap.fromService(Buffer.from('whatever'));
    tap.close();
    const exchange = only(recorder);
    assert.equal(exchange.state, 'unparseable');
    assert.match(exchange.error ?? '', /request|method|version|line/i);
    assert.equal(exchange.rawSample?.subarray(0, 1)[0], 0x16);
  });

  it('records a garbage response to a good request as unparseable', () => {
    const recorder = new TrafficRecorder();
    const tap = recorder.openStream(TARGET);
    tap.fromClient(Buffer.from('GET /x HTTP/1.1\r\nHost: a\r\n\r\n'));
    tap.fromService(Buffer.from('SSH-2.0-OpenSSH\r\n\r\n'));
    const exchange = only(recorder);
    assert.equal(exchange.state, 'unparseable');
    assert.equal(exchange.request?.target, '/x');
    assert.match(exchange.error ?? '', /status line/);
  });

  it('keeps only the last ringSize exchanges', () => {
    const recorder = new TrafficRecorder({ ringSize: 3 });
    for (let i = 0; i < 5; i++) {
      const tap = recorder.openStream(TARGET);
      tap.fromClient(Buffer.from(`GET /${i} HTTP/1.1\r\nHost: a\r\n\r\n`));
      tap.fromService(Buffer.from('HTTP/1.1 204 No Content\r\n\r\n'));
      tap.close();
    }
    const list = recorder.list();
    assert.deepEqual(
      list.map((exchange) => exchange.request?.target),
      ['/2', '/3', '/4'],
    );
    assert.equal(recorder.get(1), undefined);
    assert.equal(recorder.get(5)?.state, 'complete');
  });

  it('records a WebSocket upgrade as one exchange and nothing after the 101', () => {
    const recorder = new TrafficRecorder();
    const tap = recorder.openStream(TARGET);
    tap.fromClient(
      Buffer.from(
        'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x85abcd',
      ),
    );
    tap.fromService(
      Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi'),
    );
    tap.fromClient(Buffer.from('\x81\x85more frames'));
    tap.close();
    const exchange = only(recorder);
    assert.equal(exchange.state, 'complete');
    assert.equal(exchange.upgrade, true);
    assert.equal(exchange.response?.status, 101);
  });

  it('goes on with HTTP when an upgrade is declined', () => {
    const recorder = new TrafficRecorder();
    const tap = recorder.openStream(TARGET);
    tap.fromClient(
      Buffer.from(
        'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n' +
          'GET /next HTTP/1.1\r\nHost: a\r\n\r\n',
      ),
    );
    tap.fromService(Buffer.from('HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n'));
    tap.fromService(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'));
    const list = recorder.list();
    assert.deepEqual(
      list.map((exchange) => [exchange.request?.target, exchange.response?.status, exchange.state]),
      [
        ['/ws', 426, 'complete'],
        ['/next', 200, 'complete'],
      ],
    );
  });

  it('handles HEAD, interim 100 Continue, close-delimited bodies and early closes', () => {
    const recorder = new TrafficRecorder();
    const tap = recorder.openStream(TARGET);
    tap.fromClient(Buffer.from('HEAD /h HTTP/1.1\r\nHost: a\r\n\r\n'));
    tap.fromService(Buffer.from('HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n'));
    tap.fromClient(
      Buffer.from(
        'POST /c HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz',
      ),
    );
    tap.fromService(Buffer.from('HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nuntil'));
    tap.fromService(Buffer.from(' close'));
    tap.close();
    const [head, close] = recorder.list();
    assert.equal(head?.state, 'complete');
    assert.equal(head.response?.body.size, 0);
    assert.equal(close?.state, 'complete');
    assert.equal(close.response?.status, 200);
    assert.equal(close.response.body.bytes.toString(), 'until close');

    const early = new TrafficRecorder();
    const cut = early.openStream(TARGET);
    cut.fromClient(Buffer.from('GET /slow HTTP/1.1\r\nHost: a\r\n\r\n'));
    cut.close();
    assert.equal(only(early).state, 'incomplete');
  });

  it('emits an event for every change', () => {
    const recorder = new TrafficRecorder();
    const seen: string[] = [];
    recorder.on('exchange', (exchange) => seen.push(exchange.state));
    const tap = recorder.openStream(TARGET);
    tap.fromClient(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\n\r\n'));
    tap.fromService(Buffer.from('HTTP/1.1 204 No Content\r\n\r\n'));
    assert.equal(seen[0], 'pending');
    assert.equal(seen[seen.length - 1], 'complete');
  });

  it('checks its options', () => {
    assert.throws(() => new TrafficRecorder({ ringSize: 0 }), /options\.ringSize/);
    assert.throws(() => new TrafficRecorder({ bodyLimit: -1 }), /options\.bodyLimit/);
  });
});

describe('ChunkedDecoder', () => {
  it('reports where the message ends and rejects bad framing', () => {
    const parts: string[] = [];
    const decoder = new ChunkedDecoder((bytes) => parts.push(bytes.toString()));
    const input = Buffer.from('2\r\nab\r\n0\r\n\r\nNEXT');
    assert.equal(decoder.push(input), input.length - 4);
    assert.equal(decoder.done, true);
    assert.equal(parts.join(''), 'ab');
    const bad = new ChunkedDecoder(() => undefined);
    assert.throws(() => bad.push(Buffer.from('zz\r\n')), /chunk-size/);
  });
});
