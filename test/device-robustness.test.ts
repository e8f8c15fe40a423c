/**
 * "No input crashes the daemon" (issue 2, §3/§4), against a live warren-wg pair
 * (topology: test/harness/topology.ts):
 *
 * - thousands of hostile UDP datagrams at both daemons' listen ports: random
 *   bytes of every length, the four message types with wrong sizes, truncated
 *   or with nonzero reserved bytes, well-sized messages with random content, some
 *   of them with a correct MAC1 so they get past the first check (whitepaper
 *   §5.4.4) and into the handshake code, transport messages with unknown indices;
 * - garbage on the UAPI socket: random bytes, an over-long line, `set=1` with
 *   invalid keys and values, unterminated requests, unknown operations, abrupt
 *   disconnects and bursts of connections.
 *
 * Afterwards each daemon must still run, answer `wg show` with its configuration
 * unchanged, and carry pings. A big-MTU case (34,000-byte tunnel MTU over a
 * 1500-byte underlay, so every datagram is IP-fragmented) checks large packets.
 */
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { blake2s } from '@noble/hashes/blake2.js';
import { leftoversOfThisRun, requireRoot, sleep, withHarness } from './harness/netns.js';
import type { NetnsHarness } from './harness/netns.js';
import { createTunnelPair, formatEndpoint } from './harness/topology.js';
import type { TunnelPair, TunnelSide } from './harness/topology.js';
import { assertPeersHealthy } from './harness/checks.js';
import { expectPingsAnswered, tcpTransferWithDigest, waitForPing } from './harness/traffic.js';
import { uapiRequest, uapiSocketPath } from './harness/wireguard.js';
import type { WgDump } from './harness/wireguard.js';

requireRoot();

after(async () => {
  assert.deepEqual(await leftoversOfThisRun(), [], 'this run left nothing behind');
});

/** Datagrams fired at each daemon. */
const DATAGRAMS_PER_TARGET = 3000;
/** Rounds of the UAPI garbage sequence. */
const UAPI_ROUNDS = 4;
const BIG_MTU = 34_000;
/** ICMP payload that fits BIG_MTU unfragmented (IPv6 header 40 + ICMP 8). */
const BIG_PING_PAYLOAD = 33_000;

// Message sizes and types (whitepaper §5.4.2–§5.4.6).
const INITIATION_SIZE = 148;
const RESPONSE_SIZE = 92;
const COOKIE_REPLY_SIZE = 64;
const TRANSPORT_HEADER_SIZE = 16;
const TAG_SIZE = 16;
const WELL_SIZED: readonly (readonly [type: number, size: number])[] = [
  [1, INITIATION_SIZE],
  [2, RESPONSE_SIZE],
  [3, COOKIE_REPLY_SIZE],
  [4, TRANSPORT_HEADER_SIZE + TAG_SIZE],
];

// ------------------------------------------------------------------ hostile datagrams

/** mac1 = MAC(HASH(LABEL_MAC1 ‖ S_pub_receiver), msg_alpha) (whitepaper §5.4.4), computed independently. */
function withMac1(message: Uint8Array, receiverPublicKey: string): Uint8Array {
  const label = new TextEncoder().encode('mac1----');
  const publicKey = Buffer.from(receiverPublicKey, 'base64');
  const key = blake2s(Buffer.concat([label, publicKey]));
  const mac1Offset = message.length - 32;
  message.set(blake2s(message.subarray(0, mac1Offset), { key, dkLen: 16 }), mac1Offset);
  return message;
}

function header(type: number, length: number): Buffer {
  const packet = randomBytes(length);
  if (length >= 1) packet[0] = type;
  // Reserved bytes are zero in every valid message.
  packet.fill(0, 1, Math.min(4, length));
  return packet;
}

/**
 * One hostile datagram. `kind` picks the family of garbage; all choices are
 * random within it, so the whole set differs on every run (its kinds are logged).
 */
function hostileDatagram(kind: number, receiverPublicKey: string): Uint8Array {
  switch (kind) {
    case 0:
      // Anything at all, including empty datagrams.
      return randomBytes(randomInt(0, 1501));
    case 1: {
      // A known type with a size that is wrong for it.
      const [type, size] = WELL_SIZED[randomInt(0, WELL_SIZED.length)] ?? [1, INITIATION_SIZE];
      // Transport messages may have any length from header + tag up (the receiver does not
      // check padding), so only shorter ones are wrong; the others must be exactly `size`.
      let length = type === 4 ? randomInt(0, size) : randomInt(0, 1501);
      if (length === size) length += 1;
      return header(type, length);
    }
    case 2: {
      // Truncated: a well-formed header cut short.
      const [type, size] = WELL_SIZED[randomInt(0, WELL_SIZED.length)] ?? [1, INITIATION_SIZE];
      return header(type, randomInt(1, size));
    }
    case 3:
      // A 148-byte initiation with random content (fails MAC1).
      return header(1, INITIATION_SIZE);
    case 4:
      // A 148-byte initiation with a correct MAC1: reaches the Noise code, whose DH and
      // AEAD must reject it (or, under load, answer with a cookie reply).
      return withMac1(header(1, INITIATION_SIZE), receiverPublicKey);
    case 5:
      // A response with a correct MAC1 and an unknown receiver index.
      return withMac1(header(2, RESPONSE_SIZE), receiverPublicKey);
    case 6:
      // A cookie reply for an unknown index.
      return header(3, COOKIE_REPLY_SIZE);
    case 7: {
      // Transport data for an unknown index: header, counter, padded payload and tag.
      const payload = 16 * randomInt(0, 90);
      return header(4, TRANSPORT_HEADER_SIZE + payload + TAG_SIZE);
    }
    case 8: {
      // The right sizes but nonzero reserved bytes.
      const [type, size] = WELL_SIZED[randomInt(0, WELL_SIZED.length)] ?? [1, INITIATION_SIZE];
      const packet = header(type, size);
      packet[1 + randomInt(0, 3)] = 1 + randomInt(0, 255);
      return packet;
    }
    case 9:
      // Type bytes just outside the known ones.
      return header([0, 5, 255][randomInt(0, 3)] ?? 0, randomInt(4, 200));
    default:
      throw new RangeError(`kind must be 0..9, got ${kind}`);
  }
}

const DATAGRAM_KINDS = 10;

/** Writes `count` hostile datagrams as [u16 length][bytes] records; returns counts per kind. */
async function writeHostileDatagrams(
  path: string,
  count: number,
  receiverPublicKey: string,
): Promise<number[]> {
  const perKind = new Array<number>(DATAGRAM_KINDS).fill(0);
  const records: Buffer[] = [];
  for (let i = 0; i < count; i += 1) {
    const kind = i % DATAGRAM_KINDS;
    perKind[kind] = (perKind[kind] ?? 0) + 1;
    const datagram = hostileDatagram(kind, receiverPublicKey);
    const length = Buffer.alloc(2);
    length.writeUInt16BE(datagram.length);
    records.push(length, Buffer.from(datagram));
  }
  await writeFile(path, Buffer.concat(records));
  return perKind;
}

/**
 * Sends the records of FILE to ADDRESS:PORT from inside a namespace, one at a time
 * (waiting for each send, so nothing is lost to a full socket buffer on our side),
 * and prints how many it sent.
 */
const SENDER_SCRIPT = `
const dgram = require('node:dgram');
const fs = require('node:fs');
const [file, address, port] = process.argv.slice(1);
const data = fs.readFileSync(file);
const socket = dgram.createSocket(address.includes(':') ? 'udp6' : 'udp4');
socket.on('message', () => {});
let offset = 0;
let sent = 0;
function next() {
  if (offset >= data.length) {
    console.log(String(sent));
    socket.close();
    return;
  }
  const length = data.readUInt16BE(offset);
  const datagram = data.subarray(offset + 2, offset + 2 + length);
  offset += 2 + length;
  socket.send(datagram, Number(port), address, (error) => {
    if (error) throw error;
    sent += 1;
    next();
  });
}
next();
`;

async function fireDatagrams(
  harness: NetnsHarness,
  from: TunnelSide,
  to: TunnelSide,
  family: 'ipv4' | 'ipv6',
): Promise<void> {
  const file = join(await harness.makeTempDir(), 'datagrams.bin');
  const perKind = await writeHostileDatagrams(file, DATAGRAMS_PER_TARGET, to.wg.publicKey);
  const address = to.outerAddress(family);
  const result = await harness.exec(
    from.ns,
    [process.execPath, '-e', SENDER_SCRIPT, file, address, String(to.wg.listenPort)],
    { timeoutMs: 30_000 },
  );
  assert.equal(result.stdout.trim(), String(DATAGRAMS_PER_TARGET), 'every datagram was sent');
  console.log(
    `sent ${DATAGRAMS_PER_TARGET} hostile datagrams to ${formatEndpoint(address, to.wg.listenPort)} (per kind: ${perKind.join(', ')})`,
  );
}

// ------------------------------------------------------------------ hostile UAPI clients

type Ending = 'destroy' | 'end-and-wait';

/**
 * Connects to IFNAME's UAPI socket, writes `data`, then either drops the connection
 * at once ('destroy') or half-closes and waits up to 2 s for the daemon to finish
 * ('end-and-wait'). Returns whatever the daemon answered; socket errors such as
 * EPIPE or ECONNRESET are expected here and only noted in the result.
 */
function hostileUapiClient(
  ifname: string,
  data: string | Uint8Array,
  ending: Ending,
): Promise<string> {
  return new Promise((resolve) => {
    const socket = createConnection(uapiSocketPath(ifname));
    let received = '';
    let settled = false;
    const finish = (note = '') => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(received + note);
    };
    const timer = setTimeout(() => {
      finish('[timeout]');
    }, 2000);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      received += chunk;
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      finish(`[${error.code ?? error.message}]`);
    });
    socket.on('close', () => {
      finish();
    });
    socket.on('connect', () => {
      if (ending === 'destroy') {
        socket.write(data);
        finish();
      } else {
        socket.end(data);
      }
    });
  });
}

const ERRNO_REPLY = /^errno=-?[1-9]\d*\n\n$/;

/** Requests with one invalid line each: the daemon must answer with a nonzero errno. */
const INVALID_SETS: readonly string[] = [
  'private_key=zz',
  `private_key=${'0'.repeat(63)}`,
  `private_key=${'g'.repeat(64)}`,
  'listen_port=notaport',
  'listen_port=65536',
  'listen_port=-1',
  'fwmark=0x',
  'fwmark=4294967296',
  'replace_peers=maybe',
  'public_key=short',
  `public_key=${'x'.repeat(64)}`,
  'allowed_ip=192.0.2.0/24',
  'endpoint=192.0.2.1:1',
  'persistent_keepalive_interval=5',
  'no_such_key=1',
  'noequals',
  '=',
  '=value',
  'private_key',
  'get=1',
  'set=1',
  'listen_port=1\u0000',
  'protocol_version=1',
];

/** Requests for a real peer (it must keep its configuration) with one invalid value each. */
function invalidPeerSets(peerHex: string): string[] {
  return [
    'endpoint=not-an-endpoint',
    'endpoint=192.0.2.1',
    'endpoint=[2001:db8::1:51820',
    'endpoint=192.0.2.1:99999',
    'allowed_ip=192.0.2.0/33',
    'allowed_ip=2001:db8::/129',
    'allowed_ip=192.0.2.256/32',
    'allowed_ip=-not-an-ip/8',
    'allowed_ip=',
    'persistent_keepalive_interval=65536',
    'persistent_keepalive_interval=-1',
    'persistent_keepalive_interval=x',
    'protocol_version=2',
    'preshared_key=123',
    'replace_allowed_ips=yes',
    'update_only=1',
    'remove=false',
    'rx_bytes=1',
    'last_handshake_time_sec=1',
  ].map((line) => `public_key=${peerHex}\nupdate_only=true\n${line}`);
}

async function uapiGarbageRound(
  ifname: string,
  peerPublicKey: string,
  round: number,
): Promise<void> {
  const peerHex = Buffer.from(peerPublicKey, 'base64').toString('hex');
  // Random bytes, dropped abruptly or half-closed.
  for (const size of [1, 100, 8192, 100_000]) {
    await hostileUapiClient(
      ifname,
      randomBytes(size),
      round % 2 === 0 ? 'destroy' : 'end-and-wait',
    );
  }
  // Random bytes after a valid operation name.
  await hostileUapiClient(
    ifname,
    Buffer.concat([Buffer.from('set=1\n'), randomBytes(4096)]),
    'end-and-wait',
  );
  // An over-long line (wireguard-go's limit is 64 KiB), with and without a terminator.
  const hugeLine = `set=1\nprivate_key=${'a'.repeat(1 << 20)}`;
  await hostileUapiClient(ifname, `${hugeLine}\n\n`, 'end-and-wait');
  await hostileUapiClient(ifname, hugeLine, 'destroy');
  await hostileUapiClient(ifname, `get=1${'\t'.repeat(200_000)}\n\n`, 'end-and-wait');
  // Unterminated requests, then gone.
  for (const partial of [
    'set=1\nlisten_port=notaport',
    'get=1\n',
    'set=1\n',
    'get=',
    'set=1\nprivate_key=zz\n',
  ]) {
    await hostileUapiClient(ifname, partial, round % 2 === 0 ? 'destroy' : 'end-and-wait');
  }
  // Unknown operations.
  for (const operation of ['hello\n\n', 'get=2\n\n', 'set=0\n\n', '\n\n', 'GET=1\n\n']) {
    await hostileUapiClient(ifname, operation, 'end-and-wait');
  }
  // allowed_ip lines before any public_key, many of them.
  const manyLines = `set=1\n${'allowed_ip=192.0.2.0/24\n'.repeat(20_000)}\n`;
  const manyReply = await hostileUapiClient(ifname, manyLines, 'end-and-wait');
  assert.match(
    manyReply,
    /^errno=-?[1-9]\d*\n\n/,
    `allowed_ip without a peer is refused: ${JSON.stringify(manyReply.slice(0, 200))}`,
  );
  // Each invalid set gets a nonzero errno, as `wg` expects.
  for (const line of [...INVALID_SETS, ...invalidPeerSets(peerHex)]) {
    const reply = await uapiRequest(ifname, `set=1\n${line}\n\n`, 3000).catch((error: unknown) =>
      error instanceof Error ? error.message : String(error),
    );
    assert.match(
      reply,
      ERRNO_REPLY,
      `set=1 with ${JSON.stringify(line)} gets an errno reply, got ${JSON.stringify(reply)}`,
    );
  }
  // A burst of connections that say nothing, or ask and leave before the answer.
  await Promise.all(
    Array.from({ length: 64 }, (_, i) =>
      hostileUapiClient(ifname, i % 2 === 0 ? '' : 'get=1\n\n'.repeat(50), 'destroy'),
    ),
  );
}

// ------------------------------------------------------------------ checks

/** The configuration part of a dump (no counters or handshake times). */
function configurationOf(dump: WgDump): unknown {
  return {
    interface: dump.interface,
    peers: dump.peers.map((peer) => ({
      publicKey: peer.publicKey,
      presharedKey: peer.presharedKey,
      endpoint: peer.endpoint,
      allowedIps: [...peer.allowedIps].sort(),
      persistentKeepalive: peer.persistentKeepalive,
    })),
  };
}

async function assertStillServing(pair: TunnelPair, before: readonly unknown[]): Promise<void> {
  const { harness, initiator, responder } = pair;
  const sides = [initiator, responder];
  for (const [index, side] of sides.entries()) {
    assert.ok(
      !side.wg.process.hasExited(),
      `${side.wg.ifname} is still running:\n${side.wg.process.output()}`,
    );
    assert.deepEqual(
      configurationOf(await side.wg.dump()),
      before[index],
      `${side.wg.ifname}'s configuration is unchanged`,
    );
  }
  await expectPingsAnswered(harness, initiator.ns, responder.addresses.tunnelV4, { count: 3 });
  await expectPingsAnswered(harness, responder.ns, initiator.addresses.tunnelV6, { count: 3 });
  await assertPeersHealthy(pair, { family: 'ipv4', counters: 'lossy' });
}

function withWarrenPair(
  options: { mtu?: number },
  body: (pair: TunnelPair) => Promise<void>,
): Promise<void> {
  return withHarness(async (harness) => {
    const pair = await createTunnelPair(harness, {
      initiatorImpl: 'warren-wg',
      responderImpl: 'warren-wg',
      logLevel: 'error',
      ...options,
    });
    await waitForPing(harness, pair.initiator.ns, pair.responder.addresses.tunnelV4);
    await body(pair);
  });
}

// ------------------------------------------------------------------ tests

describe('warren-wg robustness: no input crashes the daemon', () => {
  it(`survives ${DATAGRAMS_PER_TARGET} hostile UDP datagrams at each end of a live tunnel`, () =>
    withWarrenPair({}, async (pair) => {
      const { harness, initiator, responder } = pair;
      const before = [
        configurationOf(await initiator.wg.dump()),
        configurationOf(await responder.wg.dump()),
      ];
      await fireDatagrams(harness, initiator, responder, 'ipv4');
      await fireDatagrams(harness, responder, initiator, 'ipv6');
      // Let the daemons work through their receive queues before judging them.
      await sleep(300);
      await assertStillServing(pair, before);
    }));

  it(`survives garbage on the UAPI socket (${UAPI_ROUNDS} rounds) and keeps its configuration`, () =>
    withWarrenPair({}, async (pair) => {
      const { initiator, responder } = pair;
      const before = [
        configurationOf(await initiator.wg.dump()),
        configurationOf(await responder.wg.dump()),
      ];
      for (let round = 0; round < UAPI_ROUNDS; round += 1) {
        await uapiGarbageRound(responder.wg.ifname, initiator.wg.publicKey, round);
        assert.ok(
          !responder.wg.process.hasExited(),
          `daemon alive after round ${round}:\n${responder.wg.process.output()}`,
        );
      }
      await uapiGarbageRound(initiator.wg.ifname, responder.wg.publicKey, 0);
      // Several operations on one connection still work afterwards (wireguard-go IpcHandle).
      const replies = await uapiRequest(responder.wg.ifname, 'get=1\n\nget=1\n\n');
      assert.match(replies, /^private_key=[0-9a-f]{64}\n[\s\S]*errno=0\n\n$/);
      await assertStillServing(pair, before);
    }));

  it(`carries ${BIG_PING_PAYLOAD}-byte pings and a TCP stream at MTU ${BIG_MTU} over a 1500-byte underlay`, () =>
    withWarrenPair({ mtu: BIG_MTU }, async (pair) => {
      const { harness, initiator, responder } = pair;
      // -M do: the inner packet is never fragmented; each ~33 kB WireGuard datagram is split
      // into IP fragments on the veth and reassembled by the receiving kernel.
      for (const [from, to] of [
        [initiator, responder],
        [responder, initiator],
      ] as const) {
        for (const address of [to.addresses.tunnelV4, to.addresses.tunnelV6]) {
          await expectPingsAnswered(harness, from.ns, address, {
            count: 3,
            size: BIG_PING_PAYLOAD,
            dontFragment: true,
            waitSeconds: 2,
          });
        }
      }
      const transfer = await tcpTransferWithDigest(harness, {
        fromNs: initiator.ns,
        toNs: responder.ns,
        toAddress: responder.addresses.tunnelV4,
        port: 5201,
        bytes: 8 * 1024 * 1024,
        timeoutMs: 30_000,
      });
      console.log(`8 MiB over TCP at MTU ${BIG_MTU} took ${transfer.elapsedMs} ms`);
      assert.equal(transfer.receivedBytes, transfer.bytes, 'every byte arrived');
      assert.equal(transfer.receivedSha256, transfer.sentSha256, 'byte-exact');
      await assertPeersHealthy(pair, { family: 'ipv4', counters: 'lossy' });
    }));
});
