/**
 * Test fixture: a tiny authoritative DNS responder on 127.0.0.1 (UDP, port 0)
 * that answers TXT questions from a table, for the custom-domain challenge
 * tests. Wire format per RFC 1035 §4.1: a 12-byte header, the question
 * (labels, QTYPE, QCLASS), then answers; TXT RDATA is one or more
 * <length><bytes> character-strings (§3.3.14).
 *
 *   txt.set(name, [["value"], ["split", "value"]])  → NOERROR with those TXT records
 *   txt.set(name, [])                               → NOERROR, no answers (NODATA)
 *   servfail.add(name)                              → SERVFAIL
 *   anything else                                   → NXDOMAIN
 */
import { createSocket } from 'node:dgram';
import type { Socket } from 'node:dgram';
import { once } from 'node:events';

const TYPE_TXT = 16;
const CLASS_IN = 1;
const RCODE_NOERROR = 0;
const RCODE_SERVFAIL = 2;
const RCODE_NXDOMAIN = 3;

export interface DnsQuestion {
  readonly id: number;
  /** The header's flags word (for RD and the opcode). */
  readonly flags: number;
  /** Lower case, no trailing dot. */
  readonly name: string;
  readonly type: number;
  readonly class: number;
  /** The question section's bytes, echoed in the answer. */
  readonly question: Buffer;
}

/** Parses a query's header and first question; null for anything malformed. */
export function parseDnsQuestion(packet: Buffer): DnsQuestion | null {
  if (!Buffer.isBuffer(packet) || packet.length < 12) return null;
  const flags = packet.readUInt16BE(2);
  // A query (QR=0) with exactly one question.
  if ((flags & 0x8000) !== 0 || packet.readUInt16BE(4) !== 1) return null;
  const labels: string[] = [];
  let offset = 12;
  for (;;) {
    const length = packet[offset];
    if (length === undefined || length > 63) return null; // compression is not used in queries
    offset++;
    if (length === 0) break;
    if (offset + length > packet.length) return null;
    labels.push(packet.toString('latin1', offset, offset + length).toLowerCase());
    offset += length;
    if (offset - 12 > 255) return null;
  }
  if (offset + 4 > packet.length) return null;
  return {
    id: packet.readUInt16BE(0),
    flags,
    name: labels.join('.'),
    type: packet.readUInt16BE(offset),
    class: packet.readUInt16BE(offset + 2),
    question: packet.subarray(12, offset + 4),
  };
}

function txtRecord(strings: readonly string[]): Buffer {
  const data = Buffer.concat(
    strings.map((text) => {
      const bytes = Buffer.from(text, 'utf8');
      if (bytes.length > 255) throw new RangeError('a TXT character-string is at most 255 bytes');
      return Buffer.concat([Buffer.from([bytes.length]), bytes]);
    }),
  );
  const fixed = Buffer.alloc(12);
  fixed.writeUInt16BE(0xc00c, 0); // a pointer to the question's name (offset 12)
  fixed.writeUInt16BE(TYPE_TXT, 2);
  fixed.writeUInt16BE(CLASS_IN, 4);
  fixed.writeUInt32BE(60, 6); // TTL
  fixed.writeUInt16BE(data.length, 10);
  return Buffer.concat([fixed, data]);
}

/** The response to a question, from the tables. */
export function answerDnsQuestion(
  question: DnsQuestion,
  txt: ReadonlyMap<string, readonly (readonly string[])[]>,
  servfail: ReadonlySet<string>,
): Buffer {
  const records = txt.get(question.name);
  const rcode = servfail.has(question.name)
    ? RCODE_SERVFAIL
    : records === undefined
      ? RCODE_NXDOMAIN
      : RCODE_NOERROR;
  const answers =
    rcode === RCODE_NOERROR && question.type === TYPE_TXT && question.class === CLASS_IN
      ? (records ?? []).map(txtRecord)
      : [];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(question.id, 0);
  // QR, the query's opcode and RD, AA (authoritative), RA, RCODE.
  header.writeUInt16BE(0x8000 | (question.flags & 0x7900) | 0x0400 | 0x0080 | rcode, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answers.length, 6);
  return Buffer.concat([header, question.question, ...answers]);
}

export class TestDnsServer {
  /** Name (lower case, no trailing dot) → its TXT records, each a list of character-strings. */
  readonly txt = new Map<string, (readonly string[])[]>();
  readonly servfail = new Set<string>();
  /** Questions answered, by name. */
  readonly asked: string[] = [];

  private constructor(private readonly socket: Socket) {
    socket.on('message', (packet, peer) => {
      const question = parseDnsQuestion(packet);
      if (question === null) return; // garbage: no answer, as a real server might
      this.asked.push(question.name);
      socket.send(answerDnsQuestion(question, this.txt, this.servfail), peer.port, peer.address);
    });
  }

  static async start(): Promise<TestDnsServer> {
    const socket = createSocket('udp4');
    socket.bind(0, '127.0.0.1');
    await once(socket, 'listening');
    return new TestDnsServer(socket);
  }

  /** "127.0.0.1:PORT", as --resolver takes it. */
  get address(): string {
    const { address, port } = this.socket.address();
    return `${address}:${String(port)}`;
  }

  async close(): Promise<void> {
    const closed = once(this.socket, 'close');
    this.socket.close();
    await closed;
  }
}
