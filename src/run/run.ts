/**
 * `warren run`: bring a WireGuard tunnel up for one program. The sandbox (user +
 * network + mount + pid namespaces, rootless) holds the program and the TUN; this
 * process keeps the UDP socket in the caller's own network namespace and runs the
 * engine between the two. Nothing in the sandbox can reach anything but the TUN.
 */
import { lookup } from 'node:dns/promises';
import { Device } from '../device/device.js';
import { TunDevice } from '../device/tun.js';
import type { UapiSetRequest } from '../device/uapi-protocol.js';
import { formatIpAddress, parseIpAddress } from '../wireguard/allowed-ips.js';
import { Sandbox, checkPrerequisites, cleanupOrphans } from '../sandbox/sandbox.js';
import { RunError } from './errors.js';
import type { TunnelSettings } from './options.js';

export interface RunRequest {
  settings: TunnelSettings;
  command: string[];
  cwd: string;
  env: NodeJS.ProcessEnv;
  tunName: string;
  keepAlive: boolean;
  /** Warn on stderr when no handshake completed within this many ms. */
  handshakeWarningMs: number;
  /** Where progress and warnings go (stderr). */
  report: (line: string) => void;
  verbose: boolean;
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const FORWARDED_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export async function runThroughTunnel(request: RunRequest): Promise<RunResult> {
  const { settings } = request;
  await checkPrerequisites();
  const orphans = await cleanupOrphans();
  if (orphans > 0 && request.verbose) request.report(`cleaned up ${orphans} orphaned sandbox(es)`);

  // Resolve endpoints here, in the caller's network namespace, before anything starts.
  const endpoints = await Promise.all(settings.peers.map((peer) => resolve(peer.endpoint)));

  const sandbox = await Sandbox.start({
    command: request.command,
    cwd: request.cwd,
    env: request.env,
    keepAlive: request.keepAlive,
    network: {
      tunName: request.tunName,
      mtu: settings.mtu,
      addresses: settings.addresses.map((a) => ({
        family: a.family,
        address: formatIpAddress(a.address),
        prefix: a.cidr,
      })),
      dns: settings.dnsServers,
    },
  });
  for (const warning of sandbox.warnings) request.report(`warning: ${warning}`);
  let device: Device | undefined;
  const forward = (signal: NodeJS.Signals): void => {
    sandbox.kill(signal);
  };
  try {
    device = Device.fromTun(TunDevice.fromFd(sandbox.tunFd, sandbox.tunName, settings.mtu));
    device.set(setRequest(settings, endpoints));
    for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
    // The engine reads the TUN before the program runs, and handshakes at once.
    device.connect();
    sandbox.launch();
    const watchdog = setTimeout(() => {
      if (device !== undefined && !hasHandshake(device)) {
        const where = endpoints
          .filter((e) => e !== null)
          .map((e) => `${e.family === 6 ? `[${e.text}]` : e.text}:${e.port}`)
          .join(', ');
        request.report(
          `warning: no WireGuard handshake with ${where} after ${request.handshakeWarningMs / 1000} s; ` +
            "the program's traffic waits for the tunnel (nothing leaves outside it)",
        );
      }
    }, request.handshakeWarningMs);
    watchdog.unref();
    const result = await sandbox.exited;
    clearTimeout(watchdog);
    return result;
  } finally {
    for (const signal of FORWARDED_SIGNALS) process.off(signal, forward);
    device?.close();
    await sandbox.dispose();
  }
}

interface ResolvedEndpoint {
  family: 4 | 6;
  address: Uint8Array;
  text: string;
  port: number;
}

async function resolve(
  endpoint: { host: string; port: number } | null,
): Promise<ResolvedEndpoint | null> {
  if (endpoint === null) return null;
  let text: string;
  let family: 4 | 6;
  try {
    const found = await lookup(endpoint.host, { verbatim: true });
    text = found.address;
    family = found.family === 6 ? 6 : 4;
  } catch (error) {
    throw new RunError(
      'ERR_RUN_ENDPOINT_UNRESOLVABLE',
      `cannot resolve the endpoint host '${endpoint.host}': ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      { cause: error },
    );
  }
  return { family, address: parseIpAddress(text).address, text, port: endpoint.port };
}

function setRequest(
  settings: TunnelSettings,
  endpoints: (ResolvedEndpoint | null)[],
): UapiSetRequest {
  return {
    privateKey: settings.privateKey,
    listenPort: settings.listenPort,
    replacePeers: true,
    peers: settings.peers.map((peer, i) => {
      const endpoint = endpoints[i] ?? null;
      return {
        publicKey: peer.publicKey,
        remove: false,
        updateOnly: false,
        ...(peer.presharedKey === null ? {} : { presharedKey: peer.presharedKey }),
        ...(endpoint === null
          ? {}
          : {
              endpoint: { family: endpoint.family, address: endpoint.address, port: endpoint.port },
            }),
        persistentKeepaliveInterval: peer.persistentKeepalive,
        replaceAllowedIps: true,
        allowedIps: peer.allowedIps.map((a) => ({ ...a, remove: false })),
      };
    }),
  };
}

function hasHandshake(device: Device): boolean {
  for (const peer of device.engine.peers()) if (peer.lastHandshake !== null) return true;
  return false;
}
