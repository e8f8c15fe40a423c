/**
 * Start-up cost of `warren run` (issue 3: "adds well under half a second"):
 * the wall time of `warren run -c CONFIG -- true` against `unshare -Urn true`
 * (the bare user + network namespace every rootless sandbox pays for),
 * measured alternately in the same invocation, as an unprivileged user, in the
 * client host namespace of test/harness/internet.ts (so warren's first
 * handshake goes to a test server, never anywhere else). `node -e 0` is timed
 * too, as context: warren starts Node twice (itself and the sandbox's init).
 *
 *   node dist/bench/run-startup.js [--runs N]
 *
 * Prints the medians, the difference and the ratio warren ÷ unshare. Needs root
 * (it builds the namespaces, then drops to a test uid); sets /dev/net/tun to
 * 0666 for the run and restores its mode.
 */
import { parseArgs } from 'node:util';
import { createInternetTopology, wgQuickConfig } from '../test/harness/internet.js';
import { requireRoot, withHarness } from '../test/harness/netns.js';
import {
  allowTunForEveryone,
  asUser,
  createRunUser,
  WARREN_CLI,
  writeUserFile,
} from '../test/harness/warren-run.js';
import { median } from './stats.js';

const USAGE = `usage: run-startup [--runs N]
  Times \`warren run -c CONFIG -- true\`, \`unshare -Urn true\` and \`node -e 0\`, N times each
  (alternating), as an unprivileged user; prints medians, difference and ratio. Default N = 20.`;

type Subject = 'warren' | 'unshare' | 'node';
const SUBJECTS: readonly Subject[] = ['warren', 'unshare', 'node'];

function parseRuns(argv: readonly string[]): number {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      runs: { type: 'string', default: '20' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const runs = Number(values.runs);
  if (!Number.isInteger(runs) || runs < 1 || runs > 1000) {
    throw new RangeError(`--runs must be an integer in 1..1000, got ${values.runs}`);
  }
  return runs;
}

/**
 * A shell loop, run as the user, that times each command with the shell's own
 * clock reads around it (so the harness's way of starting the loop costs
 * nothing per sample) and prints "SUBJECT NANOSECONDS EXIT" per run.
 */
function timingLoop(runs: number): string {
  const timed = (subject: Subject, command: string) =>
    `  s=$(date +%s%N); ${command} >/dev/null 2>&1; e=$?; echo "${subject} $(( $(date +%s%N) - s )) $e"`;
  return [
    'i=0',
    `while [ "$i" -lt ${runs} ]; do`,
    '  i=$((i + 1))',
    timed('warren', '"$0" "$1" run -c "$2" -- true'),
    timed('unshare', 'unshare -Urn true'),
    timed('node', '"$0" -e 0'),
    'done',
  ].join('\n');
}

async function main(): Promise<void> {
  const runs = parseRuns(process.argv.slice(2));
  requireRoot();
  const restoreTun = await allowTunForEveryone();
  try {
    await withHarness(async (harness) => {
      const topology = await createInternetTopology(harness, { serverImpl: 'wireguard-go' });
      const user = await createRunUser(harness);
      const config = await writeUserFile(
        user,
        'bench.conf',
        wgQuickConfig(topology, topology.dual),
      );
      const result = await harness.exec(
        topology.clientNs,
        asUser(user, ['sh', '-c', timingLoop(runs), process.execPath, WARREN_CLI, config]),
        { timeoutMs: runs * 10_000 },
      );
      const samples = new Map<Subject, number[]>(SUBJECTS.map((s) => [s, []]));
      for (const line of result.stdout.split('\n')) {
        const [subject, nanoseconds, exit] = line.split(' ');
        const list = samples.get(subject as Subject);
        if (list === undefined) continue;
        if (exit !== '0')
          throw new Error(`${subject ?? ''} exited ${exit ?? '?'}:\n${result.stdout}`);
        list.push(Number(nanoseconds) / 1e6);
      }
      for (const [subject, list] of samples) {
        if (list.length !== runs) {
          throw new Error(
            `expected ${runs} samples of ${subject}, got ${list.length}:\n${result.stdout}`,
          );
        }
      }
      const medianOf = (subject: Subject) => median(samples.get(subject) ?? []);
      const warren = medianOf('warren');
      const unshare = medianOf('unshare');
      const node = medianOf('node');
      const format = (ms: number) => `${ms.toFixed(1).padStart(7)} ms`;
      console.log(`start-up, median of ${runs} runs each, as uid ${user.uid} (alternating):`);
      console.log(`  warren run -c CONFIG -- true  ${format(warren)}`);
      console.log(`  unshare -Urn true             ${format(unshare)}`);
      console.log(`  node -e 0 (context)           ${format(node)}`);
      console.log(
        `warren run adds ${(warren - unshare).toFixed(1)} ms over unshare -Urn; ratio warren ÷ unshare = ${(warren / unshare).toFixed(1)}×`,
      );
    });
  } finally {
    await restoreTun();
  }
}

await main();
