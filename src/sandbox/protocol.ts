/**
 * The control channel between `warren run` (the parent, outside) and the
 * sandbox's init (inside): one AF_UNIX SOCK_SEQPACKET socketpair
 * (native.socketpair), one JSON object per message, fds attached with
 * SCM_RIGHTS (the TUN device). The parent's end closing (even by `kill -9`)
 * is the init's signal to tear the sandbox down.
 *
 *   parent -> init   config (queued before init starts), launch, signal, continue
 *   init -> parent   ready (+ TUN fd), error, started, stopped, exit
 */
import * as native from '../native/index.js';
import type { SandboxErrorCode } from './errors.js';

/** The fd number the init finds its end of the socketpair at (spawn stdio[3]). */
export const CONTROL_FD = 3;

/** One address of the TUN device. */
export interface InterfaceAddress {
  family: 4 | 6;
  address: string;
  prefix: number;
}

/** Where the init puts the generated name-service files and what it hides. */
export interface FilesystemPlan {
  /** Generated file -> path inside the sandbox it replaces (bind-mounted over). */
  files: { source: string; target: string }[];
  /** Directories covered by an empty tmpfs (host resolver daemons' sockets). */
  hide: string[];
}

/** Everything the init needs, sent before it starts. */
export interface ConfigMessage {
  type: 'config';
  tunName: string;
  mtu: number;
  addresses: InterfaceAddress[];
  /** Set in the sandbox's own UTS namespace; null keeps the host's name. */
  hostname: string | null;
  filesystem: FilesystemPlan;
  /** Absolute path of iproute2's `ip`. */
  ipPath: string;
  program: {
    /** Candidate paths of the executable, in PATH order. */
    paths: string[];
    argv: string[];
    /** "NAME=value" strings. */
    env: string[];
    cwd: string;
    /** The caller's ids: the program runs as them (nested user namespace). */
    uid: number;
    gid: number;
  };
  keepAlive: boolean;
}

/** Start the program; terminalFd (0..2, or -1) is a tty it gets as foreground. */
export interface LaunchMessage {
  type: 'launch';
  terminalFd: number;
}

/** Deliver a signal to the program (or to everything left, once it exited). */
export interface SignalMessage {
  type: 'signal';
  signal: NodeJS.Signals;
}

/** The parent resumed after a stop: continue the program (terminalFd: give it the tty back). */
export interface ContinueMessage {
  type: 'continue';
  terminalFd: number;
}

/** The network namespace is configured; the TUN fd rides along. */
export interface ReadyMessage {
  type: 'ready';
  tunName: string;
  warnings: string[];
}

/** Setup or launch failed. */
export interface ErrorMessage {
  type: 'error';
  code: SandboxErrorCode;
  message: string;
  /** errno name of the failing call, when there is one. */
  errno: string | null;
}

/** The program runs (its pid inside the sandbox's pid namespace). */
export interface StartedMessage {
  type: 'started';
  pid: number;
}

/** The program was stopped (Ctrl-Z, SIGSTOP, SIGTTIN...). */
export interface StoppedMessage {
  type: 'stopped';
  signal: NodeJS.Signals;
}

/** The program's exit status; the init exits right after. */
export interface ExitMessage {
  type: 'exit';
  code: number | null;
  signal: NodeJS.Signals | null;
}

export type ParentMessage = ConfigMessage | LaunchMessage | SignalMessage | ContinueMessage;
export type InitMessage =
  ReadyMessage | ErrorMessage | StartedMessage | StoppedMessage | ExitMessage;

const PARENT_TYPES: ReadonlySet<string> = new Set(['config', 'launch', 'signal', 'continue']);
const INIT_TYPES: ReadonlySet<string> = new Set(['ready', 'error', 'started', 'stopped', 'exit']);

function typeOf(value: unknown): string | null {
  if (typeof value !== 'object' || value === null) return null;
  const type = (value as { type?: unknown }).type;
  return typeof type === 'string' ? type : null;
}

/**
 * Decodes a message from the other side. Both ends are processes of the same
 * user started by warren (the program inside has no copy of the socket), so
 * this checks the envelope, not every field.
 */
export function decodeMessage(
  payload: Buffer,
  from: 'parent' | 'init',
): ParentMessage | InitMessage {
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch (error) {
    throw new Error(`sandbox control channel: a message from the ${from} is not JSON`, {
      cause: error,
    });
  }
  const type = typeOf(value);
  const known = from === 'parent' ? PARENT_TYPES : INIT_TYPES;
  if (type === null || !known.has(type)) {
    throw new Error(
      `sandbox control channel: unknown message type ${String(type)} from the ${from}`,
    );
  }
  return value as ParentMessage | InitMessage;
}

/** A received message with the fds that came with it and the sender's pid. */
export interface Received<Message> {
  message: Message;
  fds: number[];
  /** The sender's pid as seen from here (-1 when not visible). */
  pid: number;
}

/** How long a send waits, in total, for room in a full queue before giving up. */
const SEND_RETRY_MS = 2000;

/**
 * One end of the control socketpair on the event loop. Messages are
 * delivered in order to `onMessage`; `onEnd` runs once, when the peer closed
 * its end (or the socket failed).
 */
export class ControlChannel<Incoming extends ParentMessage | InitMessage> {
  private watcher: native.Watcher | null = null;
  private closed = false;
  private ended = false;
  private readonly pending: { payload: Buffer; fds: number[] }[] = [];
  private retryTimer: NodeJS.Timeout | null = null;
  private retryDeadline = 0;

  constructor(
    readonly fd: number,
    private readonly from: 'parent' | 'init',
  ) {}

  /** Starts delivering messages. */
  start(
    onMessage: (received: Received<Incoming>) => void,
    onEnd: (error: Error | null) => void,
  ): void {
    if (this.watcher !== null || this.closed) return;
    this.watcher = native.watch(this.fd, (status) => {
      if (status !== 0) {
        this.end(
          onEnd,
          new Error(`sandbox control channel: poll failed (${native.errnoName(status)})`),
        );
        return;
      }
      this.drain(onMessage, onEnd);
    });
  }

  /** Reads every queued message now (also used right before giving up on the peer). */
  drain(
    onMessage: (received: Received<Incoming>) => void,
    onEnd: (error: Error | null) => void,
  ): void {
    while (!this.closed && !this.ended) {
      let next: native.FdMessage | null;
      try {
        next = native.recvFds(this.fd);
      } catch (error) {
        this.end(onEnd, error instanceof Error ? error : new Error(String(error)));
        return;
      }
      if (next === null) return;
      if (next.eof) {
        this.end(onEnd, null);
        return;
      }
      let message: Incoming;
      try {
        message = decodeMessage(next.payload, this.from) as Incoming;
      } catch (error) {
        for (const fd of next.fds) native.close(fd);
        this.end(onEnd, error instanceof Error ? error : new Error(String(error)));
        return;
      }
      onMessage({ message, fds: next.fds, pid: next.pid });
    }
  }

  private end(onEnd: (error: Error | null) => void, error: Error | null): void {
    if (this.ended) return;
    this.ended = true;
    this.watcher?.close();
    this.watcher = null;
    onEnd(error);
  }

  /**
   * Sends a message (with fds; the caller keeps its copies). Queued when the
   * peer's queue is full and retried; throws if the peer is gone (EPIPE).
   */
  send(message: ParentMessage | InitMessage, fds: number[] = []): void {
    if (this.closed) throw new Error('sandbox control channel: closed');
    const payload = Buffer.from(JSON.stringify(message), 'utf8');
    if (this.pending.length === 0 && native.sendFds(this.fd, fds, payload)) return;
    this.pending.push({ payload, fds });
    this.scheduleRetry();
  }

  /**
   * Sends synchronously, waiting (blocking) up to 2 s for room: for the
   * init's last message before it exits, and for fds the caller closes
   * right after.
   */
  sendNow(message: ParentMessage | InitMessage, fds: number[] = []): void {
    this.flushBlocking();
    const payload = Buffer.from(JSON.stringify(message), 'utf8');
    const deadline = Date.now() + SEND_RETRY_MS;
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    while (!native.sendFds(this.fd, fds, payload)) {
      if (Date.now() > deadline) throw new Error('sandbox control channel: peer not reading');
      Atomics.wait(sleeper, 0, 0, 2);
    }
  }

  private flushBlocking(): void {
    const deadline = Date.now() + SEND_RETRY_MS;
    const sleeper = new Int32Array(new SharedArrayBuffer(4));
    while (this.pending.length > 0) {
      const head = this.pending[0];
      if (head === undefined) break;
      if (native.sendFds(this.fd, head.fds, head.payload)) {
        this.pending.shift();
        continue;
      }
      if (Date.now() > deadline) throw new Error('sandbox control channel: peer not reading');
      Atomics.wait(sleeper, 0, 0, 2);
    }
  }

  private scheduleRetry(): void {
    if (this.retryTimer !== null) return;
    if (this.retryDeadline === 0) this.retryDeadline = Date.now() + SEND_RETRY_MS;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.closed) return;
      while (this.pending.length > 0) {
        const head = this.pending[0];
        if (head === undefined) break;
        let sent: boolean;
        try {
          sent = native.sendFds(this.fd, head.fds, head.payload);
        } catch {
          // The peer is gone: its end is what tells the other side; drop the queue.
          this.pending.length = 0;
          return;
        }
        if (!sent) {
          if (Date.now() > this.retryDeadline) {
            this.pending.length = 0;
            return;
          }
          this.scheduleRetry();
          return;
        }
        this.pending.shift();
      }
      this.retryDeadline = 0;
    }, 2);
  }

  /** Stops watching and closes the fd; idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.pending.length = 0;
    this.watcher?.close();
    this.watcher = null;
    native.close(this.fd);
  }
}
