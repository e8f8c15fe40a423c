/**
 * The tunnel against its peers, all on 127.0.0.1 and measured in the same run
 * (DESIGN.md: benchmarks print ratios against a peer run in the same invocation):
 *
 *   HTTP requests/s (wrk, keep-alive):  direct to the local server
 *                                       through warren relay + expose (TLS, yamux)
 *                                       through `ssh -R` (OpenSSH sshd + ssh)
 *   one TCP stream (iperf3):            direct, and through a warren TCP tunnel
 *
 *   node dist/bench/relay.js [--seconds N] [--connections N] [--rounds N] [--only http|tcp]
 *
 * Each round measures every path once, the tunnel and ssh -R back to back, so
 * a machine that is busier in one moment than the next skews both alike; the
 * medians over the rounds are compared. WARREN_BENCH_PROFILE=DIR makes the
 * relay and agent processes write V8 CPU profiles there.
 *
 * For HTTP two references carry the same requests over two hops with one TLS
 * connection per client (ssh -R's design, without its multiplexing): Node TLS
 * pipes, and the C pipes with OpenSSL below (a thread per connection, each
 * polling its two sockets: simple, not the fastest design for many clients).
 *
 * For one TCP stream four more references run, to show what Node and the
 * machine itself allow: the same two hops as relay + agent, as plain Node
 * socket pipes (no TLS, no yamux), as Node TLS pipes (TLS, no yamux), as C
 * read()/write() pipes (bench/native/pipe.c, the cheapest user-space hop there
 * is) and as C pipes with OpenSSL TLS between them (bench/native/tls-pipe.c:
 * the ceiling for any relay that encrypts its middle hop in user space). The C
 * pipes are built with `cc` (and libssl-dev) when they can be.
 *
 * Every measurement also records how busy the whole machine was and how much
 * of its CPU time the hypervisor took (steal, from /proc/stat): on a small VM
 * whose host is busy, steal moves the results more than any code change.
 *
 * Needs wrk, iperf3, openssh-server (sshd) and openssh-client, and root: sshd
 * is started by the bench on a high port with its own config, host key and
 * authorized key in a temporary directory (no system sshd is touched), and
 * `ssh -R` logs in to it as root with a throw-away key.
 *
 * Relay, agent and the local server each run in their own process, as they
 * would in production; so do sshd and ssh.
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect as connectTcp, createServer } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { connect as connectTls, createServer as createTlsServer } from 'node:tls';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { Agent } from '../src/relay/agent.js';
import { ensureDevCertificate } from '../src/relay/dev-ca.js';
import { Relay } from '../src/relay/relay.js';
import { createToken } from '../src/relay/token.js';
import { loadOrCreateSecret } from '../src/relay/secret.js';
import { machineJiffies } from '../test/harness/traffic.js';
import { integerOption, median } from './stats.js';

const run = promisify(execFile);
const SELF = fileURLToPath(import.meta.url);
const DOMAIN = 'bench.test';
const LOOPBACK = '127.0.0.1';

// ---- roles (child processes) ------------------------------------------------------------

/** A minimal keep-alive HTTP responder: one fixed response per request head. */
async function roleLocal(): Promise<void> {
  const body = 'hello from the local service\n';
  const response = Buffer.from(
    `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
  );
  const server = createServer({ noDelay: true }, (socket: Socket) => {
    let carry = '';
    socket.on('error', () => undefined);
    socket.on('data', (chunk: Buffer) => {
      // wrk's GETs have no body: count head terminators.
      const text = carry + chunk.toString('latin1');
      let from = 0;
      const replies: Buffer[] = [];
      for (let at = text.indexOf('\r\n\r\n'); at >= 0; at = text.indexOf('\r\n\r\n', from)) {
        replies.push(response);
        from = at + 4;
      }
      carry = text.slice(from);
      if (replies.length > 0)
        socket.write(replies.length === 1 ? response : Buffer.concat(replies));
    });
  });
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  const address = server.address();
  process.stdout.write(
    `${JSON.stringify({ port: typeof address === 'object' ? address?.port : 0 })}\n`,
  );
}

async function roleRelay(dir: string): Promise<void> {
  const cert = await ensureDevCertificate(dir, DOMAIN);
  const relay = await Relay.start({
    domain: DOMAIN,
    dataDir: dir,
    tls: { cert: cert.cert, key: cert.key },
    agentListen: { host: LOOPBACK, port: 0 },
    httpListen: { host: LOOPBACK, port: 0 },
    tcpHost: LOOPBACK,
    tcpPorts: [44000, 44999],
    // A benchmark, not an attack: no per-tunnel rate limit in the way.
    limits: { requestsPerSecond: 1e9, requestBurst: 1e9, maxConnectionsPerIp: 100_000 },
  });
  process.stdout.write(
    `${JSON.stringify({ agent: relay.address('agent')?.port, http: relay.address('http')?.port })}\n`,
  );
  process.on('SIGTERM', () => {
    void relay.close({ drainTimeoutMs: 0 }).then(() => process.exit(0));
  });
}

async function roleAgent(
  dir: string,
  agentPort: number,
  localPort: number,
  iperfPort: number,
): Promise<void> {
  const secret = await loadOrCreateSecret(dir);
  const { token } = createToken(secret, { name: 'bench', subdomains: ['app'], tcp: true });
  const agent = new Agent({
    relayHost: LOOPBACK,
    relayPort: agentPort,
    servername: DOMAIN,
    ca: await readFile(join(dir, 'dev-ca', 'ca.crt')),
    token,
    tunnels: [
      { proto: 'http', localPort, subdomain: 'app' },
      { proto: 'tcp', localPort: iperfPort },
    ],
  });
  agent.start();
  const tunnels = await agent.ready();
  process.stdout.write(`${JSON.stringify({ tcp: tunnels[1]?.port })}\n`);
  process.on('SIGTERM', () => {
    void agent.close().then(() => process.exit(0));
  });
}

/**
 * A reference hop for the TCP comparison: listens on --listen-port and pipes
 * each connection to --target-port, as plain TCP or (with --tls) as TLS on the
 * side named by `side`: the near hop speaks TLS to the far one, the far hop
 * terminates TLS and connects on in clear, like relay and agent.
 */
async function rolePipe(
  side: 'near' | 'far',
  tls: boolean,
  listenPort: number,
  targetPort: number,
  dir: string,
): Promise<void> {
  const wire = (a: Socket, b: Socket): void => {
    a.on('error', () => b.destroy());
    b.on('error', () => a.destroy());
    a.pipe(b);
    b.pipe(a);
  };
  const onConnection = (client: Socket): void => {
    const upstream =
      tls && side === 'near'
        ? connectTls({
            host: LOOPBACK,
            port: targetPort,
            servername: DOMAIN,
            rejectUnauthorized: false,
          })
        : connectTcp({ host: LOOPBACK, port: targetPort, noDelay: true });
    wire(client, upstream);
  };
  let server;
  if (tls && side === 'far') {
    const cert = await ensureDevCertificate(dir, DOMAIN);
    server = createTlsServer({ cert: cert.cert, key: cert.key }, onConnection);
  } else {
    server = createServer({ noDelay: true }, onConnection);
  }
  server.listen(listenPort, LOOPBACK);
  await once(server, 'listening');
  process.stdout.write(`${JSON.stringify({ port: listenPort })}\n`);
}

// ---- orchestration ----------------------------------------------------------------------

const children: ChildProcess[] = [];

/** WARREN_BENCH_PROFILE=DIR: the relay and agent processes write V8 CPU profiles there. */
const PROFILE_DIR = process.env.WARREN_BENCH_PROFILE;

function startChild(command: string, args: string[]): ChildProcess {
  const profiled =
    PROFILE_DIR !== undefined && command === process.execPath && /relay|agent/.test(args[2] ?? '');
  const child = spawn(
    command,
    profiled ? ['--cpu-prof', `--cpu-prof-dir=${PROFILE_DIR}`, ...args] : args,
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  return child;
}

async function firstJsonLine<T>(child: ChildProcess, what: string): Promise<T> {
  let buffered = '';
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      buffered += chunk.toString();
      const line = buffered.split('\n').find((candidate) => candidate.startsWith('{'));
      if (line !== undefined) resolve(JSON.parse(line) as T);
    });
    child.once('exit', (code) => {
      reject(new Error(`${what} exited (${String(code)}): ${stderr}`));
    });
  });
}

async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connectTcp(port, LOOPBACK);
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => {
        resolve(false);
      });
    });
    if (ok) return;
    if (performance.now() > deadline) throw new Error(`nothing listens on ${port}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  const address = server.address();
  server.close();
  return typeof address === 'object' && address !== null ? address.port : 0;
}

async function wrk(
  url: string,
  host: string,
  seconds: number,
  connections: number,
): Promise<number> {
  const { stdout } = await run('wrk', [
    '-t1',
    `-c${connections}`,
    `-d${seconds}s`,
    '-H',
    `Host: ${host}`,
    url,
  ]);
  const match = /Requests\/sec:\s+([\d.]+)/.exec(stdout);
  const errors = /Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)/.exec(stdout);
  if (match === null) throw new Error(`wrk printed no rate:\n${stdout}`);
  if (errors !== null) process.stderr.write(`wrk ${url}: ${errors[0]}\n`);
  return Number(match[1]);
}

async function iperf(port: number, seconds: number): Promise<number> {
  // iperf3's server runs one test at a time and refuses the next while the last
  // one's connections are still closing through a relay's two hops ("unable to
  // receive control message: Connection reset by peer"): try again shortly.
  for (let attempt = 1; ; attempt++) {
    let stdout: string;
    try {
      ({ stdout } = await run(
        'iperf3',
        ['-c', LOOPBACK, '-p', String(port), '-t', String(seconds), '-J'],
        { maxBuffer: 16 * 1024 * 1024 },
      ));
    } catch (error) {
      stdout = (error as { stdout?: string }).stdout ?? String(error);
    }
    const result = JSON.parse(stdout.startsWith('{') ? stdout : '{}') as {
      end?: { sum_received?: { bits_per_second?: number } };
    };
    const bits = result.end?.sum_received?.bits_per_second;
    if (bits !== undefined) return bits;
    if (attempt === 3) throw new Error(`iperf3 printed no result: ${stdout.slice(0, 500)}`);
    process.stderr.write(`iperf3 to port ${port} failed (attempt ${attempt}), trying again\n`);
    await new Promise((resolve) => setTimeout(resolve, 1_000));
  }
}

/** CPU seconds (user + system) a process and its descendants used so far, from /proc. */
async function cpuSeconds(pids: readonly number[]): Promise<number> {
  const ticksPerSecond = 100; // USER_HZ on Linux
  let total = 0;
  const seen = new Set<number>();
  const visit = async (pid: number): Promise<void> => {
    if (seen.has(pid)) return;
    seen.add(pid);
    try {
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(fields[11]) + Number(fields[12])) / ticksPerSecond;
      const children = await readFile(`/proc/${pid}/task/${pid}/children`, 'utf8');
      for (const child of children.split(' ').filter((text) => text.length > 0)) {
        await visit(Number(child));
      }
    } catch {
      // The process is gone.
    }
  };
  for (const pid of pids) await visit(pid);
  return total;
}

async function startSsh(
  dir: string,
  localPort: number,
  iperfPort: number,
): Promise<{ http: number; iperf: number; pids: number[] }> {
  if (process.getuid?.() !== 0) throw new Error('the ssh -R comparison needs root (sshd)');
  const sshDir = join(dir, 'ssh');
  await mkdir(sshDir, { mode: 0o700 });
  // sshd refuses to start without its privilege separation directory.
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(sshDir, 'host_key')]);
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(sshDir, 'client_key')]);
  await writeFile(join(sshDir, 'authorized_keys'), await readFile(join(sshDir, 'client_key.pub')), {
    mode: 0o600,
  });
  const sshPort = await freePort();
  const config = join(sshDir, 'sshd_config');
  await writeFile(
    config,
    [
      `Port ${sshPort}`,
      `ListenAddress ${LOOPBACK}`,
      `HostKey ${join(sshDir, 'host_key')}`,
      `AuthorizedKeysFile ${join(sshDir, 'authorized_keys')}`,
      `PidFile ${join(sshDir, 'sshd.pid')}`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'StrictModes no',
      'AllowTcpForwarding remote',
      'GatewayPorts no',
      'PrintMotd no',
      '',
    ].join('\n'),
  );
  const sshd = startChild('/usr/sbin/sshd', ['-D', '-e', '-f', config]);
  await waitForPort(sshPort);
  const remotePort = await freePort();
  const remoteIperfPort = await freePort();
  const ssh = startChild('ssh', [
    '-N',
    '-i',
    join(sshDir, 'client_key'),
    '-p',
    String(sshPort),
    '-o',
    'StrictHostKeyChecking=no',
    '-o',
    `UserKnownHostsFile=${join(sshDir, 'known_hosts')}`,
    '-o',
    'ExitOnForwardFailure=yes',
    '-o',
    'BatchMode=yes',
    '-R',
    `${LOOPBACK}:${remotePort}:${LOOPBACK}:${localPort}`,
    '-R',
    `${LOOPBACK}:${remoteIperfPort}:${LOOPBACK}:${iperfPort}`,
    `root@${LOOPBACK}`,
  ]);
  await waitForPort(remotePort);
  await waitForPort(remoteIperfPort);
  return {
    http: remotePort,
    iperf: remoteIperfPort,
    pids: [sshd.pid ?? 0, ssh.pid ?? 0],
  };
}

/** One measurement of one path. */
interface Sample {
  /** req/s or bit/s. */
  readonly value: number;
  /** CPU seconds the path's own processes used meanwhile. */
  readonly cpuSeconds: number;
  /** Share of the machine's CPU time that was busy, and that the hypervisor took (steal). */
  readonly busy: number;
  readonly steal: number;
}

/** Above this much steal in a measurement the summary says its ratios are unreliable. */
const STEAL_WARNING = 0.1;

/**
 * Compiles bench/native/NAME.c into `dir` with the system's C compiler (and
 * `libraries`); undefined, with a note on stderr, when that fails (no cc, or
 * no libssl-dev for the TLS pipe).
 */
async function buildNative(
  dir: string,
  name: string,
  libraries: readonly string[] = [],
): Promise<string | undefined> {
  const source = fileURLToPath(new URL(`../../bench/native/${name}.c`, import.meta.url));
  const binary = join(dir, name);
  try {
    await run('cc', ['-O2', '-pthread', '-o', binary, source, ...libraries]);
    return binary;
  } catch (error) {
    process.stderr.write(`the C reference ${name} is skipped: ${String(error)}\n`);
    return undefined;
  }
}

const USAGE = `usage: relay [--seconds N] [--connections N] [--rounds N] [--only http|tcp]
  HTTP requests/s (wrk -cN, keep-alive): direct, through warren relay + expose, through ssh -R.
  One TCP stream (iperf3): direct, through a warren TCP tunnel, ssh -R and Node/C reference hops.
  Defaults: 5 s per measurement, 50 wrk connections, 3 rounds, both parts.
  Needs root, wrk, iperf3, sshd and ssh; WARREN_BENCH_PROFILE=DIR writes V8 CPU profiles.`;

function ratio(a: number, b: number): string {
  return b === 0 ? 'n/a' : (a / b).toFixed(2);
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      role: { type: 'string' },
      dir: { type: 'string' },
      'agent-port': { type: 'string' },
      'local-port': { type: 'string' },
      'iperf-port': { type: 'string' },
      seconds: { type: 'string', default: '5' },
      connections: { type: 'string', default: '50' },
      rounds: { type: 'string', default: '3' },
      only: { type: 'string' },
      tls: { type: 'boolean', default: false },
      'listen-port': { type: 'string' },
      'target-port': { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return;
  }
  switch (values.role) {
    case 'local':
      await roleLocal();
      return;
    case 'relay':
      await roleRelay(values.dir ?? '');
      return;
    case 'agent':
      await roleAgent(
        values.dir ?? '',
        Number(values['agent-port']),
        Number(values['local-port']),
        Number(values['iperf-port']),
      );
      return;
    case 'pipe-near':
    case 'pipe-far':
      await rolePipe(
        values.role === 'pipe-near' ? 'near' : 'far',
        values.tls,
        Number(values['listen-port']),
        Number(values['target-port']),
        values.dir ?? '',
      );
      return;
    case undefined:
      break;
    default:
      throw new Error(`unknown role ${values.role}`);
  }

  const seconds = integerOption(values.seconds, 'seconds', 1, 600);
  const connections = integerOption(values.connections, 'connections', 1, 10_000);
  const rounds = integerOption(values.rounds, 'rounds', 1, 100);
  if (values.only !== undefined && values.only !== 'http' && values.only !== 'tcp') {
    throw new Error(`--only must be http or tcp, got ${values.only}`);
  }
  const runHttp = values.only !== 'tcp';
  const runTcp = values.only !== 'http';
  const dir = await mkdtemp(join(tmpdir(), 'warren-bench-relay-'));
  try {
    const local = await firstJsonLine<{ port: number }>(
      startChild(process.execPath, [SELF, '--role', 'local']),
      'local server',
    );
    const relayProcess = startChild(process.execPath, [SELF, '--role', 'relay', '--dir', dir]);
    const relay = await firstJsonLine<{ agent: number; http: number }>(relayProcess, 'relay');
    const iperfPort = await freePort();
    startChild('iperf3', ['-s', '-p', String(iperfPort), '--bind', LOOPBACK]);
    await waitForPort(iperfPort);
    const agentProcess = startChild(process.execPath, [
      SELF,
      '--role',
      'agent',
      '--dir',
      dir,
      '--agent-port',
      String(relay.agent),
      '--local-port',
      String(local.port),
      '--iperf-port',
      String(iperfPort),
    ]);
    const agent = await firstJsonLine<{ tcp: number }>(agentProcess, 'agent');
    const ssh = await startSsh(dir, local.port, iperfPort);
    const tunnelPids = [relayProcess.pid ?? 0, agentProcess.pid ?? 0];

    const directUrl = `http://${LOOPBACK}:${local.port}/`;
    const tunnelUrl = `http://${LOOPBACK}:${relay.http}/`;
    const sshUrl = `http://${LOOPBACK}:${ssh.http}/`;
    const host = `app.${DOMAIN}`;
    const line = (name: string, value: string): void => {
      process.stdout.write(`${name.padEnd(46)}${value}\n`);
    };

    /**
     * Two reference hops in front of `targetPort` (iperf3 or the local HTTP
     * server), started after the relay made the dev certificate.
     */
    const startPipes = async (
      tls: boolean,
      targetPort: number,
    ): Promise<{ port: number; pids: number[] }> => {
      const farPort = await freePort();
      const nearPort = await freePort();
      const flags = ['--dir', dir, ...(tls ? ['--tls'] : [])];
      const far = startChild(process.execPath, [
        SELF,
        '--role',
        'pipe-far',
        '--listen-port',
        String(farPort),
        '--target-port',
        String(targetPort),
        ...flags,
      ]);
      await firstJsonLine(far, 'far pipe');
      const near = startChild(process.execPath, [
        SELF,
        '--role',
        'pipe-near',
        '--listen-port',
        String(nearPort),
        '--target-port',
        String(farPort),
        ...flags,
      ]);
      await firstJsonLine(near, 'near pipe');
      return { port: nearPort, pids: [far.pid ?? 0, near.pid ?? 0] };
    };
    /**
     * The C reference hops in front of `targetPort`, when they build: plain
     * (bench/native/pipe.c) or with TLS between them (bench/native/tls-pipe.c,
     * using the relay's dev certificate).
     */
    const startNativePipes = async (
      tls: boolean,
      targetPort: number,
    ): Promise<{ port: number; pids: number[] } | undefined> => {
      const binary = tls
        ? await buildNative(dir, 'tls-pipe', ['-lssl', '-lcrypto'])
        : await buildNative(dir, 'pipe');
      if (binary === undefined) return undefined;
      const farPort = await freePort();
      const nearPort = await freePort();
      let farArgs = [String(farPort), String(targetPort)];
      let nearArgs = [String(nearPort), String(farPort)];
      if (tls) {
        const certificate = await ensureDevCertificate(dir, DOMAIN);
        const certFile = join(dir, 'c-pipe.crt');
        const keyFile = join(dir, 'c-pipe.key');
        await writeFile(certFile, certificate.cert);
        await writeFile(keyFile, certificate.key, { mode: 0o600 });
        farArgs = ['far', ...farArgs, certFile, keyFile];
        nearArgs = ['near', ...nearArgs];
      }
      const far = startChild(binary, farArgs);
      await firstJsonLine(far, 'far C pipe');
      const near = startChild(binary, nearArgs);
      await firstJsonLine(near, 'near C pipe');
      return { port: nearPort, pids: [far.pid ?? 0, near.pid ?? 0] };
    };
    const plainPipe = runTcp ? (await startPipes(false, iperfPort)).port : 0;
    const tlsPipe = runTcp ? (await startPipes(true, iperfPort)).port : 0;
    const nativePipe = runTcp ? (await startNativePipes(false, iperfPort))?.port : undefined;
    const nativeTlsPipe = runTcp ? (await startNativePipes(true, iperfPort))?.port : undefined;
    const httpTlsPipe = runHttp ? await startPipes(true, local.port) : { port: 0, pids: [] };
    const httpTlsPipeUrl = `http://${LOOPBACK}:${httpTlsPipe.port}/`;
    // The same two hops in C with OpenSSL: what a TLS relay of ssh -R's design (one
    // encrypted connection per client, no HTTP parsing) gets from this machine.
    const httpNativeTlsPipe = runHttp ? await startNativePipes(true, local.port) : undefined;
    const httpNativeTlsPipeUrl = `http://${LOOPBACK}:${String(httpNativeTlsPipe?.port)}/`;

    const paths = new Map<string, Sample[]>();
    /** Runs one measurement of `path` and keeps its sample (CPU of `pids`, machine busy/steal). */
    const sample = async (
      path: string,
      pids: readonly number[],
      run: () => Promise<number>,
    ): Promise<void> => {
      const cpuBefore = await cpuSeconds(pids);
      const machineBefore = await machineJiffies();
      const value = await run();
      const machineAfter = await machineJiffies();
      const cpu = (await cpuSeconds(pids)) - cpuBefore;
      const total = machineAfter.total - machineBefore.total;
      const samples = paths.get(path) ?? [];
      samples.push({
        value,
        cpuSeconds: cpu,
        busy: total > 0 ? (machineAfter.busy - machineBefore.busy) / total : 0,
        steal: total > 0 ? (machineAfter.steal - machineBefore.steal) / total : 0,
      });
      paths.set(path, samples);
    };
    const samplesOf = (path: string): Sample[] => paths.get(path) ?? [];
    const valueOf = (path: string): number => median(samplesOf(path).map((s) => s.value));
    const machineOf = (path: string): string => {
      const samples = samplesOf(path);
      const busy = median(samples.map((s) => s.busy));
      const steal = median(samples.map((s) => s.steal));
      return `machine ${(busy * 100).toFixed(0)}% busy, ${(steal * 100).toFixed(0)}% stolen`;
    };
    const roundRatios = (path: string, reference: string): string =>
      samplesOf(path)
        .map((s, index) => ratio(s.value, samplesOf(reference)[index]?.value ?? 0))
        .join(', ');

    if (runHttp) {
      // Warm up each path (TLS/yamux windows, JIT, ssh channels).
      for (const url of [directUrl, tunnelUrl, sshUrl, httpTlsPipeUrl]) {
        await wrk(url, host, 1, connections);
      }
      if (httpNativeTlsPipe !== undefined) await wrk(httpNativeTlsPipeUrl, host, 1, connections);
    }
    for (let round = 1; round <= rounds; round++) {
      process.stderr.write(`round ${round} of ${rounds}\n`);
      if (runHttp) {
        const http = (url: string) => () => wrk(url, host, seconds, connections);
        await sample('http direct', [], http(directUrl));
        await sample('http tunnel', tunnelPids, http(tunnelUrl));
        await sample('http ssh', ssh.pids, http(sshUrl));
        await sample('http tls pipes', httpTlsPipe.pids, http(httpTlsPipeUrl));
        if (httpNativeTlsPipe !== undefined) {
          await sample('http c tls pipes', httpNativeTlsPipe.pids, http(httpNativeTlsPipeUrl));
        }
      }
      if (runTcp) {
        const stream = (port: number) => () => iperf(port, seconds);
        await sample('tcp direct', [], stream(iperfPort));
        await sample('tcp tunnel', tunnelPids, stream(agent.tcp));
        await sample('tcp ssh', ssh.pids, stream(ssh.iperf));
        await sample('tcp node pipes', [], stream(plainPipe));
        await sample('tcp tls pipes', [], stream(tlsPipe));
        if (nativePipe !== undefined) await sample('tcp c pipes', [], stream(nativePipe));
        if (nativeTlsPipe !== undefined) {
          await sample('tcp c tls pipes', [], stream(nativeTlsPipe));
        }
      }
    }

    process.stdout.write(`\nmedians of ${rounds} rounds of ${seconds} s each\n`);
    if (runHttp) {
      const direct = valueOf('http direct');
      const tunnel = valueOf('http tunnel');
      const viaSsh = valueOf('http ssh');
      const perRequest = (path: string): string =>
        `${(median(samplesOf(path).map((s) => s.cpuSeconds / (s.value * seconds))) * 1e6).toFixed(1)} µs CPU per request`;
      const rate = (path: string): string => `${valueOf(path).toFixed(0)} req/s`.padEnd(13);
      process.stdout.write(`\nHTTP, wrk -c${connections} (keep-alive, tiny responses)\n`);
      line('  direct to the local server', `${rate('http direct')}(${machineOf('http direct')})`);
      line(
        '  through warren relay + expose',
        `${rate('http tunnel')}(${perRequest('http tunnel')}, relay + agent; ${machineOf('http tunnel')})`,
      );
      line(
        '  through ssh -R',
        `${rate('http ssh')}(${perRequest('http ssh')}, sshd + ssh; ${machineOf('http ssh')})`,
      );
      line(
        '  two Node TLS pipes (TLS, no mux, no HTTP)',
        `${rate('http tls pipes')}(${perRequest('http tls pipes')}, both pipes; ${machineOf('http tls pipes')})`,
      );
      if (httpNativeTlsPipe !== undefined) {
        line(
          '  two C pipes with TLS between (OpenSSL)',
          `${rate('http c tls pipes')}(${perRequest('http c tls pipes')}, both pipes; ${machineOf('http c tls pipes')})`,
        );
      } else {
        line('  two C pipes with TLS between', 'not run: no cc or no libssl-dev');
      }
      line(
        '  warren ÷ ssh -R',
        `${ratio(tunnel, viaSsh)}  (rounds: ${roundRatios('http tunnel', 'http ssh')})`,
      );
      line('  warren ÷ direct', ratio(tunnel, direct));
      line('  warren ÷ Node TLS pipes', ratio(tunnel, valueOf('http tls pipes')));
      if (httpNativeTlsPipe !== undefined) {
        line(
          '  C TLS pipes ÷ ssh -R (a TLS relay in C)',
          `${ratio(valueOf('http c tls pipes'), viaSsh)}  (rounds: ${roundRatios('http c tls pipes', 'http ssh')})`,
        );
        line('  warren ÷ C TLS pipes', ratio(tunnel, valueOf('http c tls pipes')));
      }
    }
    if (runTcp) {
      const gbit = (path: string): string =>
        `${(valueOf(path) / 1e9).toFixed(2)} Gbit/s`.padEnd(13);
      const cores = (path: string): string =>
        `${(median(samplesOf(path).map((s) => s.cpuSeconds / seconds)) * 100).toFixed(0)}% of a core`;
      const direct = valueOf('tcp direct');
      const tunnel = valueOf('tcp tunnel');
      process.stdout.write(`\nOne TCP stream, iperf3\n`);
      line('  direct', `${gbit('tcp direct')}(${machineOf('tcp direct')})`);
      line(
        '  through a warren TCP tunnel',
        `${gbit('tcp tunnel')}(relay + agent: ${cores('tcp tunnel')}; ${machineOf('tcp tunnel')})`,
      );
      line(
        '  through ssh -R (reference)',
        `${gbit('tcp ssh')}(sshd + ssh: ${cores('tcp ssh')}; ${machineOf('tcp ssh')})`,
      );
      line(
        '  two Node TCP pipes (no TLS, no mux)',
        `${gbit('tcp node pipes')}(${machineOf('tcp node pipes')})`,
      );
      line(
        '  two Node TLS pipes (TLS, no mux)',
        `${gbit('tcp tls pipes')}(${machineOf('tcp tls pipes')})`,
      );
      if (nativePipe !== undefined) {
        line(
          '  two C read/write pipes (no TLS, no mux)',
          `${gbit('tcp c pipes')}(${machineOf('tcp c pipes')})`,
        );
      } else {
        line('  two C read/write pipes', 'not run: no C compiler (cc)');
      }
      if (nativeTlsPipe !== undefined) {
        line(
          '  two C pipes with TLS between (OpenSSL)',
          `${gbit('tcp c tls pipes')}(${machineOf('tcp c tls pipes')})`,
        );
      } else {
        line('  two C pipes with TLS between', 'not run: no cc or no libssl-dev');
      }
      line(
        '  warren ÷ direct',
        `${ratio(tunnel, direct)}  (rounds: ${roundRatios('tcp tunnel', 'tcp direct')})`,
      );
      line('  warren ÷ ssh -R', ratio(tunnel, valueOf('tcp ssh')));
      line('  warren ÷ Node TLS pipes', ratio(tunnel, valueOf('tcp tls pipes')));
      line('  Node TCP pipes ÷ direct (a ceiling)', ratio(valueOf('tcp node pipes'), direct));
      if (nativePipe !== undefined) {
        line(
          '  C pipes ÷ direct',
          `${ratio(valueOf('tcp c pipes'), direct)}  (rounds: ${roundRatios('tcp c pipes', 'tcp direct')})`,
        );
      }
      if (nativeTlsPipe !== undefined) {
        line(
          '  C TLS pipes ÷ direct (TLS relay ceiling)',
          `${ratio(valueOf('tcp c tls pipes'), direct)}  (rounds: ${roundRatios('tcp c tls pipes', 'tcp direct')})`,
        );
        line('  warren ÷ C TLS pipes', ratio(tunnel, valueOf('tcp c tls pipes')));
      }
    }
    const steals = [...paths.values()].flat().map((s) => s.steal);
    const worst = Math.max(0, ...steals);
    if (worst > STEAL_WARNING) {
      process.stdout.write(
        `\nnote: the hypervisor took up to ${(worst * 100).toFixed(0)}% of this machine's CPU time during a\n` +
          `measurement (steal). Those rounds measured the host's other guests as much as this code;\n` +
          `compare ratios from rounds where it stayed under ${(STEAL_WARNING * 100).toFixed(0)}%.\n`,
      );
    }
  } finally {
    const running = (child: ChildProcess): boolean =>
      child.exitCode === null && child.signalCode === null;
    for (const child of children.reverse()) {
      if (!running(child)) continue;
      child.kill('SIGTERM');
      await Promise.race([
        once(child, 'exit'),
        new Promise((resolve) => setTimeout(resolve, 2_000)),
      ]);
      if (running(child)) child.kill('SIGKILL');
    }
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
