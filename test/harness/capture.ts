/**
 * Packet captures for leak tests: tcpdump writes every packet of one interface
 * to a pcap file, and a small pcap reader here turns it into typed packets the
 * tests assert on (so an unexpected packet fails by what it is, not by how a
 * tool happened to print it).
 *
 * pcap file format: https://www.tcpdump.org/manpages/pcap-savefile.5.html —
 * a 24-byte file header (magic 0xa1b2c3d4 for microsecond or 0xa1b23c4d for
 * nanosecond timestamps, in the writer's byte order; link type at byte 20),
 * then per packet a 16-byte record header (seconds, sub-second, captured
 * length, original length) and the captured bytes.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { sleep } from './netns.js';
import type { NetnsHarness, TrackedProcess } from './netns.js';

/** LINKTYPE_ETHERNET (https://www.tcpdump.org/linktypes.html). */
const LINKTYPE_ETHERNET = 1;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_ARP = 0x0806;
const ETHERTYPE_VLAN = 0x8100;
const ETHERTYPE_IPV6 = 0x86dd;
export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_ICMPV6 = 58;

export interface CapturedPacket {
  /** 0-based position in the capture. */
  readonly index: number;
  readonly etherType: number;
  /** 4 or 6 for IP packets, null for anything else (ARP, …). */
  readonly ipVersion: 4 | 6 | null;
  /** IP protocol / IPv6 next header; null when not IP. */
  readonly protocol: number | null;
  readonly source: string;
  readonly destination: string;
  /** TCP/UDP ports (null otherwise, and for non-first fragments). */
  readonly sourcePort: number | null;
  readonly destinationPort: number | null;
  /** ICMP / ICMPv6 type, else null. */
  readonly icmpType: number | null;
  /** One line, tcpdump-like, for failure messages. */
  readonly summary: string;
}

function formatIpv6(bytes: Buffer): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i));
  // RFC 5952 §4.2: the longest run (≥ 2) of zero groups becomes "::".
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i += 1;
      continue;
    }
    let end = i;
    while (end < 8 && groups[end] === 0) end += 1;
    if (end - i > bestLength) {
      bestStart = i;
      bestLength = end - i;
    }
    i = end;
  }
  const hex = (list: number[]): string => list.map((g) => g.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

const PROTOCOL_NAMES: Readonly<Record<number, string>> = {
  [IPPROTO_ICMP]: 'ICMP',
  [IPPROTO_TCP]: 'TCP',
  [IPPROTO_UDP]: 'UDP',
  [IPPROTO_ICMPV6]: 'ICMP6',
};

function describeIp(
  version: 4 | 6,
  protocol: number,
  source: string,
  destination: string,
  sourcePort: number | null,
  destinationPort: number | null,
  icmpType: number | null,
  length: number,
): string {
  const name = PROTOCOL_NAMES[protocol] ?? `proto ${protocol}`;
  const at = (address: string, port: number | null): string =>
    port === null ? address : `${address}.${port}`;
  const icmp = icmpType === null ? '' : ` type ${icmpType}`;
  return `IP${version === 6 ? '6' : ''} ${at(source, sourcePort)} > ${at(destination, destinationPort)}: ${name}${icmp}, ${length} bytes`;
}

function parseFrame(frame: Buffer, index: number): CapturedPacket {
  let etherType = frame.length >= 14 ? frame.readUInt16BE(12) : 0;
  let offset = 14;
  if (etherType === ETHERTYPE_VLAN && frame.length >= 18) {
    etherType = frame.readUInt16BE(16);
    offset = 18;
  }
  const other = (summary: string): CapturedPacket => ({
    index,
    etherType,
    ipVersion: null,
    protocol: null,
    source: '',
    destination: '',
    sourcePort: null,
    destinationPort: null,
    icmpType: null,
    summary,
  });
  const ports = (
    protocol: number,
    payload: number,
    firstFragment: boolean,
  ): [number | null, number | null, number | null] => {
    if (!firstFragment) return [null, null, null];
    if ((protocol === IPPROTO_TCP || protocol === IPPROTO_UDP) && frame.length >= payload + 4) {
      return [frame.readUInt16BE(payload), frame.readUInt16BE(payload + 2), null];
    }
    if ((protocol === IPPROTO_ICMP || protocol === IPPROTO_ICMPV6) && frame.length > payload) {
      return [null, null, frame[payload] ?? null];
    }
    return [null, null, null];
  };
  if (etherType === ETHERTYPE_IPV4 && frame.length >= offset + 20) {
    const headerLength = ((frame[offset] ?? 0) & 0x0f) * 4;
    const protocol = frame[offset + 9] ?? 0;
    const fragmentOffset = frame.readUInt16BE(offset + 6) & 0x1fff;
    const source = [...frame.subarray(offset + 12, offset + 16)].join('.');
    const destination = [...frame.subarray(offset + 16, offset + 20)].join('.');
    const [sourcePort, destinationPort, icmpType] = ports(
      protocol,
      offset + headerLength,
      fragmentOffset === 0,
    );
    return {
      index,
      etherType,
      ipVersion: 4,
      protocol,
      source,
      destination,
      sourcePort,
      destinationPort,
      icmpType,
      summary: describeIp(
        4,
        protocol,
        source,
        destination,
        sourcePort,
        destinationPort,
        icmpType,
        frame.length - offset,
      ),
    };
  }
  if (etherType === ETHERTYPE_IPV6 && frame.length >= offset + 40) {
    const protocol = frame[offset + 6] ?? 0;
    const source = formatIpv6(frame.subarray(offset + 8, offset + 24));
    const destination = formatIpv6(frame.subarray(offset + 24, offset + 40));
    const [sourcePort, destinationPort, icmpType] = ports(protocol, offset + 40, true);
    return {
      index,
      etherType,
      ipVersion: 6,
      protocol,
      source,
      destination,
      sourcePort,
      destinationPort,
      icmpType,
      summary: describeIp(
        6,
        protocol,
        source,
        destination,
        sourcePort,
        destinationPort,
        icmpType,
        frame.length - offset,
      ),
    };
  }
  if (etherType === ETHERTYPE_ARP) return other(`ARP, ${frame.length} bytes`);
  return other(`ethertype 0x${etherType.toString(16).padStart(4, '0')}, ${frame.length} bytes`);
}

/** Parses a pcap file of Ethernet frames. Throws on another format or link type. */
export function parsePcap(data: Uint8Array): CapturedPacket[] {
  const file = Buffer.from(data.buffer, data.byteOffset, data.length);
  if (file.length < 24) throw new Error(`pcap: file too short (${file.length} bytes)`);
  const magicLittle = file.readUInt32LE(0);
  const littleEndian = magicLittle === 0xa1b2c3d4 || magicLittle === 0xa1b23c4d;
  const magicBig = file.readUInt32BE(0);
  if (!littleEndian && magicBig !== 0xa1b2c3d4 && magicBig !== 0xa1b23c4d) {
    throw new Error(
      `pcap: not a pcap file (magic 0x${magicLittle.toString(16)}; pcapng is not supported)`,
    );
  }
  const u32 = (offset: number): number =>
    littleEndian ? file.readUInt32LE(offset) : file.readUInt32BE(offset);
  const linkType = u32(20) & 0x0fffffff;
  if (linkType !== LINKTYPE_ETHERNET) {
    throw new Error(`pcap: link type ${linkType}, expected Ethernet (${LINKTYPE_ETHERNET})`);
  }
  const packets: CapturedPacket[] = [];
  let offset = 24;
  // tcpdump killed mid-write may leave a truncated last record: it is ignored.
  while (offset + 16 <= file.length) {
    const capturedLength = u32(offset + 8);
    const start = offset + 16;
    if (start + capturedLength > file.length) break;
    packets.push(parseFrame(file.subarray(start, start + capturedLength), packets.length));
    offset = start + capturedLength;
  }
  return packets;
}

export type CaptureDirection = 'in' | 'out' | 'inout';

/** A running tcpdump on one interface of a test namespace. */
export class PacketCapture {
  private constructor(
    private readonly process: TrackedProcess,
    readonly file: string,
    readonly description: string,
  ) {}

  /**
   * Starts `tcpdump -i DEV -Q DIRECTION -w FILE` in `ns` (no filter: every
   * packet) and resolves once it is capturing.
   */
  static async start(
    harness: NetnsHarness,
    ns: string,
    dev: string,
    direction: CaptureDirection = 'out',
    timeoutMs = 10_000,
  ): Promise<PacketCapture> {
    if (!/^[\w.-]{1,15}$/.test(dev))
      throw new TypeError(`dev must be an interface name, got ${dev}`);
    const file = join(await harness.makeTempDir(), `${dev}.pcap`);
    // -U: write each packet at once; -Z root: tcpdump would otherwise drop to the
    // tcpdump user, who cannot write into the harness's 0700 directory.
    const process = harness.spawn(
      ns,
      [
        'tcpdump',
        '-i',
        dev,
        '-n',
        '-U',
        '--immediate-mode',
        '-Z',
        'root',
        '-Q',
        direction,
        '-w',
        file,
      ],
      { label: `tcpdump -i ${dev} -Q ${direction} in ${ns}` },
    );
    const deadline = Date.now() + timeoutMs;
    while (!process.output().includes('listening on')) {
      if (process.hasExited() || Date.now() > deadline) {
        await process.stop();
        throw new Error(`tcpdump did not start on ${dev} in ${ns}:\n${process.output()}`);
      }
      await sleep(20);
    }
    return new PacketCapture(process, file, `${dev} (${direction}) in ${ns}`);
  }

  /** Stops tcpdump (SIGTERM flushes the file) and returns every packet it saw. */
  async stop(): Promise<CapturedPacket[]> {
    await this.process.stop();
    const packets = parsePcap(await readFile(this.file));
    // tcpdump reports on exit what it wrote and what the kernel dropped: a capture
    // that missed packets proves nothing.
    const output = this.process.output();
    const captured = /(\d+) packets? captured/.exec(output)?.[1];
    const dropped = /(\d+) packets? dropped by kernel/.exec(output)?.[1];
    if (captured === undefined || Number(captured) !== packets.length || dropped !== '0') {
      throw new Error(
        `capture on ${this.description} is incomplete: read ${packets.length} packets from the file; tcpdump said:\n${output}`,
      );
    }
    return packets;
  }
}

/** The packets that are not what `allowed` accepts, as one line each. */
export function unexpectedPackets(
  packets: readonly CapturedPacket[],
  allowed: (packet: CapturedPacket) => boolean,
): string[] {
  return packets.filter((packet) => !allowed(packet)).map((packet) => packet.summary);
}
