/**
 * Tests of the native addon against the real kernel. Needs root: it creates a
 * network namespace `warren-nt-<pid>` for the TUN tests (addresses only inside
 * it, from 192.0.2.0/24), and uses loopback for UDP. Everything it creates is
 * removed in after(), also on failure.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import * as native from './index.js';

const NATIVE_MODULE_URL = new URL('./index.js', import.meta.url).href;

function ip(...args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Resolves when `condition()` holds, checking every 5 ms; rejects after `ms`. */
async function waitUntil(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Runs a module snippet in a fresh node process (optionally inside a netns). */
function runNode(
  source: string,
  options: { netns?: string; timeoutMs?: number; nodeOptions?: string[] } = {},
): { status: number | null; stdout: string; stderr: string } {
  const command = options.netns === undefined ? process.execPath : 'ip';
  const prefix =
    options.netns === undefined ? [] : ['netns', 'exec', options.netns, process.execPath];
  const flags = [...(options.nodeOptions ?? []), '--input-type=module', '-e', source];
  const result = spawnSync(command, [...prefix, ...flags], {
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 10_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function assertSystemError(error: unknown, code: string, syscall: string): true {
  assert.ok(native.isErrnoError(error), `expected a system error, got ${String(error)}`);
  assert.equal(error.code, code);
  assert.equal(error.syscall, syscall);
  assert.equal(native.errnoName(error.errno), code);
  assert.ok(error.errno < 0, 'errno is negative, as in Node');
  return true;
}

const LOOPBACK4 = Uint8Array.of(127, 0, 0, 1);
const LOOPBACK6 = Uint8Array.from([...new Array<number>(15).fill(0), 1]);
const DOC_ADDRESS4 = Uint8Array.of(192, 0, 2, 77); // never configured on this host
const DOC_ADDRESS6 = Uint8Array.of(0x20, 0x01, 0x0d, 0xb8, ...new Array<number>(11).fill(0), 0x77);

/** Tracks fds and watchers a test opened so they are closed even on failure. */
class Resources {
  private readonly fds: number[] = [];
  private readonly watchers: native.Watcher[] = [];
  fd(fd: number): number {
    this.fds.push(fd);
    return fd;
  }
  udp(family: native.IpFamily, port = 0): native.UdpSocket {
    const socket = native.udpOpen(family, port);
    this.fd(socket.fd);
    return socket;
  }
  watcher(watcher: native.Watcher): native.Watcher {
    this.watchers.push(watcher);
    return watcher;
  }
  closeAll(): void {
    for (const watcher of this.watchers.splice(0)) watcher.close();
    for (const fd of this.fds.splice(0)) {
      try {
        native.close(fd);
      } catch {
        // already closed by the test itself
      }
    }
  }
}

void describe('errors and arguments', () => {
  void test('bad arguments throw TypeError/RangeError naming the argument', () => {
    assert.throws(() => native.tunOpen('a-name-longer-than-15'), {
      name: 'RangeError',
      code: 'ERR_OUT_OF_RANGE',
      message: /tunOpen: argument 'name'/,
    });
    assert.throws(() => native.tunRead(Number.NaN, Buffer.alloc(1), 1, 1, new Int32Array(1)), {
      code: 'ERR_OUT_OF_RANGE',
      message: /tunRead: argument 'fd'/,
    });
    assert.throws(
      () => {
        // @ts-expect-error a string is not an fd
        native.close('3');
      },
      { name: 'TypeError', message: /close: argument 'fd'/ },
    );
    assert.throws(() => native.tunRead(0, Buffer.alloc(10), 8, 2, new Int32Array(2)), {
      message: /tunRead: argument 'buffer' is shorter/,
    });
    assert.throws(() => native.udpRecv(0, Buffer.alloc(16), 8, 2, new Int32Array(12)), {
      message: /udpRecv: argument 'meta'/,
    });
    // @ts-expect-error 5 is not a family
    assert.throws(() => native.udpOpen(5, 0), { message: /udpOpen: argument 'family'/ });
    assert.throws(
      () => native.udpSend(0, Buffer.alloc(4), 0, 4, 4, LOOPBACK6, 1, null, 0),
      /udpSend: argument 'dstAddr' must hold 4 bytes/,
    );
    assert.throws(
      () => native.udpSend(0, Buffer.alloc(4), 2, 4, 4, LOOPBACK4, 1, null, 0),
      /udpSend: argument 'length' runs past/,
    );
    // @ts-expect-error callback must be a function
    assert.throws(() => native.watch(0, null), { name: 'TypeError', message: /'callback'/ });
  });

  void test('failing syscalls throw Node-style system errors', () => {
    assert.throws(
      () => {
        native.close(0x7ffffff0);
      },
      (error: unknown) => assertSystemError(error, 'EBADF', 'close'),
    );
    assert.throws(
      () => native.watch(0x7ffffff0, () => undefined),
      (error: unknown) => assertSystemError(error, 'EBADF', 'uv_poll_init'),
    );
    const resources = new Resources();
    try {
      const first = resources.udp(4);
      assert.throws(
        () => resources.udp(4, first.port),
        (error: unknown) => assertSystemError(error, 'EADDRINUSE', 'bind'),
      );
    } finally {
      resources.closeAll();
    }
    assert.equal(native.errnoName(-77), 'EBADFD');
    assert.equal(native.errnoName(11), 'EAGAIN');
    assert.equal(native.isErrnoError(new Error('plain')), false);
    assert.equal(native.isErrnoError({ code: 'EPERM', errno: -1, syscall: 'x' }), false);
  });
});

void describe('address helpers', () => {
  void test('encode/decode address words round-trip and format', () => {
    const words = new Int32Array(8);
    native.encodeAddressWords(words, 0, Uint8Array.of(192, 0, 2, 1));
    assert.deepEqual([...words.subarray(0, 4)], [0xc0000201 | 0, 0, 0, 0]);
    assert.deepEqual(
      native.decodeAddressWords(words, 0, new Uint8Array(4)),
      Uint8Array.of(192, 0, 2, 1),
    );
    assert.equal(native.formatAddress(words, 0, 4), '192.0.2.1');

    native.encodeAddressWords(words, 4, DOC_ADDRESS6);
    assert.deepEqual(native.decodeAddressWords(words, 4, new Uint8Array(16)), DOC_ADDRESS6);
    assert.equal(native.formatAddress(words, 4, 6), '2001:db8::77');
    assert.equal(native.formatAddress(Int32Array.of(0, 0, 0, 1), 0, 6), '::1');
    assert.equal(native.formatAddress(Int32Array.of(0x20010db8, 0, 1, 0), 0, 6), '2001:db8::1:0:0');
    assert.equal(
      native.formatAddress(Int32Array.of(0x20010db8, 1, 0x10000, 1), 0, 6),
      '2001:db8:0:1:1::1',
    );
    assert.throws(() => native.decodeAddressWords(words, 6, new Uint8Array(16)), RangeError);
  });

  void test('endpointFromMeta copies the reply address without the length', () => {
    const meta = new Int32Array(2 * native.META_STRIDE);
    for (let i = 0; i < meta.length; i++) meta[i] = 1000 + i;
    const endpoints = new Int32Array(2 * native.ENDPOINT_STRIDE);
    native.endpointFromMeta(meta, 1, endpoints, 0);
    assert.equal(endpoints[native.ENDPOINT_FLAGS], native.ENDPOINT_FLAG_STICKY_SOURCE);
    for (let word = 1; word < native.ENDPOINT_STRIDE; word++) {
      assert.equal(endpoints[word], meta[native.META_STRIDE + word]);
    }
    assert.throws(() => {
      native.endpointFromMeta(meta, 2, endpoints, 0);
    }, /packetIndex/);
  });
});

void describe('UDP on loopback', () => {
  const resources = new Resources();
  after(() => {
    resources.closeAll();
  });
  const SLOT = 2048;
  const receiveBuffer = Buffer.alloc(SLOT * 512);
  const meta = new Int32Array(512 * native.META_STRIDE);

  /** Receives until `expected` datagrams arrived (they may need a moment on loopback). */
  async function receiveAll(fd: number, expected: number, maxPackets = 64): Promise<number> {
    let total = 0;
    await waitUntil(
      () => {
        const count = native.udpRecv(
          fd,
          receiveBuffer.subarray(total * SLOT),
          SLOT,
          Math.min(maxPackets, 512 - total),
          meta.subarray(total * native.META_STRIDE),
        );
        total += count;
        return total >= expected;
      },
      5000,
      `${expected} datagrams`,
    );
    return total;
  }

  function payloadAt(index: number): string {
    const length = meta[index * native.META_STRIDE + native.META_LENGTH] ?? -1;
    return receiveBuffer.toString('utf8', index * SLOT, index * SLOT + length);
  }

  for (const family of [4, 6] as const) {
    const loopback = family === 4 ? LOOPBACK4 : LOOPBACK6;
    void test(`IPv${family}: udpSend and udpRecv with PKTINFO metadata`, async () => {
      const a = resources.udp(family);
      const b = resources.udp(family);
      assert.ok(a.port > 0 && b.port > 0 && a.port !== b.port);
      assert.equal(native.udpRecv(b.fd, receiveBuffer, SLOT, 8, meta), 0, 'nothing queued yet');
      const message = Buffer.from('hello-0hello-1hello-2');
      for (let i = 0; i < 3; i++) {
        assert.equal(native.udpSend(a.fd, message, i * 7, 7, family, loopback, b.port, null, 0), 0);
      }
      assert.equal(await receiveAll(b.fd, 3), 3);
      for (let i = 0; i < 3; i++) {
        const record = i * native.META_STRIDE;
        assert.equal(meta[record + native.META_LENGTH], 7);
        assert.equal(meta[record + native.META_FAMILY], family);
        assert.equal(meta[record + native.META_PEER_PORT], a.port);
        assert.equal(meta[record + native.META_LOCAL_IFINDEX], 1, 'arrived on lo (ifindex 1)');
        assert.deepEqual(
          native.decodeAddressWords(
            meta,
            record + native.META_PEER_ADDR,
            new Uint8Array(loopback.length),
          ),
          loopback,
        );
        assert.deepEqual(
          native.decodeAddressWords(
            meta,
            record + native.META_LOCAL_ADDR,
            new Uint8Array(loopback.length),
          ),
          loopback,
          'local address from PKTINFO',
        );
        assert.equal(payloadAt(i), `hello-${i}`);
      }
    });

    void test(`IPv${family}: a sticky source that is ours works, one that is not returns an errno`, async () => {
      const a = resources.udp(family);
      const b = resources.udp(family);
      const payload = Buffer.from('sticky');
      assert.equal(native.udpSend(a.fd, payload, 0, 6, family, loopback, b.port, loopback, 1), 0);
      assert.equal(await receiveAll(b.fd, 1), 1);
      assert.equal(payloadAt(0), 'sticky');

      const foreign = family === 4 ? DOC_ADDRESS4 : DOC_ADDRESS6;
      const status = native.udpSend(a.fd, payload, 0, 6, family, loopback, b.port, foreign, 0);
      assert.ok(status < 0, `negative errno, got ${status}`);
      assert.ok(
        native.isStaleSourceError(status),
        `stale-source errno, got ${native.errnoName(status)}`,
      );
      const badInterface = native.udpSend(
        a.fd,
        payload,
        0,
        6,
        family,
        loopback,
        b.port,
        loopback,
        99_999,
      );
      assert.equal(badInterface, native.SOFT_SEND_ERRNO.ENODEV);
      assert.ok(native.isStaleSourceError(badInterface));

      const endpoints = new Int32Array(native.ENDPOINT_STRIDE);
      native.setEndpoint(endpoints, 0, {
        family,
        peerAddress: loopback,
        peerPort: b.port,
        localAddress: foreign,
        localIfindex: 0,
      });
      const offsets = Int32Array.of(0);
      const lengths = Int32Array.of(6);
      const batchStatus = native.udpSendBatch(a.fd, payload, offsets, lengths, 1, endpoints, null);
      assert.ok(native.isStaleSourceError(batchStatus), `batch: got ${batchStatus}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(native.udpRecv(b.fd, receiveBuffer, SLOT, 8, meta), 0, 'nothing was sent');
    });

    void test(`IPv${family}: udpSendBatch to several endpoints, beyond one sendmmsg chunk`, async () => {
      const sender = resources.udp(family);
      const first = resources.udp(family);
      const second = resources.udp(family);
      const count = native.MMSG_CHUNK * 2 + 10; // three sendmmsg calls
      const payload = Buffer.alloc(count * 16);
      const offsets = new Int32Array(count);
      const lengths = new Int32Array(count);
      const endpointIndex = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const text = `packet-${i}`;
        offsets[i] = i * 16;
        lengths[i] = payload.write(text, i * 16);
        endpointIndex[i] = i % 2;
      }
      const endpoints = new Int32Array(2 * native.ENDPOINT_STRIDE);
      for (const [index, port] of [first.port, second.port].entries()) {
        native.setEndpoint(endpoints, index, {
          family,
          peerAddress: loopback,
          peerPort: port,
          localAddress: null,
          localIfindex: 0,
        });
      }
      assert.equal(
        native.udpSendBatch(sender.fd, payload, offsets, lengths, count, endpoints, endpointIndex),
        count,
      );
      // First: even packets, received with maxPackets above one recvmmsg chunk.
      assert.equal(await receiveAll(first.fd, count / 2, 300), count / 2);
      for (let i = 0; i < count / 2; i++) assert.equal(payloadAt(i), `packet-${2 * i}`);
      assert.equal(await receiveAll(second.fd, count / 2, 300), count / 2);
      for (let i = 0; i < count / 2; i++) {
        assert.equal(payloadAt(i), `packet-${2 * i + 1}`);
        assert.equal(meta[i * native.META_STRIDE + native.META_PEER_PORT], sender.port);
      }
    });

    void test(`IPv${family}: replying through endpointFromMeta leaves from the address written to`, async () => {
      const client = resources.udp(family);
      const server = resources.udp(family);
      const request = Buffer.from('ping');
      assert.equal(
        native.udpSend(client.fd, request, 0, 4, family, loopback, server.port, null, 0),
        0,
      );
      assert.equal(await receiveAll(server.fd, 1), 1);
      const endpoints = new Int32Array(native.ENDPOINT_STRIDE);
      native.endpointFromMeta(meta, 0, endpoints, 0);
      const reply = Buffer.from('pong');
      const sent = native.udpSendBatch(
        server.fd,
        reply,
        Int32Array.of(0),
        Int32Array.of(4),
        1,
        endpoints,
        null,
      );
      assert.equal(sent, 1);
      assert.equal(await receiveAll(client.fd, 1), 1);
      assert.equal(payloadAt(0), 'pong');
      assert.equal(meta[native.META_PEER_PORT], server.port);
    });
  }

  void test('IPv4 and IPv6 sockets share a port (IPV6_V6ONLY)', () => {
    const v4 = resources.udp(4);
    const v6 = resources.udp(6, v4.port);
    assert.equal(v6.port, v4.port);
  });

  void test('a datagram larger than its slot is flagged truncated', async () => {
    const a = resources.udp(4);
    const b = resources.udp(4);
    const big = Buffer.alloc(100, 7);
    assert.equal(native.udpSend(a.fd, big, 0, 100, 4, LOOPBACK4, b.port, null, 0), 0);
    let count = 0;
    await waitUntil(
      () => (count = native.udpRecv(b.fd, receiveBuffer, 16, 1, meta)) > 0,
      5000,
      'the datagram',
    );
    assert.equal(count, 1);
    assert.equal(meta[native.META_LENGTH], native.META_TRUNCATED);
  });

  void test('udpSetMark sets SO_MARK (seen by ss)', () => {
    const socket = resources.udp(4);
    native.udpSetMark(socket.fd, 51820);
    const listing = execFileSync('ss', ['-u', '-a', '-n', '-e', 'sport', '=', `:${socket.port}`], {
      encoding: 'utf8',
    });
    assert.match(listing, /fwmark:0xca6c/);
    assert.throws(() => {
      native.udpSetMark(socket.fd, 2 ** 32);
    }, /udpSetMark: argument 'mark'/);
  });
});

void describe('watch', () => {
  const resources = new Resources();
  after(() => {
    resources.closeAll();
  });
  const scratch = Buffer.alloc(2048 * 8);
  const meta = new Int32Array(8 * native.META_STRIDE);

  void test('fires while readable (level-triggered), stops when drained, pause/resume/close', async () => {
    const sender = resources.udp(4);
    const receiver = resources.udp(4);
    const statuses: number[] = [];
    let drain = false;
    let received = 0;
    const watcher = resources.watcher(
      native.watch(receiver.fd, (status) => {
        statuses.push(status);
        if (drain) received += native.udpRecv(receiver.fd, scratch, 2048, 8, meta);
      }),
    );
    assert.equal(watcher.hasRef(), true);
    native.udpSend(sender.fd, Buffer.from('x'), 0, 1, 4, LOOPBACK4, receiver.port, null, 0);
    await waitUntil(() => statuses.length >= 3, 5000, 'repeated callbacks while undrained');
    assert.ok(statuses.every((status) => status === 0));
    drain = true;
    await waitUntil(() => received === 1, 5000, 'the drain');
    const afterDrain = statuses.length;
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.equal(statuses.length, afterDrain, 'no callbacks once drained');

    watcher.pause();
    native.udpSend(sender.fd, Buffer.from('y'), 0, 1, 4, LOOPBACK4, receiver.port, null, 0);
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.equal(statuses.length, afterDrain, 'no callbacks while paused');
    watcher.resume();
    await waitUntil(() => received === 2, 5000, 'callback after resume');

    watcher.close();
    watcher.close(); // idempotent
    assert.equal(watcher.hasRef(), false);
    native.udpSend(sender.fd, Buffer.from('z'), 0, 1, 4, LOOPBACK4, receiver.port, null, 0);
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.equal(received, 2, 'no callbacks after close');
  });

  void test('an unref()ed watcher does not keep the process alive; a ref()ed one does', () => {
    const setup = `
      import * as n from ${JSON.stringify(NATIVE_MODULE_URL)};
      const s = n.udpOpen(4, 0);
      const w = n.watch(s.fd, () => {});
      w.unref();
      if (w.hasRef()) throw new Error('still referenced');
    `;
    const unrefd = runNode(`${setup} console.log('exiting');`, { timeoutMs: 5000 });
    assert.equal(unrefd.status, 0, unrefd.stderr);
    assert.match(unrefd.stdout, /exiting/);
    const refd = runNode(`${setup} w.ref();`, { timeoutMs: 1500 });
    assert.equal(refd.status, null, 'killed by the timeout: the watcher kept it alive');
  });

  void test('an exception thrown by the callback is an uncaught exception', () => {
    const source = (handler: string): string => `
      import * as n from ${JSON.stringify(NATIVE_MODULE_URL)};
      ${handler}
      const a = n.udpOpen(4, 0), b = n.udpOpen(4, 0);
      const w = n.watch(b.fd, () => { w.close(); throw new Error('boom from callback'); });
      n.udpSend(a.fd, Buffer.from('x'), 0, 1, 4, Uint8Array.of(127, 0, 0, 1), b.port, null, 0);
      process.nextTick(() => {});
    `;
    const handled = runNode(
      source(`process.on('uncaughtException', (e) => { console.log('caught:', e.message); });`),
    );
    assert.equal(handled.status, 0, handled.stderr);
    assert.match(handled.stdout, /caught: boom from callback/);
    const unhandled = runNode(source(''));
    assert.equal(unhandled.status, 1);
    assert.match(unhandled.stderr, /boom from callback/);
  });

  void test('watchers survive garbage collection of their wrapper, and closed ones are freed', () => {
    const result = runNode(
      `
      import * as n from ${JSON.stringify(NATIVE_MODULE_URL)};
      const a = n.udpOpen(4, 0), b = n.udpOpen(4, 0);
      // Closed watchers whose wrappers are collected: their memory is released.
      for (let i = 0; i < 2000; i++) n.watch(b.fd, () => {}).close();
      // An open watcher nobody references keeps watching, like any Node handle.
      n.watch(b.fd, () => { console.log('fired after gc'); process.exit(0); });
      globalThis.gc();
      setTimeout(() => {
        globalThis.gc();
        n.udpSend(a.fd, Buffer.from('x'), 0, 1, 4, Uint8Array.of(127, 0, 0, 1), b.port, null, 0);
      }, 20);
      `,
      { nodeOptions: ['--expose-gc'] },
    );
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /fired after gc/);
  });

  void test('microtasks queued by the callback run right after it', async () => {
    const sender = resources.udp(4);
    const receiver = resources.udp(4);
    const order: string[] = [];
    const watcher = resources.watcher(
      native.watch(receiver.fd, () => {
        native.udpRecv(receiver.fd, scratch, 2048, 8, meta);
        void Promise.resolve().then(() => order.push('microtask'));
        process.nextTick(() => order.push('tick'));
        setImmediate(() => order.push('immediate'));
        order.push('callback');
        watcher.close();
      }),
    );
    native.udpSend(sender.fd, Buffer.from('x'), 0, 1, 4, LOOPBACK4, receiver.port, null, 0);
    await waitUntil(() => order.length === 4, 5000, 'callback and queued work');
    assert.deepEqual(order, ['callback', 'tick', 'microtask', 'immediate']);
  });
});

// ---- TUN inside a namespace ----

/** RFC 1071 Internet checksum of bytes [start, end). */
function internetChecksum(bytes: Uint8Array, start: number, end: number): number {
  let sum = 0;
  for (let i = start; i < end; i += 2)
    sum += ((bytes[i] ?? 0) << 8) | (i + 1 < end ? (bytes[i + 1] ?? 0) : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function ipv4Address(packet: Uint8Array, offset: number): string {
  return [...packet.subarray(offset, offset + 4)].join('.');
}

/** An IPv4/UDP packet (UDP checksum 0 = none, RFC 768) from src:srcPort to dst:dstPort. */
function udpPacket(
  src: Uint8Array,
  srcPort: number,
  dst: Uint8Array,
  dstPort: number,
  payload: Uint8Array,
): Uint8Array {
  const packet = new Uint8Array(28 + payload.length);
  const view = new DataView(packet.buffer);
  packet[0] = 0x45;
  view.setUint16(2, packet.length);
  packet[8] = 64; // TTL
  packet[9] = 17; // UDP
  packet.set(src, 12);
  packet.set(dst, 16);
  view.setUint16(10, internetChecksum(packet, 0, 20));
  view.setUint16(20, srcPort);
  view.setUint16(22, dstPort);
  view.setUint16(24, 8 + payload.length);
  packet.set(payload, 28);
  return packet;
}

void describe('TUN in a network namespace', { concurrency: false }, () => {
  const namespace = `warren-nt-${process.pid}`;
  const interfaceName = `wnt${process.pid}`.slice(0, 15);
  const TUN_ADDRESS = '192.0.2.1';
  const PEER = Uint8Array.of(192, 0, 2, 2);
  const resources = new Resources();
  const children: ChildProcess[] = [];
  let tun: native.TunDevice;

  before(() => {
    assert.equal(process.getuid?.(), 0, 'the TUN tests need root');
    ip('netns', 'add', namespace);
    // Created in the host namespace but never configured there: moved at once.
    tun = native.tunOpen(interfaceName);
    resources.fd(tun.fd);
    ip('link', 'set', interfaceName, 'netns', namespace);
    ip('-n', namespace, 'link', 'set', 'lo', 'up');
  });

  after(() => {
    for (const child of children) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
    resources.closeAll();
    spawnSync('ip', ['netns', 'del', namespace]);
    // Only if moving it failed: our own interface, by its unique name.
    if (spawnSync('ip', ['link', 'show', interfaceName]).status === 0) {
      spawnSync('ip', ['link', 'del', interfaceName]);
    }
  });

  void test('tunOpen returned our name and a non-blocking fd; "" lets the kernel pick', () => {
    assert.equal(tun.name, interfaceName);
    assert.ok(tun.fd > 2);
    assert.equal(
      native.tunRead(tun.fd, Buffer.alloc(2048), 2048, 1, new Int32Array(1)),
      0,
      'EAGAIN = 0',
    );
    const picked = native.tunOpen('');
    try {
      assert.match(picked.name, /^tun\d+$/);
    } finally {
      native.close(picked.fd); // a non-persistent TUN disappears with its fd
    }
    assert.throws(
      () => native.tunOpen(interfaceName.length < 15 ? `${interfaceName}/` : 'bad/name'),
      (error: unknown) => assertSystemError(error, 'EINVAL', 'ioctl'),
    );
  });

  void test('tunSetMtu / tunGetMtu / tunSetUp work in the current namespace', () => {
    const result = runNode(
      `
      import * as n from ${JSON.stringify(NATIVE_MODULE_URL)};
      n.tunSetMtu(${JSON.stringify(interfaceName)}, 1380);
      n.tunSetUp(${JSON.stringify(interfaceName)});
      console.log('mtu=' + n.tunGetMtu(${JSON.stringify(interfaceName)}));
      try { n.tunGetMtu('nonexistent0'); } catch (e) { console.log('missing=' + e.code + '/' + e.syscall); }
      `,
      { netns: namespace },
    );
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /mtu=1380/);
    assert.match(result.stdout, /missing=ENODEV\/ioctl/);
    const link = ip('-n', namespace, 'link', 'show', interfaceName);
    assert.match(link, /mtu 1380/);
    assert.match(link, /<[^>]*\bUP\b[^>]*>/);
    ip('-n', namespace, 'addr', 'add', `${TUN_ADDRESS}/24`, 'dev', interfaceName);
  });

  void test('ping through the TUN: echo requests arrive via watch+tunRead, tunWrite answers', async () => {
    const SLOT = 2048;
    const buffer = Buffer.alloc(SLOT * 16);
    const lengths = new Int32Array(16);
    const reply = Buffer.alloc(SLOT);
    let requests = 0;
    let batches = 0;
    const watcher = resources.watcher(
      native.watch(tun.fd, (status) => {
        assert.equal(status, 0);
        batches++;
        const count = native.tunRead(tun.fd, buffer, SLOT, 16, lengths);
        for (let i = 0; i < count; i++) {
          const packet = buffer.subarray(i * SLOT, i * SLOT + (lengths[i] ?? 0));
          // IPv4 (ignore the kernel's IPv6 router solicitations), ICMP echo request to PEER.
          if (packet[0] !== 0x45 || packet[9] !== 1 || packet[20] !== 8) continue;
          if (ipv4Address(packet, 16) !== '192.0.2.2') continue;
          requests++;
          packet.copy(reply);
          reply.set(packet.subarray(16, 20), 12); // src <- request's dst
          reply.set(packet.subarray(12, 16), 16); // dst <- request's src
          reply.writeUInt16BE(0, 10);
          reply.writeUInt16BE(internetChecksum(reply, 0, 20), 10);
          reply[20] = 0; // echo reply
          reply.writeUInt16BE(0, 22);
          reply.writeUInt16BE(internetChecksum(reply, 20, packet.length), 22);
          assert.equal(native.tunWrite(tun.fd, reply, 0, packet.length), true);
        }
      }),
    );
    const ping = spawn(
      'ip',
      ['netns', 'exec', namespace, 'ping', '-c', '2', '-i', '0.2', '-W', '5', '192.0.2.2'],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.push(ping);
    let output = '';
    ping.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const [code] = (await once(ping, 'exit')) as [number | null];
    watcher.close();
    assert.equal(code, 0, `ping failed:\n${output}`);
    assert.match(output, /2 received/);
    assert.equal(requests, 2);
    assert.ok(batches >= 2);
  });

  void test('tunWriteBatch delivers UDP to a listener in the namespace, whose answer tunRead sees', async () => {
    const listener = spawn(
      'ip',
      [
        'netns',
        'exec',
        namespace,
        process.execPath,
        '-e',
        `
        const socket = require('node:dgram').createSocket('udp4');
        let seen = 0;
        socket.on('message', (message, from) => {
          console.log('got ' + message.toString() + ' from ' + from.address + ':' + from.port);
          if (++seen === 2) socket.send('answer', from.port, from.address, () => socket.close());
        });
        socket.bind(5555, '${TUN_ADDRESS}', () => console.log('ready'));
        `,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(listener);
    let output = '';
    listener.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    await waitUntil(() => output.includes('ready'), 5000, 'the listener');

    const SLOT = 2048;
    const readBuffer = Buffer.alloc(SLOT * 16);
    const lengths = new Int32Array(16);
    let answer: string | undefined;
    const watcher = resources.watcher(
      native.watch(tun.fd, () => {
        const count = native.tunRead(tun.fd, readBuffer, SLOT, 16, lengths);
        for (let i = 0; i < count; i++) {
          const packet = readBuffer.subarray(i * SLOT, i * SLOT + (lengths[i] ?? 0));
          if (packet[0] === 0x45 && packet[9] === 17 && packet.readUInt16BE(22) === 4444) {
            assert.equal(ipv4Address(packet, 12), TUN_ADDRESS);
            assert.equal(packet.readUInt16BE(20), 5555);
            answer = packet.toString('utf8', 28);
          }
        }
      }),
    );

    const local = Uint8Array.of(192, 0, 2, 1);
    const first = udpPacket(PEER, 4444, local, 5555, Buffer.from('first'));
    const second = udpPacket(PEER, 4444, local, 5555, Buffer.from('second'));
    const batch = Buffer.alloc(first.length + 3 + second.length);
    batch.set(first, 0);
    batch.set(second, first.length + 3);
    const written = native.tunWriteBatch(
      tun.fd,
      batch,
      Int32Array.of(0, first.length + 3),
      Int32Array.of(first.length, second.length),
      2,
    );
    assert.equal(written, 2);
    await waitUntil(() => answer !== undefined, 5000, 'the answer on the TUN');
    watcher.close();
    assert.equal(answer, 'answer');
    assert.match(output, /got first from 192\.0\.2\.2:4444/);
    assert.match(output, /got second from 192\.0\.2\.2:4444/);
    assert.throws(
      () =>
        native.tunWriteBatch(tun.fd, batch, Int32Array.of(0), Int32Array.of(batch.length + 1), 1),
      /tunWriteBatch: argument 'offsets\/lengths'/,
    );
  });

  void test('deleting the interface is reported to the watcher, then tunRead throws EBADFD', async () => {
    const statuses: number[] = [];
    const watcher = resources.watcher(
      native.watch(tun.fd, (status) => {
        statuses.push(status);
        if (status === 0)
          native.tunRead(tun.fd, Buffer.alloc(2048 * 4), 2048, 4, new Int32Array(4));
      }),
    );
    ip('-n', namespace, 'link', 'del', interfaceName);
    await waitUntil(() => statuses.some((status) => status < 0), 5000, 'the error callback');
    const error = statuses.find((status) => status < 0) ?? 0;
    assert.equal(native.errnoName(error), 'EBADF', 'libuv reports EPOLLERR as UV_EBADF');
    assert.throws(
      () => native.tunRead(tun.fd, Buffer.alloc(2048), 2048, 1, new Int32Array(1)),
      (thrown: unknown) => assertSystemError(thrown, 'EBADFD', 'read'),
    );
    assert.throws(
      () => native.tunWrite(tun.fd, Buffer.alloc(20), 0, 20),
      (thrown: unknown) => assertSystemError(thrown, 'EBADFD', 'write'),
    );
    watcher.close();
  });
});
