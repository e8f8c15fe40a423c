#!/usr/bin/env node
/**
 * warren-wg: a userspace WireGuard interface, a drop-in for wireguard-go.
 *
 *   warren-wg [-f|--foreground] INTERFACE-NAME
 *
 * Creates the TUN interface and the UAPI socket /var/run/wireguard/NAME.sock, then
 * (unless in the foreground) detaches and returns once both are ready.
 */
import { spawn } from 'node:child_process';
import { closeSync, writeSync } from 'node:fs';
import { Device } from '../device/device.js';
import { Logger, parseLogLevel } from '../device/logger.js';
import { UapiServer } from '../device/uapi-server.js';
import { VERSION } from './version.js';

const SOCKET_DIRECTORY = '/var/run/wireguard';
const READY_FD_ENV = 'WARREN_WG_READY_FD';
const IFNAMSIZ = 16;

const USAGE = `Usage: warren-wg [-f/--foreground] INTERFACE-NAME

A userspace WireGuard interface, driven by wg(8) and wg-quick(8) like wireguard-go.
Creates the TUN interface INTERFACE-NAME and the control socket
${SOCKET_DIRECTORY}/INTERFACE-NAME.sock, then returns once both are ready; the
interface keeps running in the background until it is deleted (ip link del),
its socket is removed, or it gets SIGINT/SIGTERM.

Options:
  -f, --foreground   stay in the foreground (also WG_PROCESS_FOREGROUND=1)
  -h, --help         show this help
      --version      print the version

Environment:
  LOG_LEVEL          silent, error (default), verbose or debug
  WG_PROCESS_FOREGROUND=1   same as --foreground

With wg-quick:  WG_QUICK_USERSPACE_IMPLEMENTATION=warren-wg wg-quick up wg0
Requires CAP_NET_ADMIN (root) and /dev/net/tun.
`;

function fail(message: string, code = 1): never {
  process.stderr.write(`warren-wg: ${message}\n`);
  process.exit(code);
}

function parseArguments(argv: string[]): { foreground: boolean; name: string } {
  let foreground = process.env.WG_PROCESS_FOREGROUND === '1';
  let name: string | undefined;
  for (const arg of argv) {
    if (arg === '-f' || arg === '--foreground') foreground = true;
    else if (arg === '-h' || arg === '--help') {
      process.stdout.write(USAGE);
      process.exit(0);
    } else if (arg === '--version') {
      process.stdout.write(
        `warren-wg v${VERSION}\n\nUserspace WireGuard daemon for Linux (warren).\n`,
      );
      process.exit(0);
    } else if (arg.startsWith('-')) fail(`unknown option ${arg}\n\n${USAGE}`, 2);
    else if (name === undefined) name = arg;
    else fail(`unexpected argument ${arg}\n\n${USAGE}`, 2);
  }
  if (name === undefined) fail(`missing INTERFACE-NAME\n\n${USAGE}`, 2);
  if (
    name.length === 0 ||
    name.length >= IFNAMSIZ ||
    /[/\s:]/.test(name) ||
    name === '.' ||
    name === '..'
  ) {
    fail(
      `invalid interface name '${name}': 1 to ${IFNAMSIZ - 1} characters, no '/', ':' or spaces\n\n${USAGE}`,
      2,
    );
  }
  return { foreground, name };
}

/** Parent side of daemonizing: start the foreground child and wait until it says it is ready. */
function daemonize(argv: string[], logLevelSet: boolean): void {
  const child = spawn(process.execPath, [...process.execArgv, process.argv[1] ?? '', ...argv], {
    detached: true,
    stdio: [
      'ignore',
      logLevelSet ? 'inherit' : 'ignore',
      logLevelSet ? 'inherit' : 'ignore',
      'pipe',
    ],
    env: { ...process.env, WG_PROCESS_FOREGROUND: '1', [READY_FD_ENV]: '3' },
  });
  const pipe = child.stdio[3];
  if (pipe === null || pipe === undefined || !('on' in pipe))
    fail('could not create the readiness pipe');
  let said = '';
  pipe.on('data', (chunk: Buffer) => {
    said += chunk.toString('utf8');
  });
  pipe.on('end', () => {
    if (said.startsWith('ready')) {
      child.unref();
      process.exit(0);
    }
    fail(said.trim() === '' ? 'the daemon exited before it was ready' : said.trim());
  });
}

function tell(message: string): void {
  const fd = Number(process.env[READY_FD_ENV]);
  if (!Number.isInteger(fd) || fd < 3) return;
  try {
    writeSync(fd, message);
    closeSync(fd);
  } catch {
    // The parent is gone; nothing to tell.
  }
  process.env.WARREN_WG_READY_FD = '';
}

async function runForeground(name: string, logger: Logger): Promise<void> {
  logger.followEngine();
  let device: Device;
  try {
    device = Device.open({
      name,
      onFatal: (error) => {
        logger.verbose(`Interface closed: ${error.message}`);
        void shutdown(0);
      },
    });
  } catch (error) {
    const message = `Failed to create TUN device: ${describe(error)}`;
    logger.error(message);
    tell(`${message}\n`);
    process.exit(1);
  }
  logger.verbose('Device started');
  let server: UapiServer;
  try {
    server = await UapiServer.listen(`${SOCKET_DIRECTORY}/${device.name}.sock`, device);
  } catch (error) {
    const message = `Failed to listen on uapi socket: ${describe(error)}`;
    logger.error(message);
    tell(`${message}\n`);
    device.close();
    process.exit(1);
  }
  logger.verbose('UAPI listener started');

  let stopping = false;
  async function shutdown(code: number): Promise<void> {
    if (stopping) return;
    stopping = true;
    logger.verbose('Shutting down');
    device.close();
    await server.close();
    process.exit(code);
  }
  server.onSocketFileRemoved(() => {
    logger.verbose('UAPI socket removed');
    void shutdown(0);
  });
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));
  tell('ready\n');
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EPERM' || code === 'EACCES')
      return `${error.message} (needs CAP_NET_ADMIN and access to /dev/net/tun)`;
    return error.message;
  }
  return String(error);
}

const argv = process.argv.slice(2);
const { foreground, name } = parseArguments(argv);
const logger = new Logger(parseLogLevel(process.env.LOG_LEVEL), name);
if (foreground) {
  await runForeground(name, logger);
} else {
  daemonize(
    argv,
    process.env.LOG_LEVEL !== undefined && parseLogLevel(process.env.LOG_LEVEL) !== 'silent',
  );
}
