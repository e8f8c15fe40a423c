/**
 * The agent's config file (`warren expose --config FILE`): several tunnels, one
 * relay. JSON, checked field by field, unknown fields refused (a typo should
 * not silently expose the wrong thing):
 *
 *   {
 *     "relay": "tunnel.example.com[:443]",
 *     "token": "wrn1…"  |  "tokenFile": "/path/to/token",
 *     "ca": "/path/to/ca.crt",            (optional: a private CA)
 *     "serverName": "tunnel.example.com", (optional: the name the certificate carries)
 *     "tunnels": [
 *       { "http": 3000, "subdomain": "app", "localHost": "127.0.0.1",
 *         "basicAuth": ["user:password"], "allowIps": ["203.0.113.0/24", "2001:db8::/32"] },
 *       { "http": 8080, "hostname": "app.example.org" },  (a verified custom domain)
 *       { "tcp": 5432, "remotePort": 41234, "allowIps": ["198.51.100.7"] }
 *     ]
 *   }
 */
import { checkAllowedIps, checkCredentials } from './access.js';
import { RelayConfigError } from './errors.js';
import type { TunnelSpec } from './agent.js';
import { isValidHostName, isValidSubdomain } from './token.js';

export interface AgentConfigFile {
  readonly relay?: string;
  readonly token?: string;
  readonly tokenFile?: string;
  readonly ca?: string;
  readonly serverName?: string;
  readonly tunnels: readonly TunnelSpec[];
}

const MAX_CONFIG_BYTES = 1024 * 1024;
const MAX_TUNNELS = 64;
const TOP_LEVEL = new Set(['relay', 'token', 'tokenFile', 'ca', 'serverName', 'tunnels']);
const TUNNEL_FIELDS = new Set([
  'http',
  'tcp',
  'subdomain',
  'hostname',
  'localHost',
  'remotePort',
  'basicAuth',
  'allowIps',
]);

function stringList(value: unknown, where: string): string[] {
  if (!Array.isArray(value) || !value.every((entry) => typeof entry === 'string')) {
    throw new RelayConfigError(`${where} must be a list of strings`);
  }
  return value;
}

/** Splits "host[:port]" / "[v6]:port"; the port defaults to `defaultPort`. */
export function parseHostPort(text: string, defaultPort: number): { host: string; port: number } {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^[\]:\s/]+))(?::(\d{1,5}))?$/.exec(text.trim());
  const host = match?.[1] ?? match?.[2];
  const port = match?.[3] === undefined ? defaultPort : Number(match[3]);
  if (host === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RelayConfigError(`'${text}' is not HOST[:PORT]`);
  }
  return { host, port };
}

function optionalString(
  object: Record<string, unknown>,
  key: string,
  where: string,
): string | undefined {
  const value = object[key];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || value.length === 0 || value.length > 4096) {
    throw new RelayConfigError(`${where}.${key} must be a non-empty string`);
  }
  return value;
}

function port(value: unknown, where: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new RelayConfigError(`${where} must be a port number 1-65535`);
  }
  return value;
}

function parseTunnel(value: unknown, index: number): TunnelSpec {
  const where = `tunnels[${index}]`;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new RelayConfigError(`${where} must be an object`);
  }
  const object = value as Record<string, unknown>;
  for (const key of Object.keys(object)) {
    if (!TUNNEL_FIELDS.has(key)) throw new RelayConfigError(`${where}: unknown field '${key}'`);
  }
  const localHost = optionalString(object, 'localHost', where);
  let allowIps: string[] | undefined;
  if (object.allowIps !== undefined) {
    allowIps = stringList(object.allowIps, `${where}.allowIps`);
    checkAllowedIps(allowIps, `${where}.allowIps`);
  }
  const host = {
    ...(localHost === undefined ? {} : { localHost }),
    ...(allowIps === undefined ? {} : { allowIps }),
  };
  if ((object.http === undefined) === (object.tcp === undefined)) {
    throw new RelayConfigError(`${where} must have exactly one of "http": PORT or "tcp": PORT`);
  }
  if (object.http !== undefined) {
    if (object.remotePort !== undefined) {
      throw new RelayConfigError(`${where}: remotePort is for tcp tunnels`);
    }
    const subdomain = optionalString(object, 'subdomain', where);
    if (subdomain !== undefined && !isValidSubdomain(subdomain)) {
      throw new RelayConfigError(`${where}.subdomain: '${subdomain}' is not a DNS label`);
    }
    const hostname = optionalString(object, 'hostname', where)?.toLowerCase();
    if (hostname !== undefined && !isValidHostName(hostname)) {
      throw new RelayConfigError(
        `${where}.hostname: '${hostname}' is not a host name (two or more DNS labels)`,
      );
    }
    if (hostname !== undefined && subdomain !== undefined) {
      throw new RelayConfigError(`${where}: give "subdomain" or "hostname", not both`);
    }
    let basicAuth: string[] | undefined;
    if (object.basicAuth !== undefined) {
      basicAuth = stringList(object.basicAuth, `${where}.basicAuth`);
      checkCredentials(basicAuth, `${where}.basicAuth`);
    }
    return {
      proto: 'http',
      localPort: port(object.http, `${where}.http`),
      ...host,
      ...(subdomain === undefined ? {} : { subdomain }),
      ...(hostname === undefined ? {} : { hostname }),
      ...(basicAuth === undefined ? {} : { basicAuth }),
    };
  }
  if (object.subdomain !== undefined) {
    throw new RelayConfigError(`${where}: subdomain is for http tunnels`);
  }
  if (object.hostname !== undefined) {
    throw new RelayConfigError(`${where}: hostname is for http tunnels`);
  }
  if (object.basicAuth !== undefined) {
    throw new RelayConfigError(`${where}: basicAuth is for http tunnels`);
  }
  return {
    proto: 'tcp',
    localPort: port(object.tcp, `${where}.tcp`),
    ...host,
    ...(object.remotePort === undefined
      ? {}
      : { remotePort: port(object.remotePort, `${where}.remotePort`) }),
  };
}

/** Parses the text of an agent config file. Throws RelayConfigError naming the bad field. */
export function parseAgentConfig(text: string): AgentConfigFile {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  if (text.length > MAX_CONFIG_BYTES) {
    throw new RelayConfigError(`the config file is larger than ${MAX_CONFIG_BYTES} bytes`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new RelayConfigError(
      `the config file is not valid JSON: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new RelayConfigError('the config file must hold a JSON object');
  }
  const object = value as Record<string, unknown>;
  for (const key of Object.keys(object)) {
    if (!TOP_LEVEL.has(key)) throw new RelayConfigError(`config: unknown field '${key}'`);
  }
  const tunnels = object.tunnels;
  if (!Array.isArray(tunnels) || tunnels.length === 0 || tunnels.length > MAX_TUNNELS) {
    throw new RelayConfigError(`config.tunnels must list 1-${MAX_TUNNELS} tunnels`);
  }
  const relay = optionalString(object, 'relay', 'config');
  if (relay !== undefined) parseHostPort(relay, 443);
  const token = optionalString(object, 'token', 'config');
  const tokenFile = optionalString(object, 'tokenFile', 'config');
  if (token !== undefined && tokenFile !== undefined) {
    throw new RelayConfigError('config: give token or tokenFile, not both');
  }
  const ca = optionalString(object, 'ca', 'config');
  const serverName = optionalString(object, 'serverName', 'config');
  return {
    tunnels: tunnels.map((tunnel: unknown, index) => parseTunnel(tunnel, index)),
    ...(relay === undefined ? {} : { relay }),
    ...(token === undefined ? {} : { token }),
    ...(tokenFile === undefined ? {} : { tokenFile }),
    ...(ca === undefined ? {} : { ca }),
    ...(serverName === undefined ? {} : { serverName }),
  };
}
