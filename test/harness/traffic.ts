/**
 * Traffic generators and probes for namespace tests: ping, iperf3, a TCP
 * transfer checked by SHA-256, listening-socket waits, interface and drop counters,
 * and the machine's CPU time (for the benches too).
 * All of them run real tools inside the test's namespaces with time limits.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sleep } from './netns.js';
import type { NetnsHarness } from './netns.js';

export interface PingOptions {
  /** Echo requests to send. Default 3. */
  readonly count?: number;
  /** Seconds between requests. Default 0.2. */
  readonly intervalSeconds?: number;
  /** Seconds to wait for each reply (ping -W). Default 1. */
  readonly waitSeconds?: number;
  /** ICMP payload size (ping -s). */
  readonly size?: number;
  /** Forbid fragmentation (ping -M do). */
  readonly dontFragment?: boolean;
}

export interface PingResult {
  readonly transmitted: number;
  readonly received: number;
  readonly output: string;
}

function pingArgv(address: string, options: PingOptions): string[] {
  const count = options.count ?? 3;
  if (!Number.isInteger(count) || count < 1)
    throw new RangeError(`count must be a positive integer, got ${count}`);
  const argv = [
    'ping',
    address.includes(':') ? '-6' : '-4',
    '-n',
    '-c',
    String(count),
    '-i',
    String(options.intervalSeconds ?? 0.2),
    '-W',
    String(options.waitSeconds ?? 1),
  ];
  if (options.size !== undefined) argv.push('-s', String(options.size));
  if (options.dontFragment === true) argv.push('-M', 'do');
  argv.push(address);
  return argv;
}

/** Runs ping in `ns` and reports how many replies came back (it does not throw on loss). */
export async function ping(
  harness: NetnsHarness,
  ns: string,
  address: string,
  options: PingOptions = {},
): Promise<PingResult> {
  const argv = pingArgv(address, options);
  const count = options.count ?? 3;
  const budgetMs =
    (count * (options.intervalSeconds ?? 0.2) + (options.waitSeconds ?? 1)) * 1000 + 5000;
  const result = await harness.exec(ns, argv, { allowFailure: true, timeoutMs: budgetMs });
  const output = `${result.stdout}${result.stderr}`;
  const stats = /(\d+) packets transmitted, (\d+) received/.exec(output);
  if (stats?.[1] === undefined || stats[2] === undefined) {
    throw new Error(
      `ping ${address} in ${ns} printed no statistics (exit ${String(result.exitCode)}):\n${output}`,
    );
  }
  return { transmitted: Number(stats[1]), received: Number(stats[2]), output };
}

/**
 * Pings once a second-ish until a reply comes back or `deadlineMs` passes (the first
 * packets may wait for a handshake). Returns the number of attempts; throws with
 * the last ping output when no reply ever came.
 */
export async function waitForPing(
  harness: NetnsHarness,
  ns: string,
  address: string,
  options: Omit<PingOptions, 'count'> & { readonly deadlineMs?: number } = {},
): Promise<number> {
  const deadline = Date.now() + (options.deadlineMs ?? 10_000);
  for (let attempt = 1; ; attempt += 1) {
    const result = await ping(harness, ns, address, {
      ...options,
      count: 1,
      waitSeconds: options.waitSeconds ?? 1,
    });
    if (result.received === 1) return attempt;
    if (Date.now() > deadline) {
      throw new Error(
        `no ping reply from ${address} in ${ns} after ${attempt} attempts:\n${result.output}`,
      );
    }
  }
}

/** Asserts-style helper: every one of `count` pings is answered. */
export async function expectPingsAnswered(
  harness: NetnsHarness,
  ns: string,
  address: string,
  options: PingOptions = {},
): Promise<void> {
  const result = await ping(harness, ns, address, options);
  if (result.received !== result.transmitted) {
    throw new Error(
      `expected every ping to ${address} from ${ns} answered, got ${result.received}/${result.transmitted}:\n${result.output}`,
    );
  }
}

/** Asserts-style helper: none of `count` pings is answered. */
export async function expectPingsLost(
  harness: NetnsHarness,
  ns: string,
  address: string,
  options: PingOptions = {},
): Promise<void> {
  const result = await ping(harness, ns, address, options);
  if (result.received !== 0) {
    throw new Error(
      `expected no ping to ${address} from ${ns} answered, got ${result.received}/${result.transmitted}:\n${result.output}`,
    );
  }
}

/** Waits until something listens on `port` (TCP or UDP) in `ns`. */
export async function waitForListening(
  harness: NetnsHarness,
  ns: string,
  port: number,
  protocol: 'tcp' | 'udp',
  timeoutMs = 5000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await harness.exec(ns, [
      'ss',
      '-H',
      '-n',
      protocol === 'tcp' ? '-lt' : '-lu',
      `sport = :${port}`,
    ]);
    if (result.stdout.trim() !== '') return;
    if (Date.now() > deadline)
      throw new Error(`nothing listens on ${protocol} port ${port} in ${ns} after ${timeoutMs} ms`);
    await sleep(25);
  }
}

export interface LinkCounters {
  readonly rxPackets: number;
  readonly rxBytes: number;
  readonly txPackets: number;
  readonly txBytes: number;
}

/** Kernel counters of a device (`ip -s -j link show`). For a TUN, rx = packets the daemon wrote into it. */
export async function linkCounters(
  harness: NetnsHarness,
  ns: string,
  dev: string,
): Promise<LinkCounters> {
  const result = await harness.exec(ns, ['ip', '-s', '-j', 'link', 'show', 'dev', dev]);
  const parsed: unknown = JSON.parse(result.stdout);
  const stats = field(field(at(parsed, 0), 'stats64'), 'rx');
  const txStats = field(field(at(parsed, 0), 'stats64'), 'tx');
  return {
    rxPackets: num(field(stats, 'packets')),
    rxBytes: num(field(stats, 'bytes')),
    txPackets: num(field(txStats, 'packets')),
    txBytes: num(field(txStats, 'bytes')),
  };
}

/**
 * The machine's CPU time so far, from /proc/stat's first line (user nice system
 * idle iowait irq softirq steal ...), in jiffies: busy excludes idle, iowait and
 * steal. On a virtual machine steal is time the hypervisor gave other guests:
 * this 2-vCPU machine sees 0% when quiet and 20-60% when its host is busy.
 */
export async function machineJiffies(): Promise<{ busy: number; steal: number; total: number }> {
  const first = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  const fields = first.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = fields.reduce((sum, value) => sum + value, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  const steal = fields[7] ?? 0;
  return { busy: total - idle - steal, steal, total };
}

/**
 * Where datagrams can be dropped on this machine, counted in some namespaces:
 * every link's rx/tx drops (a TUN's tx queue overflowing while its daemon is
 * descheduled), UDP receive-buffer overflows per namespace (/proc/net/snmp and
 * snmp6), and the hypervisor's steal over the whole machine. Two snapshots
 * around a measurement say where a loss happened (describeDropDeltas).
 */
export type DropSnapshot = ReadonlyMap<string, number>;

export async function dropSnapshot(
  harness: NetnsHarness,
  namespaces: readonly string[],
): Promise<DropSnapshot> {
  const counters = new Map<string, number>();
  for (const ns of namespaces) {
    const links: unknown = JSON.parse(
      (await harness.exec(ns, ['ip', '-s', '-j', 'link', 'show'])).stdout,
    );
    if (!Array.isArray(links)) throw new Error('ip -j link show: expected an array');
    for (const link of links as unknown[]) {
      const name = String(field(link, 'ifname'));
      const stats = field(link, 'stats64');
      counters.set(`${ns} ${name} rx_dropped`, num(field(field(stats, 'rx'), 'dropped')));
      counters.set(`${ns} ${name} tx_dropped`, num(field(field(stats, 'tx'), 'dropped')));
    }
    const snmp = (await harness.exec(ns, ['cat', '/proc/net/snmp', '/proc/net/snmp6'])).stdout;
    // snmp: a "Udp:" line of names, then one of values; snmp6: "Udp6RcvbufErrors  N" lines.
    const lines = snmp.split('\n');
    for (let i = 0; i + 1 < lines.length; i++) {
      const names = (lines[i] ?? '').split(/\s+/);
      const values = (lines[i + 1] ?? '').split(/\s+/);
      if (names[0] !== 'Udp:' || values[0] !== 'Udp:') continue;
      for (const key of ['InErrors', 'RcvbufErrors', 'SndbufErrors']) {
        const index = names.indexOf(key);
        if (index > 0) counters.set(`${ns} Udp${key}`, Number(values[index]));
      }
    }
    for (const match of snmp.matchAll(/^(Udp6(?:InErrors|RcvbufErrors|SndbufErrors))\s+(\d+)$/gm)) {
      counters.set(`${ns} ${match[1] ?? ''}`, Number(match[2]));
    }
  }
  const machine = await machineJiffies();
  counters.set('machine jiffies', machine.total);
  counters.set('machine steal jiffies', machine.steal);
  return counters;
}

/** How much the counter `key` ("NAMESPACE Udp6RcvbufErrors", …) rose between two snapshots. */
export function dropDelta(before: DropSnapshot, after: DropSnapshot, key: string): number {
  return (after.get(key) ?? 0) - (before.get(key) ?? 0);
}

/** The counters that rose between two snapshots, and the steal in between, as one line each. */
export function describeDropDeltas(before: DropSnapshot, after: DropSnapshot): string {
  const delta = (key: string): number => dropDelta(before, after, key);
  const total = delta('machine jiffies');
  const lines = [
    `hypervisor steal during the measurement: ${total > 0 ? ((100 * delta('machine steal jiffies')) / total).toFixed(0) : '?'}%`,
  ];
  for (const key of after.keys()) {
    if (key.startsWith('machine ')) continue;
    if (delta(key) > 0) lines.push(`${key} +${String(delta(key))}`);
  }
  if (lines.length === 1) lines.push('no drop counter rose');
  return lines.join('\n');
}

// Small typed accessors for JSON from tools, so a format change fails loudly.
function field(value: unknown, key: string): unknown {
  if (typeof value !== 'object' || value === null || !(key in value)) {
    // JSON.stringify returns undefined for undefined, whatever its declared type says.
    const shown = value === undefined ? 'undefined' : JSON.stringify(value);
    throw new Error(`JSON: missing field ${JSON.stringify(key)} in ${shown.slice(0, 300)}`);
  }
  return (value as Record<string, unknown>)[key];
}
function at(value: unknown, index: number): unknown {
  if (!Array.isArray(value) || index >= value.length) throw new Error(`JSON: no element ${index}`);
  return value[index] as unknown;
}
function num(value: unknown): number {
  if (typeof value !== 'number' || !Number.isFinite(value))
    throw new Error(`JSON: expected a number, got ${String(value)}`);
  return value;
}
/** Follows a path of keys through parsed JSON; throws naming the missing key. */
export function jsonPath(value: unknown, ...keys: readonly string[]): unknown {
  return keys.reduce<unknown>((current, key) => field(current, key), value);
}

export interface Iperf3Options {
  readonly clientNs: string;
  readonly serverNs: string;
  /** Address the server binds and the client connects to. */
  readonly serverAddress: string;
  readonly protocol: 'tcp' | 'udp';
  /** Test duration (iperf3 -t). Default 2. */
  readonly seconds?: number;
  /** Target rate, e.g. "20M" (iperf3 -b); UDP defaults to 1 Mbit/s without it. */
  readonly bitrate?: string;
  /** Parallel streams (iperf3 -P). Default 1. */
  readonly streams?: number;
  /** Server sends, client receives (iperf3 -R). */
  readonly reverse?: boolean;
  /** Default 5201. */
  readonly port?: number;
}

export interface Iperf3Result {
  /** Bytes the sender wrote. */
  readonly sentBytes: number;
  /** Bytes the receiver read. */
  readonly receivedBytes: number;
  /** Receiver-side throughput. */
  readonly receivedBitsPerSecond: number;
  /** TCP only. */
  readonly retransmits: number | undefined;
  /** UDP only: datagrams lost, out of `packets`. */
  readonly lostPackets: number | undefined;
  readonly packets: number | undefined;
  readonly lostPercent: number | undefined;
  readonly json: unknown;
}

/** Runs one iperf3 test (server in serverNs, client in clientNs) and parses its `-J` report. */
export async function runIperf3(
  harness: NetnsHarness,
  options: Iperf3Options,
): Promise<Iperf3Result> {
  const seconds = options.seconds ?? 2;
  const port = options.port ?? 5201;
  if (!(seconds > 0 && seconds <= 120))
    throw new RangeError(`seconds must be in (0, 120], got ${seconds}`);
  const server = harness.spawn(
    options.serverNs,
    ['iperf3', '-s', '-1', '-B', options.serverAddress, '-p', String(port)],
    { label: `iperf3 server ${options.serverAddress}:${port} in ${options.serverNs}` },
  );
  await waitForListening(harness, options.serverNs, port, 'tcp');
  const argv = [
    'iperf3',
    '-c',
    options.serverAddress,
    '-p',
    String(port),
    '-t',
    String(seconds),
    '-J',
  ];
  if (options.protocol === 'udp') argv.push('-u');
  if (options.bitrate !== undefined) argv.push('-b', options.bitrate);
  if (options.streams !== undefined) argv.push('-P', String(options.streams));
  if (options.reverse === true) argv.push('-R');
  const result = await harness.exec(options.clientNs, argv, {
    allowFailure: true,
    timeoutMs: seconds * 1000 + 30_000,
  });
  let json: unknown;
  try {
    json = JSON.parse(result.stdout);
  } catch {
    throw new Error(
      `iperf3 printed no JSON (exit ${String(result.exitCode)}):\n${result.stdout}\n${result.stderr}`,
    );
  }
  if (typeof json === 'object' && json !== null && 'error' in json) {
    throw new Error(`iperf3 failed: ${String(json.error)}`);
  }
  // The one-shot server exits after the test; give it a moment, then stop it.
  await server.exitedWithin(2000);
  await server.stop();
  const end = jsonPath(json, 'end');
  if (options.protocol === 'tcp') {
    const sent = jsonPath(end, 'sum_sent');
    const received = jsonPath(end, 'sum_received');
    return {
      sentBytes: num(jsonPath(sent, 'bytes')),
      receivedBytes: num(jsonPath(received, 'bytes')),
      receivedBitsPerSecond: num(jsonPath(received, 'bits_per_second')),
      retransmits: num(jsonPath(sent, 'retransmits')),
      lostPackets: undefined,
      packets: undefined,
      lostPercent: undefined,
      json,
    };
  }
  // iperf3 3.12 reports UDP in end.sum: bytes sent, and the receiver's loss count.
  const sum = jsonPath(end, 'sum');
  const packets = num(jsonPath(sum, 'packets'));
  const lostPackets = num(jsonPath(sum, 'lost_packets'));
  const sentBytes = num(jsonPath(sum, 'bytes'));
  return {
    sentBytes,
    receivedBytes: packets === 0 ? 0 : Math.round((sentBytes * (packets - lostPackets)) / packets),
    receivedBitsPerSecond:
      num(jsonPath(sum, 'bits_per_second')) * (packets === 0 ? 0 : 1 - lostPackets / packets),
    retransmits: undefined,
    lostPackets,
    packets,
    lostPercent: num(jsonPath(sum, 'lost_percent')),
    json,
  };
}

export interface DigestTransferResult {
  readonly bytes: number;
  readonly sentSha256: string;
  readonly receivedSha256: string;
  readonly receivedBytes: number;
  readonly elapsedMs: number;
}

/**
 * Sends `bytes` random bytes over one TCP connection with ncat (from fromNs to
 * toAddress:port in toNs) and returns the SHA-256 of what was sent and of what arrived.
 */
export async function tcpTransferWithDigest(
  harness: NetnsHarness,
  options: {
    fromNs: string;
    toNs: string;
    toAddress: string;
    port: number;
    bytes: number;
    timeoutMs?: number;
  },
): Promise<DigestTransferResult> {
  if (!Number.isInteger(options.bytes) || options.bytes < 1)
    throw new RangeError(`bytes must be a positive integer`);
  const dir = await harness.makeTempDir();
  const sourceFile = join(dir, 'source.bin');
  const sinkFile = join(dir, 'sink.bin');
  const data = randomBytes(options.bytes);
  await writeFile(sourceFile, data);
  const sentSha256 = createHash('sha256').update(data).digest('hex');
  const receiver = harness.spawn(
    options.toNs,
    [
      'sh',
      '-c',
      'exec ncat --recv-only -l "$0" "$1" > "$2"',
      options.toAddress,
      String(options.port),
      sinkFile,
    ],
    { label: `ncat receiver ${options.toAddress}:${options.port}` },
  );
  await waitForListening(harness, options.toNs, options.port, 'tcp');
  const started = Date.now();
  await harness.exec(
    options.fromNs,
    [
      'sh',
      '-c',
      'exec ncat --send-only "$0" "$1" < "$2"',
      options.toAddress,
      String(options.port),
      sourceFile,
    ],
    { timeoutMs: options.timeoutMs ?? 60_000 },
  );
  const receiverDone = await receiver.exitedWithin(10_000);
  const elapsedMs = Date.now() - started;
  if (!receiverDone) {
    await receiver.stop();
    throw new Error(
      `ncat receiver did not finish within 10 s after the sender:\n${receiver.output()}`,
    );
  }
  const received = await readFile(sinkFile);
  return {
    bytes: options.bytes,
    sentSha256,
    receivedSha256: createHash('sha256').update(received).digest('hex'),
    receivedBytes: received.length,
    elapsedMs,
  };
}
