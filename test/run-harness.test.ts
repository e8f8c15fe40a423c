/**
 * Unit and fuzz tests of the parsers under the `warren run` tests: the DNS
 * responder of test/harness/internet.ts (checked byte by byte and against
 * c-ares, Node's resolver, on loopback) and the pcap reader of
 * test/harness/capture.ts. No root needed.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Resolver } from 'node:dns/promises';
import fc from 'fast-check';
import {
  answerDnsQuery,
  DNS_TYPE_A,
  DNS_TYPE_AAAA,
  DNS_TYPE_ANY,
  listenDns,
  RCODE_FORMERR,
  RCODE_NOERROR,
  RCODE_NOTIMP,
  RCODE_NXDOMAIN,
  RCODE_REFUSED,
  SITE_NAME,
  WEB,
  ZONE,
} from './harness/internet.js';
import type { DnsLogEntry } from './harness/internet.js';
import { IPPROTO_TCP, IPPROTO_UDP, parsePcap } from './harness/capture.js';

/** A DNS query (RFC 1035 §4.1): header with RD set, one question. */
function query(
  name: string,
  type: number,
  options: { id?: number; flags?: number; klass?: number } = {},
): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(options.id ?? 0x1234, 0);
  header.writeUInt16BE(options.flags ?? 0x0100, 2);
  header.writeUInt16BE(1, 4);
  const labels = name
    .split('.')
    .map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label, 'latin1')]));
  const tail = Buffer.alloc(4);
  tail.writeUInt16BE(type, 0);
  tail.writeUInt16BE(options.klass ?? 1, 2);
  return Buffer.concat([header, ...labels, Buffer.from([0]), tail]);
}

function header(response: Buffer) {
  const flags = response.readUInt16BE(2);
  return {
    id: response.readUInt16BE(0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    rd: (flags & 0x0100) !== 0,
    rcode: flags & 0xf,
    questions: response.readUInt16BE(4),
    answers: response.readUInt16BE(6),
    authority: response.readUInt16BE(8),
    additional: response.readUInt16BE(10),
  };
}

describe('DNS responder', () => {
  it('answers A with the zone’s address, echoing ID, RD and the question', () => {
    const asked = query('Site.TEST', DNS_TYPE_A, { id: 0xbeef });
    const answer = answerDnsQuery(asked, ZONE);
    assert.ok(answer !== null);
    assert.equal(answer.name, SITE_NAME);
    assert.equal(answer.rcode, RCODE_NOERROR);
    assert.deepEqual(header(answer.response), {
      id: 0xbeef,
      qr: true,
      opcode: 0,
      aa: true,
      rd: true,
      rcode: RCODE_NOERROR,
      questions: 1,
      answers: 1,
      authority: 0,
      additional: 0,
    });
    const questionEnd = asked.length;
    assert.deepEqual(
      answer.response.subarray(12, questionEnd),
      asked.subarray(12),
      'question echoed as sent (case kept)',
    );
    const record = answer.response.subarray(questionEnd);
    assert.equal(record.readUInt16BE(0), 0xc00c, 'name compressed to the question');
    assert.equal(record.readUInt16BE(2), DNS_TYPE_A);
    assert.equal(record.readUInt16BE(4), 1, 'class IN');
    assert.equal(record.readUInt16BE(10), 4);
    assert.equal([...record.subarray(12, 16)].join('.'), WEB.v4);
    assert.equal(record.length, 16);
  });

  it('answers AAAA with 16 bytes, ANY with both, and other types of a known name with no data', () => {
    const aaaa = answerDnsQuery(query(SITE_NAME, DNS_TYPE_AAAA), ZONE);
    assert.ok(aaaa !== null);
    assert.equal(header(aaaa.response).answers, 1);
    const data = aaaa.response.subarray(aaaa.response.length - 16);
    assert.equal(data.toString('hex'), '20010db8000200000000000000000080', WEB.v6);
    const any = answerDnsQuery(query(SITE_NAME, DNS_TYPE_ANY), ZONE);
    assert.equal(any === null ? -1 : header(any.response).answers, 2);
    const mx = answerDnsQuery(query(SITE_NAME, 15), ZONE);
    assert.ok(mx !== null);
    assert.deepEqual([header(mx.response).rcode, header(mx.response).answers], [RCODE_NOERROR, 0]);
  });

  it('says NXDOMAIN for unknown names, REFUSED for other classes, NOTIMP for other opcodes, FORMERR for garbage', () => {
    const rcode = (message: Buffer) => {
      const answer = answerDnsQuery(message, ZONE);
      return answer === null ? null : header(answer.response).rcode;
    };
    assert.equal(rcode(query('nowhere.test', DNS_TYPE_A)), RCODE_NXDOMAIN);
    assert.equal(rcode(query(SITE_NAME, DNS_TYPE_A, { klass: 3 })), RCODE_REFUSED);
    assert.equal(rcode(query(SITE_NAME, DNS_TYPE_A, { flags: 2 << 11 })), RCODE_NOTIMP);
    assert.equal(
      rcode(query(SITE_NAME, DNS_TYPE_A).subarray(0, 20)),
      RCODE_FORMERR,
      'truncated question',
    );
    const twoQuestions = query(SITE_NAME, DNS_TYPE_A);
    twoQuestions.writeUInt16BE(2, 4);
    assert.equal(rcode(twoQuestions), RCODE_FORMERR);
    const compressed = Buffer.concat([
      query(SITE_NAME, DNS_TYPE_A).subarray(0, 12),
      Buffer.from([0xc0, 0x0c, 0, 1, 0, 1]),
    ]);
    assert.equal(rcode(compressed), RCODE_FORMERR, 'a pointer in a query');
    assert.equal(
      rcode(query(SITE_NAME, DNS_TYPE_A, { flags: 0x8000 })),
      null,
      'responses are not answered',
    );
    assert.equal(rcode(Buffer.alloc(11)), null, 'shorter than a header');
  });

  it('never throws, and answers with the query’s ID, on arbitrary datagrams (fuzz)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const answer = answerDnsQuery(bytes, ZONE);
        if (answer !== null) {
          assert.equal(answer.response.readUInt16BE(0), Buffer.from(bytes).readUInt16BE(0));
          assert.ok((answer.response.readUInt16BE(2) & 0x8000) !== 0);
        }
      }),
      { numRuns: 5000 },
    );
    fc.assert(
      fc.property(
        fc.array(fc.stringMatching(/^[a-z0-9-]{1,20}$/), { minLength: 1, maxLength: 5 }),
        fc.integer({ min: 0, max: 65535 }),
        (labels, type) => {
          const answer = answerDnsQuery(query(labels.join('.'), type), ZONE);
          assert.ok(answer !== null);
          assert.equal(answer.name, labels.join('.'));
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('is understood by c-ares (Node’s dns.Resolver) on loopback', async () => {
    const queries: DnsLogEntry[] = [];
    const socket = await listenDns('127.0.0.1', 0, ZONE, (entry) => queries.push(entry));
    try {
      const resolver = new Resolver({ timeout: 1000, tries: 1 });
      resolver.setServers([`127.0.0.1:${socket.address().port}`]);
      assert.deepEqual(await resolver.resolve4(SITE_NAME), [WEB.v4]);
      assert.deepEqual(await resolver.resolve6(SITE_NAME), [WEB.v6]);
      await assert.rejects(resolver.resolve4('nowhere.test'), { code: 'ENOTFOUND' });
      assert.deepEqual(
        queries.map((entry) => [entry.name, entry.type, entry.rcode]),
        [
          [SITE_NAME, DNS_TYPE_A, RCODE_NOERROR],
          [SITE_NAME, DNS_TYPE_AAAA, RCODE_NOERROR],
          ['nowhere.test', DNS_TYPE_A, RCODE_NXDOMAIN],
        ],
      );
    } finally {
      socket.close();
    }
  });
});

/** A little-endian microsecond pcap file of Ethernet frames. */
function pcap(frames: readonly Buffer[]): Buffer {
  const fileHeader = Buffer.alloc(24);
  fileHeader.writeUInt32LE(0xa1b2c3d4, 0);
  fileHeader.writeUInt16LE(2, 4);
  fileHeader.writeUInt16LE(4, 6);
  fileHeader.writeUInt32LE(262144, 16);
  fileHeader.writeUInt32LE(1, 20);
  const records = frames.map((frame) => {
    const record = Buffer.alloc(16);
    record.writeUInt32LE(frame.length, 8);
    record.writeUInt32LE(frame.length, 12);
    return Buffer.concat([record, frame]);
  });
  return Buffer.concat([fileHeader, ...records]);
}

function ethernet(etherType: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(14);
  header.writeUInt16BE(etherType, 12);
  return Buffer.concat([header, payload]);
}

function ipv4Udp(
  source: string,
  destination: string,
  sourcePort: number,
  destinationPort: number,
): Buffer {
  const packet = Buffer.alloc(28);
  packet[0] = 0x45;
  packet[9] = IPPROTO_UDP;
  Buffer.from(source.split('.').map(Number)).copy(packet, 12);
  Buffer.from(destination.split('.').map(Number)).copy(packet, 16);
  packet.writeUInt16BE(sourcePort, 20);
  packet.writeUInt16BE(destinationPort, 22);
  return packet;
}

describe('pcap reader', () => {
  it('reads IPv4 UDP, IPv6 TCP and ARP frames', () => {
    const ipv6 = Buffer.alloc(44);
    ipv6[0] = 0x60;
    ipv6[6] = IPPROTO_TCP;
    Buffer.from('20010db8000100000000000000000001', 'hex').copy(ipv6, 8);
    Buffer.from('20010db8000200000000000000000080', 'hex').copy(ipv6, 24);
    ipv6.writeUInt16BE(40000, 40);
    ipv6.writeUInt16BE(80, 42);
    const packets = parsePcap(
      pcap([
        ethernet(0x0800, ipv4Udp('192.0.2.1', '192.0.2.2', 40000, 51820)),
        ethernet(0x86dd, ipv6),
        ethernet(0x0806, Buffer.alloc(28)),
      ]),
    );
    assert.equal(packets.length, 3);
    assert.deepEqual(
      packets.map((p) => [
        p.ipVersion,
        p.protocol,
        p.source,
        p.destination,
        p.sourcePort,
        p.destinationPort,
      ]),
      [
        [4, IPPROTO_UDP, '192.0.2.1', '192.0.2.2', 40000, 51820],
        [6, IPPROTO_TCP, '2001:db8:1::1', '2001:db8:2::80', 40000, 80],
        [null, null, '', '', null, null],
      ],
    );
    assert.equal(packets[0]?.summary, 'IP 192.0.2.1.40000 > 192.0.2.2.51820: UDP, 28 bytes');
  });

  it('ignores a truncated last record and refuses other formats', () => {
    const file = pcap([
      ethernet(0x0800, ipv4Udp('192.0.2.1', '192.0.2.2', 1, 2)),
      ethernet(0x0800, ipv4Udp('192.0.2.1', '192.0.2.2', 3, 4)),
    ]);
    assert.equal(parsePcap(file.subarray(0, file.length - 5)).length, 1);
    assert.throws(() => parsePcap(Buffer.alloc(10)), /too short/);
    const pcapng = Buffer.from(file);
    pcapng.writeUInt32LE(0x0a0d0d0a, 0);
    assert.throws(() => parsePcap(pcapng), /not a pcap file/);
    const otherLink = Buffer.from(file);
    otherLink.writeUInt32LE(101, 20);
    assert.throws(() => parsePcap(otherLink), /link type 101/);
  });

  it('never throws on arbitrary frames (fuzz)', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 80 }), { maxLength: 8 }), (frames) => {
        const packets = parsePcap(pcap(frames.map((frame) => Buffer.from(frame))));
        assert.equal(packets.length, frames.length);
      }),
      { numRuns: 2000 },
    );
  });
});
