import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { AllowedIps, formatCidr } from '../wireguard/allowed-ips.js';
import { UapiError } from './errors.js';
import type {
  UapiDeviceStatus,
  UapiEndpoint,
  UapiPeerStatus,
  UapiSetRequest,
} from './uapi-protocol.js';
import { UapiServer, type UapiHandler } from './uapi-server.js';

const execFileAsync = promisify(execFile);

// ------------------------------------------------------------------ test doubles

interface FakePeer {
  publicKey: Uint8Array;
  presharedKey: Uint8Array | null;
  endpoint: UapiEndpoint | null;
  keepalive: number;
  handshakeSec: number;
  rxBytes: bigint;
  txBytes: bigint;
}

const hex = (key: Uint8Array): string => Buffer.from(key).toString('hex');

/** A device model that applies set requests the way the real device does. */
class FakeDevice implements UapiHandler {
  privateKey: Uint8Array | null = null;
  listenPort = 0;
  fwmark = 0;
  readonly peers = new Map<string, FakePeer>();
  readonly allowedIps = new AllowedIps<FakePeer>();
  readonly requests: UapiSetRequest[] = [];
  /** Thrown by the next set(), to test error replies. */
  failNextSet: Error | null = null;
  /** Makes set() asynchronous, to test that operations never overlap. */
  setDelayMs = 0;
  running = 0;
  maxRunning = 0;

  get(): UapiDeviceStatus {
    const peers: UapiPeerStatus[] = [];
    for (const peer of this.peers.values()) {
      peers.push({
        publicKey: peer.publicKey,
        presharedKey: peer.presharedKey,
        endpoint: peer.endpoint,
        persistentKeepaliveInterval: peer.keepalive,
        lastHandshakeTimeSec: peer.handshakeSec,
        lastHandshakeTimeNsec: 0,
        rxBytes: peer.rxBytes,
        txBytes: peer.txBytes,
        allowedIps: this.allowedIps.entries(peer),
      });
    }
    return { privateKey: this.privateKey, listenPort: this.listenPort, fwmark: this.fwmark, peers };
  }

  async set(request: UapiSetRequest): Promise<void> {
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    try {
      if (this.setDelayMs > 0) await new Promise((resolve) => setTimeout(resolve, this.setDelayMs));
      if (this.failNextSet !== null) {
        const failure = this.failNextSet;
        this.failNextSet = null;
        throw failure;
      }
      this.requests.push(request);
      this.apply(request);
    } finally {
      this.running--;
    }
  }

  private apply(request: UapiSetRequest): void {
    if (request.privateKey !== undefined) {
      this.privateKey = request.privateKey.every((b) => b === 0) ? null : request.privateKey;
    }
    if (request.listenPort !== undefined) this.listenPort = request.listenPort;
    if (request.fwmark !== undefined) this.fwmark = request.fwmark;
    if (request.replacePeers) {
      for (const peer of this.peers.values()) this.allowedIps.removeValue(peer);
      this.peers.clear();
    }
    for (const change of request.peers) {
      const id = hex(change.publicKey);
      let peer = this.peers.get(id);
      if (change.remove) {
        if (peer !== undefined) this.allowedIps.removeValue(peer);
        this.peers.delete(id);
        continue;
      }
      if (peer === undefined) {
        if (change.updateOnly) continue;
        peer = {
          publicKey: change.publicKey,
          presharedKey: null,
          endpoint: null,
          keepalive: 0,
          handshakeSec: 0,
          rxBytes: 0n,
          txBytes: 0n,
        };
        this.peers.set(id, peer);
      }
      if (change.presharedKey !== undefined) {
        peer.presharedKey = change.presharedKey.every((b) => b === 0) ? null : change.presharedKey;
      }
      if (change.endpoint !== undefined) peer.endpoint = change.endpoint;
      if (change.persistentKeepaliveInterval !== undefined)
        peer.keepalive = change.persistentKeepaliveInterval;
      if (change.replaceAllowedIps) this.allowedIps.removeValue(peer);
      for (const entry of change.allowedIps) {
        if (entry.remove) this.allowedIps.remove(entry.address, entry.cidr, peer);
        else this.allowedIps.insert(entry.address, entry.cidr, peer);
      }
    }
  }
}

interface Conversation {
  text: string;
  /** The server ended the connection (rather than us, after enough replies). */
  closedByServer: boolean;
}

/**
 * Sends `chunks` one write at a time (a short pause between them, so the server
 * sees separate reads), and collects replies until `replies` replies ("errno=N\n\n")
 * arrived or the server closed the connection.
 */
function converse(
  socketPath: string,
  chunks: (string | Buffer)[],
  options: { replies?: number; halfClose?: boolean; pauseMs?: number; timeoutMs?: number } = {},
): Promise<Conversation> {
  const expected = options.replies ?? Infinity;
  return new Promise<Conversation>((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    const received: Buffer[] = [];
    let finished = false;
    const timer = setTimeout(() => {
      finish(
        new Error(
          `timed out; received ${JSON.stringify(Buffer.concat(received).toString().slice(-300))}`,
        ),
      );
    }, options.timeoutMs ?? 30_000);
    function finish(error: Error | null, closedByServer = false): void {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.destroy();
      if (error !== null) reject(error);
      else resolve({ text: Buffer.concat(received).toString(), closedByServer });
    }
    socket.on('data', (data) => {
      received.push(data);
      const text = Buffer.concat(received).toString();
      if ((text.match(/errno=-?\d+\n\n/g) ?? []).length >= expected) finish(null);
    });
    socket.on('end', () => {
      finish(null, true);
    });
    socket.on('error', (error) => {
      finish(error);
    });
    socket.on('connect', () => {
      void (async () => {
        for (const chunk of chunks) {
          if (finished) return;
          socket.write(chunk);
          if (options.pauseMs !== undefined)
            await new Promise((r) => setTimeout(r, options.pauseMs));
        }
        if (options.halfClose === true) socket.end();
      })();
    });
  });
}

function newKeyPair(): { privateKey: Uint8Array; publicKey: Uint8Array } {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const privateJwk = privateKey.export({ format: 'jwk' });
  const publicJwk = publicKey.export({ format: 'jwk' });
  assert.ok(typeof privateJwk.d === 'string' && typeof publicJwk.x === 'string');
  return {
    privateKey: Uint8Array.from(Buffer.from(privateJwk.d, 'base64url')),
    publicKey: Uint8Array.from(Buffer.from(publicJwk.x, 'base64url')),
  };
}

const b64 = (key: Uint8Array): string => Buffer.from(key).toString('base64');

function replies(text: string): string[] {
  return text.split(/(?<=errno=-?\d+\n\n)/).filter((part) => part.length > 0);
}

// ------------------------------------------------------------------ unit tests

void describe('UapiServer on a temporary socket', () => {
  let directory: string;
  let socketPath: string;
  let device: FakeDevice;
  let server: UapiServer;
  const errors: Error[] = [];
  const peerKey = newKeyPair().publicKey;

  before(async () => {
    directory = await fsp.mkdtemp(path.join(os.tmpdir(), 'warren-uapi-'));
    socketPath = path.join(directory, 'run', 'wireguard', 'wgtest.sock');
    device = new FakeDevice();
    server = await UapiServer.listen(socketPath, device, {
      maxRequestBytes: 8 * 1024 * 1024,
      onError: (error) => errors.push(error),
    });
  });

  after(async () => {
    await server.close();
    await fsp.rm(directory, { recursive: true, force: true });
  });

  void it('creates the directory 0755 and the socket 0600', async () => {
    const directoryStat = await fsp.stat(path.dirname(socketPath));
    assert.equal(directoryStat.mode & 0o777, 0o755);
    const socketStat = await fsp.lstat(socketPath);
    assert.ok(socketStat.isSocket());
    assert.equal(socketStat.mode & 0o777, 0o600);
    assert.equal(server.path, socketPath);
    // No temporary socket names are left behind.
    assert.deepEqual(await fsp.readdir(path.dirname(socketPath)), ['wgtest.sock']);
  });

  void it('runs several get and set operations on one connection', async () => {
    const { text } = await converse(
      socketPath,
      [
        'get=1\n\n',
        `set=1\nlisten_port=51820\npublic_key=${hex(peerKey)}\nallowed_ip=192.0.2.0/24\n\n`,
        'get=1\n\n',
        'set=1\nfwmark=7\n\n',
      ],
      { replies: 4 },
    );
    const parts = replies(text);
    assert.equal(parts.length, 4);
    assert.equal(parts[0], 'errno=0\n\n');
    assert.equal(parts[1], 'errno=0\n\n');
    assert.equal(
      parts[2],
      [
        'listen_port=51820',
        `public_key=${hex(peerKey)}`,
        `preshared_key=${'0'.repeat(64)}`,
        'protocol_version=1',
        'last_handshake_time_sec=0',
        'last_handshake_time_nsec=0',
        'tx_bytes=0',
        'rx_bytes=0',
        'persistent_keepalive_interval=0',
        'allowed_ip=192.0.2.0/24',
        'errno=0',
        '',
        '',
      ].join('\n'),
    );
    assert.equal(parts[3], 'errno=0\n\n');
    assert.equal(device.fwmark, 7);
  });

  void it('handles requests split anywhere, even byte by byte', async () => {
    const exchange = `set=1\nlisten_port=4242\n\nget=1\n\n`;
    const bytes = [...Buffer.from(exchange)].map((byte) => Buffer.from([byte]));
    const { text } = await converse(socketPath, bytes, { replies: 2, pauseMs: 1 });
    const parts = replies(text);
    assert.equal(parts[0], 'errno=0\n\n');
    assert.ok(parts[1]?.startsWith('listen_port=4242\n'));

    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: exchange.length - 1 }), { maxLength: 8 }),
        async (cuts) => {
          const sorted = [...new Set(cuts)].sort((a, b) => a - b);
          const pieces: string[] = [];
          let start = 0;
          for (const cut of [...sorted, exchange.length]) {
            pieces.push(exchange.slice(start, cut));
            start = cut;
          }
          const result = await converse(socketPath, pieces, { replies: 2, pauseMs: 2 });
          const got = replies(result.text);
          assert.equal(got[0], 'errno=0\n\n');
          assert.ok(got[1]?.startsWith('listen_port=4242\n'));
        },
      ),
      { numRuns: 15 },
    );
  });

  void it('answers a bad set line with its errno, drains to the blank line, and keeps the connection', async () => {
    const before = device.requests.length;
    const { text, closedByServer } = await converse(
      socketPath,
      ['set=1\nlisten_port=70000\nfwmark=1\n\n', 'set=1\nno_equals_sign\n\n', 'get=1\n\n'],
      { replies: 3 },
    );
    const parts = replies(text);
    assert.equal(parts[0], 'errno=-22\n\n');
    assert.equal(parts[1], 'errno=-71\n\n');
    assert.ok(parts[2]?.endsWith('errno=0\n\n'));
    assert.equal(closedByServer, false);
    assert.equal(device.requests.length, before, 'a rejected request is not applied at all');
    assert.ok(
      errors.some((e) => e instanceof UapiError && e.message.includes('listen_port "70000"')),
    );
  });

  void it('answers an unknown operation with EPROTO and closes', async () => {
    for (const operation of ['hello\n', 'set=1\r\n', 'get=2\n', '\n']) {
      const { text, closedByServer } = await converse(socketPath, [operation, 'get=1\n\n']);
      assert.equal(text, 'errno=-71\n\n', JSON.stringify(operation));
      assert.equal(closedByServer, true);
    }
  });

  void it('answers get=1 followed by anything but a blank line with EINVAL and closes', async () => {
    const { text, closedByServer } = await converse(socketPath, ['get=1\nx\n']);
    assert.equal(text, 'errno=-22\n\n');
    assert.equal(closedByServer, true);
  });

  void it('reports handler errors: UapiError with its errno, anything else as ENOANO', async () => {
    device.failNextSet = new UapiError('ERR_UAPI_PORT_IN_USE', 'port 1 is taken');
    let result = await converse(socketPath, ['set=1\nlisten_port=1\n\n'], { replies: 1 });
    assert.equal(result.text, 'errno=-98\n\n');
    device.failNextSet = new TypeError('bug in the device');
    result = await converse(socketPath, ['set=1\nlisten_port=1\n\nget=1\n\n'], { replies: 2 });
    assert.equal(replies(result.text)[0], 'errno=-55\n\n');
    assert.ok(replies(result.text)[1]?.endsWith('errno=0\n\n'));
    assert.ok(errors.some((e) => e.message.includes('other UAPI error: bug in the device')));
  });

  void it('applies a set request cut short by the end of input, as wireguard-go does', async () => {
    const result = await converse(socketPath, ['set=1\nlisten_port=999\nfwmark=12'], {
      halfClose: true,
    });
    assert.equal(result.text, 'errno=0\n\n');
    assert.equal(result.closedByServer, true);
    assert.equal(device.listenPort, 999);
    assert.equal(device.fwmark, 12);
    // get=1 without its blank line: no reply, just the end of the connection.
    const get = await converse(socketPath, ['get=1\n'], { halfClose: true });
    assert.equal(get.text, '');
    assert.equal(get.closedByServer, true);
    // A probe that connects and leaves (what wg does to find userspace interfaces).
    const probe = await converse(socketPath, [], { halfClose: true });
    assert.equal(probe.text, '');
  });

  void it('refuses an overlong line with EMSGSIZE instead of buffering it', async () => {
    const long = `set=1\nlisten_port=${'1'.repeat(70_000)}\n\n`;
    const result = await converse(socketPath, [long, 'get=1\n\n']);
    assert.equal(result.text, 'errno=-90\n\n');
    assert.equal(result.closedByServer, true);
    // Even without a newline in sight, the server stops at the cap.
    const endless = await converse(socketPath, ['set=1\n', Buffer.alloc(200_000, 0x61)]);
    assert.equal(endless.text, 'errno=-90\n\n');
  });

  void it('refuses a request above maxRequestBytes, and accepts a big one below it', async () => {
    const line = 'allowed_ip=10.0.0.0/8\n';
    const tooMany = Math.ceil((8 * 1024 * 1024) / line.length) + 10;
    const huge = `set=1\npublic_key=${hex(peerKey)}\n${line.repeat(tooMany)}\n`;
    const result = await converse(socketPath, [huge]);
    assert.equal(result.text, 'errno=-90\n\n');

    const lines: string[] = [`set=1`, `public_key=${hex(peerKey)}`, 'replace_allowed_ips=true'];
    for (let i = 0; i < 130_000; i++)
      lines.push(`allowed_ip=10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`);
    const started = performance.now();
    const big = await converse(socketPath, [`${lines.join('\n')}\n\n`], { replies: 1 });
    console.log(
      `130,000 allowed_ip lines over the socket: ${(performance.now() - started).toFixed(0)} ms`,
    );
    assert.equal(big.text, 'errno=0\n\n');
    const last = device.requests.at(-1);
    assert.equal(last?.peers[0]?.allowedIps.length, 130_000);
    assert.equal(device.allowedIps.size, 130_000);
  });

  void it('runs operations from different connections one at a time', async () => {
    device.setDelayMs = 20;
    device.maxRunning = 0;
    try {
      await Promise.all(
        Array.from({ length: 5 }, (_, i) =>
          converse(socketPath, [`set=1\nfwmark=${i + 1}\n\nget=1\n\n`], { replies: 2 }),
        ),
      );
    } finally {
      device.setDelayMs = 0;
    }
    assert.equal(device.maxRunning, 1);
  });

  void it('fuzz: arbitrary bytes never crash the server', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.oneof(
            fc.constantFrom(
              'get=1\n',
              'set=1\n',
              '\n',
              'listen_port=1\n',
              'allowed_ip=-::/0\n',
              `public_key=${hex(peerKey)}\n`,
            ),
            fc.string({ maxLength: 40 }),
            fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a).toString('latin1')),
          ),
          { maxLength: 12 },
        ),
        async (pieces) => {
          await converse(socketPath, pieces, { halfClose: true });
        },
      ),
      { numRuns: 60 },
    );
    // Still alive and correct afterwards.
    const { text } = await converse(socketPath, ['get=1\n\n'], { replies: 1 });
    assert.ok(text.endsWith('errno=0\n\n'));
  });
});

void describe('UapiServer socket lifecycle', () => {
  let directory: string;

  before(async () => {
    directory = await fsp.mkdtemp(path.join(os.tmpdir(), 'warren-uapi-life-'));
  });

  after(async () => {
    await fsp.rm(directory, { recursive: true, force: true });
  });

  void it('refuses to start while a live daemon answers, replaces a stale socket, refuses non-sockets', async () => {
    const socketPath = path.join(directory, 'live.sock');
    const first = await UapiServer.listen(socketPath, new FakeDevice());
    try {
      await assert.rejects(UapiServer.listen(socketPath, new FakeDevice()), (error: unknown) => {
        assert.ok(error instanceof UapiError);
        assert.equal(error.code, 'ERR_UAPI_SOCKET_IN_USE');
        return true;
      });
    } finally {
      await first.close();
    }
    assert.equal(fs.existsSync(socketPath), false, 'close() removes the socket file');

    // A stale socket: bound once, nobody listening any more.
    const stalePath = path.join(directory, 'stale.sock');
    const staleServer = net.createServer();
    await new Promise<void>((resolve) =>
      staleServer.listen(path.join(directory, 'x.sock'), resolve),
    );
    await fsp.rename(path.join(directory, 'x.sock'), stalePath);
    await new Promise<void>((resolve) =>
      staleServer.close(() => {
        resolve();
      }),
    );
    assert.ok((await fsp.lstat(stalePath)).isSocket());
    const replacing = await UapiServer.listen(stalePath, new FakeDevice());
    const { text } = await converse(stalePath, ['get=1\n\n'], { replies: 1 });
    assert.equal(text, 'errno=0\n\n');
    await replacing.close();

    const filePath = path.join(directory, 'file.sock');
    await fsp.writeFile(filePath, 'not a socket');
    await assert.rejects(UapiServer.listen(filePath, new FakeDevice()), /not a socket/);
    assert.equal(await fsp.readFile(filePath, 'utf8'), 'not a socket');
  });

  void it('checks its arguments', async () => {
    await assert.rejects(UapiServer.listen('', new FakeDevice()), /socketPath/);
    await assert.rejects(
      UapiServer.listen(path.join(directory, 'a.sock'), {} as UapiHandler),
      /handler/,
    );
    await assert.rejects(
      UapiServer.listen(path.join(directory, 'b.sock'), new FakeDevice(), { maxLineBytes: 0 }),
      /maxLineBytes/,
    );
    await assert.rejects(
      UapiServer.listen(`/tmp/${'x'.repeat(120)}.sock`, new FakeDevice()),
      /longer than/,
    );
  });

  void it('answers a client that connects the moment the socket file appears', async () => {
    // wg run right after the file appears (or a supervisor polling for it) must be served:
    // a connection accepted before anyone reads it would hang wg forever, and keep close()
    // from ever finishing.
    for (let round = 0; round < 20; round += 1) {
      const name = `appears-${String(round)}.sock`;
      const socketPath = path.join(directory, name);
      const firstReply = new Promise<Conversation>((resolve, reject) => {
        const unseen = setTimeout(() => {
          watcher.close();
          reject(new Error(`round ${String(round)}: no watch event for ${name}`));
        }, 5000);
        const watcher = fs.watch(directory, (_event, filename) => {
          if (filename !== name || !fs.existsSync(socketPath)) return;
          watcher.close();
          clearTimeout(unseen);
          converse(socketPath, ['get=1\n\n'], { replies: 1, timeoutMs: 3000 }).then(
            resolve,
            reject,
          );
        });
      });
      const server = await UapiServer.listen(socketPath, new FakeDevice());
      try {
        const { text } = await firstReply;
        assert.equal(text, 'errno=0\n\n', `round ${String(round)}: answered at once`);
      } finally {
        await server.close();
      }
      assert.equal(fs.existsSync(socketPath), false, 'close() removed the socket file');
    }
  });

  void it('notices the socket file being deleted', async () => {
    const socketPath = path.join(directory, 'deleted.sock');
    const server = await UapiServer.listen(socketPath, new FakeDevice());
    try {
      const noticed = new Promise<number>((resolve) => {
        server.onSocketFileRemoved(() => {
          resolve(performance.now());
        });
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      const removedAt = performance.now();
      await fsp.unlink(socketPath);
      const noticedAt = await noticed;
      console.log(`socket deletion noticed after ${(noticedAt - removedAt).toFixed(0)} ms`);
      assert.ok(noticedAt - removedAt < 2500);
      // Registering after the fact still calls back.
      await new Promise<void>((resolve) => {
        server.onSocketFileRemoved(resolve);
      });
    } finally {
      await server.close();
    }
  });

  void it('notices the socket file being replaced, and close() leaves the new file alone', async () => {
    const socketPath = path.join(directory, 'replaced.sock');
    const server = await UapiServer.listen(socketPath, new FakeDevice());
    let noticed = false;
    const noticedPromise = new Promise<void>((resolve) => {
      server.onSocketFileRemoved(() => {
        noticed = true;
        resolve();
      });
    });
    await fsp.writeFile(`${socketPath}.new`, 'another daemon');
    await fsp.rename(`${socketPath}.new`, socketPath);
    await noticedPromise;
    assert.equal(noticed, true);
    await server.close();
    assert.equal(await fsp.readFile(socketPath, 'utf8'), 'another daemon');
  });
});

// ------------------------------------------------------------------ the real wg

void describe('UapiServer with the real wg binary', () => {
  const name = `wrnuapi${process.pid}`;
  const socketPath = `/var/run/wireguard/${name}.sock`;
  let directory: string;
  let server: UapiServer;
  const device = new FakeDevice();
  const own = newKeyPair();
  const peerA = newKeyPair().publicKey;
  const peerB = newKeyPair().publicKey;
  const psk = newKeyPair().privateKey;

  async function wg(...args: string[]): Promise<string> {
    const { stdout } = await execFileAsync('wg', args, { maxBuffer: 256 * 1024 * 1024 });
    return stdout;
  }

  before(async () => {
    assert.ok(name.length <= 15, 'interface names are at most 15 characters');
    directory = await fsp.mkdtemp(path.join(os.tmpdir(), 'warren-uapi-wg-'));
    device.privateKey = own.privateKey;
    device.listenPort = 51820;
    device.fwmark = 0x1234;
    const a: FakePeer = {
      publicKey: peerA,
      presharedKey: psk,
      endpoint: { family: 4, address: new Uint8Array([192, 0, 2, 1]), port: 51820 },
      keepalive: 25,
      handshakeSec: 0,
      rxBytes: 1234n,
      txBytes: 5678n,
    };
    const b: FakePeer = {
      publicKey: peerB,
      presharedKey: null,
      endpoint: {
        family: 6,
        address: Uint8Array.from(Buffer.from('20010db8000000000000000000000005', 'hex')),
        port: 4500,
      },
      keepalive: 0,
      handshakeSec: 1_600_000_000,
      rxBytes: 0n,
      txBytes: 42n,
    };
    device.peers.set(hex(peerA), a);
    device.peers.set(hex(peerB), b);
    device.allowedIps.insert(new Uint8Array([10, 0, 0, 0]), 8, a);
    device.allowedIps.insert(
      Uint8Array.from(Buffer.from('fd000000000000000000000000000000', 'hex')),
      64,
      a,
    );
    device.allowedIps.insert(new Uint8Array([192, 0, 2, 128]), 25, b);
    server = await UapiServer.listen(socketPath, device);
  });

  after(async () => {
    await server.close();
    await fsp.rm(socketPath, { force: true });
    await fsp.rm(directory, { recursive: true, force: true });
  });

  void it('wg show IF dump prints what the handler holds', async () => {
    const lines = (await wg('show', name, 'dump')).trimEnd().split('\n');
    assert.equal(lines[0], `${b64(own.privateKey)}\t${b64(own.publicKey)}\t51820\t0x1234`);
    const peers = new Set(lines.slice(1));
    assert.equal(peers.size, 2);
    assert.ok(
      peers.has(
        `${b64(peerA)}\t${b64(psk)}\t192.0.2.1:51820\t10.0.0.0/8,fd00::/64\t0\t1234\t5678\t25`,
      ),
      lines.join('\n'),
    );
    assert.ok(
      peers.has(
        `${b64(peerB)}\t(none)\t[2001:db8::5]:4500\t192.0.2.128/25\t1600000000\t0\t42\toff`,
      ),
      lines.join('\n'),
    );
  });

  void it('wg show IF prints the human form', async () => {
    const text = await wg('show', name);
    assert.match(text, new RegExp(`^interface: ${name}$`, 'm'));
    assert.ok(text.includes(`public key: ${b64(own.publicKey)}`), text);
    assert.ok(text.includes('private key: (hidden)'));
    assert.ok(text.includes('listening port: 51820'));
    assert.ok(text.includes('fwmark: 0x1234'));
    assert.ok(text.includes(`peer: ${b64(peerA)}`));
    assert.ok(text.includes('allowed ips: 10.0.0.0/8, fd00::/64'));
    assert.ok(text.includes('persistent keepalive: every 25 seconds'));
    assert.ok(text.includes('transfer: 1.21 KiB received, 5.54 KiB sent'), text);
    assert.ok(text.includes('endpoint: [2001:db8::5]:4500'));
    assert.ok((await wg('show', 'interfaces')).split(/\s+/).includes(name));
  });

  void it('wg set sends peer changes, including allowed-IP replacement and removal', async () => {
    const before = device.requests.length;
    await wg(
      'set',
      name,
      'peer',
      b64(peerA),
      'allowed-ips',
      '10.9.0.1/16,fd00:9::/64',
      'endpoint',
      '[2001:db8::7]:4501',
      'persistent-keepalive',
      '21',
    );
    assert.equal(device.requests.length, before + 1);
    const request = device.requests.at(-1);
    assert.ok(request !== undefined);
    assert.equal(request.replacePeers, false);
    const change = request.peers[0];
    assert.ok(change !== undefined);
    assert.deepEqual(change.publicKey, peerA);
    assert.equal(change.replaceAllowedIps, true);
    assert.deepEqual(
      change.allowedIps.map((e) => `${e.remove ? '-' : ''}${formatCidr(e.address, e.cidr)}`),
      ['10.9.0.1/16', 'fd00:9::/64'],
    );
    assert.equal(change.persistentKeepaliveInterval, 21);
    assert.deepEqual(change.endpoint, {
      family: 6,
      address: Uint8Array.from(Buffer.from('20010db8000000000000000000000007', 'hex')),
      port: 4501,
    });
    assert.equal(
      (await wg('show', name, 'allowed-ips')).split('\n').find((l) => l.startsWith(b64(peerA))),
      `${b64(peerA)}\t10.9.0.0/16 fd00:9::/64`,
    );

    await wg('set', name, 'peer', b64(peerB), 'remove');
    assert.equal(device.requests.at(-1)?.peers[0]?.remove, true);
    assert.equal((await wg('show', name, 'peers')).trim(), b64(peerA));
  });

  void it('wg set of the interface: private key file, listen port, fwmark off', async () => {
    const next = newKeyPair();
    const keyFile = path.join(directory, 'private.key');
    await fsp.writeFile(keyFile, `${b64(next.privateKey)}\n`, { mode: 0o600 });
    await wg('set', name, 'listen-port', '51999', 'private-key', keyFile, 'fwmark', 'off');
    const request = device.requests.at(-1);
    assert.deepEqual(request?.privateKey, next.privateKey);
    assert.equal(request.listenPort, 51999);
    assert.equal(request.fwmark, 0);
    assert.equal((await wg('show', name, 'public-key')).trim(), b64(next.publicKey));
    assert.equal((await wg('show', name, 'fwmark')).trim(), 'off');
  });

  void it('wg reports the handler’s errno with the right sign', async () => {
    device.failNextSet = new UapiError('ERR_UAPI_PORT_IN_USE', 'port 1 is taken');
    await assert.rejects(
      wg('set', name, 'listen-port', '1'),
      (error: Error & { stderr?: string }) => {
        assert.match(error.stderr ?? '', /Address already in use/);
        return true;
      },
    );
    device.failNextSet = new UapiError('ERR_UAPI_INVALID', 'no');
    await assert.rejects(
      wg('set', name, 'listen-port', '2'),
      (error: Error & { stderr?: string }) => {
        assert.match(error.stderr ?? '', /Invalid argument/);
        return true;
      },
    );
  });

  void it('wg setconf with 130,000 allowed IPs for one peer', async () => {
    const peer = newKeyPair().publicKey;
    const prefixes: string[] = [];
    for (let i = 0; i < 65_000; i++)
      prefixes.push(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}/32`);
    for (let i = 0; i < 65_000; i++) prefixes.push(`fd00::${i.toString(16)}/128`);
    const config = [
      `[Interface]`,
      `PrivateKey = ${b64(own.privateKey)}`,
      `ListenPort = 51820`,
      '',
      '[Peer]',
    ];
    config.push(`PublicKey = ${b64(peer)}`);
    for (let i = 0; i < prefixes.length; i += 1000) {
      config.push(`AllowedIPs = ${prefixes.slice(i, i + 1000).join(', ')}`);
    }
    const configFile = path.join(directory, 'big.conf');
    await fsp.writeFile(configFile, `${config.join('\n')}\n`, { mode: 0o600 });

    const started = performance.now();
    await wg('setconf', name, configFile);
    const applied = performance.now();
    const request = device.requests.at(-1);
    assert.ok(request !== undefined);
    assert.equal(request.replacePeers, true);
    assert.equal(request.peers.length, 1);
    const change = request.peers[0];
    assert.ok(change !== undefined);
    assert.equal(change.replaceAllowedIps, true);
    assert.equal(change.allowedIps.length, 130_000);
    assert.equal(device.peers.size, 1);
    assert.equal(device.allowedIps.size, 130_000);

    const listed = (await wg('show', name, 'allowed-ips')).trim().split('\t');
    const shown = performance.now();
    assert.equal(listed[0], b64(peer));
    const entries = (listed[1] ?? '').split(' ');
    assert.equal(entries.length, 130_000);
    assert.equal(entries[0], '10.0.0.0/32');
    assert.equal(entries[129_999], 'fd00::fde7/128');
    console.log(
      `wg setconf of 130,000 allowed IPs: ${(applied - started).toFixed(0)} ms; ` +
        `wg show allowed-ips: ${(shown - applied).toFixed(0)} ms`,
    );
  });
});
