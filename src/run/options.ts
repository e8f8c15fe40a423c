/**
 * What `warren run` needs to bring a tunnel up, assembled from a wg-quick config
 * (-c), wirecage-style --wg-* flags and WARREN_WG_* environment variables.
 * Precedence: flag, then environment variable, then the config file.
 */
import { readFileSync } from 'node:fs';
import { ConfigError } from '../config/errors.js';
import {
  parseAddressWithPrefix,
  parseHostPort,
  parseWgQuickConfig,
  type Cidr,
  type HostPort,
  type WgQuickPeer,
} from '../config/wg-quick.js';
import { parseCidr } from '../wireguard/allowed-ips.js';
import { parseKey } from '../wireguard/keys.js';
import { RunError } from './errors.js';

export interface TunnelSettings {
  privateKey: Uint8Array;
  addresses: Cidr[];
  dnsServers: string[];
  dnsSearch: string[];
  mtu: number;
  listenPort: number;
  peers: WgQuickPeer[];
}

/** The --wg-* settings, each also readable from WARREN_WG_<NAME>. */
export interface WgFlags {
  endpoint?: string;
  publicKey?: string;
  privateKeyFile?: string;
  presharedKeyFile?: string;
  address?: string;
  allowedIps?: string;
  keepalive?: string;
  dns?: string;
  mtu?: string;
}

export const WG_FLAG_ENV: Record<keyof WgFlags, string> = {
  endpoint: 'WARREN_WG_ENDPOINT',
  publicKey: 'WARREN_WG_PUBLIC_KEY',
  privateKeyFile: 'WARREN_WG_PRIVATE_KEY_FILE',
  presharedKeyFile: 'WARREN_WG_PRESHARED_KEY_FILE',
  address: 'WARREN_WG_ADDRESS',
  allowedIps: 'WARREN_WG_ALLOWED_IPS',
  keepalive: 'WARREN_WG_KEEPALIVE',
  dns: 'WARREN_WG_DNS',
  mtu: 'WARREN_WG_MTU',
};

const DEFAULT_MTU = 1420;
const DEFAULT_ALLOWED_IPS = '0.0.0.0/0, ::/0';

export function tunnelSettings(
  configPath: string | undefined,
  flags: WgFlags,
  env: NodeJS.ProcessEnv,
): TunnelSettings {
  const value = (name: keyof WgFlags): string | undefined => flags[name] ?? env[WG_FLAG_ENV[name]];
  const fromFile = configPath === undefined ? undefined : readConfig(configPath);

  const privateKeyFile = value('privateKeyFile');
  const privateKey =
    privateKeyFile !== undefined
      ? readKeyFile(privateKeyFile, '--wg-private-key-file')
      : fromFile?.privateKey;
  if (privateKey === undefined) {
    throw new RunError(
      'ERR_RUN_MISSING_SETTING',
      'no private key: give -c CONFIG or --wg-private-key-file FILE (or WARREN_WG_PRIVATE_KEY_FILE)',
    );
  }

  const address = value('address');
  const addresses =
    address !== undefined ? cidrList(address, '--wg-address', true) : (fromFile?.addresses ?? []);
  if (addresses.length === 0) {
    throw new RunError(
      'ERR_RUN_MISSING_SETTING',
      'no tunnel address: give -c CONFIG with Address = … or --wg-address 10.64.0.2/32',
    );
  }

  let peers = fromFile?.peers ?? [];
  const publicKey = value('publicKey');
  const endpoint = value('endpoint');
  if (publicKey !== undefined || endpoint !== undefined || peers.length === 0) {
    // The flags describe the one peer (wirecage's model); they refine the config's first peer.
    const base = peers[0];
    const key = publicKey !== undefined ? flagKey(publicKey, '--wg-public-key') : base?.publicKey;
    if (key === undefined) {
      throw new RunError(
        'ERR_RUN_MISSING_SETTING',
        'no peer: give -c CONFIG with a [Peer], or --wg-public-key KEY and --wg-endpoint HOST:PORT',
      );
    }
    const pskFile = value('presharedKeyFile');
    const allowed = value('allowedIps');
    const keepalive = value('keepalive');
    peers = [
      {
        publicKey: key,
        presharedKey:
          pskFile !== undefined
            ? readKeyFile(pskFile, '--wg-preshared-key-file')
            : (base?.presharedKey ?? null),
        endpoint: endpoint !== undefined ? hostPort(endpoint) : (base?.endpoint ?? null),
        allowedIps:
          allowed !== undefined || base === undefined
            ? cidrList(allowed ?? DEFAULT_ALLOWED_IPS, '--wg-allowed-ips', false)
            : base.allowedIps,
        persistentKeepalive:
          keepalive !== undefined
            ? integer(keepalive, '--wg-keepalive', 0, 65535)
            : (base?.persistentKeepalive ?? 0),
        line: 0,
      },
      ...peers.slice(1),
    ];
  }
  if (!peers.some((peer) => peer.endpoint !== null)) {
    throw new RunError(
      'ERR_RUN_MISSING_SETTING',
      'no peer has an endpoint: give Endpoint = HOST:PORT in [Peer] or --wg-endpoint HOST:PORT',
    );
  }

  const dns = value('dns');
  const mtu = value('mtu');
  return {
    privateKey,
    addresses,
    dnsServers: dns !== undefined ? list(dns) : (fromFile?.dnsServers ?? []),
    dnsSearch: dns !== undefined ? [] : (fromFile?.dnsSearch ?? []),
    mtu: mtu !== undefined ? integer(mtu, '--mtu', 576, 65535) : (fromFile?.mtu ?? DEFAULT_MTU),
    listenPort: fromFile?.listenPort ?? 0,
    peers,
  };
}

function readConfig(path: string): ReturnType<typeof parseWgQuickConfig> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(
      path,
      0,
      `cannot read: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    );
  }
  return parseWgQuickConfig(text, path);
}

function readKeyFile(path: string, flag: string): Uint8Array {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new RunError(
      'ERR_RUN_KEY_FILE',
      `${flag}: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
    );
  }
  try {
    return parseKey(text.trim(), `${flag} ${path}`);
  } catch (error) {
    throw new RunError('ERR_RUN_KEY_FILE', error instanceof Error ? error.message : String(error));
  }
}

function flagKey(text: string, flag: string): Uint8Array {
  try {
    return parseKey(text.trim(), flag);
  } catch (error) {
    throw new RunError('ERR_RUN_USAGE', error instanceof Error ? error.message : String(error));
  }
}

function list(text: string): string[] {
  return text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

function cidrList(text: string, flag: string, keepHostBits: boolean): Cidr[] {
  return list(text).map((item) => {
    try {
      return keepHostBits ? parseAddressWithPrefix(item) : parseCidr(item);
    } catch {
      throw new RunError(
        'ERR_RUN_USAGE',
        `${flag}: '${item}' is not an IP address with an optional /prefix`,
      );
    }
  });
}

function hostPort(text: string): HostPort {
  try {
    return parseHostPort(text);
  } catch (error) {
    throw new RunError(
      'ERR_RUN_USAGE',
      `--wg-endpoint: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}

function integer(text: string, flag: string, min: number, max: number): number {
  const number = /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(number) || number < min || number > max) {
    throw new RunError('ERR_RUN_USAGE', `${flag}: '${text}' is not an integer in ${min}..${max}`);
  }
  return number;
}
