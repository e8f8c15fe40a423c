/**
 * The UAPI unix socket server (https://www.wireguard.com/xplatform/): `wg` connects
 * to /var/run/wireguard/IFNAME.sock and sends "get=1\n\n" or "set=1\n" followed by
 * key=value lines and a blank line; each reply ends with "errno=N\n\n". Behaviour
 * follows wireguard-go ipc/uapi_linux.go (socket setup, deletion watch) and
 * device/uapi.go IpcHandle (one connection may carry several operations).
 *
 * Requests are parsed line by line as they stream in, so a setconf with
 * hundreds of thousands of allowed_ip lines never sits in memory as text; lines
 * are capped (64 KiB, bufio.Scanner's limit in wireguard-go) and so is each
 * request (32 MiB by default), so a misbehaving client gets an error, not an OOM.
 * Operations from all connections run one at a time (wireguard-go's ipcMutex).
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as fsp from 'node:fs/promises';
import * as net from 'node:net';
import * as path from 'node:path';
import { UapiError } from './errors.js';
import {
  formatErrnoResponse,
  formatGetResponse,
  UapiSetParser,
  type UapiDeviceStatus,
  type UapiSetRequest,
} from './uapi-protocol.js';

/** What the server calls for each operation; may answer synchronously or with a promise. */
export interface UapiHandler {
  get(): UapiDeviceStatus | Promise<UapiDeviceStatus>;
  /** Applies a parsed set request; throws (or rejects with) a UapiError to report its errno. */
  set(request: UapiSetRequest): void | Promise<void>;
}

export interface UapiServerOptions {
  /** Longest accepted line in bytes, "\n" excluded. Default 65536 (Go's bufio.MaxScanTokenSize). */
  maxLineBytes?: number;
  /** Largest accepted set request in bytes. Default 32 MiB (about a million allowed_ip lines). */
  maxRequestBytes?: number;
  /** Told about every failed operation and handler exception, for the daemon's log. */
  onError?: (error: Error) => void;
}

const DEFAULT_MAX_LINE_BYTES = 64 * 1024;
const DEFAULT_MAX_REQUEST_BYTES = 32 * 1024 * 1024;
/** The deletion watch re-checks the socket file this often even if fs.watch stays quiet. */
const SOCKET_POLL_INTERVAL_MS = 1000;
/** sockaddr_un.sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;

interface FileIdentity {
  dev: bigint;
  ino: bigint;
}

export class UapiServer {
  /** Absolute path of the socket file. */
  readonly path: string;
  private readonly server: net.Server;
  private readonly handler: UapiHandler;
  private readonly identity: FileIdentity;
  readonly maxLineBytes: number;
  readonly maxRequestBytes: number;
  private readonly onError: ((error: Error) => void) | undefined;
  private readonly connections = new Set<UapiConnection>();
  private operations: Promise<void> = Promise.resolve();
  private readonly removedCallbacks: (() => void)[] = [];
  private watcher: fs.FSWatcher | null = null;
  private pollTimer: NodeJS.Timeout | null = null;
  private removed = false;
  private closing: Promise<void> | null = null;

  private constructor(
    socketPath: string,
    server: net.Server,
    handler: UapiHandler,
    identity: FileIdentity,
    options: UapiServerOptions,
  ) {
    this.path = socketPath;
    this.server = server;
    this.handler = handler;
    this.identity = identity;
    this.maxLineBytes = options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES;
    this.maxRequestBytes = options.maxRequestBytes ?? DEFAULT_MAX_REQUEST_BYTES;
    this.onError = options.onError;
    server.on('connection', (socket) => {
      const connection = new UapiConnection(this, socket);
      this.connections.add(connection);
      socket.on('close', () => this.connections.delete(connection));
    });
    server.on('error', (error) => {
      this.report(error);
    });
  }

  /**
   * Listens on `socketPath` (creating its directory with mode 0755). Refuses if a
   * live daemon answers on that path (ERR_UAPI_SOCKET_IN_USE) or if the path is
   * something other than a socket; a stale socket file is replaced. The socket
   * is bound under a temporary name, made mode 0600, and renamed into place, so
   * it never appears with looser permissions and replacing a stale one is atomic.
   */
  static async listen(
    socketPath: string,
    handler: UapiHandler,
    options: UapiServerOptions = {},
  ): Promise<UapiServer> {
    if (typeof socketPath !== 'string' || socketPath.length === 0) {
      throw new TypeError('socketPath must be a non-empty string');
    }
    if (
      typeof handler !== 'object' ||
      typeof handler.get !== 'function' ||
      typeof handler.set !== 'function'
    ) {
      throw new TypeError('handler must have get() and set() methods');
    }
    checkLimit(options.maxLineBytes, 'options.maxLineBytes');
    checkLimit(options.maxRequestBytes, 'options.maxRequestBytes');
    const absolute = path.resolve(socketPath);
    const directory = path.dirname(absolute);
    const temporary = path.join(directory, `.${randomBytes(6).toString('hex')}.uapi-tmp`);
    for (const candidate of [absolute, temporary]) {
      if (Buffer.byteLength(candidate) > MAX_SOCKET_PATH_BYTES) {
        throw new RangeError(
          `socketPath ${candidate} is longer than a unix socket path may be (${MAX_SOCKET_PATH_BYTES} bytes)`,
        );
      }
    }

    await fsp.mkdir(directory, { recursive: true, mode: 0o755 });
    await refuseIfInUse(absolute);

    const server = net.createServer({ allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(temporary, () => {
        server.off('error', reject);
        resolve();
      });
    });
    try {
      await fsp.chmod(temporary, 0o600);
      // The server, with its connection handler, exists before the file appears under its
      // real name: a client that connects the moment it appears (wg, or a test polling for
      // it) must be answered, never accepted with no one to read it. rename() keeps the
      // inode, so the identity taken here is the real name's.
      const stat = await fsp.lstat(temporary, { bigint: true });
      const uapi = new UapiServer(
        absolute,
        server,
        handler,
        { dev: stat.dev, ino: stat.ino },
        options,
      );
      await fsp.rename(temporary, absolute);
      return uapi;
    } catch (error) {
      // libuv unlinks the name it bound (the temporary one) when the server closes.
      await new Promise<void>((resolve) => {
        server.close(() => {
          resolve();
        });
      });
      throw error;
    }
  }

  /**
   * Calls `callback` once when the socket file is deleted or replaced by another
   * file — the signal that tells wireguard-go to exit (`wg-quick down` removes
   * it). Watches the directory with fs.watch and, in case inotify is unavailable
   * or misses the event, re-checks the file every second.
   */
  onSocketFileRemoved(callback: () => void): void {
    if (typeof callback !== 'function') throw new TypeError('callback must be a function');
    if (this.removed) {
      queueMicrotask(callback);
      return;
    }
    this.removedCallbacks.push(callback);
    if (this.closing === null) this.startWatching();
  }

  /**
   * Stops listening, closes every connection, and deletes the socket file if it
   * is still this server's (never another daemon's socket that replaced it).
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.stopWatching();
    // close() stops accepting at once; its callback waits for every connection to end.
    const closed = new Promise<void>((resolve) => {
      this.server.close(() => {
        resolve();
      });
    });
    for (const connection of this.connections) connection.destroy();
    // The file goes before the wait, so nothing a connection does can leave it behind.
    try {
      const stat = await fsp.lstat(this.path, { bigint: true });
      if (stat.dev === this.identity.dev && stat.ino === this.identity.ino) {
        await fsp.unlink(this.path);
      }
    } catch {
      // Already gone: nothing to clean up.
    }
    await closed;
  }

  private startWatching(): void {
    if (this.pollTimer !== null) return;
    try {
      this.watcher = fs.watch(path.dirname(this.path), { persistent: false }, () => {
        this.checkSocketFile();
      });
      this.watcher.on('error', () => {
        this.watcher?.close();
        this.watcher = null;
      });
    } catch {
      this.watcher = null; // inotify limits: polling alone still notices within a second
    }
    this.pollTimer = setInterval(() => {
      this.checkSocketFile();
    }, SOCKET_POLL_INTERVAL_MS);
    this.pollTimer.unref();
    this.checkSocketFile();
  }

  private stopWatching(): void {
    this.watcher?.close();
    this.watcher = null;
    if (this.pollTimer !== null) clearInterval(this.pollTimer);
    this.pollTimer = null;
  }

  private checkSocketFile(): void {
    fs.lstat(this.path, { bigint: true }, (error, stat) => {
      if (this.removed || this.closing !== null) return;
      const gone =
        error !== null
          ? error.code === 'ENOENT' || error.code === 'ENOTDIR'
          : stat.dev !== this.identity.dev || stat.ino !== this.identity.ino;
      if (!gone) return;
      this.removed = true;
      this.stopWatching();
      for (const callback of this.removedCallbacks.splice(0)) {
        try {
          callback();
        } catch (callbackError) {
          this.report(toError(callbackError));
        }
      }
    });
  }

  /** @internal Runs `task` after every earlier operation of any connection has finished. */
  serialize<T>(task: () => Promise<T>): Promise<T> {
    const run = this.operations.then(task);
    this.operations = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** @internal */
  get uapiHandler(): UapiHandler {
    return this.handler;
  }

  /** @internal */
  report(error: Error): void {
    if (this.onError === undefined) return;
    try {
      this.onError(error);
    } catch {
      // A failing logger must not take the control socket down.
    }
  }
}

function checkLimit(value: number | undefined, name: string): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < 1) {
    throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
  }
}

function toError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value));
}

/** wireguard-go's rule: a socket that accepts a connection belongs to a live daemon. */
async function refuseIfInUse(socketPath: string): Promise<void> {
  let stat: fs.Stats;
  try {
    stat = await fsp.lstat(socketPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (!stat.isSocket()) {
    throw new Error(`${socketPath} exists and is not a socket; refusing to replace it`);
  }
  const live = await new Promise<boolean>((resolve, reject) => {
    const probe = net.createConnection(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (error: NodeJS.ErrnoException) => {
      probe.destroy();
      if (error.code === 'ECONNREFUSED' || error.code === 'ENOENT') resolve(false);
      else if (error.code === 'EAGAIN')
        resolve(true); // backlog full: someone is listening
      else reject(error);
    });
  });
  if (live) {
    throw new UapiError(
      'ERR_UAPI_SOCKET_IN_USE',
      `${socketPath} is in use: another daemon answers on this UAPI socket`,
    );
  }
}

function asUapiError(error: unknown): UapiError {
  if (error instanceof UapiError) return error;
  const message = error instanceof Error ? error.message : String(error);
  return new UapiError('ERR_UAPI_UNKNOWN', `other UAPI error: ${message}`, { cause: error });
}

type ConnectionMode = 'operation' | 'get' | 'set' | 'busy' | 'closing';

/** One client connection: splits the byte stream into lines and runs operations in order. */
class UapiConnection {
  private readonly server: UapiServer;
  private readonly socket: net.Socket;
  /** Received bytes not yet split into lines; chunks[0] is read from `offset`. */
  private readonly chunks: Buffer[] = [];
  private offset = 0;
  /** Pieces of a line whose "\n" has not arrived yet. */
  private readonly partial: Buffer[] = [];
  private partialBytes = 0;
  private lineBytes = 0;
  private mode: ConnectionMode = 'operation';
  private parser: UapiSetParser | null = null;
  /** First error of the set request being drained to its blank line. */
  private setError: UapiError | null = null;
  private requestBytes = 0;
  private inputEnded = false;

  constructor(server: UapiServer, socket: net.Socket) {
    this.server = server;
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      if (this.mode === 'closing') return;
      this.chunks.push(chunk);
      this.pump();
    });
    socket.on('end', () => {
      this.inputEnded = true;
      this.pump();
    });
    socket.on('error', () => {
      // The client went away (EPIPE, ECONNRESET): nothing to answer.
      this.destroy();
    });
  }

  destroy(): void {
    this.mode = 'closing';
    this.chunks.length = 0;
    this.partial.length = 0;
    this.socket.destroy();
  }

  private pump(): void {
    while (this.mode !== 'busy' && this.mode !== 'closing') {
      const line = this.nextLine();
      if (line === null) break;
      this.handleLine(line);
    }
    if (this.inputEnded && this.mode !== 'busy' && this.mode !== 'closing') this.handleEnd();
  }

  /** The next complete line (without "\n"), or null if none is buffered yet. */
  private nextLine(): string | null {
    const maxLine = this.server.maxLineBytes;
    while (this.chunks.length > 0) {
      const chunk = this.chunks[0];
      if (chunk === undefined) break;
      const newline = chunk.indexOf(10, this.offset);
      if (newline === -1) {
        const rest = chunk.subarray(this.offset);
        this.chunks.shift();
        this.offset = 0;
        this.partial.push(rest);
        this.partialBytes += rest.length;
        if (this.partialBytes > maxLine) {
          this.fail(new UapiError('ERR_UAPI_TOO_LARGE', `line longer than ${maxLine} bytes`));
          return null;
        }
        continue;
      }
      const piece = chunk.subarray(this.offset, newline);
      this.offset = newline + 1;
      if (this.offset >= chunk.length) {
        this.chunks.shift();
        this.offset = 0;
      }
      let bytes = piece;
      if (this.partial.length > 0) {
        this.partial.push(piece);
        bytes = Buffer.concat(this.partial, this.partialBytes + piece.length);
        this.partial.length = 0;
        this.partialBytes = 0;
      }
      if (bytes.length > maxLine) {
        this.fail(new UapiError('ERR_UAPI_TOO_LARGE', `line longer than ${maxLine} bytes`));
        return null;
      }
      this.lineBytes = bytes.length + 1;
      return bytes.toString('utf8');
    }
    return null;
  }

  private handleLine(line: string): void {
    switch (this.mode) {
      case 'operation':
        if (line === 'get=1') {
          this.mode = 'get';
        } else if (line === 'set=1') {
          this.mode = 'set';
          this.parser = new UapiSetParser();
          this.setError = null;
          this.requestBytes = 0;
        } else {
          // wireguard-go closes the connection on an unknown operation; we say why first.
          this.fail(
            new UapiError(
              'ERR_UAPI_PROTOCOL',
              `invalid UAPI operation ${JSON.stringify(line.slice(0, 80))}`,
            ),
          );
        }
        return;
      case 'get':
        if (line !== '') {
          this.fail(new UapiError('ERR_UAPI_INVALID', 'trailing characters after get=1'));
          return;
        }
        this.runOperation(async () => formatGetResponse(await this.server.uapiHandler.get()));
        return;
      case 'set':
        this.setLine(line);
        return;
      case 'busy':
      case 'closing':
        return;
    }
  }

  /** Takes one line of a set request; returns false once the request has ended or failed. */
  private setLine(line: string): boolean {
    this.requestBytes += this.lineBytes;
    if (this.requestBytes > this.server.maxRequestBytes) {
      this.fail(
        new UapiError(
          'ERR_UAPI_TOO_LARGE',
          `set request larger than ${this.server.maxRequestBytes} bytes`,
        ),
      );
      return false;
    }
    let ended: boolean;
    if (this.setError !== null || this.parser === null) {
      ended = line === '' || line === '\r'; // draining after an error
    } else {
      try {
        ended = this.parser.feedLine(line);
      } catch (error) {
        this.setError = asUapiError(error);
        ended = false;
      }
    }
    if (ended) this.finishSet();
    return !ended;
  }

  private finishSet(): void {
    const parser = this.parser;
    const error = this.setError;
    this.parser = null;
    this.setError = null;
    if (error !== null || parser === null) {
      const failure = error ?? new UapiError('ERR_UAPI_UNKNOWN', 'set request without a parser');
      this.runOperation(() => Promise.reject(failure));
      return;
    }
    const request = parser.finish();
    this.runOperation(async () => {
      await this.server.uapiHandler.set(request);
      return formatErrnoResponse(0);
    });
  }

  /** Runs one operation after all others, writes its reply, then reads on. */
  private runOperation(produce: () => Promise<string>): void {
    this.mode = 'busy';
    this.socket.pause();
    const reply = this.server.serialize(async () => {
      try {
        return await produce();
      } catch (error) {
        const failure = asUapiError(error);
        this.server.report(failure);
        return formatErrnoResponse(failure.errno);
      }
    });
    void reply
      .then((text) => this.write(text))
      .then(
        () => {
          if (this.mode !== 'busy') return;
          this.mode = 'operation';
          this.socket.resume();
          this.pump();
        },
        () => {
          this.destroy();
        },
      );
  }

  private write(text: string): Promise<void> {
    return new Promise<void>((resolve) => {
      if (this.socket.destroyed || !this.socket.writable) {
        resolve();
        return;
      }
      if (this.socket.write(text)) {
        resolve();
        return;
      }
      // Wait for the client to read the reply before taking its next operation.
      const done = (): void => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  /** The client closed its side. A set request without its blank line still applies (Go's scanner ends at EOF too). */
  private handleEnd(): void {
    if (this.mode === 'set') {
      if (this.partialBytes > 0) {
        const last = Buffer.concat(this.partial, this.partialBytes);
        this.partial.length = 0;
        this.partialBytes = 0;
        this.lineBytes = last.length;
        if (!this.setLine(last.toString('utf8'))) return;
      }
      this.finishSet();
      return; // the socket ends once that reply is written (pump → handleEnd again)
    }
    this.mode = 'closing';
    this.socket.end();
  }

  /** Replies with the error and closes: after a framing error the stream cannot be resynchronised. */
  private fail(error: UapiError): void {
    this.server.report(error);
    this.mode = 'closing';
    this.chunks.length = 0;
    this.partial.length = 0;
    this.partialBytes = 0;
    this.socket.end(formatErrnoResponse(error.errno));
  }
}
