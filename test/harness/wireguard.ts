/**
 * Running a userspace WireGuard implementation inside a test namespace and
 * driving it the way users do: `wg set`, `wg show … dump`, `ip`.
 *
 * Both implementations are started exactly as `wireguard-go -f IFNAME`: the
 * daemon creates TUN IFNAME in the namespace it runs in and answers the UAPI
 * socket /var/run/wireguard/IFNAME.sock (wireguard-go ipc/uapi_linux.go). That
 * directory is shared by every namespace, so interface names are unique per run.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCommand, sleep } from './netns.js';
import type { ExecOptions, ExecResult, NetnsHarness, TrackedProcess } from './netns.js';

export type WireGuardImpl = 'warren-wg' | 'wireguard-go';
export const WIREGUARD_IMPLS: readonly WireGuardImpl[] = ['warren-wg', 'wireguard-go'];

/** The checkout's root, from this file's place in dist/test/harness/. */
export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
/** The compiled warren-wg entry point. */
export const WARREN_WG_CLI = join(REPO_ROOT, 'dist', 'src', 'cli', 'warren-wg.js');

export function isWireGuardImpl(value: string): value is WireGuardImpl {
  return (WIREGUARD_IMPLS as readonly string[]).includes(value);
}

/** The command that starts `impl`; append `-f IFNAME`. */
export function implementationArgv(impl: WireGuardImpl): string[] {
  switch (impl) {
    case 'warren-wg':
      if (!existsSync(WARREN_WG_CLI)) {
        throw new Error(`warren-wg is not built: ${WARREN_WG_CLI} is missing (run \`npx tsc -b\`)`);
      }
      return [process.execPath, WARREN_WG_CLI];
    case 'wireguard-go':
      return ['wireguard-go'];
  }
}

export function uapiSocketPath(ifname: string): string {
  return `/var/run/wireguard/${ifname}.sock`;
}

export interface KeyPair {
  /** File holding the base64 private key, mode 0600. */
  readonly privateKeyFile: string;
  readonly publicKey: string;
}

let keyFileCounter = 0;

/** A new key pair from `wg genkey`/`wg pubkey`; the private key goes to a 0600 file in `dir`. */
export async function generateKeyPair(dir: string): Promise<KeyPair> {
  if (typeof dir !== 'string' || dir === '') throw new TypeError('dir must be a directory path');
  const privateKey = (await runCommand(['wg', 'genkey'])).stdout.trim();
  const publicKey = (
    await runCommand(['wg', 'pubkey'], { input: `${privateKey}\n` })
  ).stdout.trim();
  keyFileCounter += 1;
  const privateKeyFile = join(dir, `private-${keyFileCounter}.key`);
  await writeFile(privateKeyFile, `${privateKey}\n`, { mode: 0o600 });
  return { privateKeyFile, publicKey };
}

/** A new preshared key (`wg genpsk`) in a 0600 file in `dir`; returns the file's path. */
export async function generatePresharedKeyFile(dir: string): Promise<string> {
  if (typeof dir !== 'string' || dir === '') throw new TypeError('dir must be a directory path');
  const key = (await runCommand(['wg', 'genpsk'])).stdout.trim();
  keyFileCounter += 1;
  const path = join(dir, `preshared-${keyFileCounter}.key`);
  await writeFile(path, `${key}\n`, { mode: 0o600 });
  return path;
}

export interface WgInterfaceDump {
  readonly privateKey: string;
  readonly publicKey: string;
  readonly listenPort: number;
  /** null when "off". */
  readonly fwmark: number | null;
}

export interface WgPeerDump {
  readonly publicKey: string;
  readonly presharedKey: string | null;
  /** "addr:port" / "[addr]:port", null when "(none)". */
  readonly endpoint: string | null;
  readonly allowedIps: readonly string[];
  /** Unix seconds; 0 means never. */
  readonly latestHandshake: number;
  readonly rxBytes: number;
  readonly txBytes: number;
  /** Seconds; null when "off". */
  readonly persistentKeepalive: number | null;
}

export interface WgDump {
  readonly interface: WgInterfaceDump;
  readonly peers: readonly WgPeerDump[];
}

function parseCount(text: string, what: string): number {
  if (!/^\d+$/.test(text))
    throw new Error(`wg dump: ${what} is not a number: ${JSON.stringify(text)}`);
  return Number(text);
}

/** Parses `wg show IFNAME dump` (format: wireguard-tools src/show.c, dump_print). */
export function parseWgDump(text: string): WgDump {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  const lines = text.split('\n').filter((line) => line !== '');
  const [first, ...rest] = lines;
  if (first === undefined) throw new Error('wg dump: empty output');
  const head = first.split('\t');
  if (head.length !== 4)
    throw new Error(`wg dump: interface line has ${head.length} fields: ${first}`);
  const [privateKey = '', publicKey = '', listenPort = '', fwmark = ''] = head;
  const peers = rest.map((line): WgPeerDump => {
    const fields = line.split('\t');
    if (fields.length !== 8)
      throw new Error(`wg dump: peer line has ${fields.length} fields: ${line}`);
    const [
      pub = '',
      psk = '',
      endpoint = '',
      allowed = '',
      handshake = '',
      rx = '',
      tx = '',
      keepalive = '',
    ] = fields;
    return {
      publicKey: pub,
      presharedKey: psk === '(none)' ? null : psk,
      endpoint: endpoint === '(none)' ? null : endpoint,
      allowedIps: allowed === '(none)' ? [] : allowed.split(','),
      latestHandshake: parseCount(handshake, 'latest-handshake'),
      rxBytes: parseCount(rx, 'transfer-rx'),
      txBytes: parseCount(tx, 'transfer-tx'),
      persistentKeepalive:
        keepalive === 'off' ? null : parseCount(keepalive, 'persistent-keepalive'),
    };
  });
  return {
    interface: {
      privateKey,
      publicKey,
      listenPort: parseCount(listenPort, 'listen-port'),
      // `wg show dump` prints the fwmark in hex (0x…).
      fwmark: fwmark === 'off' ? null : Number.parseInt(fwmark, 16),
    },
    peers,
  };
}

export interface PeerConfig {
  readonly publicKey: string;
  /** Replaces the peer's allowed IPs (an empty list clears them). Omitted: left unchanged. */
  readonly allowedIps?: readonly string[];
  readonly endpoint?: string;
  readonly persistentKeepalive?: number;
  readonly presharedKeyFile?: string;
}

/** One running daemon and its interface. */
export class WireGuardInterface {
  readonly harness: NetnsHarness;
  readonly impl: WireGuardImpl;
  /** Namespace the daemon (and its UDP socket) runs in. */
  readonly daemonNamespace: string;
  readonly ifname: string;
  readonly process: TrackedProcess;
  readonly listenPort: number;
  /** Namespace the TUN device is in now (changes with moveToNamespace). */
  linkNamespace: string;
  keys: KeyPair;

  constructor(init: {
    harness: NetnsHarness;
    impl: WireGuardImpl;
    namespace: string;
    ifname: string;
    process: TrackedProcess;
    keys: KeyPair;
    listenPort: number;
  }) {
    this.harness = init.harness;
    this.impl = init.impl;
    this.daemonNamespace = init.namespace;
    this.linkNamespace = init.namespace;
    this.ifname = init.ifname;
    this.process = init.process;
    this.keys = init.keys;
    this.listenPort = init.listenPort;
  }

  get publicKey(): string {
    return this.keys.publicKey;
  }

  /** `wg ARGS…` inside the daemon's namespace (the UAPI socket is found by path). */
  wg(args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    return this.harness.exec(this.daemonNamespace, ['wg', ...args], options);
  }

  /** `ip ARGS…` inside the namespace the interface currently lives in. */
  ip(args: readonly string[], options: ExecOptions = {}): Promise<ExecResult> {
    return this.harness.exec(this.linkNamespace, ['ip', ...args], options);
  }

  async setPeer(peer: PeerConfig): Promise<void> {
    if (typeof peer.publicKey !== 'string' || peer.publicKey.length !== 44) {
      throw new TypeError(
        `peer.publicKey must be a base64 key, got ${JSON.stringify(peer.publicKey)}`,
      );
    }
    const args = ['set', this.ifname, 'peer', peer.publicKey];
    if (peer.presharedKeyFile !== undefined) args.push('preshared-key', peer.presharedKeyFile);
    if (peer.endpoint !== undefined) args.push('endpoint', peer.endpoint);
    if (peer.persistentKeepalive !== undefined) {
      args.push('persistent-keepalive', String(peer.persistentKeepalive));
    }
    if (peer.allowedIps !== undefined) args.push('allowed-ips', peer.allowedIps.join(','));
    await this.wg(args);
  }

  async removePeer(publicKey: string): Promise<void> {
    await this.wg(['set', this.ifname, 'peer', publicKey, 'remove']);
  }

  async setPrivateKey(keys: KeyPair): Promise<void> {
    await this.wg(['set', this.ifname, 'private-key', keys.privateKeyFile]);
    this.keys = keys;
  }

  async dump(): Promise<WgDump> {
    return parseWgDump((await this.wg(['show', this.ifname, 'dump'])).stdout);
  }

  /** The dump line of one peer; throws if the interface does not have it. */
  async peerDump(publicKey: string): Promise<WgPeerDump> {
    const dump = await this.dump();
    const peer = dump.peers.find((p) => p.publicKey === publicKey);
    if (peer === undefined) {
      throw new Error(
        `${this.ifname} (${this.impl}) has no peer ${publicKey}; peers: ${JSON.stringify(dump.peers)}`,
      );
    }
    return peer;
  }

  /** Moves the TUN device to `ns` (`ip link set IF netns NS`); the daemon keeps running where it is. */
  async moveToNamespace(ns: string): Promise<void> {
    await this.ip(['link', 'set', this.ifname, 'netns', ns]);
    this.linkNamespace = ns;
  }

  /** Adds an address to the interface in its current namespace (IPv6 with nodad). */
  async addAddress(cidr: string): Promise<void> {
    await this.harness.addAddress(this.linkNamespace, this.ifname, cidr);
  }

  async setMtu(mtu: number): Promise<void> {
    if (!Number.isInteger(mtu) || mtu < 576 || mtu > 65535)
      throw new RangeError(`mtu out of range: ${mtu}`);
    await this.ip(['link', 'set', this.ifname, 'mtu', String(mtu)]);
  }

  async setUp(): Promise<void> {
    await this.ip(['link', 'set', this.ifname, 'up']);
  }

  /** `ip link set IF down`: the daemon keeps running; wireguard-go closes its UDP socket meanwhile. */
  async setDown(): Promise<void> {
    await this.ip(['link', 'set', this.ifname, 'down']);
  }
}

export interface StartWireGuardOptions {
  /** Default: harness.uniqueInterfaceName(). */
  readonly ifname?: string;
  readonly listenPort: number;
  /** CIDRs added to the interface. */
  readonly addresses?: readonly string[];
  readonly mtu?: number;
  /** LOG_LEVEL for the daemon (both implementations read it). Default "verbose". */
  readonly logLevel?: 'verbose' | 'debug' | 'error' | 'silent';
  /** Default: a fresh pair. */
  readonly keys?: KeyPair;
  /** How long to wait for the UAPI socket. Default 10 s. */
  readonly readyTimeoutMs?: number;
}

/**
 * Starts `impl -f IFNAME` in `ns` as a tracked child, waits until `wg show IFNAME`
 * answers, then sets private key and listen port, addresses, MTU and brings the
 * interface up. Peers are added by the caller.
 */
export async function startWireGuard(
  harness: NetnsHarness,
  impl: WireGuardImpl,
  ns: string,
  options: StartWireGuardOptions,
): Promise<WireGuardInterface> {
  if (!isWireGuardImpl(impl))
    throw new TypeError(`impl must be one of ${WIREGUARD_IMPLS.join(', ')}, got ${String(impl)}`);
  if (
    !Number.isInteger(options.listenPort) ||
    options.listenPort < 1 ||
    options.listenPort > 65535
  ) {
    throw new RangeError(`options.listenPort must be a port number, got ${options.listenPort}`);
  }
  const ifname = options.ifname ?? harness.uniqueInterfaceName();
  const socketPath = uapiSocketPath(ifname);
  if (existsSync(socketPath))
    throw new Error(`refusing to start ${impl}: ${socketPath} already exists`);
  const argv = [...implementationArgv(impl), '-f', ifname];
  harness.registerPathForCleanup(socketPath);
  const daemon = harness.spawn(ns, argv, {
    label: `${impl} ${ifname} in ${ns}`,
    env: { LOG_LEVEL: options.logLevel ?? 'verbose', WG_PROCESS_FOREGROUND: '1' },
  });
  await waitForUapi(ifname, daemon, options.readyTimeoutMs ?? 10_000);
  const keys = options.keys ?? (await generateKeyPair(await harness.makeTempDir()));
  const wgInterface = new WireGuardInterface({
    harness,
    impl,
    namespace: ns,
    ifname,
    process: daemon,
    keys,
    listenPort: options.listenPort,
  });
  await wgInterface.wg([
    'set',
    ifname,
    'private-key',
    keys.privateKeyFile,
    'listen-port',
    String(options.listenPort),
  ]);
  for (const cidr of options.addresses ?? []) await wgInterface.addAddress(cidr);
  if (options.mtu !== undefined) await wgInterface.setMtu(options.mtu);
  await wgInterface.setUp();
  return wgInterface;
}

/**
 * Waits until the daemon answers `get=1` on its UAPI socket; fails early if
 * `daemon` exits first.
 *
 * It polls with a plain connect, never with `wg show`: when a connect is refused,
 * `wg` unlinks the socket file as stale (wireguard-tools src/ipc-uapi-unix.h), and
 * wireguard-go binds its socket a moment before it listens (Go's net.ListenUnix),
 * so a `wg show` landing in that window deletes the fresh socket and wireguard-go
 * then exits with "Failed to listen on uapi socket: no such file or directory".
 * Unix sockets are reached by path, so this works whatever namespace the daemon is in.
 */
export async function waitForUapi(
  ifname: string,
  daemon: TrackedProcess,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError = 'none yet';
  for (;;) {
    if (daemon.hasExited()) {
      const status = daemon.status();
      throw new Error(
        `${daemon.label} exited (code ${String(status?.exitCode)}, signal ${String(status?.signal)}) before its UAPI socket answered:\n${daemon.output()}`,
      );
    }
    if (existsSync(uapiSocketPath(ifname))) {
      try {
        const reply = await uapiRequest(ifname, 'get=1\n\n', 3000);
        if (reply.endsWith('errno=0\n\n')) return;
        lastError = `reply ${JSON.stringify(reply.slice(-200))}`;
      } catch (error) {
        // Refused while binding, or one slow attempt on a loaded machine: the deadline decides.
        lastError = error instanceof Error ? error.message : String(error);
      }
    }
    if (Date.now() > deadline) {
      throw new Error(
        `${daemon.label}: its UAPI socket did not answer get=1 within ${timeoutMs} ms (last: ${lastError}):\n${daemon.output()}`,
      );
    }
    await sleep(50);
  }
}

/**
 * Parses `wg show IFNAME allowed-ips`: one line per peer, "PUBKEY\tCIDR CIDR …"
 * or "PUBKEY\t(none)" (wireguard-tools src/show.c, ugly_print "allowed-ips").
 */
export function parseWgAllowedIps(text: string): Map<string, string[]> {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  const byPeer = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const tab = line.indexOf('\t');
    if (tab !== 44) throw new Error(`wg allowed-ips: malformed line: ${line.slice(0, 200)}`);
    const list = line.slice(tab + 1);
    byPeer.set(
      line.slice(0, tab),
      list === '(none)' ? [] : list.split(' ').filter((s) => s !== ''),
    );
  }
  return byPeer;
}

/**
 * Sends raw text on IFNAME's UAPI socket and resolves with everything received up
 * to and including the reply's terminating "errno=N\n\n" (https://www.wireguard.com/xplatform/),
 * then closes the connection. Unix sockets are reached by path from any network namespace.
 */
export function uapiRequest(ifname: string, request: string, timeoutMs = 5000): Promise<string> {
  if (typeof request !== 'string' || request === '')
    throw new TypeError('request must be a non-empty string');
  return new Promise((resolve, reject) => {
    const socket = createConnection(uapiSocketPath(ifname));
    let reply = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new Error(
          `UAPI ${ifname}: no complete reply within ${timeoutMs} ms; got ${JSON.stringify(reply.slice(0, 500))}`,
        ),
      );
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      reply += chunk;
      if (/(^|\n)errno=-?\d+\n\n$/.test(reply)) {
        clearTimeout(timer);
        socket.end();
        resolve(reply);
      }
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`UAPI ${ifname}: ${error.message}`, { cause: error }));
    });
    socket.on('close', () => {
      clearTimeout(timer);
      reject(
        new Error(
          `UAPI ${ifname}: connection closed before a complete reply; got ${JSON.stringify(reply.slice(0, 500))}`,
        ),
      );
    });
    socket.write(request);
  });
}
