/**
 * `warren relay …`: argument parsing and printing only; the relay is
 * ../relay/relay.ts. Events come from diagnostics_channel (library code never
 * prints).
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { parseArgs } from 'node:util';
import type { ParseArgsConfig } from 'node:util';
import { LETS_ENCRYPT_DIRECTORY_URL } from '../relay/acme/directory.js';
import { AdminServer } from '../relay/dashboard/index.js';
import { ensureDevCertificate } from '../relay/dev-ca.js';
import type {
  AcmeCertificateEvent,
  AcmeHostRefusedEvent,
  AcmeOrderFailedEvent,
  AgentConnectedEvent,
  AgentDisconnectedEvent,
  AgentRejectedEvent,
  PublicRefusalEvent,
  TunnelEvent,
} from '../relay/diagnostics.js';
import { relayDiagnostics } from '../relay/diagnostics.js';
import { RelayConfigError, RelayError } from '../relay/errors.js';
import { describeLimits, limitsHelp, parseLimitOptions } from '../relay/limits-option.js';
import { Relay } from '../relay/relay.js';
import type { ListenAddress, RelayLimits } from '../relay/relay.js';
import { loadOrCreateSecret } from '../relay/secret.js';
import {
  challengeRecordName,
  parseResolverAddress,
  verifyDomain,
} from '../relay/store/dns-challenge.js';
import { checkDatabaseUrl, databaseFromEnvironment, openRelayStore } from '../relay/store/open.js';
import type { RelayStore, TokenRecord } from '../relay/store/types.js';
import {
  DEFAULT_ACCOUNT,
  SUBDOMAIN_PATTERN_RULE,
  TOKEN_NAME_RULE,
  createToken,
  isValidAccountName,
  isValidSubdomainPattern,
  isValidTokenName,
  parseDuration,
  parsePortRange,
} from '../relay/token.js';
import type { PortRange } from '../relay/token.js';
import { readInput, readInputBytes } from './read-input.js';

export const RELAY_USAGE = `Usage: warren relay --domain DOMAIN --data-dir DIR [OPTIONS]
       warren relay token create --data-dir DIR --name NAME [--account NAME]
                                 [--subdomain PATTERN]... [--tcp] [--tcp-ports FIRST-LAST]...
                                 [--expires DURATION]
       warren relay token revoke --data-dir DIR ID|NAME
       warren relay token list   --data-dir DIR [--account NAME]
       warren relay account create|remove --data-dir DIR NAME
       warren relay account list --data-dir DIR
       warren relay domain add    --data-dir DIR --account NAME [--domain DOMAIN] HOST
       warren relay domain verify --data-dir DIR [--resolver IP[:PORT]]... HOST
       warren relay domain list   --data-dir DIR [--account NAME]
       warren relay domain remove --data-dir DIR HOST
       (each of these also takes --database URL)

Run the public side of an ngrok-style tunnel: agents ('warren expose') connect
over TLS, public HTTP(S) for NAME.DOMAIN and TCP ports are forwarded to them.

Options:
      --domain DOMAIN          tunnels are NAME.DOMAIN (point *.DOMAIN and DOMAIN at this host)
      --data-dir DIR           token secret (created 0600), the store DIR/relay.db
                               (SQLite, 0600: accounts, tokens, custom domains), dev CA
      --database URL           keep the store in PostgreSQL instead: postgres://USER:PASS@HOST/DB
                               or postgresql://… (default: $WARREN_RELAY_DATABASE, else SQLite)
      --agent-listen ADDR      agents' TLS port (default :443)
      --https-listen ADDR      public HTTPS (default :443, shared with agents by ALPN); 'off' to disable
      --http-listen ADDR       public HTTP (default :80); 'off' to disable
      --tls-cert FILE          PEM certificate for DOMAIN and *.DOMAIN (with its chain)
      --tls-key FILE           its PEM key
      --dev-ca                 make a local CA and a wildcard certificate in DIR/dev-ca
                               (needs the openssl command); agents then need --ca DIR/dev-ca/ca.crt
      --acme                   get certificates from an ACME CA (Let's Encrypt by default) by
                               HTTP-01: one per name (DOMAIN, each tunnel's NAME.DOMAIN, verified
                               custom domains), ordered at start and as tunnels open, kept in
                               DIR/acme, renewed when a third of their life is left. Needs public
                               HTTP on port 80 (not --http-listen off). Using it accepts the CA's
                               terms of service.
                               No wildcards (they need DNS-01): for *.DOMAIN use --tls-cert
      --acme-email ADDR        contact address for the ACME account (expiry notices)
      --acme-directory URL     ACME directory URL (default Let's Encrypt production,
                               ${LETS_ENCRYPT_DIRECTORY_URL})
      --acme-ca FILE           PEM roots trusted for HTTPS to the ACME directory itself (pebble,
                               a private ACME CA); agents still verify the relay with their own --ca
      --tcp-host HOST          address TCP tunnel ports listen on (default all)
      --tcp-ports FIRST-LAST   ports for TCP tunnels (default 41000-41999)
      --public-http-port N     port shown in URLs, when a NAT/proxy maps another one
      --public-https-port N
      --drain-timeout SECS     on SIGTERM/SIGINT, let requests finish this long (default 10)
      --admin-listen ADDR      dashboard (/), Prometheus /metrics and /api/status
                               (default 127.0.0.1:9090; 'off' to disable)
      --admin-token-file FILE  bearer token the admin API requires (16+ characters);
                               without it the admin listener must be on loopback
      --admin-host NAME        a host name the admin listener may be reached by
                               (besides its address; DNS rebinding guard); repeatable
      --limit NAME=VALUE       change one of the limits listed below; repeatable
  -v, --verbose                also print refused public requests
  -h, --help                   show this help

Certificates: give exactly one of --tls-cert/--tls-key, --dev-ca or --acme. For tests and
local use, --dev-ca needs no network. To try --acme locally, run Let's Encrypt's test CA
pebble (apt-get install pebble) and pass --acme-directory https://127.0.0.1:14000/dir
--acme-ca PEBBLE-TLS-CA.pem; pebble must reach this relay's --http-listen port for HTTP-01.
ADDR is [HOST]:PORT, e.g. :443, 0.0.0.0:8443, [::1]:8443. Once listening, the relay
prints the bound ports as one JSON line on stdout: {"agent":…,"https":…,"http":…,"admin":…}.
Events (agents, tunnels) are reported on stderr.

Limits (--limit NAME=VALUE; the defaults shown; -ms values are milliseconds):
${limitsHelp()}
Token options:
      --name NAME              a label for people ("laptop")
      --account NAME           the account the token belongs to (default: 'default',
                               made on demand). Removing the account revokes its tokens.
      --subdomain PATTERN      a subdomain the token may claim: a name, '*' (any) or a
                               prefix like 'dev-*'; repeatable. None: random names only.
      --tcp                    may open TCP tunnels (any port of the relay's range)
      --tcp-ports FIRST-LAST   may open TCP tunnels on these ports only; repeatable
      --expires DURATION       e.g. 12h, 30d, 2w (default: never)

Accounts and custom domains:
  Tokens belong to accounts (a fresh store has 'default'). 'account remove' revokes the
  account's tokens and drops its domains; a running relay refuses them on its next check.
  'domain add' gives HOST (e.g. app.example.org) a random challenge and prints the DNS
  records to create: TXT _warren-challenge.HOST with that value, and a CNAME (or A/AAAA)
  HOST -> the relay. 'domain verify' looks the TXT record up and marks HOST verified;
  agents with a token of that account may then serve it: warren expose http PORT --hostname HOST.
      --domain DOMAIN          domain add: the relay's domain, shown as the CNAME target
      --resolver IP[:PORT]     domain verify: ask this DNS server (repeatable; default:
                               the system's resolvers)
`;

function report(line: string): void {
  process.stderr.write(`warren relay: ${line}\n`);
}

function usageError(message: string): number {
  process.stderr.write(`warren relay: ${message}\n\nRun 'warren relay --help' for usage.\n`);
  return 2;
}

/** Parses "[HOST]:PORT", "HOST:PORT", "[v6]:PORT" or "PORT". */
export function parseListenAddress(text: string): ListenAddress {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  const match = /^(?:(?:\[([0-9a-fA-F:.]+)\]|([^[\]:\s]*)):)?(\d{1,5})$/.exec(text.trim());
  const port = match === null ? NaN : Number(match[3]);
  if (match === null || port > 65535) {
    throw new RelayConfigError(`'${text}' is not a listen address ([HOST]:PORT)`);
  }
  const host = match[1] ?? (match[2] === undefined || match[2] === '' ? undefined : match[2]);
  return host === undefined ? { port } : { host, port };
}

function formatAddress(address: { address: string; port: number } | null): string {
  if (address === null) return 'off';
  return address.address.includes(':')
    ? `[${address.address}]:${address.port}`
    : `${address.address}:${address.port}`;
}

export async function relayCommand(argv: string[]): Promise<number> {
  if (argv[0] === 'token') return tokenCommand(argv.slice(1));
  if (argv[0] === 'account') return accountCommand(argv.slice(1));
  if (argv[0] === 'domain') return domainCommand(argv.slice(1));
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        domain: { type: 'string' },
        'data-dir': { type: 'string' },
        database: { type: 'string' },
        'agent-listen': { type: 'string' },
        'https-listen': { type: 'string' },
        'http-listen': { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'dev-ca': { type: 'boolean' },
        acme: { type: 'boolean' },
        'acme-email': { type: 'string' },
        'acme-directory': { type: 'string' },
        'acme-ca': { type: 'string' },
        'tcp-host': { type: 'string' },
        'tcp-ports': { type: 'string' },
        'public-http-port': { type: 'string' },
        'public-https-port': { type: 'string' },
        'drain-timeout': { type: 'string' },
        'admin-listen': { type: 'string' },
        'admin-token-file': { type: 'string' },
        'admin-host': { type: 'string', multiple: true },
        limit: { type: 'string', multiple: true },
        verbose: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    return usageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help === true) {
    process.stdout.write(RELAY_USAGE);
    return 0;
  }
  const domain = values.domain;
  const dataDir = values['data-dir'];
  if (domain === undefined) return usageError('--domain is required');
  if (dataDir === undefined) return usageError('--data-dir is required');
  const database = databaseFromEnvironment(values.database);
  try {
    checkDatabaseUrl(database);
  } catch (error) {
    return usageError(error instanceof Error ? error.message : String(error));
  }
  const devCa = values['dev-ca'] === true;
  const certFile = values['tls-cert'];
  const keyFile = values['tls-key'];
  if (devCa && (certFile !== undefined || keyFile !== undefined)) {
    return usageError('give --dev-ca or --tls-cert/--tls-key, not both');
  }
  const acme = values.acme === true;
  const acmeDirectory = values['acme-directory'];
  const acmeCaFile = values['acme-ca'];
  if (acme && (devCa || certFile !== undefined || keyFile !== undefined)) {
    return usageError('give one of --tls-cert/--tls-key, --dev-ca or --acme, not several');
  }
  if (!acme && (values['acme-email'] ?? acmeDirectory ?? acmeCaFile) !== undefined) {
    return usageError('--acme-email, --acme-directory and --acme-ca go with --acme');
  }
  const acmeEmail = values['acme-email'];
  if (acmeEmail !== undefined && !/^[^\s@]+@[^\s@]+$/.test(acmeEmail)) {
    return usageError(`--acme-email: '${acmeEmail}' is not an e-mail address`);
  }
  if (acmeDirectory !== undefined && !/^https:\/\/[^\s/]+/.test(acmeDirectory)) {
    return usageError(`--acme-directory: '${acmeDirectory}' is not an https:// URL`);
  }
  if (!devCa && !acme && (certFile === undefined || keyFile === undefined)) {
    return usageError(
      '--tls-cert and --tls-key are required (or --acme for automatic certificates, or --dev-ca for a local test CA)',
    );
  }
  let agentListen: ListenAddress;
  let httpListen: ListenAddress | undefined;
  let httpsListen: ListenAddress | undefined;
  let tcpPorts: PortRange | undefined;
  let publicHttpPort: number | undefined;
  let publicHttpsPort: number | undefined;
  let adminListen: ListenAddress | undefined;
  let limits: Partial<RelayLimits>;
  const drainSeconds = Number(values['drain-timeout'] ?? '10');
  try {
    const optional = (text: string | undefined, fallback: string): ListenAddress | undefined => {
      const chosen = text ?? fallback;
      return chosen === 'off' ? undefined : parseListenAddress(chosen);
    };
    limits = parseLimitOptions(values.limit ?? []);
    agentListen = parseListenAddress(values['agent-listen'] ?? ':443');
    httpsListen = optional(values['https-listen'], ':443');
    httpListen = optional(values['http-listen'], ':80');
    adminListen = optional(values['admin-listen'], '127.0.0.1:9090');
    if (values['tcp-ports'] !== undefined) tcpPorts = parsePortRange(values['tcp-ports']);
    const publicPort = (text: string | undefined, flag: string): number | undefined => {
      if (text === undefined) return undefined;
      const port = Number(text);
      if (!Number.isInteger(port) || port < 1 || port > 65535) {
        throw new RelayConfigError(`${flag}: '${text}' is not a port`);
      }
      return port;
    };
    if (acme && httpListen === undefined) {
      throw new RelayConfigError(
        '--acme needs public HTTP (not --http-listen off): the CA validates over port 80',
      );
    }
    publicHttpPort = publicPort(values['public-http-port'], '--public-http-port');
    publicHttpsPort = publicPort(values['public-https-port'], '--public-https-port');
    if (!Number.isFinite(drainSeconds) || drainSeconds < 0) {
      throw new RelayConfigError(
        `--drain-timeout: '${values['drain-timeout'] ?? ''}' is not a number of seconds`,
      );
    }
  } catch (error) {
    return usageError(error instanceof Error ? error.message : String(error));
  }

  const verbose = values.verbose === true;
  const subscriptions: [string, (message: unknown) => void][] = [
    [
      relayDiagnostics.agentConnected.name as string,
      (message) => {
        const event = message as AgentConnectedEvent;
        report(
          `agent ${event.sessionId} connected from ${event.remoteAddress} (token '${event.tokenName}')`,
        );
      },
    ],
    [
      relayDiagnostics.agentDisconnected.name as string,
      (message) => {
        const event = message as AgentDisconnectedEvent;
        report(
          `agent ${event.sessionId} disconnected${event.error === undefined ? '' : `: ${event.error.message}`}`,
        );
      },
    ],
    [
      relayDiagnostics.agentRejected.name as string,
      (message) => {
        const event = message as AgentRejectedEvent;
        report(`agent connection from ${event.remoteAddress} refused: ${event.error.message}`);
      },
    ],
    [
      relayDiagnostics.tunnelOpened.name as string,
      (message) => {
        const event = message as TunnelEvent;
        report(`tunnel ${event.url} opened by agent ${event.sessionId}`);
      },
    ],
    [
      relayDiagnostics.tunnelClosed.name as string,
      (message) => {
        const event = message as TunnelEvent;
        report(`tunnel ${event.url} closed`);
      },
    ],
  ];
  if (acme) {
    subscriptions.push(
      [
        relayDiagnostics.acmeCertificateLoaded.name as string,
        (message) => {
          const event = message as AcmeCertificateEvent;
          report(
            `certificate for ${event.host} read from ${dataDir}/acme (valid until ${new Date(event.notAfter).toISOString()})`,
          );
        },
      ],
      [
        relayDiagnostics.acmeCertificateIssued.name as string,
        (message) => {
          const event = message as AcmeCertificateEvent;
          report(
            `certificate for ${event.host} issued in ${event.durationMs} ms (valid until ${new Date(event.notAfter).toISOString()}, renewal from ${new Date(event.renewAt).toISOString()})`,
          );
        },
      ],
      [
        relayDiagnostics.acmeOrderFailed.name as string,
        (message) => {
          const event = message as AcmeOrderFailedEvent;
          report(
            `no certificate for ${event.host} (${event.error.code}: ${event.error.message}); next try after ${new Date(event.retryAt).toISOString()}`,
          );
        },
      ],
    );
  }
  if (verbose && acme) {
    subscriptions.push([
      relayDiagnostics.acmeHostRefused.name as string,
      (message) => {
        const event = message as AcmeHostRefusedEvent;
        report(`no certificate ordered for ${event.host}: ${event.error.message}`);
      },
    ]);
  }
  if (verbose) {
    subscriptions.push([
      relayDiagnostics.publicRefused.name as string,
      (message) => {
        const event = message as PublicRefusalEvent;
        report(
          `${event.listener} ${event.remoteAddress}: ${event.status === 0 ? 'closed' : event.status} (${event.error.code}: ${event.error.message})`,
        );
      },
    ]);
  }
  for (const [name, handler] of subscriptions) subscribe(name, handler);

  let adminToken: string | undefined;
  const adminTokenFile = values['admin-token-file'];
  if (adminTokenFile !== undefined) {
    try {
      adminToken = (await readInput(adminTokenFile, '--admin-token-file')).trim();
    } catch (error) {
      report(problem(error));
      return 1;
    }
  }

  let relay: Relay;
  try {
    let tls: { cert: Buffer; key: Buffer } | undefined;
    if (devCa) {
      const dev = await ensureDevCertificate(dataDir, domain);
      tls = { cert: dev.cert, key: dev.key };
      report(`dev CA: ${dev.caCertPath} (agents: --ca ${dev.caCertPath})`);
    } else if (!acme) {
      tls = {
        cert: await readInputBytes(certFile ?? '', '--tls-cert'),
        key: await readInputBytes(keyFile ?? '', '--tls-key'),
      };
    }
    const acmeOptions = acme
      ? {
          ...(acmeEmail === undefined ? {} : { email: acmeEmail }),
          ...(acmeDirectory === undefined ? {} : { directoryUrl: acmeDirectory }),
          ...(acmeCaFile === undefined
            ? {}
            : { directoryCa: await readInputBytes(acmeCaFile, '--acme-ca') }),
        }
      : undefined;
    relay = await Relay.start({
      domain,
      dataDir,
      ...(database === undefined ? {} : { database }),
      ...(tls === undefined ? {} : { tls }),
      ...(acmeOptions === undefined ? {} : { acme: acmeOptions }),
      agentListen,
      ...(httpListen === undefined ? {} : { httpListen }),
      ...(httpsListen === undefined ? {} : { httpsListen }),
      ...(values['tcp-host'] === undefined ? {} : { tcpHost: values['tcp-host'] }),
      ...(tcpPorts === undefined ? {} : { tcpPorts }),
      ...(publicHttpPort === undefined ? {} : { publicHttpPort }),
      ...(publicHttpsPort === undefined ? {} : { publicHttpsPort }),
      limits,
    });
  } catch (error) {
    for (const [name, handler] of subscriptions) unsubscribe(name, handler);
    report(problem(error));
    return 1;
  }
  if (acme) {
    report(
      `certificates by ACME (HTTP-01) from ${acmeDirectory ?? LETS_ENCRYPT_DIRECTORY_URL}, kept in ${dataDir}/acme`,
    );
  }
  let admin: AdminServer | null = null;
  if (adminListen !== undefined) {
    try {
      admin = await AdminServer.start({
        relay,
        listen: adminListen,
        ...(adminToken === undefined ? {} : { token: adminToken }),
        ...(values['admin-host'] === undefined ? {} : { allowedHosts: values['admin-host'] }),
      });
      const where = formatAddress(admin.address());
      report(
        admin.authenticated
          ? `admin on http://${where}/ (bearer token from ${adminTokenFile ?? ''})`
          : `admin on http://${where}/ (no --admin-token-file: loopback only, no authentication)`,
      );
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (values['admin-listen'] !== undefined) {
        // Asked for explicitly: not having it is an error.
        await relay.close({ drainTimeoutMs: 0 });
        for (const [name, handler] of subscriptions) unsubscribe(name, handler);
        report(message);
        return 1;
      }
      // The default port may be taken (another relay on this host): the tunnels matter more.
      report(`${message}; the dashboard and /metrics are off (see --admin-listen)`);
    }
  }
  report(
    `serving *.${relay.domain}: agents on ${formatAddress(relay.address('agent'))}, ` +
      `https on ${formatAddress(relay.address('https'))}, http on ${formatAddress(relay.address('http'))}`,
  );
  if (Object.keys(limits).length > 0) report(`limits changed: ${describeLimits(limits)}`);
  process.stdout.write(
    `${JSON.stringify({
      agent: relay.address('agent')?.port ?? null,
      https: relay.address('https')?.port ?? null,
      http: relay.address('http')?.port ?? null,
      admin: admin?.address().port ?? null,
    })}\n`,
  );

  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        report(`${signal} again: closing at once`);
        void relay.close({ drainTimeoutMs: 0 });
        return;
      }
      stopping = true;
      report(`${signal}: draining for up to ${drainSeconds} s`);
      void relay.close({ drainTimeoutMs: drainSeconds * 1000 }).then(() => {
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        resolve();
      });
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  await admin?.close();
  for (const [name, handler] of subscriptions) unsubscribe(name, handler);
  report('closed');
  return 0;
}

// ---- token, account and domain commands (the relay's store: ../relay/store/) --------------

/** The options every store command takes. */
const STORE_OPTIONS = {
  'data-dir': { type: 'string' },
  database: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** What a store subcommand (token, account, domain) accepts besides its own options. */
interface SubcommandConfig {
  readonly options: typeof STORE_OPTIONS & ParseArgsConfig['options'];
  readonly allowPositionals: boolean;
}

/**
 * Parses a store subcommand's arguments strictly and answers --help. Returns
 * the parsed arguments, or the exit code to return at once.
 */
function parseSubcommand<T extends SubcommandConfig>(
  args: string[],
  config: T,
): ReturnType<typeof parseArgs<T & { args: string[]; strict: true }>> | number {
  let parsed;
  try {
    parsed = parseArgs({ ...config, args, strict: true });
  } catch (error) {
    return usageError(error instanceof Error ? error.message : String(error));
  }
  const common: { help?: unknown } = parsed.values;
  if (common.help === true) {
    process.stdout.write(RELAY_USAGE);
    return 0;
  }
  return parsed;
}

function isoDate(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}

/** An error as the relay command reports it: the message, and the stable code when it has one. */
function problem(error: unknown): string {
  if (error instanceof RelayError) return `${error.message} (${error.code})`;
  return error instanceof Error ? error.message : String(error);
}

/**
 * Opens the store for a command and runs `work` with it, closing it after.
 * Bad arguments (RangeError/TypeError/RelayConfigError) exit 2, store and
 * domain failures exit 1.
 */
async function withStore(
  values: { 'data-dir'?: string | undefined; database?: string | undefined },
  work: (store: RelayStore, dataDir: string) => Promise<number>,
): Promise<number> {
  const dataDir = values['data-dir'];
  if (dataDir === undefined) return usageError('--data-dir is required');
  const database = databaseFromEnvironment(values.database);
  try {
    checkDatabaseUrl(database);
  } catch (error) {
    return usageError(error instanceof Error ? error.message : String(error));
  }
  let store: RelayStore;
  try {
    store = await openRelayStore({ dataDir, database });
  } catch (error) {
    report(problem(error));
    return 1;
  }
  try {
    return await work(store, dataDir);
  } catch (error) {
    if (error instanceof RangeError || error instanceof RelayConfigError) {
      return usageError(error.message);
    }
    report(problem(error));
    return 1;
  } finally {
    await store.close();
  }
}

function describeTcp(tcp: TokenRecord['tcp']): string {
  if (tcp === false) return 'no tcp';
  if (tcp === true) return 'tcp';
  return `tcp ${tcp.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',')}`;
}

async function tokenCommand(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  const parsed = parseSubcommand(rest, {
    allowPositionals: action === 'revoke',
    options: {
      ...STORE_OPTIONS,
      name: { type: 'string' },
      account: { type: 'string' },
      subdomain: { type: 'string', multiple: true },
      tcp: { type: 'boolean' },
      'tcp-ports': { type: 'string', multiple: true },
      expires: { type: 'string' },
    },
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  switch (action) {
    case 'create': {
      if (values.name === undefined) return usageError('token create: --name is required');
      const account = values.account ?? DEFAULT_ACCOUNT;
      if (!isValidAccountName(account)) {
        return usageError(`--account: '${account}' is not an account name`);
      }
      const subdomains = (values.subdomain ?? []).map((pattern) => pattern.toLowerCase());
      const badSubdomain = subdomains.find((pattern) => !isValidSubdomainPattern(pattern));
      if (badSubdomain !== undefined) {
        return usageError(`--subdomain: '${badSubdomain}' is not ${SUBDOMAIN_PATTERN_RULE}`);
      }
      if (!isValidTokenName(values.name)) {
        return usageError(`--name: ${JSON.stringify(values.name)} is not ${TOKEN_NAME_RULE}`);
      }
      let ranges: PortRange[];
      let expiresAt: number | null;
      try {
        ranges = (values['tcp-ports'] ?? []).map(parsePortRange);
        expiresAt =
          values.expires === undefined
            ? null
            : Math.floor(Date.now() / 1000) + parseDuration(values.expires);
      } catch (error) {
        return usageError(error instanceof Error ? error.message : String(error));
      }
      return withStore(values, async (store, dataDir) => {
        // Without --account the token is "default"'s, made on demand; a named one must exist.
        if (values.account === undefined) await store.ensureAccount(DEFAULT_ACCOUNT);
        const secret = await loadOrCreateSecret(dataDir);
        let created;
        try {
          created = createToken(secret, {
            name: values.name ?? '',
            account,
            subdomains,
            tcp: ranges.length > 0 ? ranges : values.tcp === true,
            expiresAt,
          });
        } finally {
          secret.fill(0);
        }
        await store.addToken(created.grant);
        process.stdout.write(`${created.token}\n`);
        report(
          `token '${created.grant.name}' created for account '${account}' (id ${created.grant.id})`,
        );
        return 0;
      });
    }
    case 'revoke': {
      const target = positionals[0];
      if (target === undefined || positionals.length !== 1) {
        return usageError('token revoke: give one token ID or NAME');
      }
      return withStore(values, async (store) => {
        const revoked = await store.revokeToken(target);
        if (revoked.length === 0) {
          report(`no valid token with id or name '${target}'`);
          return 1;
        }
        for (const record of revoked) report(`revoked token '${record.name}' (id ${record.id})`);
        return 0;
      });
    }
    case 'list':
      return withStore(values, async (store) => {
        for (const record of await store.listTokens(values.account)) {
          const expires =
            record.expiresAt === null ? 'never expires' : `expires ${isoDate(record.expiresAt)}`;
          const state = record.revokedAt === null ? '' : ' REVOKED';
          process.stdout.write(
            `${record.id}  ${record.name}  [${record.subdomains.join(', ') || 'random names'}]  ${describeTcp(record.tcp)}  ${expires}  account ${record.account}${state}\n`,
          );
        }
        return 0;
      });
    default:
      return usageError(`unknown token action '${action ?? ''}' (create, revoke, list)`);
  }
}

async function accountCommand(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  const parsed = parseSubcommand(rest, {
    allowPositionals: action === 'create' || action === 'remove',
    options: STORE_OPTIONS,
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const name = positionals[0];
  if (
    (action === 'create' || action === 'remove') &&
    (name === undefined || positionals.length !== 1)
  ) {
    return usageError(`account ${action}: give one account NAME`);
  }
  if (name !== undefined && !isValidAccountName(name)) {
    return usageError(
      `'${name}' is not an account name (1-64 of a-z, 0-9, '.', '_', '-', starting with a letter or digit)`,
    );
  }
  switch (action) {
    case 'create':
      return withStore(values, async (store) => {
        await store.createAccount(name ?? '');
        report(`account '${name ?? ''}' created`);
        return 0;
      });
    case 'remove':
      return withStore(values, async (store) => {
        const removal = await store.removeAccount(name ?? '');
        report(
          `account '${removal.account.name}' removed: ${removal.revokedTokens.length} token(s) revoked, ` +
            `${removal.removedDomains.length} domain(s) dropped`,
        );
        return 0;
      });
    case 'list':
      return withStore(values, async (store) => {
        const tokens = await store.listTokens();
        const domains = await store.listDomains();
        for (const account of await store.listAccounts()) {
          const own = tokens.filter((record) => record.account === account.name);
          const valid = own.filter((record) => record.revokedAt === null).length;
          const hosts = domains.filter((domain) => domain.account === account.name).length;
          process.stdout.write(
            `${account.name}  created ${isoDate(account.createdAt)}  ${valid} valid token(s) of ${own.length}  ${hosts} domain(s)\n`,
          );
        }
        return 0;
      });
    default:
      return usageError(`unknown account action '${action ?? ''}' (create, list, remove)`);
  }
}

async function domainCommand(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  const parsed = parseSubcommand(rest, {
    allowPositionals: action === 'add' || action === 'verify' || action === 'remove',
    options: {
      ...STORE_OPTIONS,
      account: { type: 'string' },
      domain: { type: 'string' },
      resolver: { type: 'string', multiple: true },
    },
  });
  if (typeof parsed === 'number') return parsed;
  const { values, positionals } = parsed;
  const host = positionals[0];
  if (action !== 'list' && (host === undefined || positionals.length !== 1)) {
    return usageError(`domain ${action ?? ''}: give one HOST`);
  }
  switch (action) {
    case 'add': {
      const account = values.account;
      if (account === undefined) return usageError('domain add: --account NAME is required');
      return withStore(values, async (store, dataDir) => {
        const domain = await store.addDomain(account, host ?? '');
        const target = values.domain === undefined ? "<the relay's --domain>" : `${values.domain}.`;
        process.stdout.write(
          `To use ${domain.host} for account '${domain.account}', create these DNS records:\n` +
            `  ${challengeRecordName(domain.host)}.  TXT    "${domain.challenge}"\n` +
            `  ${domain.host}.  CNAME  ${target}   (or A/AAAA records with the relay's addresses)\n` +
            `then run: warren relay domain verify --data-dir ${dataDir} ${domain.host}\n`,
        );
        report(
          domain.verifiedAt === null
            ? `domain ${domain.host} added for account '${domain.account}' (not verified yet)`
            : `domain ${domain.host} of account '${domain.account}' is verified already`,
        );
        return 0;
      });
    }
    case 'verify': {
      let resolvers: string[];
      try {
        resolvers = (values.resolver ?? []).map(parseResolverAddress);
      } catch (error) {
        return usageError(error instanceof Error ? error.message : String(error));
      }
      return withStore(values, async (store) => {
        const domain = await verifyDomain(store, host ?? '', { resolvers });
        report(`domain ${domain.host} verified for account '${domain.account}'`);
        return 0;
      });
    }
    case 'list':
      return withStore(values, async (store) => {
        for (const domain of await store.listDomains(values.account)) {
          const state =
            domain.verifiedAt === null
              ? `NOT VERIFIED (TXT ${challengeRecordName(domain.host)} "${domain.challenge}")`
              : `verified ${isoDate(domain.verifiedAt)}`;
          process.stdout.write(`${domain.host}  account ${domain.account}  ${state}\n`);
        }
        return 0;
      });
    case 'remove':
      return withStore(values, async (store) => {
        const domain = await store.removeDomain(host ?? '');
        report(`domain ${domain.host} removed from account '${domain.account}'`);
        return 0;
      });
    default:
      return usageError(`unknown domain action '${action ?? ''}' (add, verify, list, remove)`);
  }
}
