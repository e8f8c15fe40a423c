#!/usr/bin/env node
/**
 * warren: the command-line entry point. Each subcommand lives in its own module;
 * this file only dispatches.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { VERSION } from './version.js';

const USAGE = `Usage: warren COMMAND [ARGS...]

A rootless WireGuard toolkit for Linux.

Commands:
  run [OPTIONS] -- COMMAND
                     run COMMAND in a rootless sandbox whose only way out is a
                     WireGuard tunnel (wg-quick config or --wg-* flags)
  wg [-f] IFNAME     run a userspace WireGuard interface (same as warren-wg;
                     configure it with wg(8) / wg-quick(8))
  relay ...          run the public tunnel relay (agents connect over TLS);
                     'warren relay token create' issues agent tokens
  expose http|tcp PORT --relay HOST --token T
                     publish a local port through a relay
  help               show this help
  version            print the version

Run 'warren COMMAND --help' for a command's options.
`;

// Each command's module is loaded when it runs: `warren run` starts a sandbox
// per invocation and must not pay for the relay's ACME client and database
// drivers.
const [command, ...rest] = process.argv.slice(2);
switch (command) {
  case undefined:
  case 'help':
  case '-h':
  case '--help':
    process.stdout.write(USAGE);
    break;
  case 'version':
  case '--version':
    process.stdout.write(`warren v${VERSION}\n`);
    break;
  case 'run':
    process.exitCode = await (await import('./run.js')).runCommand(rest);
    break;
  case 'relay':
    process.exitCode = await (await import('./relay.js')).relayCommand(rest);
    break;
  case 'expose':
    process.exitCode = await (await import('./expose.js')).exposeCommand(rest);
    break;
  case 'wg': {
    const script = fileURLToPath(new URL('./warren-wg.js', import.meta.url));
    const result = spawnSync(process.execPath, [script, ...rest], { stdio: 'inherit' });
    process.exitCode = result.status ?? 1;
    break;
  }
  default:
    process.stderr.write(`warren: unknown command '${command}'\n\n${USAGE}`);
    process.exitCode = 2;
}
