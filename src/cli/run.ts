/**
 * `warren run [OPTIONS] -- COMMAND [ARGS...]`: argument parsing only; the work is
 * in ../run/.
 */
import { parseArgs } from 'node:util';
import { ConfigError } from '../config/errors.js';
import { RunError } from '../run/errors.js';
import { tunnelSettings, WG_FLAG_ENV, type WgFlags } from '../run/options.js';
import { runThroughTunnel } from '../run/run.js';

export const RUN_USAGE = `Usage: warren run [OPTIONS] -- COMMAND [ARGS...]

Run COMMAND in a throw-away network namespace whose only way out is a WireGuard
tunnel. No root needed: the sandbox is a user + network + mount + pid namespace;
COMMAND runs with your own uid, environment, working directory and terminal.
Inside there is only lo and the tunnel: nothing leaks, even while the tunnel is
down. COMMAND's exit status becomes warren's.

Tunnel from a wg-quick config:
  -c, --config FILE              [Interface] PrivateKey, Address, DNS, MTU;
                                 [Peer] PublicKey, PresharedKey, Endpoint,
                                 AllowedIPs, PersistentKeepalive

Or from flags (each also read from the environment variable shown):
  --wg-endpoint HOST:PORT        ${WG_FLAG_ENV.endpoint}
  --wg-public-key KEY            ${WG_FLAG_ENV.publicKey}       the server's public key
  --wg-private-key-file FILE     ${WG_FLAG_ENV.privateKeyFile}
  --wg-preshared-key-file FILE   ${WG_FLAG_ENV.presharedKeyFile}
  --wg-address CIDR[,CIDR]       ${WG_FLAG_ENV.address}          e.g. 10.64.0.2/32,fc00::2/128
  --wg-allowed-ips CIDR[,CIDR]   ${WG_FLAG_ENV.allowedIps}      default 0.0.0.0/0, ::/0
  --wg-keepalive SECONDS         ${WG_FLAG_ENV.keepalive}        persistent keepalive, default off
Flags override the environment, which overrides the config file.

Options:
      --dns IP[,IP]              nameservers inside (default: the config's DNS)  ${WG_FLAG_ENV.dns}
      --mtu N                    tunnel MTU (default: the config's, else 1420)   ${WG_FLAG_ENV.mtu}
      --name IFNAME              tunnel interface name inside (default wg0)
      --keep-alive               keep the sandbox until its last process exits
                                 (for programs that daemonize)
      --handshake-warning SECS   warn if no handshake after SECS (default 5)
  -v, --verbose                  report progress on stderr
  -h, --help                     show this help

Examples:
  warren run -c ~/mullvad-se.conf -- firefox
  warren run --wg-endpoint 198.51.100.1:51820 --wg-public-key KEY \\
             --wg-private-key-file ~/.config/warren/key --wg-address 10.64.0.2/32 -- curl https://example.org
`;

export async function runCommand(argv: string[]): Promise<number> {
  const separator = argv.indexOf('--');
  const own = separator < 0 ? argv : argv.slice(0, separator);
  const command = separator < 0 ? [] : argv.slice(separator + 1);
  let values;
  try {
    ({ values } = parseArgs({
      args: own,
      strict: true,
      allowPositionals: false,
      options: {
        config: { type: 'string', short: 'c' },
        'wg-endpoint': { type: 'string' },
        'wg-public-key': { type: 'string' },
        'wg-private-key-file': { type: 'string' },
        'wg-preshared-key-file': { type: 'string' },
        'wg-address': { type: 'string' },
        'wg-allowed-ips': { type: 'string' },
        'wg-keepalive': { type: 'string' },
        dns: { type: 'string' },
        mtu: { type: 'string' },
        name: { type: 'string' },
        'keep-alive': { type: 'boolean' },
        'handshake-warning': { type: 'string' },
        verbose: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (error) {
    return usageError(error instanceof Error ? error.message : String(error));
  }
  if (values.help === true) {
    process.stdout.write(RUN_USAGE);
    return 0;
  }
  if (command.length === 0) return usageError("missing COMMAND after '--'");
  const tunName = values.name ?? 'wg0';
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(tunName)) {
    return usageError(`--name: '${tunName}' is not an interface name (1-15 of A-Z a-z 0-9 _ . -)`);
  }
  const warning = values['handshake-warning'] ?? '5';
  if (!/^\d+(\.\d+)?$/.test(warning))
    return usageError(`--handshake-warning: '${warning}' is not a number`);

  const flags: WgFlags = {};
  const set = (key: keyof WgFlags, value: string | undefined): void => {
    if (value !== undefined) flags[key] = value;
  };
  set('endpoint', values['wg-endpoint']);
  set('publicKey', values['wg-public-key']);
  set('privateKeyFile', values['wg-private-key-file']);
  set('presharedKeyFile', values['wg-preshared-key-file']);
  set('address', values['wg-address']);
  set('allowedIps', values['wg-allowed-ips']);
  set('keepalive', values['wg-keepalive']);
  set('dns', values.dns);
  set('mtu', values.mtu);

  const report = (line: string): void => {
    process.stderr.write(`warren: ${line}\n`);
  };
  try {
    const settings = tunnelSettings(values.config, flags, process.env);
    const result = await runThroughTunnel({
      settings,
      command,
      cwd: process.cwd(),
      env: process.env,
      tunName,
      keepAlive: values['keep-alive'] === true,
      handshakeWarningMs: Number(warning) * 1000,
      report,
      verbose: values.verbose === true,
    });
    if (result.signal !== null) {
      // Die of the same signal, so callers see what the program saw.
      process.kill(process.pid, result.signal);
      return 128;
    }
    return result.code ?? 1;
  } catch (error) {
    if (error instanceof ConfigError || error instanceof RunError) {
      report(error.message);
      return error instanceof RunError && error.code === 'ERR_RUN_USAGE' ? 2 : 1;
    }
    if (error instanceof Error && typeof (error as { code?: unknown }).code === 'string') {
      report(error.message);
      return 1;
    }
    throw error;
  }
}

function usageError(message: string): number {
  process.stderr.write(`warren run: ${message}\nTry 'warren run --help'.\n`);
  return 2;
}
