/**
 * HTTP-01 challenge answers on the relay's public HTTP listener (RFC 8555 §8.3):
 * the CA fetches `http://HOST/.well-known/acme-challenge/TOKEN` on port 80 and
 * expects the key authorization as the body.
 *
 * The relay's HTTP connections are otherwise forwarded to tunnels, so the first
 * request of each connection is peeked at before routing: when its first bytes
 * cannot begin `GET /.well-known/acme-challenge/` (nearly always the first
 * chunk tells), the connection is handed on at once with those bytes put back.
 * A challenge request is answered only for a token the manager is waiting on,
 * and for the host that token was issued for; any other token goes to the
 * tunnel as usual, so a service behind a tunnel can still answer its own ACME
 * challenges. Validation servers open a fresh connection per request, so only
 * the first request of a connection is looked at.
 */
import type { Socket } from 'node:net';

export const ACME_CHALLENGE_PATH = '/.well-known/acme-challenge/';

const REQUEST_PREFIX = Buffer.from(`GET ${ACME_CHALLENGE_PATH}`, 'latin1');
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
/** RFC 8555 §8.3: the token is base64url (§8.1 asks for at least 128 bits of entropy). */
const REQUEST_LINE = /^GET \/\.well-known\/acme-challenge\/([A-Za-z0-9_-]{1,256}) HTTP\/1\.[01]$/;
/** RFC 9110 §7.2 Host: a reg-name or an IP literal, optionally with a port. */
const HOST_VALUE = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$/;
/** After answering, how long the validator may take to close its side. */
const LINGER_MS = 5_000;

export type ChallengePeek =
  /** Not a challenge request (or not one this module answers): route it as usual. */
  | { readonly kind: 'other' }
  /** Could still be one: wait for more bytes. */
  | { readonly kind: 'incomplete' }
  /** A complete `GET /.well-known/acme-challenge/TOKEN` head. */
  | { readonly kind: 'challenge'; readonly token: string; readonly host: string };

const OTHER: ChallengePeek = { kind: 'other' };
const INCOMPLETE: ChallengePeek = { kind: 'incomplete' };

/**
 * Looks at the first bytes of a connection. `maxHeadBytes` bounds how much is
 * buffered: a longer head is 'other' (the relay's HTTP parser answers it).
 */
export function peekChallengeRequest(bytes: Buffer, maxHeadBytes: number): ChallengePeek {
  if (!Buffer.isBuffer(bytes)) throw new TypeError('bytes must be a Buffer');
  if (!Number.isInteger(maxHeadBytes) || maxHeadBytes < REQUEST_PREFIX.length) {
    throw new RangeError(`maxHeadBytes must be an integer >= ${REQUEST_PREFIX.length}`);
  }
  const compared = Math.min(bytes.length, REQUEST_PREFIX.length);
  if (bytes.compare(REQUEST_PREFIX, 0, compared, 0, compared) !== 0) return OTHER;
  const end = bytes.indexOf(HEAD_END);
  if (end === -1 || end + HEAD_END.length > maxHeadBytes) {
    return bytes.length >= maxHeadBytes ? OTHER : INCOMPLETE;
  }
  const lines = bytes.toString('latin1', 0, end).split('\r\n');
  const token = REQUEST_LINE.exec(lines[0] ?? '')?.[1];
  if (token === undefined) return OTHER;
  let host: string | undefined;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    if (colon <= 0) return OTHER;
    const name = line.slice(0, colon);
    if (name.toLowerCase() !== 'host') continue;
    // RFC 9112 §3.2: a request with more than one Host is answered 400 (by the normal path).
    if (host !== undefined) return OTHER;
    const value = line.slice(colon + 1).trim();
    const match = HOST_VALUE.exec(value);
    if (match?.[1] === undefined) return OTHER;
    host = match[1].toLowerCase();
  }
  if (host === undefined) return OTHER;
  return { kind: 'challenge', token, host: host.endsWith('.') ? host.slice(0, -1) : host };
}

/** The complete response that answers a challenge (and closes the connection). */
export function challengeResponseBytes(keyAuthorization: string): Buffer {
  const body = Buffer.from(keyAuthorization, 'latin1');
  return Buffer.concat([
    Buffer.from(
      'HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n' +
        `Content-Length: ${body.length}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n`,
      'latin1',
    ),
    body,
  ]);
}

export interface ChallengeInterceptOptions {
  /** The key authorization for a token issued for `host`, or null. */
  readonly lookup: (token: string, host: string) => string | null;
  /** Longest first request head buffered while deciding. */
  readonly maxHeadBytes: number;
  /** A first request head that has not arrived by then is handed on undecided (ms). */
  readonly timeoutMs: number;
  /** Called after a challenge was answered. */
  readonly onAnswered?: (host: string, token: string) => void;
}

/**
 * Answers the connection's first request if it is a challenge the manager
 * knows; otherwise calls `next(socket)` with every byte read so far put back.
 */
export function interceptAcmeChallenge(
  socket: Socket,
  options: ChallengeInterceptOptions,
  next: (socket: Socket) => void,
): void {
  let buffered: Buffer = Buffer.alloc(0);
  let decided = false;

  const cleanUp = (): void => {
    decided = true;
    clearTimeout(timer);
    socket.removeListener('readable', onReadable);
    socket.removeListener('end', onEnd);
    socket.removeListener('error', onError);
  };
  const handOn = (): void => {
    cleanUp();
    if (socket.destroyed) return;
    if (buffered.length > 0) socket.unshift(buffered);
    next(socket);
  };
  const answer = (keyAuthorization: string): void => {
    cleanUp();
    socket.on('error', () => undefined);
    socket.end(challengeResponseBytes(keyAuthorization));
    // The validator closes its side after reading; do not wait for it forever.
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
    // Read (and drop) whatever else it sends, so its close is seen. (The stream flows again
    // once the 'readable' listener's removal is processed, on the next tick.)
    socket.on('data', () => undefined);
  };
  const decide = (): void => {
    const peek = peekChallengeRequest(buffered, options.maxHeadBytes);
    switch (peek.kind) {
      case 'incomplete':
        return;
      case 'other':
        handOn();
        return;
      case 'challenge': {
        const keyAuthorization = options.lookup(peek.token, peek.host);
        if (keyAuthorization === null) {
          handOn();
          return;
        }
        answer(keyAuthorization);
        options.onAnswered?.(peek.host, peek.token);
        return;
      }
    }
  };
  const onReadable = (): void => {
    for (;;) {
      if (decided) return;
      const chunk = socket.read() as Buffer | null;
      if (chunk === null) return;
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      decide();
    }
  };
  const onEnd = (): void => {
    // The client stopped before one whole head: there is nothing to answer or route.
    cleanUp();
    socket.destroy();
  };
  const onError = (): void => {
    cleanUp();
    socket.destroy();
  };
  const timer = setTimeout(handOn, options.timeoutMs);
  timer.unref();
  socket.on('readable', onReadable);
  socket.on('end', onEnd);
  socket.on('error', onError);
}
