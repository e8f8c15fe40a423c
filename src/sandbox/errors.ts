/**
 * Typed errors of the sandbox (`warren run`). Every error has a stable `code`
 * the CLI can switch on; the message says what is wrong and how to fix it.
 * Errors about the system (user namespaces, /dev/net/tun, missing tools) are
 * raised by checkPrerequisites() and Sandbox.start() BEFORE the program runs.
 */

/** The stable codes of {@link SandboxError}. */
export type SandboxErrorCode =
  /** An option given to Sandbox.start() is invalid (`option` names it). */
  | 'ERR_SANDBOX_INVALID_OPTION'
  /** Unprivileged user namespaces (or another namespace type) are disabled (`knob` names the setting). */
  | 'ERR_SANDBOX_USERNS_DISABLED'
  /** A program the sandbox needs is not installed (`tool`: unshare, ip). */
  | 'ERR_SANDBOX_TOOL_MISSING'
  /** /dev/net/tun does not exist. */
  | 'ERR_SANDBOX_TUN_MISSING'
  /** /dev/net/tun exists but this user may not open it. */
  | 'ERR_SANDBOX_TUN_ACCESS'
  /** Opening the TUN device inside the sandbox failed (`errno` says why). */
  | 'ERR_SANDBOX_TUN_CREATE'
  /** Configuring the sandbox's addresses or routes failed. */
  | 'ERR_SANDBOX_NETWORK_SETUP'
  /** Preparing /etc/resolv.conf, /etc/hosts, ... or /proc inside the sandbox failed. */
  | 'ERR_SANDBOX_FILESYSTEM_SETUP'
  /** The command to run does not exist or is not executable. */
  | 'ERR_SANDBOX_COMMAND_NOT_FOUND'
  /** The per-user state directory is unusable (wrong owner, mode, not a directory). */
  | 'ERR_SANDBOX_STATE_DIR'
  /** The sandbox's init died or stopped answering while starting. */
  | 'ERR_SANDBOX_INIT_FAILED';

/** Base class: every error thrown by src/sandbox/ for a reason other than a bug. */
export class SandboxError extends Error {
  readonly code: SandboxErrorCode;

  constructor(code: SandboxErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'SandboxError';
    this.code = code;
  }
}

/** A bad option passed to Sandbox.start(); `option` is its path, e.g. 'network.mtu'. */
export class SandboxOptionError extends SandboxError {
  readonly option: string;

  constructor(option: string, problem: string) {
    super('ERR_SANDBOX_INVALID_OPTION', `Sandbox.start: option '${option}' ${problem}`);
    this.name = 'SandboxOptionError';
    this.option = option;
  }
}

/**
 * The kernel refuses unprivileged namespaces. `knob` is the setting that says
 * so, written as `sysctl` prints it, e.g. 'kernel.unprivileged_userns_clone=0'.
 */
export class UserNamespacesDisabledError extends SandboxError {
  readonly knob: string;

  constructor(knob: string, message: string, options?: { cause?: unknown }) {
    super('ERR_SANDBOX_USERNS_DISABLED', message, options);
    this.name = 'UserNamespacesDisabledError';
    this.knob = knob;
  }
}

/** A program warren runs to build the sandbox is missing. */
export class ToolMissingError extends SandboxError {
  readonly tool: string;

  constructor(tool: string, packageName: string) {
    super(
      'ERR_SANDBOX_TOOL_MISSING',
      `warren run needs \`${tool}\` (Debian/Ubuntu package ${packageName}), and it is not in /usr/sbin, /usr/bin, /sbin or /bin; install ${packageName}`,
    );
    this.name = 'ToolMissingError';
    this.tool = tool;
  }
}

/** /dev/net/tun is missing, not accessible, or TUNSETIFF failed. */
export class TunDeviceError extends SandboxError {
  /** The errno name behind it ('EACCES', 'EPERM', ...), when there is one. */
  readonly errno: string | undefined;

  constructor(
    code: 'ERR_SANDBOX_TUN_MISSING' | 'ERR_SANDBOX_TUN_ACCESS' | 'ERR_SANDBOX_TUN_CREATE',
    message: string,
    errno: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'TunDeviceError';
    this.errno = errno;
  }
}

/** Building the sandbox failed after its namespaces existed. */
export class SandboxSetupError extends SandboxError {
  constructor(
    code:
      | 'ERR_SANDBOX_NETWORK_SETUP'
      | 'ERR_SANDBOX_FILESYSTEM_SETUP'
      | 'ERR_SANDBOX_INIT_FAILED'
      | 'ERR_SANDBOX_STATE_DIR',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
    this.name = 'SandboxSetupError';
  }
}

/** The command cannot be executed: `reason` is the errno name (ENOENT, EACCES, ...). */
export class CommandNotFoundError extends SandboxError {
  readonly command: string;
  readonly reason: string;

  constructor(command: string, reason: string, detail: string) {
    super('ERR_SANDBOX_COMMAND_NOT_FOUND', `cannot run '${command}': ${detail}`);
    this.name = 'CommandNotFoundError';
    this.command = command;
    this.reason = reason;
  }
}

/** True for any error this module throws on purpose. */
export function isSandboxError(error: unknown): error is SandboxError {
  return error instanceof SandboxError;
}
