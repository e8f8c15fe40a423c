/**
 * The sandbox's init: pid 1 of the sandbox's pid namespace, root of its user
 * namespace, inside its fresh network, mount and UTS namespaces. Started by
 * Sandbox.start() as
 *
 *   unshare --user --map-root-user --net --mount --pid --uts --fork
 *           --kill-child --propagation private -- node init.js
 *
 * with its end of the control socketpair at fd 3 (protocol.ts). It:
 *  1. opens the TUN device and configures the namespace: lo up, the TUN's
 *     addresses, MTU and default routes (IPv4 always, IPv6 only with a v6
 *     address; without one IPv6 is switched off entirely). Nothing else exists
 *     in the namespace, so the TUN is the only way out: the killswitch holds
 *     by construction.
 *  2. mounts a /proc of its own pid namespace, covers the host's resolver
 *     sockets with empty tmpfs mounts and bind-mounts the generated
 *     resolv.conf, hosts and nsswitch.conf over the host's (nameservice.ts).
 *  3. sends the TUN fd to the parent (SCM_RIGHTS) and waits for "launch", so
 *     the engine reads the TUN before the program exists: the interface is
 *     always there when the program starts (no wirecage race).
 *  4. starts the program as the caller (native.spawnProgram: own process
 *     group owning the terminal, nested user namespace with the caller's
 *     uid/gid), reaps every process of the namespace, reports stops and the
 *     exit status, forwards signals.
 *  5. exits when the program exits (or, with keepAlive, when the last process
 *     of the namespace exited), and at once when the parent's end of the
 *     socket closes -- even after `kill -9` of the parent. As pid 1, its exit
 *     makes the kernel SIGKILL everything left in the namespace
 *     (pid_namespaces(7)), and the network namespace and TUN go with it.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, realpathSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { dirname } from 'node:path';
import * as native from '../native/index.js';
import type { SandboxErrorCode } from './errors.js';
import { finalTarget } from './nameservice.js';
import { CONTROL_FD, ControlChannel } from './protocol.js';
import type { ConfigMessage, ExitMessage, ParentMessage, Received } from './protocol.js';

const channel = new ControlChannel<ParentMessage>(CONTROL_FD, 'parent');

let config: ConfigMessage | null = null;
let programPid: number | null = null;
let programStatus: Omit<ExitMessage, 'type'> | null = null;
let terminalFd = -1;
let finished = false;

function signalName(signal: number): NodeJS.Signals | null {
  for (const [name, value] of Object.entries(osConstants.signals)) {
    if (value === signal) return name as NodeJS.Signals;
  }
  return null;
}

function errnoOf(error: unknown): string | null {
  return native.isErrnoError(error) ? error.code : null;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Reports a setup failure to the parent and exits (taking the namespaces along). */
function fail(code: SandboxErrorCode, message: string, errno: string | null = null): never {
  try {
    channel.sendNow({ type: 'error', code, message, errno });
  } catch {
    // The parent is gone; nobody to tell.
  }
  process.exit(1);
}

/** Reports the program's status and exits: the kernel kills what is left. */
function finish(status: Omit<ExitMessage, 'type'>): void {
  if (finished) return;
  finished = true;
  try {
    channel.sendNow({ type: 'exit', ...status });
  } catch {
    // The parent is gone.
  }
  process.exit(0);
}

function writeSysctl(path: string, value: string): boolean {
  try {
    writeFileSync(path, value);
    return true;
  } catch {
    return false;
  }
}

/** Step 1: the TUN device and the network namespace around it. */
function setUpNetwork(settings: ConfigMessage, warnings: string[]): native.TunDevice {
  const hasIpv6 = settings.addresses.some((address) => address.family === 6);
  const ipv6Available = existsSync('/proc/sys/net/ipv6');
  if (hasIpv6 && !ipv6Available) {
    fail(
      'ERR_SANDBOX_NETWORK_SETUP',
      'the tunnel has an IPv6 address but IPv6 is disabled in this kernel (ipv6.disable=1)',
    );
  }
  if (!hasIpv6 && ipv6Available) {
    // No IPv6 address: no IPv6 at all (not even ::1 or a link-local), so a v6
    // connect fails at once with ENETUNREACH instead of waiting on a tunnel
    // that cannot carry it. `default` covers the TUN created next.
    const all = writeSysctl('/proc/sys/net/ipv6/conf/all/disable_ipv6', '1');
    const fallback = writeSysctl('/proc/sys/net/ipv6/conf/default/disable_ipv6', '1');
    if (!all || !fallback) {
      warnings.push(
        'could not switch IPv6 off inside the sandbox; it has no IPv6 route, so v6 still cannot leave',
      );
    }
  }

  // The program has no CAP_NET_RAW here (it runs in a nested user namespace), so let
  // its group use ICMP datagram sockets in this namespace and `ping` works unprivileged,
  // as on distributions that set ping_group_range for the host. Only gids mapped in our
  // user namespace can be written: gid 0 here is the caller's own gid.
  if (!writeSysctl('/proc/sys/net/ipv4/ping_group_range', '0 0')) {
    warnings.push('could not enable unprivileged ping inside the sandbox (ping_group_range)');
  }

  let tun: native.TunDevice;
  try {
    tun = native.tunOpen(settings.tunName);
  } catch (error) {
    fail(
      'ERR_SANDBOX_TUN_CREATE',
      `cannot create the TUN device '${settings.tunName}' inside the sandbox: ${messageOf(error)}`,
      errnoOf(error),
    );
  }

  // One `ip -batch` process for everything (~5 ms); it stops at the first
  // failing line and names it.
  const name = tun.name;
  const lines = ['link set dev lo up', `link set dev ${name} mtu ${settings.mtu}`];
  // No SLAAC/link-local address on the TUN: nothing but our own addresses.
  if (hasIpv6) lines.push(`link set dev ${name} addrgenmode none`);
  for (const address of settings.addresses) {
    const suffix = address.family === 6 ? ' nodad' : '';
    lines.push(`address add ${address.address}/${address.prefix} dev ${name}${suffix}`);
  }
  lines.push(`link set dev ${name} up`, `route add 0.0.0.0/0 dev ${name}`);
  if (hasIpv6) lines.push(`route add ::/0 dev ${name}`);
  const result = spawnSync(settings.ipPath, ['-batch', '-'], {
    input: `${lines.join('\n')}\n`,
    encoding: 'utf8',
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  if (result.error !== undefined || result.status !== 0) {
    const detail = result.error?.message ?? result.stderr.trim();
    fail('ERR_SANDBOX_NETWORK_SETUP', `configuring the sandbox network failed: ${detail}`);
  }
  return tun;
}

function realDirectory(path: string): string | null {
  try {
    const real = realpathSync(path);
    return statSync(real).isDirectory() ? real : null;
  } catch {
    return null;
  }
}

const HIDE_FLAGS =
  native.MOUNT_FLAGS.MS_NOSUID | native.MOUNT_FLAGS.MS_NODEV | native.MOUNT_FLAGS.MS_NOEXEC;

function mountTmpfs(directory: string): void {
  native.mount('tmpfs', directory, 'tmpfs', HIDE_FLAGS, 'mode=0755,size=64k');
}

/** Step 2: /proc, hidden resolver sockets, our name-service files. */
function setUpFilesystem(settings: ConfigMessage, warnings: string[]): void {
  try {
    // A /proc of the sandbox's own pid namespace: `ps` shows the sandbox only.
    native.mount('proc', '/proc', 'proc', HIDE_FLAGS, null);
  } catch (error) {
    warnings.push(
      `the sandbox shows the host's /proc (mounting its own failed: ${messageOf(error)})`,
    );
  }

  const hidden: string[] = [];
  const isHidden = (path: string): boolean =>
    hidden.some((directory) => path === directory || path.startsWith(`${directory}/`));
  for (const directory of settings.filesystem.hide) {
    const real = realDirectory(directory);
    if (real === null || isHidden(real)) continue;
    try {
      mountTmpfs(real);
    } catch (error) {
      fail(
        'ERR_SANDBOX_FILESYSTEM_SETUP',
        `cannot hide the resolver socket directory ${real}: ${messageOf(error)}`,
        errnoOf(error),
      );
    }
    hidden.push(real);
  }

  for (const { source, target } of settings.filesystem.files) {
    let final: string | null;
    try {
      final = finalTarget(target);
    } catch (error) {
      fail('ERR_SANDBOX_FILESYSTEM_SETUP', messageOf(error));
    }
    if (final === null) {
      warnings.push(`${target} leads to a directory that does not exist; left as it is`);
      continue;
    }
    try {
      if (!existsSync(final)) {
        // A dangling symlink (e.g. to systemd-resolved's stub file while it is
        // not running): give its directory an empty tmpfs of its own and
        // create the file there, unless we already covered it.
        const directory = dirname(final);
        if (!isHidden(directory)) {
          mountTmpfs(directory);
          hidden.push(directory);
          warnings.push(
            `${target} -> ${final} did not exist; ${directory} is an empty directory inside`,
          );
        }
        mkdirSync(directory, { recursive: true });
        writeFileSync(final, '', { mode: 0o644 });
      }
      native.bindMount(source, final, true);
    } catch (error) {
      fail(
        'ERR_SANDBOX_FILESYSTEM_SETUP',
        `cannot put the sandbox's ${target} in place: ${messageOf(error)}`,
        errnoOf(error),
      );
    }
  }

  if (settings.hostname !== null) {
    try {
      native.sethostname(settings.hostname);
    } catch (error) {
      fail(
        'ERR_SANDBOX_FILESYSTEM_SETUP',
        `cannot set the hostname: ${messageOf(error)}`,
        errnoOf(error),
      );
    }
  }
}

function setUp(settings: ConfigMessage): void {
  config = settings;
  const warnings: string[] = [];
  const tun = setUpNetwork(settings, warnings);
  setUpFilesystem(settings, warnings);
  try {
    channel.sendNow({ type: 'ready', tunName: tun.name, warnings }, [tun.fd]);
  } catch {
    process.exit(1);
  }
  // The parent holds the device now; keeping a copy here would keep it
  // alive for nothing.
  native.close(tun.fd);
}

/** Reaps every child that changed state (orphans of the namespace included). */
function reap(): void {
  for (;;) {
    let status: native.ChildStatus | null;
    try {
      status = native.waitChild(-1, true);
    } catch (error) {
      // ECHILD: no process left in the namespace but us.
      if (native.isErrnoError(error) && error.code === 'ECHILD' && programStatus !== null) {
        finish(programStatus);
      }
      return;
    }
    if (status === null) return;
    if (status.pid !== programPid || programStatus !== null) continue;
    if (status.stopped) {
      const signal = signalName(status.signal) ?? 'SIGSTOP';
      channel.send({ type: 'stopped', signal });
      continue;
    }
    programStatus =
      status.exitCode >= 0
        ? { code: status.exitCode, signal: null }
        : { code: null, signal: signalName(status.signal) ?? 'SIGKILL' };
    if (config?.keepAlive !== true) {
      finish(programStatus);
      return;
    }
  }
}

function launch(requestedTerminalFd: number): void {
  const settings = config;
  if (settings === null || programPid !== null) return;
  terminalFd = requestedTerminalFd;
  process.on('SIGCHLD', reap);
  const { program } = settings;
  try {
    programPid = native.spawnProgram(
      program.paths,
      program.argv,
      program.env,
      program.cwd,
      program.uid,
      program.gid,
      terminalFd,
    );
  } catch (error) {
    // As a shell would say it, with its exit codes: 127 not found, 126 not runnable.
    const errno = errnoOf(error);
    const step = native.isErrnoError(error) ? error.syscall : 'exec';
    const what =
      step === 'execve'
        ? `cannot run ${program.argv[0] ?? '?'}`
        : step === 'chdir'
          ? `cannot change to directory ${program.cwd}`
          : `cannot start ${program.argv[0] ?? '?'} (${step})`;
    try {
      writeSync(2, `warren: ${what}: ${messageOf(error)}\n`);
    } catch {
      // stderr closed
    }
    finish({ code: errno === 'ENOENT' && step === 'execve' ? 127 : 126, signal: null });
    return;
  }
  channel.send({ type: 'started', pid: programPid });
  reap();
}

function onMessage({ message, fds }: Received<ParentMessage>): void {
  for (const fd of fds) native.close(fd);
  switch (message.type) {
    case 'config':
      if (config === null) setUp(message);
      break;
    case 'launch':
      launch(message.terminalFd);
      break;
    case 'signal':
      if (programPid === null) {
        // Not started yet: stopping the sandbox is all this can mean.
        finish({ code: null, signal: message.signal });
      } else if (programStatus === null) {
        process.kill(programPid, message.signal);
      } else {
        // keepAlive after the program exited: everything left (kill(-1) from
        // pid 1 reaches every process of the namespace but the init).
        try {
          process.kill(-1, message.signal);
        } catch {
          // nothing left
        }
      }
      break;
    case 'continue':
      if (programPid !== null && programStatus === null) {
        terminalFd = message.terminalFd;
        if (terminalFd >= 0) {
          try {
            native.tcsetpgrp(terminalFd, programPid);
          } catch {
            // The program left its group or the terminal; continue it anyway.
          }
        }
        try {
          process.kill(-programPid, 'SIGCONT');
        } catch {
          // gone
        }
      }
      break;
  }
}

process.on('uncaughtException', (error) => {
  fail('ERR_SANDBOX_INIT_FAILED', `the sandbox init failed: ${error.stack ?? error.message}`);
});

channel.start(onMessage, () => {
  // The parent's end closed: `warren run` exited or was killed. Without the
  // engine there is no tunnel, so nothing may keep running.
  process.exit(programStatus === null ? 1 : 0);
});
