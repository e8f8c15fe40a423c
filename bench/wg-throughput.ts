/**
 * Throughput of a WireGuard tunnel between two namespaces joined by a veth:
 * iperf3 TCP through a pair of implementation A (default warren-wg) and a pair
 * of implementation B (default wireguard-go), measured in the same invocation,
 * printed with the ratio A ÷ B (DESIGN.md: benchmarks print ratios against a
 * peer run in the same invocation). Needs root.
 *
 *   node dist/bench/wg-throughput.js [--seconds N] [--streams N] [--mtu N] [--rounds N]
 *                                    [--impl-a IMPL] [--impl-b IMPL] [--reverse]
 *
 * With --rounds N the two pairs are measured alternately N times (A B A B …, so
 * drift of the machine hits both alike) and the medians are compared.
 */
import { parseArgs } from 'node:util';
import { requireRoot, withHarness } from '../test/harness/netns.js';
import { createTunnelPair } from '../test/harness/topology.js';
import { runIperf3, waitForPing } from '../test/harness/traffic.js';
import { isWireGuardImpl, WIREGUARD_IMPLS } from '../test/harness/wireguard.js';
import type { WireGuardImpl } from '../test/harness/wireguard.js';
import { integerOption, median } from './stats.js';

interface BenchOptions {
  readonly implA: WireGuardImpl;
  readonly implB: WireGuardImpl;
  readonly seconds: number;
  readonly streams: number;
  readonly mtu: number;
  readonly reverse: boolean;
  readonly rounds: number;
}

interface Measurement {
  readonly impl: WireGuardImpl;
  readonly bitsPerSecond: number;
  readonly retransmits: number | undefined;
}

const USAGE = `usage: wg-throughput [--seconds N] [--streams N] [--mtu N] [--rounds N] [--impl-a IMPL] [--impl-b IMPL] [--reverse]
  IMPL is one of: ${WIREGUARD_IMPLS.join(', ')}.
  Defaults: 10 s, 1 stream, MTU 1420, 1 round, warren-wg vs wireguard-go.`;

function parseOptions(argv: readonly string[]): BenchOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      seconds: { type: 'string', default: '10' },
      streams: { type: 'string', default: '1' },
      mtu: { type: 'string', default: '1420' },
      'impl-a': { type: 'string', default: 'warren-wg' },
      'impl-b': { type: 'string', default: 'wireguard-go' },
      rounds: { type: 'string', default: '1' },
      reverse: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const impl = (text: string, name: string): WireGuardImpl => {
    if (!isWireGuardImpl(text))
      throw new RangeError(`--${name} must be one of ${WIREGUARD_IMPLS.join(', ')}, got ${text}`);
    return text;
  };
  return {
    implA: impl(values['impl-a'], 'impl-a'),
    implB: impl(values['impl-b'], 'impl-b'),
    seconds: integerOption(values.seconds, 'seconds', 1, 120),
    streams: integerOption(values.streams, 'streams', 1, 16),
    mtu: integerOption(values.mtu, 'mtu', 1280, 9000),
    rounds: integerOption(values.rounds, 'rounds', 1, 20),
    reverse: values.reverse,
  };
}

/** One fresh topology with `impl` on both ends; iperf3 from the initiator's namespace to the responder. */
function measure(impl: WireGuardImpl, options: BenchOptions): Promise<Measurement> {
  return withHarness(async (harness) => {
    const { initiator, responder } = await createTunnelPair(harness, {
      initiatorImpl: impl,
      responderImpl: impl,
      mtu: options.mtu,
      // Logging on the data path would slow the daemon being measured.
      logLevel: 'error',
    });
    await waitForPing(harness, initiator.ns, responder.addresses.tunnelV4);
    const result = await runIperf3(harness, {
      clientNs: initiator.ns,
      serverNs: responder.ns,
      serverAddress: responder.addresses.tunnelV4,
      protocol: 'tcp',
      seconds: options.seconds,
      streams: options.streams,
      reverse: options.reverse,
    });
    return {
      impl,
      bitsPerSecond: result.receivedBitsPerSecond,
      retransmits: result.retransmits,
    };
  });
}

function formatTable(rows: readonly (readonly string[])[]): string {
  const widths =
    rows[0]?.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length))) ?? [];
  return rows
    .map((row) =>
      row
        .map((cell, column) =>
          column === 0 ? cell.padEnd(widths[column] ?? 0) : cell.padStart(widths[column] ?? 0),
        )
        .join('   '),
    )
    .join('\n');
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  requireRoot();
  const direction = options.reverse ? 'responder → initiator' : 'initiator → responder';
  console.log(
    `WireGuard throughput: iperf3 TCP, ${options.streams} stream(s), ${options.seconds} s, tunnel MTU ${options.mtu}, ` +
      `${direction}, two namespaces over a veth (1500), same implementation on both ends`,
  );
  // Slot 0 is --impl-a, slot 1 is --impl-b (they may name the same implementation).
  const impls = [options.implA, options.implB] as const;
  const slots: [Measurement[], Measurement[]] = [[], []];
  for (let round = 1; round <= options.rounds; round += 1) {
    for (const slot of [0, 1] as const) {
      const impl = impls[slot];
      const roundNote = options.rounds > 1 ? ` (round ${round}/${options.rounds})` : '';
      process.stdout.write(`measuring ${impl} ↔ ${impl}${roundNote} …\n`);
      slots[slot].push(await measure(impl, options));
    }
  }
  const summaryA = summarize(slots[0]);
  const summaryB = summarize(slots[1]);
  const header = ['pair', 'Gbit/s (median)', 'min', 'max', 'TCP retransmits (median)'];
  const rows = [
    header,
    ...(
      [
        [options.implA, summaryA],
        [options.implB, summaryB],
      ] as const
    ).map(([impl, summary]) => [
      `${impl} ↔ ${impl}`,
      gbit(summary.medianBitsPerSecond),
      gbit(summary.minBitsPerSecond),
      gbit(summary.maxBitsPerSecond),
      summary.medianRetransmits === undefined ? '-' : String(summary.medianRetransmits),
    ]),
  ];
  console.log(`\n${formatTable(rows)}\n`);
  const ratio =
    summaryB.medianBitsPerSecond > 0
      ? summaryA.medianBitsPerSecond / summaryB.medianBitsPerSecond
      : Number.NaN;
  console.log(`ratio ${options.implA} ÷ ${options.implB} (median throughput): ${ratio.toFixed(3)}`);
}

interface Summary {
  readonly medianBitsPerSecond: number;
  readonly minBitsPerSecond: number;
  readonly maxBitsPerSecond: number;
  readonly medianRetransmits: number | undefined;
}

function summarize(measurements: readonly Measurement[]): Summary {
  if (measurements.length === 0) throw new Error('no measurements');
  const rates = measurements.map((m) => m.bitsPerSecond);
  const retransmits = measurements
    .map((m) => m.retransmits)
    .filter((r): r is number => r !== undefined);
  return {
    medianBitsPerSecond: median(rates),
    minBitsPerSecond: Math.min(...rates),
    maxBitsPerSecond: Math.max(...rates),
    medianRetransmits: retransmits.length === 0 ? undefined : Math.round(median(retransmits)),
  };
}

function gbit(bitsPerSecond: number): string {
  return (bitsPerSecond / 1e9).toFixed(3);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? (error.stack ?? error.message) : String(error));
  process.exitCode = 1;
});
