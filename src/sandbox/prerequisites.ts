/**
 * What a rootless sandbox needs from the system, checked before anything
 * starts so the user gets one clear error naming the setting to change:
 *  - unprivileged user namespaces (and the other namespace types) enabled;
 *  - util-linux `unshare` and iproute2 `ip`;
 *  - read/write access to /dev/net/tun.
 */
import { constants } from 'node:fs';
import { access, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { ToolMissingError, TunDeviceError, UserNamespacesDisabledError } from './errors.js';

/** Where tools are looked up: fixed system directories, never the user's PATH. */
export const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export const TUN_DEVICE = '/dev/net/tun';

async function readSysctl(path: string): Promise<string | null> {
  try {
    return (await readFile(path, 'utf8')).trim();
  } catch {
    return null;
  }
}

/** The absolute path of `tool` in {@link SYSTEM_PATH}, or null. */
export async function findTool(tool: string): Promise<string | null> {
  for (const directory of SYSTEM_PATH.split(':')) {
    const candidate = join(directory, tool);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next directory
    }
  }
  return null;
}

/**
 * The kernel setting that forbids this user's namespaces, or null when none
 * does. Root is exempt from the two "unprivileged" knobs.
 */
export async function userNamespaceBlocker(
  readSetting: (path: string) => Promise<string | null> = readSysctl,
  uid: number = process.getuid?.() ?? 0,
): Promise<UserNamespacesDisabledError | null> {
  // Debian's and older Ubuntu's patch (kernel/fork.c): 0 forbids CLONE_NEWUSER to non-root.
  if (uid !== 0 && (await readSetting('/proc/sys/kernel/unprivileged_userns_clone')) === '0') {
    return new UserNamespacesDisabledError(
      'kernel.unprivileged_userns_clone=0',
      'unprivileged user namespaces are disabled on this system (sysctl kernel.unprivileged_userns_clone = 0); ' +
        'warren run needs them: as root, `sysctl -w kernel.unprivileged_userns_clone=1` ' +
        '(persist it in /etc/sysctl.d/), or run warren as root',
    );
  }
  // Ubuntu 23.10+ AppArmor: unconfined programs get a user namespace without capabilities.
  if (
    uid !== 0 &&
    (await readSetting('/proc/sys/kernel/apparmor_restrict_unprivileged_userns')) === '1'
  ) {
    return new UserNamespacesDisabledError(
      'kernel.apparmor_restrict_unprivileged_userns=1',
      'AppArmor restricts unprivileged user namespaces here (sysctl kernel.apparmor_restrict_unprivileged_userns = 1, ' +
        'Ubuntu 23.10 and later); warren run needs them: add an AppArmor profile that allows `userns,` for node, ' +
        'or as root `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`, or run warren as root',
    );
  }
  // user_namespaces(7) / namespaces(7): max_*_namespaces = 0 disables the type for everyone.
  for (const kind of ['user', 'net', 'mnt', 'pid', 'uts'] as const) {
    if ((await readSetting(`/proc/sys/user/max_${kind}_namespaces`)) === '0') {
      return new UserNamespacesDisabledError(
        `user.max_${kind}_namespaces=0`,
        `${kind} namespaces are disabled on this system (sysctl user.max_${kind}_namespaces = 0); ` +
          `warren run needs them: as root, \`sysctl -w user.max_${kind}_namespaces=10000\` (persist it in /etc/sysctl.d/)`,
      );
    }
  }
  return null;
}

/** Checks /dev/net/tun can be opened read-write by this user. */
export async function checkTunAccess(device: string = TUN_DEVICE): Promise<void> {
  try {
    await access(device, constants.R_OK | constants.W_OK);
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
    if (code === 'ENOENT') {
      throw new TunDeviceError(
        'ERR_SANDBOX_TUN_MISSING',
        `${device} does not exist: load the TUN driver (as root: \`modprobe tun\`)`,
        code,
        { cause: error },
      );
    }
    let mode = '';
    try {
      const info = await stat(device);
      mode = ` is mode ${(info.mode & 0o777).toString(8).padStart(4, '0')} (owner uid ${info.uid}) here and`;
    } catch {
      // keep the message without the mode
    }
    throw new TunDeviceError(
      'ERR_SANDBOX_TUN_ACCESS',
      `${device}${mode} cannot be opened by uid ${process.getuid?.() ?? '?'} (${code}); ` +
        'distributions ship it mode 0666 -- as root, `chmod 0666 /dev/net/tun` (or a udev rule: ' +
        'KERNEL=="tun", MODE="0666"), or run warren as root',
      code,
      { cause: error },
    );
  }
}

/**
 * Throws the first problem that would stop a sandbox: disabled namespaces
 * ({@link UserNamespacesDisabledError}, naming the knob), missing `unshare`
 * or `ip` ({@link ToolMissingError}), no access to /dev/net/tun
 * ({@link TunDeviceError}). Cheap: a few small /proc reads and access(2) calls.
 */
export async function checkPrerequisites(): Promise<void> {
  const blocker = await userNamespaceBlocker();
  if (blocker !== null) throw blocker;
  if ((await findTool('unshare')) === null) throw new ToolMissingError('unshare', 'util-linux');
  if ((await findTool('ip')) === null) throw new ToolMissingError('ip', 'iproute2');
  await checkTunAccess();
}
