/**
 * `warren expose …`: argument parsing and printing only; the agent is
 * ../relay/agent.ts.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { parseArgs } from 'node:util';
import { Agent } from '../relay/agent.js';
import type { TunnelSpec, TunnelStatus } from '../relay/agent.js';
import { checkAllowedIps, checkCredentials } from '../relay/access.js';
import { parseAgentConfig, parseHostPort } from '../relay/agent-config.js';
import type { AgentConfigFile } from '../relay/agent-config.js';
import { agentDiagnostics } from '../relay/diagnostics.js';
import type { AgentStreamErrorEvent } from '../relay/diagnostics.js';
import { RelayCertificateError, RelayConfigError, RelayError } from '../relay/errors.js';
import { TrafficRecorder } from '../relay/inspector/recorder.js';
import { DEFAULT_INSPECTOR_PORT, InspectorServer } from '../relay/inspector/server.js';
import { isValidHostName, isValidSubdomain } from '../relay/token.js';
import { readInput, readInputBytes } from './read-input.js';

export const TOKEN_ENV = 'WARREN_RELAY_TOKEN';

/** With the default address, ports 4041…4049 are tried when 4040 is taken. */
const INSPECTOR_FALLBACK_PORTS = 9;

export const EXPOSE_USAGE = `Usage: warren expose http PORT --relay HOST[:PORT] [OPTIONS]
       warren expose tcp PORT  --relay HOST[:PORT] [OPTIONS]
       warren expose --config FILE

Make a local port public through a warren relay: http PORT becomes
https://NAME.DOMAIN, tcp PORT becomes DOMAIN:PUBLIC_PORT. The agent keeps the
connection up, reconnecting with backoff, and keeps its URLs across relay restarts.

Options:
      --relay HOST[:PORT]      the relay (agent port, default 443)
      --token TOKEN            the token from 'warren relay token create'
      --token-file FILE        read the token from FILE (or set ${TOKEN_ENV})
      --subdomain NAME         http: ask for NAME.DOMAIN (default: what the token gives)
      --hostname HOST          http: serve the custom domain HOST (e.g. app.example.org)
                               instead; it must be verified for the token's account
                               ('warren relay domain add/verify' on the relay)
      --remote-port N          tcp: ask for this public port
      --local-host HOST        where the local service listens (default 127.0.0.1)
      --basic-auth USER:PASS   http: every public request needs these credentials
                               (HTTP basic auth; repeatable). The relay gets only a
                               salted hash and strips Authorization before forwarding
      --basic-auth-file FILE   http: credentials from FILE, one USER:PASS a line
                               (blank lines and lines starting with # are skipped)
      --allow-ip CIDR          only clients whose real address is in CIDR (v4 or v6,
                               repeatable; http and tcp); others get 403 / are closed
      --ca FILE                trust this CA for the relay's certificate (private/dev CA)
      --server-name NAME       the name the relay's certificate carries (default: HOST)
  -c, --config FILE            several tunnels from a JSON file:
                               {"relay": "HOST[:PORT]", "tokenFile": "…", "ca": "…",
                                "tunnels": [{"http": 3000, "subdomain": "app",
                                             "basicAuth": ["USER:PASS"]},
                                            {"http": 8080, "hostname": "app.example.org"},
                                            {"tcp": 5432, "allowIps": ["203.0.113.0/24"]}]}
      --inspect ADDR           the local inspector's address (default 127.0.0.1:${DEFAULT_INSPECTOR_PORT},
                               or the next free port up to ${DEFAULT_INSPECTOR_PORT + INSPECTOR_FALLBACK_PORTS}): browse and replay
                               the HTTP requests through the tunnels
      --no-inspect             no inspector
  -v, --verbose                report every failed local connection (without it,
                               the first one of each tunnel)
  -h, --help                   show this help
`;

function report(line: string): void {
  process.stderr.write(`warren expose: ${line}\n`);
}

function usageError(message: string): number {
  process.stderr.write(`warren expose: ${message}\n\nRun 'warren expose --help' for usage.\n`);
  return 2;
}

function parsePort(text: string, what: string): number {
  const port = Number(text);
  if (!/^\d{1,5}$/.test(text) || port < 1 || port > 65535) {
    throw new RelayConfigError(`${what}: '${text}' is not a port (1-65535)`);
  }
  return port;
}

/** What a user can do about a refused relay certificate, said once. */
function certificateHint(error: RelayCertificateError): string {
  switch (error.reason) {
    case 'untrusted':
      return "hint: a relay with a private or dev CA needs that CA: --ca FILE (for --dev-ca, the relay's DATA_DIR/dev-ca/ca.crt)";
    case 'name':
      return "hint: name the relay as its certificate does: --server-name NAME (the relay's --domain), or --relay with that name";
    case 'expired':
      return "hint: the relay's certificate is expired or not yet valid: check the relay's certificate, and this machine's clock";
  }
}

/** A --basic-auth-file's credentials: one USER:PASS a line; blank and # lines skipped. */
function credentialLines(text: string): string[] {
  return text.split(/\r?\n/).filter((line) => line.trim().length > 0 && !line.startsWith('#'));
}

function describeTarget(spec: TunnelSpec): string {
  const host = spec.localHost ?? '127.0.0.1';
  return spec.proto === 'http' ? `http://${host}:${spec.localPort}` : `${host}:${spec.localPort}`;
}

export async function exposeCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: true,
      options: {
        relay: { type: 'string' },
        token: { type: 'string' },
        'token-file': { type: 'string' },
        subdomain: { type: 'string' },
        hostname: { type: 'string' },
        'remote-port': { type: 'string' },
        'local-host': { type: 'string' },
        'basic-auth': { type: 'string', multiple: true },
        'basic-auth-file': { type: 'string' },
        'allow-ip': { type: 'string', multiple: true },
        ca: { type: 'string' },
        'server-name': { type: 'string' },
        config: { type: 'string', short: 'c' },
        inspect: { type: 'string' },
        'no-inspect': { type: 'boolean' },
        verbose: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    return usageError(error instanceof Error ? error.message : String(error));
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    process.stdout.write(EXPOSE_USAGE);
    return 0;
  }

  let config: AgentConfigFile = { tunnels: [] };
  let tunnels: TunnelSpec[];
  let relayHost: string;
  let relayPort: number;
  let token: string;
  let ca: Buffer | undefined;
  let inspectAddress: { host: string; port: number } | null = null;
  try {
    if (values.inspect !== undefined && values['no-inspect'] === true) {
      return usageError('--inspect and --no-inspect contradict each other');
    }
    if (values.inspect !== undefined) {
      inspectAddress = parseHostPort(values.inspect, DEFAULT_INSPECTOR_PORT);
    }
    if (values.config !== undefined) {
      if (positionals.length > 0) {
        return usageError('give tunnels either on the command line or in --config, not both');
      }
      if (
        values['basic-auth'] !== undefined ||
        values['basic-auth-file'] !== undefined ||
        values['allow-ip'] !== undefined
      ) {
        return usageError('with --config, give basicAuth and allowIps per tunnel in the file');
      }
      config = parseAgentConfig(await readInput(values.config, '--config'));
      tunnels = [...config.tunnels];
    } else {
      const [kind, portText, ...extra] = positionals;
      if (kind !== 'http' && kind !== 'tcp') {
        return usageError(`say what to expose: 'http PORT' or 'tcp PORT'`);
      }
      if (extra.length > 0) return usageError(`unexpected argument '${extra[0] ?? ''}'`);
      if (portText === undefined) {
        return usageError(`say which local port to expose: '${kind} PORT'`);
      }
      const localPort = parsePort(portText, 'the local port');
      const localHost = values['local-host'];
      const allowIps = values['allow-ip'];
      if (allowIps !== undefined) checkAllowedIps(allowIps, '--allow-ip');
      const host = {
        ...(localHost === undefined ? {} : { localHost }),
        ...(allowIps === undefined ? {} : { allowIps }),
      };
      if (kind === 'http') {
        if (values['remote-port'] !== undefined) return usageError('--remote-port is for tcp');
        const basicAuth = [...(values['basic-auth'] ?? [])];
        const authFile = values['basic-auth-file'];
        if (authFile !== undefined) {
          basicAuth.push(...credentialLines(await readInput(authFile, '--basic-auth-file')));
          if (basicAuth.length === 0) return usageError(`--basic-auth-file: ${authFile} is empty`);
        }
        if (basicAuth.length > 0) checkCredentials(basicAuth, '--basic-auth');
        const subdomain = values.subdomain?.toLowerCase();
        if (subdomain !== undefined && !isValidSubdomain(subdomain)) {
          return usageError(`--subdomain: '${subdomain}' is not a DNS label`);
        }
        let hostname = values.hostname?.toLowerCase();
        if (hostname?.endsWith('.') === true) hostname = hostname.slice(0, -1);
        if (hostname !== undefined && !isValidHostName(hostname)) {
          return usageError(
            `--hostname: '${values.hostname ?? ''}' is not a host name (like app.example.org)`,
          );
        }
        if (hostname !== undefined && subdomain !== undefined) {
          return usageError('give --subdomain or --hostname, not both');
        }
        tunnels = [
          {
            proto: 'http',
            localPort,
            ...host,
            ...(subdomain === undefined ? {} : { subdomain }),
            ...(hostname === undefined ? {} : { hostname }),
            ...(basicAuth.length === 0 ? {} : { basicAuth }),
          },
        ];
      } else {
        if (values.subdomain !== undefined) return usageError('--subdomain is for http');
        if (values.hostname !== undefined) return usageError('--hostname is for http');
        if (values['basic-auth'] !== undefined || values['basic-auth-file'] !== undefined) {
          return usageError('--basic-auth is for http');
        }
        const remote = values['remote-port'];
        tunnels = [
          {
            proto: 'tcp',
            localPort,
            ...host,
            ...(remote === undefined ? {} : { remotePort: parsePort(remote, '--remote-port') }),
          },
        ];
      }
    }
    const relayText = values.relay ?? config.relay;
    if (relayText === undefined) return usageError('--relay HOST[:PORT] is required');
    ({ host: relayHost, port: relayPort } = parseHostPort(relayText, 443));

    const tokenFile = values['token-file'] ?? config.tokenFile;
    const tokenText =
      values.token ??
      (tokenFile === undefined ? undefined : await readInput(tokenFile, 'the token file')) ??
      config.token ??
      process.env[TOKEN_ENV];
    if (tokenText === undefined || tokenText.trim().length === 0) {
      return usageError(`a token is required: --token, --token-file or ${TOKEN_ENV}`);
    }
    token = tokenText.trim();
    const caFile = values.ca ?? config.ca;
    if (caFile !== undefined) ca = await readInputBytes(caFile, 'the CA file');
  } catch (error) {
    if (error instanceof RelayConfigError) return usageError(error.message);
    report(error instanceof Error ? error.message : String(error));
    return 1;
  }

  // The inspector watches http tunnels only: TCP tunnels carry arbitrary protocols.
  let inspector: InspectorServer | null = null;
  if (values['no-inspect'] !== true && tunnels.some((spec) => spec.proto === 'http')) {
    try {
      inspector = await InspectorServer.start({
        recorder: new TrafficRecorder(),
        host: inspectAddress?.host ?? '127.0.0.1',
        port: inspectAddress?.port ?? DEFAULT_INSPECTOR_PORT,
        fallbackPorts: inspectAddress === null ? INSPECTOR_FALLBACK_PORTS : 0,
      });
      report(`inspector: ${inspector.url}`);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      if (inspectAddress !== null) {
        report(
          `cannot start the inspector on ${inspectAddress.host}:${String(inspectAddress.port)}: ${message} (--no-inspect runs without one)`,
        );
        return 1;
      }
      // The default address is a convenience: the tunnels matter more.
      report(`no inspector (${message}); continuing without it`);
    }
  }

  const serverName = values['server-name'] ?? config.serverName;
  const agent = new Agent({
    relayHost,
    relayPort,
    token,
    tunnels,
    ...(serverName === undefined ? {} : { servername: serverName }),
    ...(ca === undefined ? {} : { ca }),
    ...(inspector === null ? {} : { inspector: inspector.recorder }),
  });
  // Without -v, the first failure of each tunnel is still said (a service that is not
  // running is the commonest mistake), then only with -v.
  const tunnelsThatFailed = new Set<string>();
  const onStreamError = (message: unknown): void => {
    const event = message as AgentStreamErrorEvent;
    if (values.verbose !== true) {
      if (tunnelsThatFailed.has(event.tunnelId)) return;
      tunnelsThatFailed.add(event.tunnelId);
    }
    report(
      `a connection could not be served: ${event.error.message}` +
        (values.verbose === true ? '' : ' (-v reports every one)'),
    );
  };
  subscribe(agentDiagnostics.streamError.name, onStreamError);
  agent.on('connected', (info) => {
    report(
      `connected to ${relayHost}:${relayPort} (domain ${info.domain}, token '${info.tokenName}')`,
    );
  });
  agent.on('tunnel', (status: TunnelStatus) => {
    process.stdout.write(`${status.url ?? ''} -> ${describeTarget(status.spec)}\n`);
  });
  agent.on('tunnel-refused', (status: TunnelStatus, permanent: boolean) => {
    report(
      `${describeTarget(status.spec)}: refused by the relay: ${status.error?.message ?? 'unknown reason'}` +
        (permanent ? '' : ' (retrying)'),
    );
  });
  let certificateHintGiven = false;
  agent.on('disconnected', (error, retryInMs) => {
    report(
      `${error === undefined ? 'disconnected' : error.message}; reconnecting in ${(retryInMs / 1000).toFixed(1)} s`,
    );
    if (error instanceof RelayCertificateError && !certificateHintGiven) {
      certificateHintGiven = true;
      report(certificateHint(error));
    }
  });

  let stop: ((signal: NodeJS.Signals) => void) | undefined;
  const exitCode = await new Promise<number>((resolve) => {
    stop = (signal: NodeJS.Signals): void => {
      report(`${signal}: closing`);
      void agent.close().then(() => {
        resolve(0);
      });
    };
    agent.on('fatal', (error: RelayError) => {
      report(`giving up: ${error.message} (${error.code})`);
      resolve(1);
    });
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    agent.start();
  });
  if (stop !== undefined) {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
  }
  unsubscribe(agentDiagnostics.streamError.name, onStreamError);
  await agent.close();
  await inspector?.close();
  return exitCode;
}
