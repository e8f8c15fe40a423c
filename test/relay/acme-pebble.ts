/**
 * Test fixture for ACME: Let's Encrypt's test server pebble (Debian's `pebble`
 * package) on loopback, and a tiny DNS responder it resolves names with.
 *
 * Everything stays on 127.0.0.1: pebble listens there (its ACME API and its
 * management API, which serves the root it signs with at /roots/0), asks only
 * our DNS responder (`-dnsserver`), which answers A 127.0.0.1 for the test's
 * names and nothing else, and validates HTTP-01 by connecting to that address
 * on `httpPort`. Pebble's own HTTPS certificate comes from a dev CA made in
 * the test's temporary directory (../../src/relay/dev-ca.ts).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import type { Socket as UdpSocket } from 'node:dgram';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import { get as httpsGet } from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ensureDevCertificate } from '../../src/relay/dev-ca.js';

const LOOPBACK = '127.0.0.1';

/** A TCP port free on 127.0.0.1 right now (pebble cannot report the port it bound). */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, LOOPBACK);
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}

// ---- DNS ------------------------------------------------------------------------------------

const TYPE_A = 1;
const CLASS_IN = 1;

/** The question of a DNS query (RFC 1035 §4.1.2), or null when malformed. */
export function parseDnsQuestion(
  message: Buffer,
): { id: number; name: string; type: number; class: number; end: number } | null {
  if (message.length < 12) return null;
  const flags = message.readUInt16BE(2);
  if ((flags & 0x8000) !== 0 || message.readUInt16BE(4) !== 1) return null; // a query with one question
  const labels: string[] = [];
  let offset = 12;
  for (;;) {
    const length = message[offset];
    if (length === undefined || length > 63) return null; // no compression in a question
    offset++;
    if (length === 0) break;
    if (offset + length > message.length) return null;
    labels.push(message.toString('latin1', offset, offset + length).toLowerCase());
    offset += length;
  }
  if (offset + 4 > message.length) return null;
  return {
    id: message.readUInt16BE(0),
    name: labels.join('.'),
    type: message.readUInt16BE(offset),
    class: message.readUInt16BE(offset + 2),
    end: offset + 4,
  };
}

/**
 * The answer to a query: A 127.0.0.1 for a known name, no records for its
 * other types, NXDOMAIN for any other name; null (no answer) when malformed.
 */
export function dnsAnswer(query: Buffer, known: (name: string) => boolean): Buffer | null {
  const question = parseDnsQuestion(query);
  if (question === null) return null;
  const isKnown = known(question.name);
  const answers = isKnown && question.type === TYPE_A && question.class === CLASS_IN ? 1 : 0;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(question.id, 0);
  const recursionDesired = query.readUInt16BE(2) & 0x0100;
  // QR, AA, RA (RFC 1035 §4.1.1), RD copied; RCODE 3 = NXDOMAIN.
  header.writeUInt16BE(0x8000 | 0x0400 | 0x0080 | recursionDesired | (isKnown ? 0 : 3), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answers, 6);
  const parts = [header, query.subarray(12, question.end)];
  if (answers === 1) {
    const record = Buffer.alloc(16);
    record.writeUInt16BE(0xc00c, 0); // the name: a pointer to the question's
    record.writeUInt16BE(TYPE_A, 2);
    record.writeUInt16BE(CLASS_IN, 4);
    record.writeUInt32BE(5, 6); // TTL
    record.writeUInt16BE(4, 10);
    Buffer.from([127, 0, 0, 1]).copy(record, 12);
    parts.push(record);
  }
  return Buffer.concat(parts);
}

/** A DNS server on 127.0.0.1 (UDP) for pebble's validations. */
export class LoopbackDns {
  /** Every name asked, in order. */
  readonly queries: string[] = [];

  private constructor(
    private readonly socket: UdpSocket,
    readonly port: number,
  ) {}

  static async start(known: (name: string) => boolean): Promise<LoopbackDns> {
    const socket = createSocket('udp4');
    socket.bind(0, LOOPBACK);
    await once(socket, 'listening');
    const dns = new LoopbackDns(socket, socket.address().port);
    socket.on('message', (message, sender) => {
      const question = parseDnsQuestion(message);
      if (question !== null) dns.queries.push(question.name);
      const answer = dnsAnswer(message, known);
      // Only ever answer the loopback client that asked.
      if (answer !== null && sender.address === LOOPBACK) {
        socket.send(answer, sender.port, sender.address);
      }
    });
    return dns;
  }

  async close(): Promise<void> {
    this.socket.close();
    await once(this.socket, 'close');
  }
}

// ---- pebble ---------------------------------------------------------------------------------

function httpsText(url: string, ca: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpsGet(url, { ca, timeout: 5_000 }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        resolve({
          status: response.statusCode ?? 0,
          body: Buffer.concat(chunks).toString('utf8'),
        });
      });
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`timeout: ${url}`)));
    request.on('error', reject);
  });
}

export interface PebbleOptions {
  /** A temporary directory the fixture may write to. */
  readonly dir: string;
  /** The port pebble connects to for HTTP-01 validations (on 127.0.0.1). */
  readonly httpPort: number;
  /** The LoopbackDns port pebble resolves names with. */
  readonly dnsPort: number;
}

export class Pebble {
  output = '';

  private constructor(
    private readonly child: ChildProcess,
    /** The ACME directory URL. */
    readonly directoryUrl: string,
    private readonly managementUrl: string,
    /** The CA of pebble's own HTTPS certificate (what `--acme-ca` is given). */
    readonly tlsCa: Buffer,
    readonly tlsCaPath: string,
  ) {}

  static async start(options: PebbleOptions): Promise<Pebble> {
    const tls = await ensureDevCertificate(options.dir, 'pebble.test');
    let lastError = new Error('pebble did not start');
    // Ports are picked free, then bound by pebble: retry if another process took one meanwhile.
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      const managementPort = await freePort();
      const configPath = join(options.dir, 'pebble-config.json');
      await writeFile(
        configPath,
        JSON.stringify({
          pebble: {
            listenAddress: `${LOOPBACK}:${port}`,
            managementListenAddress: `${LOOPBACK}:${managementPort}`,
            certificate: tls.certPath,
            privateKey: tls.keyPath,
            httpPort: options.httpPort,
            tlsPort: options.httpPort,
            ocspResponderURL: '',
            externalAccountBindingRequired: false,
          },
        }),
      );
      const child = spawn(
        'pebble',
        ['-config', configPath, '-dnsserver', `${LOOPBACK}:${options.dnsPort}`],
        {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: {
            PATH: process.env.PATH ?? '/usr/bin:/bin',
            // No random sleep before validating, no spurious badNonce, a fresh validation per order.
            PEBBLE_VA_NOSLEEP: '1',
            PEBBLE_WFE_NONCEREJECT: '0',
            PEBBLE_AUTHZREUSE: '0',
          },
        },
      );
      const pebble = new Pebble(
        child,
        `https://${LOOPBACK}:${port}/dir`,
        `https://${LOOPBACK}:${managementPort}`,
        await readFile(tls.caCertPath),
        tls.caCertPath,
      );
      child.stdout.on('data', (chunk: Buffer) => (pebble.output += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (pebble.output += chunk.toString()));
      const spawnFailed = once(child, 'error').then(([error]) => error as Error);
      const deadline = performance.now() + 15_000;
      while (performance.now() < deadline && child.exitCode === null) {
        const failed = await Promise.race([spawnFailed, sleep(100).then(() => null)]);
        if (failed !== null)
          throw new Error(`cannot run pebble (apt-get install pebble): ${failed.message}`);
        try {
          const { status } = await httpsText(pebble.directoryUrl, pebble.tlsCa);
          if (status === 200) return pebble;
        } catch {
          // Not listening yet.
        }
      }
      await pebble.stop();
      lastError = new Error(`pebble did not start: ${pebble.output}`);
    }
    throw lastError;
  }

  /** The root pebble signs certificates with (PEM), from its management API. */
  async issuerRoot(): Promise<string> {
    const { status, body } = await httpsText(`${this.managementUrl}/roots/0`, this.tlsCa);
    if (status !== 200) throw new Error(`pebble /roots/0 answered ${status}`);
    return body;
  }

  /** Stops pebble (by its pid) and waits for it to exit. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}
