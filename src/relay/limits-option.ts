/**
 * `warren relay --limit NAME=VALUE`: every RelayLimits field, by a kebab-case
 * name, so an operator can tune what the defaults guess (a busy site needs more
 * than 200 requests/s per tunnel; a relay behind one proxy address needs more
 * than 256 connections per IP) without a new flag per limit.
 */
import { RelayConfigError } from './errors.js';
import { DEFAULT_RELAY_LIMITS } from './relay.js';
import type { RelayLimits } from './relay.js';

/** What each limit means, for --help; one line each. */
const LIMIT_DESCRIPTIONS = {
  handshakeTimeoutMs: 'TLS handshake of an agent or HTTPS client',
  authTimeoutMs: 'an agent must authenticate within this',
  maxSessions: 'authenticated agent connections at once',
  maxUnauthenticated: 'agent connections not yet authenticated',
  maxTunnelsPerSession: 'tunnels per agent connection',
  maxStreamsPerSession: 'public connections to one agent at once',
  maxBufferedBytesPerSession: 'window growth per agent, beyond 256 KiB a stream',
  keepaliveIntervalMs: 'ping agents this often (0: never)',
  maxConnectionsPerIp: 'public connections from one IP (HTTP, HTTPS, TCP)',
  maxPublicConnections: 'public connections per listener',
  maxHeadBytes: 'bytes in one request head',
  maxHeaderCount: 'header fields in one request',
  headersTimeoutMs: 'a request head must arrive within this (slowloris)',
  idleTimeoutMs: 'close public connections idle this long',
  maxPipelinedRequests: 'requests sent ahead of their responses',
  requestsPerSecond: 'requests per second per HTTP tunnel',
  requestBurst: 'burst above that rate',
  tcpConnectionsPerSecond: 'new connections per second per TCP tunnel',
  tcpConnectionBurst: 'burst above that rate',
  offlineMemoryMs: '502, not 404, this long after an agent left',
  tokenRecheckIntervalMs: "re-check live agents' tokens this often",
} as const satisfies Record<keyof RelayLimits, string>;

type LimitKey = keyof RelayLimits;

function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

const KEY_BY_NAME = new Map<string, LimitKey>(
  (Object.keys(LIMIT_DESCRIPTIONS) as LimitKey[]).map((key) => [kebab(key), key]),
);

/**
 * Parses repeated `--limit NAME=VALUE` texts into RelayLimits overrides.
 * VALUE is a whole number (1 or more; keepalive-interval-ms may be 0). Throws
 * RelayConfigError naming the text for an unknown name or a bad value.
 */
export function parseLimitOptions(texts: readonly string[]): Partial<RelayLimits> {
  const limits: Partial<Record<LimitKey, number>> = {};
  for (const text of texts) {
    const equals = text.indexOf('=');
    const name = equals < 0 ? text : text.slice(0, equals);
    const key = KEY_BY_NAME.get(name);
    if (key === undefined) {
      throw new RelayConfigError(
        `--limit ${text}: unknown limit '${name}' (see warren relay --help for the names)`,
      );
    }
    if (equals < 0) throw new RelayConfigError(`--limit ${text}: expected ${name}=VALUE`);
    const valueText = text.slice(equals + 1);
    const value = Number(valueText);
    const minimum = key === 'keepaliveIntervalMs' ? 0 : 1;
    if (!/^\d+$/.test(valueText) || !Number.isSafeInteger(value) || value < minimum) {
      throw new RelayConfigError(
        `--limit ${text}: ${name} must be a whole number >= ${minimum}, got '${valueText}'`,
      );
    }
    limits[key] = value;
  }
  return limits;
}

/** `limits` as the names --limit takes, e.g. 'requests-per-second=1000, request-burst=2000'. */
export function describeLimits(limits: Partial<RelayLimits>): string {
  return Object.entries(limits)
    .map(([key, value]) => `${kebab(key)}=${String(value)}`)
    .join(', ');
}

/** The --help section: every limit's name, default and meaning. */
export function limitsHelp(): string {
  const rows = (Object.keys(LIMIT_DESCRIPTIONS) as LimitKey[]).map((key) => [
    `${kebab(key)}=${String(DEFAULT_RELAY_LIMITS[key])}`,
    LIMIT_DESCRIPTIONS[key],
  ]);
  const width = Math.max(...rows.map(([name]) => (name ?? '').length)) + 2;
  return rows
    .map(([name, description]) => `  ${(name ?? '').padEnd(width)}${description ?? ''}\n`)
    .join('');
}
