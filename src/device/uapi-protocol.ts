/**
 * The cross-platform userspace configuration protocol ("UAPI",
 * https://www.wireguard.com/xplatform/#configuration-protocol) that `wg` speaks to
 * userspace implementations over /var/run/wireguard/IFNAME.sock.
 *
 * Requests and replies are key=value lines; a blank line ends each. Syntax and
 * errors follow wireguard-go device/uapi.go (the implementation `wg` is tested
 * against), and what `wg` sends and parses follows wireguard-tools
 * src/ipc-uapi.h:
 * - keys are 64 lowercase hex digits (uppercase accepted on input, as Go's hex does);
 * - `private_key` of all zeros removes the key; `preshared_key` of zeros means none;
 * - `listen_port`, `persistent_keepalive_interval`: decimal 0..65535; `fwmark`: 0..2^32−1;
 * - `replace_peers`, `update_only`, `remove`, `replace_allowed_ips` only take "true";
 * - `allowed_ip=ADDR/CIDR` adds, `allowed_ip=-ADDR/CIDR` removes (newer wg and
 *   wireguard-go); the "/CIDR" is required, as in Go's netip.ParsePrefix;
 * - `endpoint=1.2.3.4:51820` or `[2001:db8::1]:51820`, optionally with a zone
 *   `[fe80::1%eth0]:51820` (netip.ParseAddrPort rules);
 * - `protocol_version` must be 1;
 * - a line without '=' is EPROTO; any other bad key or value is EINVAL
 *   (wireguard-go answers EINVAL for unknown keys too, not EPROTO).
 */
import {
  formatCidr,
  formatIpAddress,
  parseCidr,
  parseIpAddress,
} from '../wireguard/allowed-ips.js';
import { UapiError } from './errors.js';

const KEY_LENGTH = 32;
const KEY_HEX_LENGTH = KEY_LENGTH * 2;
const MAX_UINT16 = 0xffff;
const MAX_UINT32 = 0xffff_ffff;
/** Values quoted in error messages are cut to this many characters. */
const QUOTE_LIMIT = 80;

export interface UapiEndpoint {
  family: 4 | 6;
  /** 4 or 16 bytes. */
  address: Uint8Array;
  port: number;
  /** IPv6 scope (interface name or number) from "[fe80::1%eth0]:51820". */
  zone?: string;
}

export interface UapiAllowedIpChange {
  family: 4 | 6;
  /** As written by the client; the allowed-IPs table masks host bits. */
  address: Uint8Array;
  cidr: number;
  /** `allowed_ip=-…`: remove this prefix from the peer instead of adding it. */
  remove: boolean;
}

/**
 * One `public_key=` section. Lines apply in order in wireguard-go; this record is
 * the same effect in canonical form, applied as: if `remove`, remove the peer and
 * ignore the rest; else create it unless `updateOnly` (update_only=true skips
 * peers that do not exist yet, wherever it appears in the section); set the given
 * fields; if `replaceAllowedIps`, drop the peer's allowed IPs first, then apply
 * `allowedIps` in order. (A replace_allowed_ips line after some allowed_ip lines
 * drops those earlier lines here, since wireguard-go would remove them again.)
 */
export interface UapiPeerConfig {
  publicKey: Uint8Array;
  remove: boolean;
  updateOnly: boolean;
  /** All zeros means "no preshared key". */
  presharedKey?: Uint8Array;
  endpoint?: UapiEndpoint;
  persistentKeepaliveInterval?: number;
  replaceAllowedIps: boolean;
  allowedIps: UapiAllowedIpChange[];
  protocolVersion?: number;
}

export interface UapiSetRequest {
  /** All zeros means "remove the private key". */
  privateKey?: Uint8Array;
  listenPort?: number;
  /** 0 turns the mark off. */
  fwmark?: number;
  replacePeers: boolean;
  peers: UapiPeerConfig[];
}

export interface UapiPeerStatus {
  publicKey: Uint8Array;
  presharedKey: Uint8Array | null;
  endpoint: UapiEndpoint | null;
  persistentKeepaliveInterval: number;
  lastHandshakeTimeSec: number;
  lastHandshakeTimeNsec: number;
  rxBytes: bigint;
  txBytes: bigint;
  allowedIps: { address: Uint8Array; cidr: number }[];
}

export interface UapiDeviceStatus {
  privateKey: Uint8Array | null;
  listenPort: number;
  fwmark: number;
  peers: UapiPeerStatus[];
}

// ------------------------------------------------------------------ helpers

function quote(text: string): string {
  return JSON.stringify(text.length > QUOTE_LIMIT ? `${text.slice(0, QUOTE_LIMIT)}…` : text);
}

function hexDigit(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 97 && code <= 102) return code - 87;
  if (code >= 65 && code <= 70) return code - 55;
  return -1;
}

/** Decodes exactly 64 hex digits, or returns null. */
function decodeKey(text: string): Uint8Array | null {
  if (text.length !== KEY_HEX_LENGTH) return null;
  const key = new Uint8Array(KEY_LENGTH);
  for (let i = 0; i < KEY_LENGTH; i++) {
    const high = hexDigit(text.charCodeAt(2 * i));
    const low = hexDigit(text.charCodeAt(2 * i + 1));
    if (high < 0 || low < 0) {
      key.fill(0);
      return null;
    }
    key[i] = (high << 4) | low;
  }
  return key;
}

function encodeKey(key: Uint8Array, name: string): string {
  if (!(key instanceof Uint8Array) || key.length !== KEY_LENGTH) {
    throw new TypeError(`${name} must be a ${KEY_LENGTH}-byte Uint8Array`);
  }
  return Buffer.from(key.buffer, key.byteOffset, key.length).toString('hex');
}

function isZero(bytes: Uint8Array): boolean {
  let accumulated = 0;
  for (const byte of bytes) accumulated |= byte;
  return accumulated === 0;
}

/** Decimal like Go's strconv.ParseUint(s, 10, n): digits only, leading zeros allowed. */
function parseUnsigned(text: string, maximum: number): number | null {
  if (text.length === 0) return null;
  let value = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 48 || code > 57) return null;
    value = value * 10 + (code - 48);
    if (value > maximum) return null;
  }
  return value;
}

/**
 * Parses an endpoint as Go's netip.ParseAddrPort (wireguard-go conn.ParseEndpoint):
 * "1.2.3.4:51820", "[2001:db8::1]:51820", "[fe80::1%eth0]:51820". Throws a
 * UapiError (EINVAL) naming the text.
 */
export function parseEndpoint(text: string): UapiEndpoint {
  const fail = (why: string): never => {
    throw new UapiError('ERR_UAPI_INVALID', `invalid endpoint ${quote(text)}: ${why}`);
  };
  const colon = text.lastIndexOf(':');
  if (colon === -1) fail('not ip:port');
  let host = text.slice(0, colon);
  const port = parseUnsigned(text.slice(colon + 1), MAX_UINT16);
  if (host.length === 0) fail('no IP');
  if (port === null) fail('port must be a number from 0 to 65535');
  let bracketed = false;
  if (host.startsWith('[')) {
    if (host.length < 2 || !host.endsWith(']')) fail('missing ]');
    host = host.slice(1, -1);
    bracketed = true;
  }
  let zone: string | undefined;
  const percent = host.indexOf('%');
  if (percent !== -1) {
    zone = host.slice(percent + 1);
    host = host.slice(0, percent);
    if (zone.length === 0) fail('zone must be a non-empty string');
  }
  let parsed: { family: 4 | 6; address: Uint8Array } | undefined;
  try {
    parsed = parseIpAddress(host);
  } catch {
    fail('bad IP address');
  }
  if (parsed === undefined || port === null) return fail('bad IP address');
  if (parsed.family === 4 && (bracketed || zone !== undefined)) {
    fail('square brackets and zones are only for IPv6 addresses');
  }
  if (parsed.family === 6 && !bracketed) fail('IPv6 addresses must be in square brackets');
  const endpoint: UapiEndpoint = { family: parsed.family, address: parsed.address, port };
  if (zone !== undefined) endpoint.zone = zone;
  return endpoint;
}

/** "1.2.3.4:51820" / "[2001:db8::1]:51820" / "[fe80::1%eth0]:51820", as Go's netip.AddrPort prints. */
export function formatEndpoint(endpoint: UapiEndpoint): string {
  const { family, address, port } = endpoint;
  if (!Number.isInteger(port) || port < 0 || port > MAX_UINT16) {
    throw new RangeError(`endpoint port must be 0..65535, got ${String(port)}`);
  }
  if ((family === 4 ? 4 : 16) !== address.length) {
    throw new RangeError(
      `endpoint address must be ${family === 4 ? 4 : 16} bytes for family ${family}`,
    );
  }
  if (family === 4) return `${formatIpAddress(address)}:${port}`;
  const zone = endpoint.zone === undefined || endpoint.zone === '' ? '' : `%${endpoint.zone}`;
  return `[${formatIpAddress(address)}${zone}]:${port}`;
}

// ------------------------------------------------------------------ set

/**
 * Streaming parser of one `set=1` request body: feed it the lines after "set=1"
 * one at a time (so a 130,000-line setconf is never held as text), then call
 * finish(). Throws UapiError at the first bad line; the caller should keep
 * reading to the blank line (draining) before replying.
 */
export class UapiSetParser {
  private readonly request: UapiSetRequest = { replacePeers: false, peers: [] };
  private peer: UapiPeerConfig | null = null;
  private lineNumber = 0;
  private ended = false;

  /**
   * Feeds one line without its "\n" (a trailing "\r" is dropped, as Go's
   * bufio.ScanLines does). Returns true if it was the blank line that ends the
   * request; no more lines may be fed after that.
   */
  feedLine(rawLine: string): boolean {
    if (this.ended) throw new Error('UapiSetParser: request already ended');
    if (typeof rawLine !== 'string') throw new TypeError('line must be a string');
    this.lineNumber++;
    const line = rawLine.endsWith('\r') ? rawLine.slice(0, -1) : rawLine;
    if (line.length === 0) {
      this.ended = true;
      return true;
    }
    const equals = line.indexOf('=');
    if (equals === -1) {
      throw new UapiError(
        'ERR_UAPI_PROTOCOL',
        `line ${this.lineNumber}: failed to parse line ${quote(line)}: expected key=value`,
      );
    }
    const key = line.slice(0, equals);
    const value = line.slice(equals + 1);
    if (key === 'public_key') this.startPeer(value);
    else if (this.peer === null) this.deviceLine(key, value);
    else this.peerLine(this.peer, key, value);
    return false;
  }

  /** The request so far (also valid without a terminating blank line: EOF ends it too). */
  finish(): UapiSetRequest {
    this.ended = true;
    return this.request;
  }

  private invalid(message: string): UapiError {
    return new UapiError('ERR_UAPI_INVALID', `line ${this.lineNumber}: ${message}`);
  }

  private mustBeTrue(key: string, value: string): void {
    if (value !== 'true')
      throw this.invalid(`invalid value for ${key}: ${quote(value)} (only "true")`);
  }

  private deviceLine(key: string, value: string): void {
    switch (key) {
      case 'private_key': {
        // Never echo secrets into error messages (they end up in logs).
        const privateKey = decodeKey(value);
        if (privateKey === null) throw this.invalid('invalid private_key: expected 64 hex digits');
        this.request.privateKey?.fill(0);
        this.request.privateKey = privateKey;
        return;
      }
      case 'listen_port': {
        const port = parseUnsigned(value, MAX_UINT16);
        if (port === null)
          throw this.invalid(`invalid listen_port ${quote(value)}: expected 0..65535`);
        this.request.listenPort = port;
        return;
      }
      case 'fwmark': {
        const mark = parseUnsigned(value, MAX_UINT32);
        if (mark === null)
          throw this.invalid(`invalid fwmark ${quote(value)}: expected 0..4294967295`);
        this.request.fwmark = mark;
        return;
      }
      case 'replace_peers':
        this.mustBeTrue(key, value);
        this.request.replacePeers = true;
        return;
      default:
        throw this.invalid(`invalid UAPI device key ${quote(key)}`);
    }
  }

  private startPeer(value: string): void {
    const publicKey = decodeKey(value);
    if (publicKey === null)
      throw this.invalid(`invalid public_key ${quote(value)}: expected 64 hex digits`);
    this.peer = {
      publicKey,
      remove: false,
      updateOnly: false,
      replaceAllowedIps: false,
      allowedIps: [],
    };
    this.request.peers.push(this.peer);
  }

  private peerLine(peer: UapiPeerConfig, key: string, value: string): void {
    switch (key) {
      case 'update_only':
        this.mustBeTrue(key, value);
        peer.updateOnly = true;
        return;
      case 'remove':
        this.mustBeTrue(key, value);
        // The peer goes away; what came before in this section no longer matters,
        // and what follows is only checked (wireguard-go's "dummy" peer).
        peer.remove = true;
        clearPeerChanges(peer);
        return;
      case 'preshared_key': {
        const presharedKey = decodeKey(value);
        if (presharedKey === null)
          throw this.invalid('invalid preshared_key: expected 64 hex digits');
        if (peer.remove) presharedKey.fill(0);
        else {
          peer.presharedKey?.fill(0);
          peer.presharedKey = presharedKey;
        }
        return;
      }
      case 'endpoint': {
        let endpoint: UapiEndpoint;
        try {
          endpoint = parseEndpoint(value);
        } catch (error) {
          throw this.invalid(error instanceof Error ? error.message : String(error));
        }
        if (!peer.remove) peer.endpoint = endpoint;
        return;
      }
      case 'persistent_keepalive_interval': {
        const seconds = parseUnsigned(value, MAX_UINT16);
        if (seconds === null) {
          throw this.invalid(
            `invalid persistent_keepalive_interval ${quote(value)}: expected 0..65535`,
          );
        }
        if (!peer.remove) peer.persistentKeepaliveInterval = seconds;
        return;
      }
      case 'replace_allowed_ips':
        this.mustBeTrue(key, value);
        if (!peer.remove) {
          peer.replaceAllowedIps = true;
          peer.allowedIps = [];
        }
        return;
      case 'allowed_ip': {
        const change = this.parseAllowedIp(value);
        if (!peer.remove) peer.allowedIps.push(change);
        return;
      }
      case 'protocol_version':
        if (value !== '1') throw this.invalid(`invalid protocol_version ${quote(value)}: only 1`);
        if (!peer.remove) peer.protocolVersion = 1;
        return;
      default:
        throw this.invalid(`invalid UAPI peer key ${quote(key)}`);
    }
  }

  private parseAllowedIp(value: string): UapiAllowedIpChange {
    const remove = value.startsWith('-');
    const text = remove ? value.slice(1) : value;
    // Go's netip.ParsePrefix requires the "/bits" that parseCidr would default.
    if (!text.includes('/'))
      throw this.invalid(`invalid allowed_ip ${quote(value)}: missing /prefix length`);
    try {
      const { family, address, cidr } = parseCidr(text);
      return { family, address, cidr, remove };
    } catch {
      throw this.invalid(`invalid allowed_ip ${quote(value)}`);
    }
  }
}

function clearPeerChanges(peer: UapiPeerConfig): void {
  peer.presharedKey?.fill(0);
  delete peer.presharedKey;
  delete peer.endpoint;
  delete peer.persistentKeepaliveInterval;
  delete peer.protocolVersion;
  peer.replaceAllowedIps = false;
  peer.allowedIps = [];
}

/**
 * Parses the lines of a `set=1` request body (without the "set=1" line). Stops at
 * the first blank line, like wireguard-go's IpcSet. Throws a UapiError naming
 * the bad line; never anything else for string input.
 */
export function parseSetRequest(lines: string[]): UapiSetRequest {
  if (!Array.isArray(lines)) throw new TypeError('lines must be an array of strings');
  const parser = new UapiSetParser();
  for (const line of lines) {
    if (parser.feedLine(line)) break;
  }
  return parser.finish();
}

// ------------------------------------------------------------------ get

function checkInteger(value: number, maximum: number, name: string): void {
  if (!Number.isInteger(value) || value < 0 || value > maximum) {
    throw new RangeError(`${name} must be an integer from 0 to ${maximum}, got ${String(value)}`);
  }
}

function checkCounter(value: bigint, name: string): void {
  if (typeof value !== 'bigint' || value < 0n) {
    throw new RangeError(`${name} must be a non-negative bigint, got ${String(value)}`);
  }
}

/**
 * The complete reply to `get=1`, in wireguard-go's order (device/uapi.go
 * IpcGetOperation): private_key, listen_port and fwmark only when set, then per
 * peer public_key, preshared_key (zeros when none), protocol_version=1, endpoint
 * when known, handshake time, byte counters, keepalive, allowed_ip lines; then
 * "errno=0" and the blank line that ends the reply.
 */
export function formatGetResponse(status: UapiDeviceStatus): string {
  const lines: string[] = [];
  if (status.privateKey !== null) {
    const hex = encodeKey(status.privateKey, 'privateKey');
    if (!isZero(status.privateKey)) lines.push(`private_key=${hex}`);
  }
  checkInteger(status.listenPort, MAX_UINT16, 'listenPort');
  checkInteger(status.fwmark, MAX_UINT32, 'fwmark');
  if (status.listenPort !== 0) lines.push(`listen_port=${status.listenPort}`);
  if (status.fwmark !== 0) lines.push(`fwmark=${status.fwmark}`);
  for (const peer of status.peers) {
    lines.push(`public_key=${encodeKey(peer.publicKey, 'peer publicKey')}`);
    const presharedKey = peer.presharedKey ?? new Uint8Array(KEY_LENGTH);
    lines.push(`preshared_key=${encodeKey(presharedKey, 'peer presharedKey')}`);
    lines.push('protocol_version=1');
    if (peer.endpoint !== null) lines.push(`endpoint=${formatEndpoint(peer.endpoint)}`);
    checkInteger(peer.lastHandshakeTimeSec, Number.MAX_SAFE_INTEGER, 'lastHandshakeTimeSec');
    checkInteger(peer.lastHandshakeTimeNsec, 999_999_999, 'lastHandshakeTimeNsec');
    checkInteger(peer.persistentKeepaliveInterval, MAX_UINT16, 'persistentKeepaliveInterval');
    checkCounter(peer.txBytes, 'txBytes');
    checkCounter(peer.rxBytes, 'rxBytes');
    lines.push(`last_handshake_time_sec=${peer.lastHandshakeTimeSec}`);
    lines.push(`last_handshake_time_nsec=${peer.lastHandshakeTimeNsec}`);
    lines.push(`tx_bytes=${peer.txBytes}`);
    lines.push(`rx_bytes=${peer.rxBytes}`);
    lines.push(`persistent_keepalive_interval=${peer.persistentKeepaliveInterval}`);
    for (const entry of peer.allowedIps)
      lines.push(`allowed_ip=${formatCidr(entry.address, entry.cidr)}`);
  }
  lines.push('errno=0');
  return `${lines.join('\n')}\n\n`;
}

/** The reply to a failed operation: "errno=-N" (negative, as wireguard-go and `wg` use it). */
export function formatErrnoResponse(errno: number): string {
  checkInteger(errno, 4095, 'errno');
  return `errno=${errno === 0 ? 0 : -errno}\n\n`;
}
