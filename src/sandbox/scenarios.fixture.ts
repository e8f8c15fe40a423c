/**
 * Scenarios sandbox.test.ts runs AS AN UNPRIVILEGED USER (setpriv to
 * `nobody`): the sandbox must work without root, so the test (root, to set up
 * the user context) cannot exercise it in-process.
 *
 *   node scenarios.fixture.js SCENARIO 'JSON-ARGS'
 *
 * The scenario's result is one JSON line on fd 3 (or in `resultFile` when no
 * fd 3 can be passed, e.g. under script(1)); the sandboxed programs write to
 * the inherited stdout/stderr, which the test captures.
 */
import { readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import * as native from '../native/index.js';
import type { SandboxExit, SandboxInternals, SandboxNetwork } from './sandbox.js';
import { Sandbox, checkPrerequisites, cleanupOrphans, isSandboxError } from './sandbox.js';

/** The sandbox network most scenarios use: documentation addresses only. */
export const TEST_NETWORK: SandboxNetwork = {
  tunName: 'wg0',
  mtu: 1420,
  addresses: [{ family: 4, address: '192.0.2.2', prefix: 32 }],
  dns: ['192.0.2.53', '198.51.100.53'],
};

/** Where the packet scenario's program sends its datagram (never routed anywhere but the TUN). */
export const REMOTE_ADDRESS = '198.51.100.77';
export const REMOTE_PORT = 9999;
export const SANDBOX_PORT = 7777;

interface RunArgs {
  command: string[];
  cwd?: string;
  env?: Record<string, string>;
  network?: SandboxNetwork;
  keepAlive?: boolean;
  /** Send this signal to the program this long after launch. */
  killAfterMs?: number;
  /** Call dispose() this long after launch (the program is still running). */
  disposeAfterMs?: number;
  killSignal?: NodeJS.Signals;
  internals?: SandboxInternals;
  /** Signal the sandbox BEFORE launch() (the program must never run). */
  killBeforeLaunch?: NodeJS.Signals;
}

interface LoopArgs {
  count: number;
  parallel: number;
  outDir: string;
}

interface TtyArgs {
  resultFile: string;
  command: string[];
}

interface HoldArgs {
  command: string[];
}

function report(result: unknown, file?: string): void {
  const line = `${JSON.stringify(result)}\n`;
  if (file === undefined) writeSync(3, line);
  else writeFileSync(file, line);
}

function errorReport(error: unknown): Record<string, unknown> {
  if (isSandboxError(error)) {
    const extra = error as unknown as Record<string, unknown>;
    return {
      error: {
        code: error.code,
        message: error.message,
        name: error.name,
        knob: extra.knob,
        errno: extra.errno,
      },
    };
  }
  return {
    error: {
      code: 'UNEXPECTED',
      message: error instanceof Error ? (error.stack ?? error.message) : String(error),
    },
  };
}

async function runOnce(args: RunArgs): Promise<Record<string, unknown>> {
  const began = performance.now();
  const sandbox = await Sandbox.start(
    {
      command: args.command,
      network: args.network ?? TEST_NETWORK,
      ...(args.cwd === undefined ? {} : { cwd: args.cwd }),
      ...(args.env === undefined ? {} : { env: args.env }),
      ...(args.keepAlive === undefined ? {} : { keepAlive: args.keepAlive }),
    },
    args.internals,
  );
  const ready = performance.now();
  let exit: SandboxExit;
  try {
    if (args.killBeforeLaunch === undefined) sandbox.launch();
    else sandbox.kill(args.killBeforeLaunch);
    if (args.killAfterMs !== undefined) {
      const signal = args.killSignal ?? 'SIGTERM';
      setTimeout(() => {
        sandbox.kill(signal);
      }, args.killAfterMs);
    }
    if (args.disposeAfterMs !== undefined) {
      setTimeout(() => {
        void sandbox.dispose();
      }, args.disposeAfterMs);
    }
    exit = await sandbox.exited;
  } finally {
    await sandbox.dispose();
    native.close(sandbox.tunFd);
  }
  const done = performance.now();
  return {
    exit,
    tunName: sandbox.tunName,
    initPid: sandbox.initPid,
    warnings: sandbox.warnings,
    startMs: ready - began,
    totalMs: done - began,
  };
}

/** `ip -o link` in `count` sandboxes, `parallel` at a time; each run's interface names. */
async function loop(args: LoopArgs): Promise<Record<string, unknown>> {
  const runs: { exit: SandboxExit; interfaces: string[] }[] = [];
  let next = 0;
  const began = performance.now();
  const worker = async (): Promise<void> => {
    while (next < args.count) {
      const index = next++;
      const file = join(args.outDir, `link.${index}`);
      const result = await runOnce({ command: ['sh', '-c', 'exec ip -o link > "$0"', file] });
      const interfaces = readFileSync(file, 'utf8')
        .split('\n')
        .filter((line) => line.trim() !== '')
        .map((line) => (line.split(':')[1] ?? '').trim().split('@')[0] ?? '');
      runs[index] = { exit: result.exit as SandboxExit, interfaces };
    }
  };
  await Promise.all(Array.from({ length: args.parallel }, worker));
  return { runs, ms: performance.now() - began };
}

// ---- packets ----

function parseAddress(text: string): number[] {
  return text.split('.').map(Number);
}

/** An IPv4 header checksum (RFC 791 section 3.1, RFC 1071). */
function ipv4Checksum(header: Buffer): number {
  let sum = 0;
  for (let i = 0; i < header.length; i += 2) sum += header.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** IPv4 + UDP (checksum 0: "no checksum", allowed for IPv4 by RFC 768). */
export function ipv4UdpPacket(
  source: string,
  destination: string,
  sourcePort: number,
  destinationPort: number,
  payload: Buffer,
): Buffer {
  const packet = Buffer.alloc(28 + payload.length);
  packet[0] = 0x45;
  packet.writeUInt16BE(packet.length, 2);
  packet.writeUInt16BE(0x4000, 6); // don't fragment
  packet[8] = 64;
  packet[9] = 17;
  Buffer.from(parseAddress(source)).copy(packet, 12);
  Buffer.from(parseAddress(destination)).copy(packet, 16);
  packet.writeUInt16BE(ipv4Checksum(packet.subarray(0, 20)), 10);
  packet.writeUInt16BE(sourcePort, 20);
  packet.writeUInt16BE(destinationPort, 22);
  packet.writeUInt16BE(8 + payload.length, 24);
  payload.copy(packet, 28);
  return packet;
}

export interface UdpDatagram {
  source: string;
  destination: string;
  sourcePort: number;
  destinationPort: number;
  payload: string;
}

/** The UDP datagram in an IPv4 packet, or null for anything else. */
export function parseIpv4Udp(packet: Buffer): UdpDatagram | null {
  if (packet.length < 28 || packet[0] === undefined || packet[0] >> 4 !== 4 || packet[9] !== 17)
    return null;
  const headerLength = (packet[0] & 0x0f) * 4;
  return {
    source: [...packet.subarray(12, 16)].join('.'),
    destination: [...packet.subarray(16, 20)].join('.'),
    sourcePort: packet.readUInt16BE(headerLength),
    destinationPort: packet.readUInt16BE(headerLength + 2),
    payload: packet.subarray(headerLength + 8).toString('utf8'),
  };
}

/** The program inside: bind UDP 7777, send one datagram out, print the reply. */
const PACKET_PROGRAM = `
const dgram = require('node:dgram');
const socket = dgram.createSocket('udp4');
const timer = setTimeout(() => { console.log('no reply'); process.exit(3); }, 10000);
socket.on('message', (message, from) => {
  console.log('received ' + message + ' from ' + from.address + ':' + from.port);
  clearTimeout(timer);
  socket.close();
});
socket.bind(${SANDBOX_PORT}, () => {
  socket.send('hello from the sandbox', ${REMOTE_PORT}, '${REMOTE_ADDRESS}');
});
`;

async function packets(): Promise<Record<string, unknown>> {
  const sandbox = await Sandbox.start({
    command: [process.execPath, '-e', PACKET_PROGRAM],
    network: TEST_NETWORK,
  });
  const slot = 65536;
  const buffer = Buffer.alloc(slot * 8);
  const lengths = new Int32Array(8);
  const seen: UdpDatagram[] = [];
  let replied = false;
  const watcher = native.watch(sandbox.tunFd, () => {
    const count = native.tunRead(sandbox.tunFd, buffer, slot, 8, lengths);
    for (let i = 0; i < count; i++) {
      const datagram = parseIpv4Udp(buffer.subarray(i * slot, i * slot + (lengths[i] ?? 0)));
      if (datagram === null) continue;
      seen.push(datagram);
      if (
        !replied &&
        datagram.destination === REMOTE_ADDRESS &&
        datagram.destinationPort === REMOTE_PORT
      ) {
        replied = true;
        const reply = ipv4UdpPacket(
          REMOTE_ADDRESS,
          datagram.source,
          REMOTE_PORT,
          datagram.sourcePort,
          Buffer.from('pong from outside'),
        );
        native.tunWrite(sandbox.tunFd, reply, 0, reply.length);
      }
    }
  });
  let exit: SandboxExit;
  try {
    sandbox.launch();
    exit = await sandbox.exited;
  } finally {
    watcher.close();
    await sandbox.dispose();
    native.close(sandbox.tunFd);
  }
  return { exit, seen, replied };
}

/** Starts a sandbox and never returns: the test kills this process. */
async function hold(args: HoldArgs): Promise<void> {
  const sandbox = await Sandbox.start({ command: args.command, network: TEST_NETWORK });
  sandbox.launch();
  report({ initPid: sandbox.initPid, parentPid: process.pid });
  await new Promise(() => undefined);
}

/** Under script(1): the program must own the terminal; afterwards warren gets it back. */
async function tty(args: TtyArgs): Promise<void> {
  writeSync(1, `runner-pid ${process.pid}\n`);
  const result = await runOnce({ command: args.command });
  let foregroundAfter: boolean;
  try {
    foregroundAfter = native.tcgetpgrp(0) === native.getpgrp();
  } catch {
    foregroundAfter = false;
  }
  report({ ...result, foregroundAfter }, args.resultFile);
}

async function main(): Promise<void> {
  const [scenario, json] = process.argv.slice(2);
  const args = JSON.parse(json ?? '{}') as unknown;
  try {
    switch (scenario) {
      case 'run':
        report(await runOnce(args as RunArgs));
        return;
      case 'loop':
        report(await loop(args as LoopArgs));
        return;
      case 'packets':
        report(await packets());
        return;
      case 'hold':
        await hold(args as HoldArgs);
        return;
      case 'cleanup':
        report({ cleaned: await cleanupOrphans() });
        return;
      case 'prerequisites':
        await checkPrerequisites();
        report({ ok: true });
        return;
      case 'tty':
        await tty(args as TtyArgs);
        return;
      default:
        throw new Error(`unknown scenario ${String(scenario)}`);
    }
  } catch (error) {
    const file = (args as Partial<TtyArgs>).resultFile;
    report(errorReport(error), file);
  }
}

await main();
