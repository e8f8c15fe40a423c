/**
 * A small UDP fault proxy: this kernel has no netem, so loss, duplication,
 * reordering and delay between two WireGuard peers come from here (DESIGN.md,
 * "Test hosts and the network"). One client ↔ one target: datagrams from the
 * client to the listening socket go to the target from an upstream socket;
 * datagrams from the target to the upstream socket go back to the latest client
 * address. Faults apply in both directions and come from a seeded PRNG, so a
 * failing run can be replayed with the same seed.
 *
 * Used in-process (on loopback) or inside a test namespace as a child process:
 *   node dist/test/harness/udp-proxy.js serve '<UdpProxyOptions as JSON>'
 * SIGUSR1 rebinds the upstream socket (the target sees a new source port, as
 * after a NAT rebinding); SIGTERM prints the final statistics and exits.
 */
import { createSocket } from 'node:dgram';
import type { RemoteInfo, Socket } from 'node:dgram';
import { isIP } from 'node:net';
import { fileURLToPath } from 'node:url';
import { sleep } from './netns.js';
import type { NetnsHarness, TrackedProcess } from './netns.js';

export interface FaultOptions {
  /** Probability a datagram is dropped. */
  readonly loss?: number;
  /** Probability a forwarded datagram is sent twice. */
  readonly duplicate?: number;
  /** Probability a datagram is held back and sent after the next one in its direction. */
  readonly reorder?: number;
  /** Fixed delay added to every datagram. */
  readonly delayMs?: number;
  /** Extra random delay in [0, jitterMs). */
  readonly jitterMs?: number;
}

export interface UdpProxyOptions extends FaultOptions {
  readonly listenAddress: string;
  readonly listenPort: number;
  readonly targetAddress: string;
  readonly targetPort: number;
  /** PRNG seed; the same seed and the same packet sequence give the same faults. */
  readonly seed: number;
}

export interface DirectionStats {
  received: number;
  forwarded: number;
  dropped: number;
  duplicated: number;
  reordered: number;
}

export interface UdpProxyStats {
  readonly clientToTarget: DirectionStats;
  readonly targetToClient: DirectionStats;
}

/** A held-back datagram is released after this long if no later one pushes it out. */
const REORDER_HOLD_LIMIT_MS = 50;

/** mulberry32: a tiny, well-distributed 32-bit PRNG; returns floats in [0, 1). */
export function createPrng(seed: number): () => number {
  if (!Number.isInteger(seed)) throw new TypeError(`seed must be an integer, got ${seed}`);
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function checkProbability(value: number | undefined, name: string): number {
  const p = value ?? 0;
  if (typeof p !== 'number' || !(p >= 0 && p <= 1))
    throw new RangeError(`${name} must be in [0, 1], got ${String(value)}`);
  return p;
}

function checkPort(value: number, name: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 65535)
    throw new RangeError(`${name} must be a port, got ${value}`);
}

function checkOptions(options: UdpProxyOptions): void {
  if (isIP(options.listenAddress) === 0) throw new TypeError(`listenAddress must be an IP address`);
  if (isIP(options.targetAddress) === 0) throw new TypeError(`targetAddress must be an IP address`);
  checkPort(options.listenPort, 'listenPort');
  checkPort(options.targetPort, 'targetPort');
  checkProbability(options.loss, 'loss');
  checkProbability(options.duplicate, 'duplicate');
  checkProbability(options.reorder, 'reorder');
  for (const [name, value] of [
    ['delayMs', options.delayMs],
    ['jitterMs', options.jitterMs],
  ] as const) {
    if (value !== undefined && !(value >= 0 && value <= 10_000))
      throw new RangeError(`${name} must be in [0, 10000]`);
  }
}

function emptyStats(): DirectionStats {
  return { received: 0, forwarded: 0, dropped: 0, duplicated: 0, reordered: 0 };
}

/** Applies the fault model to one direction's stream of datagrams. */
class FaultyLink {
  readonly stats = emptyStats();
  private held: { data: Buffer; timer: NodeJS.Timeout } | undefined;

  constructor(
    private readonly options: FaultOptions,
    private readonly random: () => number,
    private readonly deliver: (data: Buffer) => void,
  ) {}

  push(data: Buffer): void {
    this.stats.received += 1;
    if (this.random() < (this.options.loss ?? 0)) {
      this.stats.dropped += 1;
      return;
    }
    const copies = this.random() < (this.options.duplicate ?? 0) ? 2 : 1;
    if (copies === 2) this.stats.duplicated += 1;
    if (this.held === undefined && this.random() < (this.options.reorder ?? 0)) {
      this.stats.reordered += 1;
      const timer = setTimeout(() => {
        this.releaseHeld();
      }, REORDER_HOLD_LIMIT_MS);
      this.held = { data, timer };
      return;
    }
    for (let i = 0; i < copies; i += 1) this.schedule(data);
    this.releaseHeld();
  }

  close(): void {
    if (this.held !== undefined) clearTimeout(this.held.timer);
    this.held = undefined;
  }

  private releaseHeld(): void {
    if (this.held === undefined) return;
    clearTimeout(this.held.timer);
    const { data } = this.held;
    this.held = undefined;
    this.schedule(data);
  }

  private schedule(data: Buffer): void {
    const delay = (this.options.delayMs ?? 0) + this.random() * (this.options.jitterMs ?? 0);
    this.stats.forwarded += 1;
    if (delay <= 0) {
      this.deliver(data);
    } else {
      setTimeout(() => {
        this.deliver(data);
      }, delay);
    }
  }
}

function bindSocket(address: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket({
      type: isIP(address) === 6 ? 'udp6' : 'udp4',
      ipv6Only: isIP(address) === 6,
    });
    socket.once('error', reject);
    socket.bind(port, address, () => {
      socket.off('error', reject);
      resolve(socket);
    });
  });
}

/** The proxy, running in this process. */
export class UdpProxy {
  private readonly listenSocket: Socket;
  private upstreamSocket: Socket;
  private client: RemoteInfo | undefined;
  private readonly toTarget: FaultyLink;
  private readonly toClient: FaultyLink;

  private constructor(
    private readonly options: UdpProxyOptions,
    listenSocket: Socket,
    upstreamSocket: Socket,
  ) {
    const random = createPrng(options.seed);
    this.listenSocket = listenSocket;
    this.upstreamSocket = upstreamSocket;
    this.toTarget = new FaultyLink(options, random, (data) => {
      this.upstreamSocket.send(data, options.targetPort, options.targetAddress);
    });
    this.toClient = new FaultyLink(options, random, (data) => {
      const client = this.client;
      if (client !== undefined) this.listenSocket.send(data, client.port, client.address);
    });
    listenSocket.on('message', (data, from) => {
      this.client = from;
      this.toTarget.push(data);
    });
    // Errors such as ICMP port unreachable on a connected path are not fatal for a test proxy.
    listenSocket.on('error', () => undefined);
    this.attachUpstream(upstreamSocket);
  }

  static async start(options: UdpProxyOptions): Promise<UdpProxy> {
    checkOptions(options);
    const listenSocket = await bindSocket(options.listenAddress, options.listenPort);
    const upstreamSocket = await bindSocket(
      isIP(options.targetAddress) === 6 ? '::' : '0.0.0.0',
      0,
    );
    return new UdpProxy(options, listenSocket, upstreamSocket);
  }

  get listenPort(): number {
    return this.listenSocket.address().port;
  }

  /** The source port the target currently sees. */
  get upstreamPort(): number {
    return this.upstreamSocket.address().port;
  }

  stats(): UdpProxyStats {
    return {
      clientToTarget: { ...this.toTarget.stats },
      targetToClient: { ...this.toClient.stats },
    };
  }

  /** Replaces the upstream socket: the target sees the client move to a new source port. */
  async rebind(): Promise<void> {
    const fresh = await bindSocket(isIP(this.options.targetAddress) === 6 ? '::' : '0.0.0.0', 0);
    const old = this.upstreamSocket;
    this.upstreamSocket = fresh;
    this.attachUpstream(fresh);
    old.close();
  }

  close(): void {
    this.toTarget.close();
    this.toClient.close();
    this.listenSocket.close();
    this.upstreamSocket.close();
  }

  private attachUpstream(socket: Socket): void {
    socket.on('message', (data, from) => {
      if (from.port === this.options.targetPort) this.toClient.push(data);
    });
    socket.on('error', () => undefined);
  }
}

const READY_PREFIX = 'udp-proxy ready upstream-port=';
const STATS_PREFIX = 'udp-proxy stats ';

/** A proxy running as a child process inside a test namespace. */
export class NamespacedUdpProxy {
  constructor(readonly process: TrackedProcess) {}

  /** The source port the target currently sees (from the proxy's latest announcement). */
  upstreamPort(): number {
    const matches = [...this.process.output().matchAll(/udp-proxy ready upstream-port=(\d+)/g)];
    const last = matches.at(-1)?.[1];
    if (last === undefined) throw new Error('udp-proxy has not announced its upstream port');
    return Number(last);
  }

  /** Moves the upstream socket to a new port and waits until the proxy confirms it. */
  async rebind(timeoutMs = 5000): Promise<number> {
    const before = this.upstreamPort();
    const announcements = this.process.output().split(READY_PREFIX).length;
    this.process.signal('SIGUSR1');
    const deadline = Date.now() + timeoutMs;
    while (this.process.output().split(READY_PREFIX).length === announcements) {
      if (Date.now() > deadline) throw new Error(`udp-proxy did not rebind within ${timeoutMs} ms`);
      await sleep(20);
    }
    const after = this.upstreamPort();
    if (after === before) throw new Error('udp-proxy rebound to the same port');
    return after;
  }

  /** Stops the proxy and returns its final statistics. */
  async stop(): Promise<UdpProxyStats> {
    await this.process.stop();
    const line = this.process
      .output()
      .split('\n')
      .find((text) => text.startsWith(STATS_PREFIX));
    if (line === undefined)
      throw new Error(`udp-proxy printed no statistics:\n${this.process.output()}`);
    return JSON.parse(line.slice(STATS_PREFIX.length)) as UdpProxyStats;
  }
}

/** Starts the proxy inside `ns` as a tracked child and waits until it is listening. */
export async function startUdpProxyInNamespace(
  harness: NetnsHarness,
  ns: string,
  options: UdpProxyOptions,
  readyTimeoutMs = 10_000,
): Promise<NamespacedUdpProxy> {
  checkOptions(options);
  const script = fileURLToPath(import.meta.url);
  const child = harness.spawn(ns, [process.execPath, script, 'serve', JSON.stringify(options)], {
    label: `udp-proxy ${options.listenAddress}:${options.listenPort} → ${options.targetAddress}:${options.targetPort} in ${ns}`,
  });
  const deadline = Date.now() + readyTimeoutMs;
  while (!child.output().includes(READY_PREFIX)) {
    if (child.hasExited())
      throw new Error(`udp-proxy exited before it was ready:\n${child.output()}`);
    if (Date.now() > deadline)
      throw new Error(`udp-proxy not ready after ${readyTimeoutMs} ms:\n${child.output()}`);
    await sleep(20);
  }
  return new NamespacedUdpProxy(child);
}

async function serve(json: string | undefined): Promise<void> {
  if (json === undefined) throw new Error('usage: udp-proxy.js serve <options JSON>');
  const proxy = await UdpProxy.start(JSON.parse(json) as UdpProxyOptions);
  const announce = () => {
    process.stdout.write(`${READY_PREFIX}${proxy.upstreamPort}\n`);
  };
  announce();
  process.on('SIGUSR1', () => {
    proxy.rebind().then(announce, (error: unknown) => {
      process.stderr.write(`udp-proxy rebind failed: ${String(error)}\n`);
    });
  });
  process.once('SIGTERM', () => {
    process.stdout.write(`${STATS_PREFIX}${JSON.stringify(proxy.stats())}\n`, () => {
      proxy.close();
      process.exit(0);
    });
  });
}

// Only `node udp-proxy.js serve …` starts a proxy: the test runner also executes
// every file under dist/test, and then this module must do nothing.
if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv[2] === 'serve') {
  serve(process.argv[3]).catch((error: unknown) => {
    process.stderr.write(`udp-proxy: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
