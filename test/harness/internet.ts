/**
 * The topology of the `warren run` tests: a client host, a WireGuard server that
 * forwards and NATs, and an "internet" with an HTTP server and a DNS responder.
 *
 *   client host (namespace)          server (namespace)                 internet (namespace)
 *   to-srv 192.0.2.1/24      <--->   to-cli 192.0.2.2/24
 *          2001:db8:1::1/64                 2001:db8:1::2/64
 *   default via 192.0.2.2            wg 198.51.100.1/24, fd00:77::1/64
 *   (the unprivileged user runs      forwarding on; NAT of the tunnel
 *    `warren run` here)              ranges only, out of to-inet:
 *                                    to-inet 203.0.113.1/24      <--->   to-srv 203.0.113.80, .53/24
 *                                            2001:db8:2::1/64                   2001:db8:2::80, ::53/64
 *
 * Tunnel clients (wg-quick profiles): "dual" 198.51.100.2/32 + fd00:77::2/128,
 * "v4only" 198.51.100.3/32. Their traffic reaches the internet NATed to the
 * server's 203.0.113.1 / 2001:db8:2::1. The client host itself can reach the
 * internet directly through the server, un-NATed (the internet routes
 * 192.0.2.0/24 back to the server): the internet then sees 192.0.2.1. That
 * makes a leak visible twice — as a packet on the client host's veth, and as a
 * request the internet sees from the client's own address.
 *
 * Neighbour entries on the client↔server link are static and IPv6 router
 * solicitation and DAD are off in the client host, so once the link has settled
 * the only packets the client host sends on it are the ones a program (or
 * warren) sends: a capture there shows exactly what leaves.
 *
 * The internet's services are this module run as a script (`serve`): an HTTP
 * server whose body names the address it saw, and a minimal authoritative DNS
 * responder (RFC 1035) for *.test names. Both log one JSON line per request on
 * stdout, which the tests read.
 */
import { createSocket } from 'node:dgram';
import type { RemoteInfo, Socket } from 'node:dgram';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { isIPv4, isIPv6 } from 'node:net';
import { fileURLToPath } from 'node:url';
import { runCommand, sleep } from './netns.js';
import type { NetnsHarness, TrackedProcess } from './netns.js';
import { startWireGuard } from './wireguard.js';
import type { WireGuardImpl, WireGuardInterface } from './wireguard.js';

/** The client host's address on its link to the server. */
export const CLIENT_HOST = { v4: '192.0.2.1', v6: '2001:db8:1::1' } as const;
/** The server's address on the client link: the WireGuard endpoint. */
export const SERVER_OUTER = { v4: '192.0.2.2', v6: '2001:db8:1::2' } as const;
/** The server's address towards the internet: tunnel traffic is NATed to it. */
export const SERVER_NAT = { v4: '203.0.113.1', v6: '2001:db8:2::1' } as const;
/** The internet's HTTP server. */
export const WEB = { v4: '203.0.113.80', v6: '2001:db8:2::80' } as const;
/** The internet's DNS responder. */
export const DNS = { v4: '203.0.113.53', v6: '2001:db8:2::53' } as const;
/** The server's tunnel addresses. */
export const SERVER_TUNNEL = { v4: '198.51.100.1', v6: 'fd00:77::1' } as const;
export const TUNNEL_RANGE = { v4: '198.51.100.0/24', v6: 'fd00:77::/64' } as const;
export const SERVER_PORT = 51820;
export const HTTP_PORT = 80;
export const DNS_PORT = 53;

/** The name the DNS responder answers for the web server. */
export const SITE_NAME = 'site.test';
/** The name the DNS responder answers for the server's endpoint (the client host resolves it). */
export const ENDPOINT_NAME = 'vpn.test';

/** The names the DNS responder knows; everything else is NXDOMAIN. */
export const ZONE: ReadonlyMap<string, ZoneEntry> = new Map([
  [SITE_NAME, { a: [WEB.v4], aaaa: [WEB.v6] }],
  [ENDPOINT_NAME, { a: [SERVER_OUTER.v4], aaaa: [SERVER_OUTER.v6] }],
]);

export interface ZoneEntry {
  readonly a: readonly string[];
  readonly aaaa: readonly string[];
}

/** A tunnel client's identity on the server. */
export interface ClientProfile {
  readonly name: 'dual' | 'v4only';
  /** Base64 private key (goes into the client's wg-quick config). */
  readonly privateKey: string;
  readonly publicKey: string;
  /** The client's tunnel addresses, as wg-quick's Address lists them. */
  readonly addresses: readonly string[];
}

export interface InternetTopology {
  readonly harness: NetnsHarness;
  readonly clientNs: string;
  readonly serverNs: string;
  readonly internetNs: string;
  /** The client host's veth (towards the server): where leak captures listen. */
  readonly clientDev: string;
  readonly server: WireGuardInterface;
  readonly services: TrackedProcess;
  readonly dual: ClientProfile;
  readonly v4only: ClientProfile;
  /** The server's endpoint as a client config names it ("192.0.2.2:51820"). */
  readonly endpoint: string;
}

export interface InternetTopologyOptions {
  readonly serverImpl: WireGuardImpl;
}

/** Builds the three namespaces, the WireGuard server with both client profiles, and the services. */
export async function createInternetTopology(
  harness: NetnsHarness,
  options: InternetTopologyOptions,
): Promise<InternetTopology> {
  const clientNs = await harness.addNamespace('client');
  const serverNs = await harness.addNamespace('server');
  const internetNs = await harness.addNamespace('inet');

  // Before the veth exists, so its IPv6 never solicits routers or runs DAD
  // (both would put packets on the link the leak tests watch).
  await harness.exec(clientNs, [
    'sysctl',
    '-q',
    '-w',
    'net.ipv6.conf.default.router_solicitations=0',
    'net.ipv6.conf.default.accept_dad=0',
    'net.ipv6.conf.default.accept_ra=0',
  ]);
  const clientLink = await harness.addVeth(clientNs, serverNs, { devA: 'to-srv', devB: 'to-cli' });
  const internetLink = await harness.addVeth(serverNs, internetNs, {
    devA: 'to-inet',
    devB: 'to-srv',
  });
  const addresses: [string, string, string][] = [
    [clientNs, clientLink.devA, `${CLIENT_HOST.v4}/24`],
    [clientNs, clientLink.devA, `${CLIENT_HOST.v6}/64`],
    [serverNs, clientLink.devB, `${SERVER_OUTER.v4}/24`],
    [serverNs, clientLink.devB, `${SERVER_OUTER.v6}/64`],
    [serverNs, internetLink.devA, `${SERVER_NAT.v4}/24`],
    [serverNs, internetLink.devA, `${SERVER_NAT.v6}/64`],
    [internetNs, internetLink.devB, `${WEB.v4}/24`],
    [internetNs, internetLink.devB, `${DNS.v4}/24`],
    [internetNs, internetLink.devB, `${WEB.v6}/64`],
    [internetNs, internetLink.devB, `${DNS.v6}/64`],
  ];
  for (const [ns, dev, cidr] of addresses) await harness.addAddress(ns, dev, cidr);

  // The client host reaches everything through the server; the internet routes the
  // client host's own range back (so a direct, leaked request is seen from 192.0.2.1).
  await harness.exec(clientNs, ['ip', 'route', 'add', 'default', 'via', SERVER_OUTER.v4]);
  await harness.exec(clientNs, ['ip', '-6', 'route', 'add', 'default', 'via', SERVER_OUTER.v6]);
  await harness.exec(internetNs, ['ip', 'route', 'add', '192.0.2.0/24', 'via', SERVER_NAT.v4]);
  await harness.exec(internetNs, [
    'ip',
    '-6',
    'route',
    'add',
    '2001:db8:1::/64',
    'via',
    SERVER_NAT.v6,
  ]);
  await pinNeighbours(harness, clientNs, clientLink.devA, serverNs, clientLink.devB);

  await harness.exec(serverNs, [
    'sysctl',
    '-q',
    '-w',
    'net.ipv4.ip_forward=1',
    'net.ipv6.conf.all.forwarding=1',
  ]);
  // Only the tunnel's ranges are NATed: the client host's direct traffic keeps its address.
  await harness.exec(serverNs, ['nft', '-f', '-'], {
    input: [
      'table inet warren_test_nat {',
      '  chain postrouting {',
      '    type nat hook postrouting priority srcnat; policy accept;',
      `    oifname "${internetLink.devA}" ip saddr ${TUNNEL_RANGE.v4} masquerade`,
      `    oifname "${internetLink.devA}" ip6 saddr ${TUNNEL_RANGE.v6} masquerade`,
      '  }',
      '}',
      '',
    ].join('\n'),
  });

  const services = await startInternetServices(harness, internetNs);

  const server = await startWireGuard(harness, options.serverImpl, serverNs, {
    listenPort: SERVER_PORT,
    addresses: [`${SERVER_TUNNEL.v4}/24`, `${SERVER_TUNNEL.v6}/64`],
    logLevel: 'error',
  });
  const dual = await makeProfile('dual', ['198.51.100.2/32', 'fd00:77::2/128']);
  const v4only = await makeProfile('v4only', ['198.51.100.3/32']);
  for (const profile of [dual, v4only]) {
    await server.setPeer({ publicKey: profile.publicKey, allowedIps: profile.addresses });
  }
  // Let the links' own start-up chatter (MLD reports on address joins) die down.
  await waitForQuietLink(harness, clientNs, clientLink.devA);
  return {
    harness,
    clientNs,
    serverNs,
    internetNs,
    clientDev: clientLink.devA,
    server,
    services,
    dual,
    v4only,
    endpoint: `${SERVER_OUTER.v4}:${SERVER_PORT}`,
  };
}

async function makeProfile(
  name: ClientProfile['name'],
  addresses: readonly string[],
): Promise<ClientProfile> {
  const privateKey = (await runCommand(['wg', 'genkey'])).stdout.trim();
  const publicKey = (
    await runCommand(['wg', 'pubkey'], { input: `${privateKey}\n` })
  ).stdout.trim();
  return { name, privateKey, publicKey, addresses };
}

/** MAC address of `dev` in `ns`. */
async function linkAddress(harness: NetnsHarness, ns: string, dev: string): Promise<string> {
  const shown = (await harness.exec(ns, ['ip', '-o', 'link', 'show', 'dev', dev])).stdout;
  const mac = /link\/ether ([0-9a-f:]{17})/.exec(shown)?.[1];
  if (mac === undefined) throw new Error(`no MAC address for ${dev} in ${ns}: ${shown}`);
  return mac;
}

/** Permanent ARP/NDP entries both ways, so neither side ever resolves the other on the wire. */
async function pinNeighbours(
  harness: NetnsHarness,
  clientNs: string,
  clientDev: string,
  serverNs: string,
  serverDev: string,
): Promise<void> {
  const clientMac = await linkAddress(harness, clientNs, clientDev);
  const serverMac = await linkAddress(harness, serverNs, serverDev);
  for (const [ns, dev, address, mac] of [
    [clientNs, clientDev, SERVER_OUTER.v4, serverMac],
    [clientNs, clientDev, SERVER_OUTER.v6, serverMac],
    [serverNs, serverDev, CLIENT_HOST.v4, clientMac],
    [serverNs, serverDev, CLIENT_HOST.v6, clientMac],
  ] as const) {
    await harness.exec(ns, [
      'ip',
      'neigh',
      'replace',
      address,
      'lladdr',
      mac,
      'nud',
      'permanent',
      'dev',
      dev,
    ]);
  }
}

/**
 * Waits until `dev`'s transmit counter stops moving for a while (IPv6 sends
 * unsolicited MLD reports for a second or two after addresses are added,
 * RFC 3810 §6.1), so captures started afterwards see only what tests send.
 */
async function waitForQuietLink(
  harness: NetnsHarness,
  ns: string,
  dev: string,
  quietMs = 1500,
  timeoutMs = 10_000,
): Promise<void> {
  const txPackets = async (): Promise<string> =>
    (await harness.exec(ns, ['cat', `/sys/class/net/${dev}/statistics/tx_packets`])).stdout.trim();
  const deadline = Date.now() + timeoutMs;
  let last = await txPackets();
  let quietSince = Date.now();
  while (Date.now() - quietSince < quietMs) {
    if (Date.now() > deadline) throw new Error(`${dev} in ${ns} kept sending for ${timeoutMs} ms`);
    await sleep(100);
    const now = await txPackets();
    if (now !== last) {
      last = now;
      quietSince = Date.now();
    }
  }
}

export interface WgQuickOptions {
  /** DNS servers in [Interface]; default [DNS.v4]. Empty: no DNS line. */
  readonly dns?: readonly string[];
  /** Endpoint in [Peer]; default the server's. */
  readonly endpoint?: string;
  readonly persistentKeepalive?: number;
}

/** A wg-quick config for `profile` with the server as its one peer, routing everything. */
export function wgQuickConfig(
  topology: InternetTopology,
  profile: ClientProfile,
  options: WgQuickOptions = {},
): string {
  const dns = options.dns ?? [DNS.v4];
  const lines = [
    '# warren run test client',
    '[Interface]',
    `PrivateKey = ${profile.privateKey}`,
    `Address = ${profile.addresses.join(', ')}`,
  ];
  if (dns.length > 0) lines.push(`DNS = ${dns.join(', ')}`);
  lines.push(
    'MTU = 1420',
    '',
    '[Peer]',
    `PublicKey = ${topology.server.publicKey}`,
    `Endpoint = ${options.endpoint ?? topology.endpoint}`,
    'AllowedIPs = 0.0.0.0/0, ::/0',
  );
  if (options.persistentKeepalive !== undefined) {
    lines.push(`PersistentKeepalive = ${options.persistentKeepalive}`);
  }
  return `${lines.join('\n')}\n`;
}

// ---- the internet's services ----

/** A request the web server answered. */
export interface HttpLogEntry {
  readonly service: 'http';
  readonly remote: string;
  readonly local: string;
  readonly method: string;
  readonly path: string;
  readonly host: string;
}

/** A query the DNS responder answered. */
export interface DnsLogEntry {
  readonly service: 'dns';
  readonly remote: string;
  readonly local: string;
  readonly name: string;
  readonly type: number;
  readonly rcode: number;
}

/** One line of the services' log. */
export type ServiceLogEntry = HttpLogEntry | DnsLogEntry;

/** Parses the services' stdout (JSON lines; other lines are ignored). */
export function parseServiceLog(output: string): ServiceLogEntry[] {
  const entries: ServiceLogEntry[] = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    const value = JSON.parse(line) as unknown;
    if (
      typeof value === 'object' &&
      value !== null &&
      'service' in value &&
      (value.service === 'http' || value.service === 'dns')
    ) {
      entries.push(value as ServiceLogEntry);
    }
  }
  return entries;
}

/** The services' log entries so far. */
export function serviceLog(topology: InternetTopology): ServiceLogEntry[] {
  return parseServiceLog(topology.services.output());
}

/** The web server's requests so far. */
export function httpLog(topology: InternetTopology): HttpLogEntry[] {
  return serviceLog(topology).filter((entry): entry is HttpLogEntry => entry.service === 'http');
}

/** The DNS responder's queries so far. */
export function dnsLog(topology: InternetTopology): DnsLogEntry[] {
  return serviceLog(topology).filter((entry): entry is DnsLogEntry => entry.service === 'dns');
}

const SERVICES_SCRIPT = fileURLToPath(import.meta.url);
const READY_LINE = 'internet services ready';

/** Starts this module as the HTTP + DNS script in `ns` and waits until it listens. */
export async function startInternetServices(
  harness: NetnsHarness,
  ns: string,
  timeoutMs = 10_000,
): Promise<TrackedProcess> {
  const services = harness.spawn(
    ns,
    [process.execPath, SERVICES_SCRIPT, 'serve', `${WEB.v4},${WEB.v6}`, `${DNS.v4},${DNS.v6}`],
    { label: `internet services in ${ns}` },
  );
  const deadline = Date.now() + timeoutMs;
  while (!services.output().includes(READY_LINE)) {
    if (services.hasExited() || Date.now() > deadline) {
      throw new Error(`the internet services did not start:\n${services.output()}`);
    }
    await sleep(25);
  }
  return services;
}

// ---- DNS (RFC 1035 §4.1) ----

const DNS_HEADER_BYTES = 12;
const FLAG_QR = 0x8000;
const FLAG_AA = 0x0400;
const FLAG_RD = 0x0100;
export const DNS_TYPE_A = 1;
export const DNS_TYPE_AAAA = 28;
export const DNS_TYPE_ANY = 255;
const DNS_CLASS_IN = 1;
export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;
export const RCODE_REFUSED = 5;
const ANSWER_TTL_SECONDS = 60;
/** A pointer to offset 12, where the question's name starts (RFC 1035 §4.1.4). */
const NAME_POINTER_TO_QUESTION = 0xc00c;

export interface DnsAnswer {
  /** The response datagram. */
  readonly response: Buffer;
  /** The question's name, lower-cased, without the final dot ('' when unparseable). */
  readonly name: string;
  readonly type: number;
  readonly rcode: number;
}

function ipv4Bytes(address: string): Buffer {
  return Buffer.from(address.split('.').map(Number));
}

function ipv6Bytes(address: string): Buffer {
  const [head = '', tail] = address.split('::');
  const groups = (text: string): number[] =>
    text === '' ? [] : text.split(':').map((group) => Number.parseInt(group, 16));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  const bytes = Buffer.alloc(16);
  all.forEach((group, i) => bytes.writeUInt16BE(group, i * 2));
  return bytes;
}

/**
 * Answers one DNS query datagram from `zone` as an authoritative server (RFC 1035):
 * A and AAAA (and ANY: both) for known names, NOERROR without answers for other
 * types of a known name, NXDOMAIN for unknown names; the question is echoed, ID and
 * RD copied, AA set. Malformed queries get FORMERR, other opcodes NOTIMP, other
 * classes REFUSED. Responses (QR set) and datagrams too short for a header are
 * not answered (null). EDNS (RFC 6891 §7: a server without EDNS answers without
 * an OPT record) and additional records of the query are ignored.
 */
export function answerDnsQuery(
  query: Uint8Array,
  zone: ReadonlyMap<string, ZoneEntry>,
): DnsAnswer | null {
  if (query.length < DNS_HEADER_BYTES) return null;
  const message = Buffer.from(query.buffer, query.byteOffset, query.length);
  const id = message.readUInt16BE(0);
  const flags = message.readUInt16BE(2);
  if ((flags & FLAG_QR) !== 0) return null;
  const opcode = (flags >> 11) & 0xf;
  const questionCount = message.readUInt16BE(4);
  const reply = (
    rcode: number,
    question: Buffer | null,
    answers: Buffer[],
    name: string,
    type: number,
  ): DnsAnswer => {
    const header = Buffer.alloc(DNS_HEADER_BYTES);
    header.writeUInt16BE(id, 0);
    header.writeUInt16BE(FLAG_QR | (opcode << 11) | FLAG_AA | (flags & FLAG_RD) | rcode, 2);
    header.writeUInt16BE(question === null ? 0 : 1, 4);
    header.writeUInt16BE(answers.length, 6);
    return {
      response: Buffer.concat([header, ...(question === null ? [] : [question]), ...answers]),
      name,
      type,
      rcode,
    };
  };
  if (opcode !== 0) return reply(RCODE_NOTIMP, null, [], '', 0);
  if (questionCount !== 1) return reply(RCODE_FORMERR, null, [], '', 0);

  // QNAME: length-prefixed labels ending in a zero byte; a query has no compression.
  const labels: string[] = [];
  let offset = DNS_HEADER_BYTES;
  for (;;) {
    const length = message[offset];
    if (length === undefined || length > 63 || offset - DNS_HEADER_BYTES > 255) {
      return reply(RCODE_FORMERR, null, [], '', 0);
    }
    offset += 1;
    if (length === 0) break;
    if (offset + length > message.length) return reply(RCODE_FORMERR, null, [], '', 0);
    labels.push(message.toString('latin1', offset, offset + length));
    offset += length;
  }
  if (offset + 4 > message.length) return reply(RCODE_FORMERR, null, [], '', 0);
  const type = message.readUInt16BE(offset);
  const klass = message.readUInt16BE(offset + 2);
  offset += 4;
  const question = Buffer.from(message.subarray(DNS_HEADER_BYTES, offset));
  // Names compare case-insensitively (RFC 4343), the question is echoed as sent.
  const name = labels.join('.').toLowerCase();
  if (klass !== DNS_CLASS_IN) return reply(RCODE_REFUSED, question, [], name, type);
  const entry = zone.get(name);
  if (entry === undefined) return reply(RCODE_NXDOMAIN, question, [], name, type);

  const answers: Buffer[] = [];
  const record = (recordType: number, data: Buffer): void => {
    const fixed = Buffer.alloc(12);
    fixed.writeUInt16BE(NAME_POINTER_TO_QUESTION, 0);
    fixed.writeUInt16BE(recordType, 2);
    fixed.writeUInt16BE(DNS_CLASS_IN, 4);
    fixed.writeUInt32BE(ANSWER_TTL_SECONDS, 6);
    fixed.writeUInt16BE(data.length, 10);
    answers.push(Buffer.concat([fixed, data]));
  };
  if (type === DNS_TYPE_A || type === DNS_TYPE_ANY) {
    for (const address of entry.a) record(DNS_TYPE_A, ipv4Bytes(address));
  }
  if (type === DNS_TYPE_AAAA || type === DNS_TYPE_ANY) {
    for (const address of entry.aaaa) record(DNS_TYPE_AAAA, ipv6Bytes(address));
  }
  return reply(RCODE_NOERROR, question, answers, name, type);
}

function log(entry: ServiceLogEntry): void {
  process.stdout.write(`${JSON.stringify(entry)}\n`);
}

/** Serves `zone` over UDP on address:port (port 0: any free one; see socket.address()); reports each query. */
export function listenDns(
  address: string,
  port: number = DNS_PORT,
  zone: ReadonlyMap<string, ZoneEntry> = ZONE,
  report: (entry: DnsLogEntry) => void = log,
): Promise<Socket> {
  const socket = createSocket({ type: isIPv6(address) ? 'udp6' : 'udp4' });
  socket.on('message', (query: Buffer, remote: RemoteInfo) => {
    const answer = answerDnsQuery(query, zone);
    if (answer === null) return;
    report({
      service: 'dns',
      remote: remote.address,
      local: address,
      name: answer.name,
      type: answer.type,
      rcode: answer.rcode,
    });
    socket.send(answer.response, remote.port, remote.address);
  });
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, address, () => {
      socket.off('error', reject);
      resolve(socket);
    });
  });
}

function listenHttp(address: string): Promise<Server> {
  const server = createServer((request, response) => {
    const remote = request.socket.remoteAddress ?? '?';
    log({
      service: 'http',
      remote,
      local: address,
      method: request.method ?? '?',
      path: request.url ?? '?',
      host: request.headers.host ?? '',
    });
    response.writeHead(200, { 'content-type': 'text/plain' });
    response.end(`hello from the internet; you came from ${remote}\n`);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(HTTP_PORT, address, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

/** `node internet.js serve HTTP_ADDR,… DNS_ADDR,…`: runs until killed. */
async function serve(httpAddresses: string[], dnsAddresses: string[]): Promise<void> {
  for (const address of [...httpAddresses, ...dnsAddresses]) {
    if (!isIPv4(address) && !isIPv6(address)) throw new Error(`not an IP address: ${address}`);
  }
  await Promise.all([
    ...httpAddresses.map((address) => listenHttp(address)),
    ...dnsAddresses.map((address) => listenDns(address)),
  ]);
  process.stdout.write(`${READY_LINE}\n`);
}

if (process.argv[1] === SERVICES_SCRIPT && process.argv[2] === 'serve') {
  const [httpList = '', dnsList = ''] = process.argv.slice(3);
  serve(
    httpList.split(',').filter((a) => a !== ''),
    dnsList.split(',').filter((a) => a !== ''),
  ).catch((error: unknown) => {
    process.stderr.write(`internet services: ${String(error)}\n`);
    process.exit(1);
  });
}
