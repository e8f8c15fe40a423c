/**
 * The UDP fault proxy itself, in-process on loopback (127.0.0.1 only): the
 * PRNG, pass-through, loss, duplication, reordering, delay, rebinding, and that
 * a seed replays the same faults.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import type { Socket } from 'node:dgram';
import { createPrng, UdpProxy } from './harness/udp-proxy.js';
import type { FaultOptions } from './harness/udp-proxy.js';
import { sleep } from './harness/netns.js';

const LOOPBACK = '127.0.0.1';

function bound(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket('udp4');
    socket.once('error', reject);
    socket.bind(0, LOOPBACK, () => {
      resolve(socket);
    });
  });
}

interface Rig {
  readonly proxy: UdpProxy;
  readonly client: Socket;
  readonly target: Socket;
  /** Sequence numbers the target received, in arrival order, with the source port. */
  readonly atTarget: { seq: number; port: number }[];
  /** Sequence numbers echoed back to the client, in arrival order. */
  readonly atClient: number[];
  send(seq: number): void;
  close(): void;
}

/** client → proxy → target; the target echoes when `echo` is set. */
async function rig(faults: FaultOptions, seed: number, echo: boolean): Promise<Rig> {
  const target = await bound();
  const client = await bound();
  const proxy = await UdpProxy.start({
    listenAddress: LOOPBACK,
    listenPort: 0,
    targetAddress: LOOPBACK,
    targetPort: target.address().port,
    seed,
    ...faults,
  });
  const atTarget: { seq: number; port: number }[] = [];
  const atClient: number[] = [];
  target.on('message', (data, from) => {
    atTarget.push({ seq: data.readUInt32BE(0), port: from.port });
    if (echo) target.send(data, from.port, from.address);
  });
  client.on('message', (data) => {
    atClient.push(data.readUInt32BE(0));
  });
  return {
    proxy,
    client,
    target,
    atTarget,
    atClient,
    send(seq: number) {
      const data = Buffer.alloc(64);
      data.writeUInt32BE(seq, 0);
      client.send(data, proxy.listenPort, LOOPBACK);
    },
    close() {
      proxy.close();
      client.close();
      target.close();
    },
  };
}

/** Sends `count` datagrams, paced so loopback never drops any, then waits for stragglers. */
async function sendAll(r: Rig, count: number, settleMs = 300): Promise<void> {
  for (let seq = 0; seq < count; seq += 1) {
    r.send(seq);
    if (seq % 50 === 49) await sleep(5);
  }
  await sleep(settleMs);
}

describe('udp-proxy', () => {
  it('createPrng is deterministic per seed and roughly uniform in [0, 1)', () => {
    const a = createPrng(42);
    const b = createPrng(42);
    const c = createPrng(43);
    const fromA = Array.from({ length: 1000 }, () => a());
    assert.deepEqual(
      fromA,
      Array.from({ length: 1000 }, () => b()),
    );
    assert.notDeepEqual(
      fromA.slice(0, 10),
      Array.from({ length: 10 }, () => c()),
    );
    assert.ok(fromA.every((x) => x >= 0 && x < 1));
    const mean = fromA.reduce((sum, x) => sum + x, 0) / fromA.length;
    assert.ok(Math.abs(mean - 0.5) < 0.05, `mean ${mean}`);
    assert.throws(() => createPrng(1.5), /seed/);
  });

  it('passes every datagram through in order both ways without faults', async () => {
    const r = await rig({}, 1, true);
    try {
      await sendAll(r, 200);
      assert.deepEqual(
        r.atTarget.map((p) => p.seq),
        [...Array(200).keys()],
      );
      assert.deepEqual(r.atClient, [...Array(200).keys()]);
      const stats = r.proxy.stats();
      assert.equal(stats.clientToTarget.forwarded, 200);
      assert.equal(stats.targetToClient.forwarded, 200);
    } finally {
      r.close();
    }
  });

  it('drops about the configured share, and the same seed drops the same datagrams', async () => {
    const runs: number[][] = [];
    for (let run = 0; run < 2; run += 1) {
      const r = await rig({ loss: 0.3 }, 7, false);
      try {
        await sendAll(r, 1000);
        runs.push(r.atTarget.map((p) => p.seq));
        assert.equal(r.proxy.stats().clientToTarget.dropped, 1000 - r.atTarget.length);
      } finally {
        r.close();
      }
    }
    const [first = [], second = []] = runs;
    // 1000 trials at p = 0.7: standard deviation ≈ 14.5; allow 4σ.
    assert.ok(Math.abs(first.length - 700) < 60, `delivered ${first.length} of 1000 at 30% loss`);
    assert.deepEqual(second, first, 'same seed, same losses');
  });

  it('duplicates about the configured share', async () => {
    const r = await rig({ duplicate: 0.5 }, 3, false);
    try {
      await sendAll(r, 400);
      assert.ok(
        Math.abs(r.atTarget.length - 600) < 60,
        `received ${r.atTarget.length} for 400 at 50% duplication`,
      );
      assert.equal(
        new Set(r.atTarget.map((p) => p.seq)).size,
        400,
        'every datagram arrived at least once',
      );
    } finally {
      r.close();
    }
  });

  it('reorders without losing anything', async () => {
    const r = await rig({ reorder: 0.2 }, 5, false);
    try {
      await sendAll(r, 400);
      const seqs = r.atTarget.map((p) => p.seq);
      assert.deepEqual(
        [...seqs].sort((x, y) => x - y),
        [...Array(400).keys()],
        'all delivered once',
      );
      const inversions = seqs.filter((seq, i) => i > 0 && seq < (seqs[i - 1] ?? 0)).length;
      assert.ok(inversions > 20, `out-of-order arrivals: ${inversions}`);
      // Each held datagram lands after its successor, except a last one released by timeout.
      const held = r.proxy.stats().clientToTarget.reordered;
      assert.ok(
        inversions === held || inversions === held - 1,
        `${inversions} inversions for ${held} held`,
      );
    } finally {
      r.close();
    }
  });

  it('delays datagrams by the configured time', async () => {
    const r = await rig({ delayMs: 80 }, 9, true);
    try {
      const started = Date.now();
      r.send(1);
      while (r.atClient.length === 0 && Date.now() - started < 2000) await sleep(5);
      const roundTrip = Date.now() - started;
      assert.deepEqual(r.atClient, [1]);
      assert.ok(roundTrip >= 160, `round trip ${roundTrip} ms ≥ 2 × 80 ms`);
    } finally {
      r.close();
    }
  });

  it('rebinds: the target sees a new source port and replies still reach the client', async () => {
    const r = await rig({}, 11, true);
    try {
      r.send(1);
      await sleep(100);
      const firstPort = r.proxy.upstreamPort;
      await r.proxy.rebind();
      assert.notEqual(r.proxy.upstreamPort, firstPort);
      r.send(2);
      await sleep(100);
      assert.deepEqual(
        r.atTarget.map((p) => p.port),
        [firstPort, r.proxy.upstreamPort],
      );
      assert.deepEqual(r.atClient, [1, 2]);
    } finally {
      r.close();
    }
  });

  it('rejects bad options, naming them', async () => {
    const base = {
      listenAddress: LOOPBACK,
      listenPort: 0,
      targetAddress: LOOPBACK,
      targetPort: 9,
      seed: 1,
    };
    await assert.rejects(UdpProxy.start({ ...base, loss: 1.5 }), /loss/);
    await assert.rejects(UdpProxy.start({ ...base, listenAddress: 'nowhere' }), /listenAddress/);
    await assert.rejects(UdpProxy.start({ ...base, targetPort: 70000 }), /targetPort/);
  });
});
