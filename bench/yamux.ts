/**
 * Throughput of one yamux stream (src/relay/mux) against the same bytes over a
 * plain TCP connection, both on 127.0.0.1 and measured in the same invocation,
 * printed with the ratio yamux ÷ TCP (DESIGN.md: benchmarks print ratios against
 * a peer run in the same invocation).
 *
 *   node dist/bench/yamux.js [--mib N] [--rounds N] [--chunk-kib N]
 *
 * The receiver runs in a worker thread (its own event loop, as the relay and the
 * agent are separate processes); the sender is the main thread. Each round
 * measures TCP then yamux; the medians are compared.
 */
import { once } from 'node:events';
import { connect, createServer } from 'node:net';
import type { Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Session } from '../src/relay/mux/session.js';
import { integerOption, median } from './stats.js';

type Mode = 'tcp' | 'yamux';

interface ReceiverRequest {
  readonly mode: Mode;
  readonly bytes: number;
}

interface BenchOptions {
  readonly mib: number;
  readonly rounds: number;
  readonly chunkKiB: number;
}

const USAGE = `usage: yamux [--mib N] [--rounds N] [--chunk-kib N]
  Defaults: 256 MiB per measurement, 3 rounds, 64 KiB writes.`;

function parseOptions(argv: readonly string[]): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      mib: { type: 'string', default: '256' },
      rounds: { type: 'string', default: '3' },
      'chunk-kib': { type: 'string', default: '64' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  return {
    mib: integerOption(values.mib, 'mib', 1, 4096),
    rounds: integerOption(values.rounds, 'rounds', 1, 20),
    chunkKiB: integerOption(values['chunk-kib'], 'chunk-kib', 1, 16 * 1024),
  };
}

// ---- receiver (worker thread) ---------------------------------------------------------

/** Listens once, counts `bytes` arriving (over TCP or on one yamux stream), reports "done". */
async function runReceiver(request: ReceiverRequest): Promise<void> {
  const port = parentPort;
  if (port === null) throw new Error('the receiver runs in a worker');
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no address');
  port.postMessage({ port: address.port });
  const [socket] = (await once(server, 'connection')) as [Socket];
  server.close();
  socket.setNoDelay(true);
  let received = 0;
  const count = (chunk: Buffer): void => {
    received += chunk.length;
    if (received === request.bytes) port.postMessage({ done: received });
  };
  if (request.mode === 'tcp') {
    socket.on('data', count);
    return;
  }
  const session = Session.server(socket, { keepaliveInterval: 0 });
  session.on('stream', (stream) => {
    stream.on('data', count);
    stream.on('error', () => undefined);
  });
}

// ---- sender (main thread) ---------------------------------------------------------

async function writeAll(
  target: NodeJS.WritableStream,
  bytes: number,
  chunk: Buffer,
): Promise<void> {
  let left = bytes;
  while (left > 0) {
    const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
    left -= piece.length;
    if (!target.write(piece)) await once(target, 'drain');
  }
}

/** Bytes per second for `bytes` through `mode`, from connect to the receiver's last byte. */
async function measure(mode: Mode, bytes: number, chunk: Buffer): Promise<number> {
  const request: ReceiverRequest = { mode, bytes };
  const worker = new Worker(new URL(import.meta.url), { workerData: request });
  try {
    const [ready] = (await once(worker, 'message')) as [{ port: number }];
    const done = once(worker, 'message');
    const started = performance.now();
    const socket = connect(ready.port, '127.0.0.1');
    await once(socket, 'connect');
    socket.setNoDelay(true);
    let session: Session | undefined;
    if (mode === 'tcp') {
      await writeAll(socket, bytes, chunk);
    } else {
      session = Session.client(socket, { keepaliveInterval: 0 });
      const stream = session.open();
      stream.on('error', () => undefined); // torn down with the session below
      await writeAll(stream, bytes, chunk);
      stream.end();
    }
    await done;
    const seconds = (performance.now() - started) / 1000;
    session?.destroy();
    socket.destroy();
    return bytes / seconds;
  } finally {
    await worker.terminate();
  }
}

const mbps = (bytesPerSecond: number): string => `${(bytesPerSecond / 1e6).toFixed(0)} MB/s`;

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const bytes = options.mib * 1024 * 1024;
  const chunk = Buffer.alloc(options.chunkKiB * 1024, 0x5a);
  console.log(
    `yamux throughput: one stream, ${options.mib} MiB, ${options.chunkKiB} KiB writes, 127.0.0.1, ` +
      `receiver in a worker thread; ${options.rounds} round(s) of plain TCP then yamux`,
  );
  const results: Record<Mode, number[]> = { tcp: [], yamux: [] };
  for (let round = 1; round <= options.rounds; round++) {
    for (const mode of ['tcp', 'yamux'] as const) {
      const rate = await measure(mode, bytes, chunk);
      results[mode].push(rate);
      console.log(`  round ${round}  ${mode.padEnd(5)}  ${mbps(rate)}`);
    }
  }
  const tcp = median(results.tcp);
  const yamux = median(results.yamux);
  console.log(`plain TCP (median): ${mbps(tcp)}`);
  console.log(`yamux     (median): ${mbps(yamux)}`);
  console.log(`ratio yamux ÷ TCP:  ${(yamux / tcp).toFixed(2)}`);
}

if (isMainThread) {
  main().catch((error: unknown) => {
    console.error(error instanceof Error ? error.message : error);
    process.exitCode = 1;
  });
} else {
  runReceiver(workerData as ReceiverRequest).catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
