/**
 * The wg-quick(8) configuration format: wg(8)'s [Interface]/[Peer] keys plus
 * wg-quick's Address, DNS and MTU. Keys and section names are case-insensitive
 * and values are comma-separated lists where wg allows it, as in wireguard-tools'
 * config.c and wg-quick. Parsing is pure: text in, a checked structure or a
 * ConfigError naming the file and line out.
 */
import { parseCidr, parseIpAddress } from '../wireguard/allowed-ips.js';
import { parseKey } from '../wireguard/keys.js';
import { ConfigError } from './errors.js';

export interface Cidr {
  family: 4 | 6;
  address: Uint8Array;
  cidr: number;
}

export interface HostPort {
  /** A hostname or an IP literal (IPv6 without brackets). */
  host: string;
  port: number;
}

export interface WgQuickPeer {
  publicKey: Uint8Array;
  presharedKey: Uint8Array | null;
  endpoint: HostPort | null;
  allowedIps: Cidr[];
  /** Seconds; 0 = off. */
  persistentKeepalive: number;
  line: number;
}

export interface WgQuickConfig {
  privateKey: Uint8Array;
  /** Interface addresses with their prefix length (Address=). */
  addresses: Cidr[];
  /** DNS= entries that are IP addresses: the nameservers. */
  dnsServers: string[];
  /** DNS= entries that are not IP addresses: search domains (wg-quick's rule). */
  dnsSearch: string[];
  mtu: number | null;
  listenPort: number | null;
  fwmark: number | null;
  peers: WgQuickPeer[];
  /** wg-quick keys with no meaning here (PostUp, Table, …), with their lines, for a warning. */
  ignored: { key: string; line: number }[];
}

const IGNORED_INTERFACE_KEYS = new Set([
  'table',
  'preup',
  'postup',
  'predown',
  'postdown',
  'saveconfig',
]);

export function parseWgQuickConfig(text: string, file = '<config>'): WgQuickConfig {
  let section: 'none' | 'interface' | 'peer' = 'none';
  let sawInterface = false;
  let privateKey: Uint8Array | null = null;
  const config: Omit<WgQuickConfig, 'privateKey'> = {
    addresses: [],
    dnsServers: [],
    dnsSearch: [],
    mtu: null,
    listenPort: null,
    fwmark: null,
    peers: [],
    ignored: [],
  };
  let peer: (Omit<WgQuickPeer, 'publicKey'> & { publicKey: Uint8Array | null }) | null = null;

  const finishPeer = (): void => {
    if (peer === null) return;
    if (peer.publicKey === null)
      throw new ConfigError(file, peer.line, '[Peer] section has no PublicKey');
    config.peers.push({ ...peer, publicKey: peer.publicKey });
    peer = null;
  };

  const lines = text.split(/\r?\n/);
  for (let index = 0; index < lines.length; index++) {
    const lineNumber = index + 1;
    const fail = (detail: string): never => {
      throw new ConfigError(file, lineNumber, detail);
    };
    const line = (lines[index] ?? '').replace(/#.*$/, '').trim();
    if (line === '') continue;
    if (line.startsWith('[')) {
      const name = /^\[\s*([A-Za-z]+)\s*\]$/.exec(line)?.[1]?.toLowerCase();
      if (name === 'interface') {
        if (sawInterface) fail('a second [Interface] section');
        finishPeer();
        section = 'interface';
        sawInterface = true;
      } else if (name === 'peer') {
        finishPeer();
        section = 'peer';
        peer = {
          publicKey: null,
          presharedKey: null,
          endpoint: null,
          allowedIps: [],
          persistentKeepalive: 0,
          line: lineNumber,
        };
      } else {
        fail(`unknown section ${line}; expected [Interface] or [Peer]`);
      }
      continue;
    }
    const equals = line.indexOf('=');
    if (equals < 0) fail(`expected 'Key = Value', got '${truncate(line)}'`);
    const key = line.slice(0, equals).trim();
    const value = line.slice(equals + 1).trim();
    const lower = key.toLowerCase();
    if (section === 'none') fail(`'${key}' outside any section; start with [Interface]`);

    if (section === 'interface') {
      switch (lower) {
        case 'privatekey':
          privateKey = parseKeyAt(value, 'PrivateKey', fail);
          break;
        case 'address':
          for (const item of list(value))
            config.addresses.push(cidrAt(item, 'Address', fail, true));
          break;
        case 'dns':
          for (const item of list(value)) {
            if (isIpAddress(item)) config.dnsServers.push(item);
            else if (/^[A-Za-z0-9.-]+$/.test(item)) config.dnsSearch.push(item);
            else fail(`DNS: '${truncate(item)}' is neither an IP address nor a search domain`);
          }
          break;
        case 'mtu':
          config.mtu = integerAt(value, 'MTU', 576, 65535, fail);
          break;
        case 'listenport':
          config.listenPort = integerAt(value, 'ListenPort', 0, 65535, fail);
          break;
        case 'fwmark':
          config.fwmark = value === 'off' ? 0 : integerAt(value, 'FwMark', 0, 0xffffffff, fail);
          break;
        default:
          if (IGNORED_INTERFACE_KEYS.has(lower)) config.ignored.push({ key, line: lineNumber });
          else fail(`unknown key '${truncate(key)}' in [Interface]`);
      }
      continue;
    }

    // [Peer]
    const current = peer;
    if (current === null)
      throw new ConfigError(file, lineNumber, 'internal: [Peer] key with no peer');
    switch (lower) {
      case 'publickey':
        current.publicKey = parseKeyAt(value, 'PublicKey', fail);
        break;
      case 'presharedkey':
        current.presharedKey = parseKeyAt(value, 'PresharedKey', fail);
        break;
      case 'endpoint':
        current.endpoint = hostPortAt(value, fail);
        break;
      case 'allowedips':
        for (const item of list(value))
          current.allowedIps.push(cidrAt(item, 'AllowedIPs', fail, false));
        break;
      case 'persistentkeepalive':
        current.persistentKeepalive =
          value === 'off' ? 0 : integerAt(value, 'PersistentKeepalive', 0, 65535, fail);
        break;
      default:
        fail(`unknown key '${truncate(key)}' in [Peer]`);
    }
  }
  finishPeer();
  if (!sawInterface) throw new ConfigError(file, 0, 'no [Interface] section');
  if (privateKey === null) throw new ConfigError(file, 0, '[Interface] has no PrivateKey');
  return { ...config, privateKey };
}

function list(value: string): string[] {
  return value
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

function truncate(text: string): string {
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

function parseKeyAt(value: string, what: string, fail: (detail: string) => never): Uint8Array {
  try {
    return parseKey(value, what);
  } catch (error) {
    return fail(error instanceof Error ? error.message : `${what}: invalid key`);
  }
}

function cidrAt(
  text: string,
  what: string,
  fail: (detail: string) => never,
  keepHostBits: boolean,
): Cidr {
  try {
    const parsed = keepHostBits ? parseAddressWithPrefix(text) : parseCidr(text);
    return parsed;
  } catch {
    return fail(`${what}: '${truncate(text)}' is not an IP address with an optional /prefix`);
  }
}

/** Address= keeps the host part (10.64.0.2/24 is the address 10.64.0.2 on a /24). Throws on bad input. */
export function parseAddressWithPrefix(text: string): Cidr {
  const slash = text.indexOf('/');
  const ip = parseIpAddress(slash < 0 ? text : text.slice(0, slash));
  const max = ip.family === 4 ? 32 : 128;
  let cidr = max;
  if (slash >= 0) {
    const prefix = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > max) throw new Error('bad prefix');
    cidr = Number(prefix);
  }
  return { family: ip.family, address: ip.address, cidr };
}

function integerAt(
  value: string,
  what: string,
  min: number,
  max: number,
  fail: (detail: string) => never,
): number {
  const number = /^(0x[0-9a-fA-F]+|\d+)$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(number) || number < min || number > max) {
    return fail(`${what}: '${truncate(value)}' is not an integer in ${min}..${max}`);
  }
  return number;
}

function isIpAddress(text: string): boolean {
  try {
    parseIpAddress(text);
    return true;
  } catch {
    return false;
  }
}

/** host:port, [v6]:port or v4:port (wg's endpoint syntax). Throws an Error saying what is wrong. */
export function parseHostPort(value: string): HostPort {
  let host: string;
  let port: string;
  const bracketed = /^\[([^\]]+)\]:(\d+)$/.exec(value);
  if (bracketed !== null) {
    host = bracketed[1] ?? '';
    port = bracketed[2] ?? '';
  } else {
    const colon = value.lastIndexOf(':');
    if (colon <= 0 || value.indexOf(':') !== colon) {
      throw new Error(`'${truncate(value)}' must be HOST:PORT or [IPv6]:PORT`);
    }
    host = value.slice(0, colon);
    port = value.slice(colon + 1);
  }
  const portNumber = /^\d{1,5}$/.test(port) ? Number(port) : Number.NaN;
  if (!Number.isInteger(portNumber) || portNumber < 1 || portNumber > 65535) {
    throw new Error(`port '${truncate(port)}' is not in 1..65535`);
  }
  if (!/^[A-Za-z0-9.:%_-]+$/.test(host)) throw new Error(`bad host '${truncate(host)}'`);
  return { host, port: portNumber };
}

function hostPortAt(value: string, fail: (detail: string) => never): HostPort {
  try {
    return parseHostPort(value);
  } catch (error) {
    return fail(`Endpoint: ${error instanceof Error ? error.message : String(error)}`);
  }
}
