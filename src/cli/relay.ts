/**
 * `warren relay …`: argument parsing and printing only; the relay is
 * ../relay/relay.ts. Events come from diagnostics_channel (library code never
 * prints).
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { AdminServer } from '../relay/dashboard/index.js';
import { ensureDevCertificate } from '../relay/dev-ca.js';
import type {
  AgentConnectedEvent,
  AgentDisconnectedEvent,
  AgentRejectedEvent,
  PublicRefusalEvent,
  TunnelEvent,
} from '../relay/diagnostics.js';
import { relayDiagnostics } from '../relay/diagnostics.js';
import { RelayConfigError, RelayError } from '../relay/errors.js';
import { Relay } from '../relay/relay.js';
import type { ListenAddress } from '../relay/relay.js';
import { createToken, parseDuration, parsePortRange } from '../relay/token.js';
import type { PortRange } from '../relay/token.js';
import { JsonFileTokenStore, loadOrCreateSecret } from '../relay/token-store.js';

export const RELAY_USAGE = `Usage: warren relay --domain DOMAIN --data-dir DIR [OPTIONS]
       warren relay token create --data-dir DIR --name NAME [--subdomain PATTERN]...
                                 [--tcp] [--tcp-ports FIRST-LAST]... [--expires DURATION]
       warren relay token revoke --data-dir DIR ID|NAME
       warren relay token list   --data-dir DIR

Run the public side of an ngrok-style tunnel: agents ('warren expose') connect
over TLS, public HTTP(S) for NAME.DOMAIN and TCP ports are forwarded to them.

Options:
      --domain DOMAIN          tunnels are NAME.DOMAIN (point *.DOMAIN and DOMAIN at this host)
      --data-dir DIR           token secret (created 0600), token list, dev CA
      --agent-listen ADDR      agents' TLS port (default :443)
      --https-listen ADDR      public HTTPS (default :443, shared with agents by ALPN); 'off' to disable
      --http-listen ADDR       public HTTP (default :80); 'off' to disable
      --tls-cert FILE          PEM certificate for DOMAIN and *.DOMAIN (with its chain)
      --tls-key FILE           its PEM key
      --dev-ca                 make a local CA and a wildcard certificate in DIR/dev-ca
                               (needs the openssl command); agents then need --ca DIR/dev-ca/ca.crt
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
  -v, --verbose                also print refused public requests
  -h, --help                   show this help
ADDR is [HOST]:PORT, e.g. :443, 0.0.0.0:8443, [::1]:8443. Once listening, the relay
prints the bound ports as one JSON line on stdout: {"agent":…,"https":…,"http":…,"admin":…}.
Events (agents, tunnels) are reported on stderr.

Token options:
      --name NAME              a label for people ("laptop")
      --subdomain PATTERN      a subdomain the token may claim: a name, '*' (any) or a
                               prefix like 'dev-*'; repeatable. None: random names only.
      --tcp                    may open TCP tunnels (any port of the relay's range)
      --tcp-ports FIRST-LAST   may open TCP tunnels on these ports only; repeatable
      --expires DURATION       e.g. 12h, 30d, 2w (default: never)
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
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        domain: { type: 'string' },
        'data-dir': { type: 'string' },
        'agent-listen': { type: 'string' },
        'https-listen': { type: 'string' },
        'http-listen': { type: 'string' },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'dev-ca': { type: 'boolean' },
        'tcp-host': { type: 'string' },
        'tcp-ports': { type: 'string' },
        'public-http-port': { type: 'string' },
        'public-https-port': { type: 'string' },
        'drain-timeout': { type: 'string' },
        'admin-listen': { type: 'string' },
        'admin-token-file': { type: 'string' },
        'admin-host': { type: 'string', multiple: true },
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
  const devCa = values['dev-ca'] === true;
  const certFile = values['tls-cert'];
  const keyFile = values['tls-key'];
  if (devCa && (certFile !== undefined || keyFile !== undefined)) {
    return usageError('give --dev-ca or --tls-cert/--tls-key, not both');
  }
  if (!devCa && (certFile === undefined || keyFile === undefined)) {
    return usageError('--tls-cert and --tls-key are required (or --dev-ca for a local test CA)');
  }
  let agentListen: ListenAddress;
  let httpListen: ListenAddress | undefined;
  let httpsListen: ListenAddress | undefined;
  let tcpPorts: PortRange | undefined;
  let publicHttpPort: number | undefined;
  let publicHttpsPort: number | undefined;
  let adminListen: ListenAddress | undefined;
  const drainSeconds = Number(values['drain-timeout'] ?? '10');
  try {
    const optional = (text: string | undefined, fallback: string): ListenAddress | undefined => {
      const chosen = text ?? fallback;
      return chosen === 'off' ? undefined : parseListenAddress(chosen);
    };
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
      adminToken = (await readFile(adminTokenFile, 'utf8')).trim();
    } catch (error) {
      return usageError(
        `--admin-token-file: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
  }

  let relay: Relay;
  try {
    let tls: { cert: Buffer; key: Buffer };
    if (devCa) {
      const dev = await ensureDevCertificate(dataDir, domain);
      tls = { cert: dev.cert, key: dev.key };
      report(`dev CA: ${dev.caCertPath} (agents: --ca ${dev.caCertPath})`);
    } else {
      tls = {
        cert: await readFile(certFile ?? ''),
        key: await readFile(keyFile ?? ''),
      };
    }
    relay = await Relay.start({
      domain,
      dataDir,
      tls,
      agentListen,
      ...(httpListen === undefined ? {} : { httpListen }),
      ...(httpsListen === undefined ? {} : { httpsListen }),
      ...(values['tcp-host'] === undefined ? {} : { tcpHost: values['tcp-host'] }),
      ...(tcpPorts === undefined ? {} : { tcpPorts }),
      ...(publicHttpPort === undefined ? {} : { publicHttpPort }),
      ...(publicHttpsPort === undefined ? {} : { publicHttpsPort }),
    });
  } catch (error) {
    for (const [name, handler] of subscriptions) unsubscribe(name, handler);
    report(error instanceof RelayError ? `${error.message} (${error.code})` : String(error));
    return 1;
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

async function tokenCommand(argv: string[]): Promise<number> {
  const [action, ...rest] = argv;
  let parsed;
  try {
    parsed = parseArgs({
      args: rest,
      strict: true,
      allowPositionals: action === 'revoke',
      options: {
        'data-dir': { type: 'string' },
        name: { type: 'string' },
        subdomain: { type: 'string', multiple: true },
        tcp: { type: 'boolean' },
        'tcp-ports': { type: 'string', multiple: true },
        expires: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    return usageError(error instanceof Error ? error.message : String(error));
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    process.stdout.write(RELAY_USAGE);
    return 0;
  }
  const dataDir = values['data-dir'];
  if (dataDir === undefined) return usageError('--data-dir is required');
  try {
    switch (action) {
      case 'create': {
        if (values.name === undefined) return usageError('token create: --name is required');
        const ranges = (values['tcp-ports'] ?? []).map(parsePortRange);
        const expiresAt =
          values.expires === undefined
            ? null
            : Math.floor(Date.now() / 1000) + parseDuration(values.expires);
        const secret = await loadOrCreateSecret(dataDir);
        let created;
        try {
          created = createToken(secret, {
            name: values.name,
            subdomains: (values.subdomain ?? []).map((pattern) => pattern.toLowerCase()),
            tcp: ranges.length > 0 ? ranges : values.tcp === true,
            expiresAt,
          });
        } catch (error) {
          return usageError(error instanceof Error ? error.message : String(error));
        } finally {
          secret.fill(0);
        }
        const store = await JsonFileTokenStore.open(dataDir);
        await store.add(created.grant);
        await store.close();
        process.stdout.write(`${created.token}\n`);
        report(`token '${created.grant.name}' created (id ${created.grant.id})`);
        return 0;
      }
      case 'revoke': {
        const target = positionals[0];
        if (target === undefined || positionals.length !== 1) {
          return usageError('token revoke: give one token ID or NAME');
        }
        const store = await JsonFileTokenStore.open(dataDir);
        const revoked = await store.revoke(target);
        await store.close();
        if (revoked.length === 0) {
          report(`no valid token with id or name '${target}'`);
          return 1;
        }
        for (const record of revoked) report(`revoked token '${record.name}' (id ${record.id})`);
        return 0;
      }
      case 'list': {
        const store = await JsonFileTokenStore.open(dataDir);
        const records = await store.list();
        await store.close();
        for (const record of records) {
          const tcp =
            record.tcp === false
              ? 'no tcp'
              : record.tcp === true
                ? 'tcp'
                : `tcp ${record.tcp.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',')}`;
          const expires =
            record.expiresAt === null
              ? 'never expires'
              : `expires ${new Date(record.expiresAt * 1000).toISOString()}`;
          const state = record.revokedAt === null ? '' : ' REVOKED';
          process.stdout.write(
            `${record.id}  ${record.name}  [${record.subdomains.join(', ') || 'random names'}]  ${tcp}  ${expires}${state}\n`,
          );
        }
        return 0;
      }
      default:
        return usageError(`unknown token action '${action ?? ''}' (create, revoke, list)`);
    }
  } catch (error) {
    report(error instanceof RelayError ? `${error.message} (${error.code})` : String(error));
    return 1;
  }
}
