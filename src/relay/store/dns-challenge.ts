/**
 * Custom domains prove ownership with a DNS TXT record, as ACME's dns-01
 * challenge does (RFC 8555 §8.4): `_warren-challenge.HOST` must hold the random
 * value `warren relay domain add` stored. The lookup is a node:dns Resolver
 * query (RFC 1035 §3.3.14 TXT: one or more character-strings, joined here),
 * against the system's resolvers or the ones given (`--resolver IP[:PORT]`).
 */
import { Resolver } from 'node:dns/promises';
import { isIP } from 'node:net';
import { DomainNotFoundError, DomainVerificationError, RelayConfigError } from '../errors.js';
import { normalizeHostName } from './sql-store.js';
import type { DomainRecord, RelayStore } from './types.js';

/** The label the TXT record goes under. */
export const CHALLENGE_LABEL = '_warren-challenge';

export interface ChallengeLookupOptions {
  /** DNS servers, "IP", "IP:PORT" or "[IPv6]:PORT" (default: the system's). */
  readonly resolvers?: readonly string[];
  /** Per-try timeout (ms, default 3000). */
  readonly timeoutMs?: number;
  /** Tries per server (default 2). */
  readonly tries?: number;
}

/** The name of a host's challenge record: `_warren-challenge.HOST`. */
export function challengeRecordName(host: string): string {
  return `${CHALLENGE_LABEL}.${normalizeHostName(host)}`;
}

/** Checks "IP", "IP:PORT" or "[IPv6]:PORT"; returns it as node:dns setServers takes it. */
export function parseResolverAddress(text: string): string {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  const trimmed = text.trim();
  let address: string | undefined;
  let port: string | undefined;
  const bracketed = /^\[([^\]]+)\](?::(\d{1,5}))?$/.exec(trimmed);
  if (bracketed !== null) {
    [, address, port] = bracketed;
    if (isIP(address ?? '') !== 6) address = undefined;
  } else if (isIP(trimmed) === 6) {
    // A bare IPv6 address carries no port ("::1:53" would be ambiguous).
    address = trimmed;
  } else {
    const plain = /^([^:]+)(?::(\d{1,5}))?$/.exec(trimmed);
    [, address, port] = plain ?? [];
    if (isIP(address ?? '') !== 4) address = undefined;
  }
  if (address === undefined || (port !== undefined && (Number(port) < 1 || Number(port) > 65535))) {
    throw new RelayConfigError(
      `--resolver: '${text}' is not IP, IP:PORT or [IPv6]:PORT (a DNS server address)`,
    );
  }
  if (port === undefined) return address;
  return isIP(address) === 6 ? `[${address}]:${port}` : `${address}:${port}`;
}

/**
 * Looks up `_warren-challenge.HOST` and resolves if one of its TXT records is
 * `expected`. Throws DomainVerificationError: 'no-record' (NXDOMAIN, no TXT),
 * 'mismatch' (TXT records, none with that value) or 'dns-failure'.
 */
export async function checkDnsChallenge(
  host: string,
  expected: string,
  options: ChallengeLookupOptions = {},
): Promise<void> {
  const name = challengeRecordName(host);
  if (typeof expected !== 'string' || expected.length === 0) {
    throw new TypeError('expected must be a non-empty string');
  }
  const resolver = new Resolver({
    timeout: options.timeoutMs ?? 3_000,
    tries: options.tries ?? 2,
  });
  if (options.resolvers !== undefined && options.resolvers.length > 0) {
    resolver.setServers(options.resolvers.map(parseResolverAddress));
  }
  let records: string[][];
  try {
    records = await resolver.resolveTxt(name);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA') {
      throw new DomainVerificationError(
        'no-record',
        `no TXT record ${name} (${code === 'ENOTFOUND' ? 'NXDOMAIN' : 'the name has no TXT data'})`,
        { cause: error },
      );
    }
    throw new DomainVerificationError(
      'dns-failure',
      `cannot look up ${name}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  // A TXT record's value may come split into several character-strings.
  const values = records.map((chunks) => chunks.join(''));
  if (values.some((value) => value.trim() === expected)) return;
  if (values.length === 0) {
    throw new DomainVerificationError('no-record', `no TXT record ${name}`);
  }
  throw new DomainVerificationError(
    'mismatch',
    `${name} holds ${values.map((value) => JSON.stringify(value.slice(0, 64))).join(', ')}, not the challenge '${expected}'`,
  );
}

/**
 * `warren relay domain verify`: checks the stored challenge of `host` in DNS
 * and marks the domain verified. Throws DomainNotFoundError or
 * DomainVerificationError (the record stays unverified).
 */
export async function verifyDomain(
  store: RelayStore,
  host: string,
  options: ChallengeLookupOptions = {},
): Promise<DomainRecord> {
  const name = normalizeHostName(host);
  const domain = await store.getDomain(name);
  if (domain === null) {
    throw new DomainNotFoundError(
      `no custom domain ${name} (add it with 'warren relay domain add')`,
    );
  }
  await checkDnsChallenge(name, domain.challenge, options);
  return store.markDomainVerified(name);
}
