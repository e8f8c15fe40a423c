/**
 * A strict, bounded HTTP/1.1 message framer for the relay's public side.
 *
 * The relay forwards each client connection's bytes to an agent over one yamux
 * stream, but it must understand where every request starts and ends: to route
 * and re-check the Host of each request on a kept-alive connection, to replace
 * the client's X-Forwarded-* on every request (not only the first), to refuse
 * proxy/h2c requests, and to know when a WebSocket upgrade turns the connection
 * into an opaque byte pipe. So requests are framed exactly as RFC 9112 says, and
 * the relay forwards only what it framed: a backend never sees bytes the relay
 * interpreted differently (request smuggling, RFC 9112 §11.2).
 *
 * - RequestReader: parses request heads (handing them to the caller, which
 *   writes a rewritten head) and passes bodies through as slices of the input,
 *   validating chunked framing line by line before it is forwarded (the
 *   chunked decoder, ./http1-chunked.ts, is shared with the inspector).
 * - ResponseReader: only observes the backend's responses (they are forwarded
 *   verbatim) to know when each ends, which status it had (101 Switching
 *   Protocols ends HTTP framing), and when the connection is idle.
 *
 * Limits: a head (request line + fields) may not exceed `maxHeadBytes` (431) or
 * `maxHeaderCount` fields (431); chunk-size lines and trailers are bounded too.
 */
import { HttpParseError } from './errors.js';
import { ChunkedBodyDecoder, LineBuffer } from './http1-chunked.js';
import type { ChunkedProfile } from './http1-chunked.js';

export { ChunkedBodyDecoder, MAX_CHUNK_LINE, parseChunkSizeLine } from './http1-chunked.js';
export type { ChunkedOutput, ChunkedProfile, ChunkedSink } from './http1-chunked.js';

export interface HttpLimits {
  /** Largest request or response head, request line and CRLFs included (default 32 KiB). */
  readonly maxHeadBytes: number;
  /** Most header fields in one head (default 100). */
  readonly maxHeaderCount: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = { maxHeadBytes: 32 * 1024, maxHeaderCount: 100 };

/** One header field as received: name and value in latin1 (1 char = 1 byte). */
export type HeaderField = readonly [name: string, value: string];

export interface RequestHead {
  readonly method: string;
  /** The request-target: origin-form ("/path?q") or "*" (OPTIONS only). */
  readonly target: string;
  /** The minor version: HTTP/1.0 or HTTP/1.1. */
  readonly minorVersion: 0 | 1;
  readonly headers: readonly HeaderField[];
  /** The Host header's host, lower-cased, without port or trailing dot. */
  readonly host: string;
  /** The Host header as sent (becomes X-Forwarded-Host). */
  readonly hostHeader: string;
  readonly body: BodyFraming;
  /** Connection: upgrade with an Upgrade header (WebSocket and the like). */
  readonly upgrade: boolean;
}

export type BodyFraming =
  | { readonly kind: 'none' }
  | { readonly kind: 'length'; readonly length: number }
  | { readonly kind: 'chunked' };

const CR = 0x0d;
const LF = 0x0a;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');
/** RFC 9110 §5.6.2 token. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** RFC 9110 §5.5 field-value characters: VCHAR, obs-text, SP, HTAB. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;
/** RFC 9112 §3.2: the origin-form (absolute-path [ "?" query ]) in visible ASCII. */
const ORIGIN_FORM = /^\/[\x21-\x7e]*$/;
const HTTP_VERSION = /^HTTP\/(\d)\.(\d)$/;
const DNS_NAME = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/;
/** Leading empty lines before a request-line that we skip (RFC 9112 §2.2 "at least one"). */
const MAX_LEADING_EMPTY_LINES = 4;

function checkLimits(limits: HttpLimits): void {
  if (typeof limits !== 'object') throw new TypeError('limits must be an object');
  if (!Number.isSafeInteger(limits.maxHeadBytes) || limits.maxHeadBytes < 64) {
    throw new RangeError(
      `limits.maxHeadBytes must be an integer >= 64, got ${String(limits.maxHeadBytes)}`,
    );
  }
  if (!Number.isSafeInteger(limits.maxHeaderCount) || limits.maxHeaderCount < 1) {
    throw new RangeError(
      `limits.maxHeaderCount must be an integer >= 1, got ${String(limits.maxHeaderCount)}`,
    );
  }
}

/**
 * Splits a head (without its final empty line) into lines, requiring CRLF
 * everywhere: a bare CR or LF is a 400 (RFC 9112 §2.2 lets a server reject
 * them; accepting bare LF is how proxies and backends come to disagree).
 */
function splitHeadLines(head: string): string[] {
  const lines = head.split('\r\n');
  for (const line of lines) {
    if (line.includes('\r') || line.includes('\n')) {
      throw new HttpParseError(400, 'bare CR or LF in the message head');
    }
  }
  return lines;
}

/** Parses header field lines (RFC 9112 §5), shared by requests, responses and trailers. */
function parseFieldLines(
  lines: readonly string[],
  start: number,
  limits: HttpLimits,
  what: string,
): HeaderField[] {
  const headers: HeaderField[] = [];
  for (let i = start; i < lines.length; i++) {
    const line = lines[i] ?? '';
    if (line.length === 0) throw new HttpParseError(400, `empty line inside the ${what}`);
    const first = line.charCodeAt(0);
    if (first === 0x20 || first === 0x09) {
      // RFC 9112 §5.2: obs-fold may be rejected with 400 outside message/http.
      throw new HttpParseError(400, `obsolete line folding in the ${what}`);
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new HttpParseError(400, `a ${what} field line without a name and ':'`);
    const name = line.slice(0, colon);
    // RFC 9112 §5.1: no whitespace is allowed between the field name and colon;
    // a server MUST reject such a request with 400.
    if (!TOKEN.test(name)) throw new HttpParseError(400, `invalid field name in the ${what}`);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (!FIELD_VALUE.test(value)) {
      throw new HttpParseError(400, `invalid characters in the value of ${name}`);
    }
    if (headers.length >= limits.maxHeaderCount) {
      throw new HttpParseError(431, `more than ${limits.maxHeaderCount} fields in the ${what}`);
    }
    headers.push([name, value]);
  }
  return headers;
}

/** The comma-separated list elements of a field value, lower-cased and trimmed. */
function listTokens(value: string): string[] {
  return value
    .split(',')
    .map((element) => element.trim().toLowerCase())
    .filter((element) => element.length > 0);
}

/** Parses a Host header value (RFC 9110 §7.2, uri-host [ ":" port ]) to a lower-case host name. */
export function parseHostHeader(value: string): string {
  if (typeof value !== 'string') throw new TypeError('value must be a string');
  let host = value.toLowerCase();
  if (host.startsWith('[')) {
    // An IP-literal: routable to no tunnel, but well-formed.
    const close = host.indexOf(']');
    if (close < 0) throw new HttpParseError(400, 'malformed Host: unterminated IPv6 literal');
    const rest = host.slice(close + 1);
    if (rest.length > 0 && !/^:\d{0,5}$/.test(rest)) {
      throw new HttpParseError(400, 'malformed Host: bad port');
    }
    return host.slice(0, close + 1);
  }
  const colon = host.indexOf(':');
  if (colon >= 0) {
    if (!/^\d{0,5}$/.test(host.slice(colon + 1)))
      throw new HttpParseError(400, 'malformed Host: bad port');
    host = host.slice(0, colon);
  }
  if (host.endsWith('.')) host = host.slice(0, -1);
  if (host.length === 0 || host.length > 253 || !DNS_NAME.test(host)) {
    throw new HttpParseError(400, 'malformed Host header');
  }
  return host;
}

/**
 * Parses one request head: the bytes from the request-line up to and including
 * the empty line that ends the fields. Throws HttpParseError with the status to
 * answer: 400 malformed or refused, 431 too many fields, 501 an unsupported
 * transfer coding, 505 a version other than HTTP/1.0 and HTTP/1.1.
 */
export function parseRequestHead(
  bytes: Buffer,
  limits: HttpLimits = DEFAULT_HTTP_LIMITS,
): RequestHead {
  if (!Buffer.isBuffer(bytes)) throw new TypeError('bytes must be a Buffer');
  checkLimits(limits);
  if (bytes.length > limits.maxHeadBytes) {
    throw new HttpParseError(431, `request head larger than ${limits.maxHeadBytes} bytes`);
  }
  if (bytes.length < 4 || bytes.indexOf(HEAD_END) !== bytes.length - 4) {
    throw new HttpParseError(400, 'the request head does not end with an empty line');
  }
  const lines = splitHeadLines(bytes.toString('latin1', 0, bytes.length - 4));
  const requestLine = lines[0] ?? '';
  // RFC 9112 §3: request-line = method SP request-target SP HTTP-version, single spaces.
  const parts = requestLine.split(' ');
  if (parts.length !== 3) throw new HttpParseError(400, 'malformed request line');
  const [method = '', target = '', version = ''] = parts;
  const versionMatch = HTTP_VERSION.exec(version);
  if (versionMatch === null) throw new HttpParseError(400, 'malformed HTTP version');
  if (versionMatch[1] !== '1' || (versionMatch[2] !== '0' && versionMatch[2] !== '1')) {
    throw new HttpParseError(505, `${version} is not supported (HTTP/1.0 and HTTP/1.1 are)`);
  }
  const minorVersion = versionMatch[2] === '1' ? 1 : 0;
  if (method.length > 32 || !TOKEN.test(method)) throw new HttpParseError(400, 'malformed method');
  if (method === 'CONNECT') {
    throw new HttpParseError(400, 'CONNECT is refused: the relay is not a proxy');
  }
  if (target === '*') {
    if (method !== 'OPTIONS') throw new HttpParseError(400, "the '*' target is for OPTIONS only");
  } else if (!ORIGIN_FORM.test(target)) {
    // Absolute-form ("GET http://host/ HTTP/1.1") is what proxies receive
    // (RFC 9112 §3.2.2): this relay is not an open proxy.
    throw new HttpParseError(
      400,
      /^[a-z][a-z0-9+.-]*:/i.test(target)
        ? 'absolute-form (proxy) requests are refused'
        : 'malformed request target',
    );
  }

  const headers = parseFieldLines(lines, 1, limits, 'request head');
  let hostHeader: string | undefined;
  let contentLength: string | undefined;
  let transferEncoding: string | undefined;
  let upgradeHeader: string | undefined;
  const connectionTokens: string[] = [];
  for (const [name, value] of headers) {
    switch (name.toLowerCase()) {
      case 'host':
        // RFC 9112 §3.2: more than one Host is a 400.
        if (hostHeader !== undefined) throw new HttpParseError(400, 'more than one Host header');
        hostHeader = value;
        break;
      case 'content-length':
        if (contentLength !== undefined)
          throw new HttpParseError(400, 'more than one Content-Length');
        contentLength = value;
        break;
      case 'transfer-encoding':
        if (transferEncoding !== undefined)
          throw new HttpParseError(400, 'more than one Transfer-Encoding');
        transferEncoding = value;
        break;
      case 'upgrade':
        upgradeHeader = upgradeHeader === undefined ? value : `${upgradeHeader}, ${value}`;
        break;
      case 'connection':
        connectionTokens.push(...listTokens(value));
        break;
      case 'http2-settings':
        throw new HttpParseError(400, 'HTTP/2 upgrade (h2c) is refused');
      default:
        break;
    }
  }
  if (hostHeader === undefined) throw new HttpParseError(400, 'the Host header is missing');
  const host = parseHostHeader(hostHeader);

  let body: BodyFraming = { kind: 'none' };
  if (transferEncoding !== undefined) {
    // RFC 9112 §6.1: Transfer-Encoding with Content-Length "ought to be handled
    // as an error" by an intermediary; it is the classic smuggling vector.
    if (contentLength !== undefined) {
      throw new HttpParseError(400, 'both Transfer-Encoding and Content-Length');
    }
    if (minorVersion === 0)
      throw new HttpParseError(400, 'Transfer-Encoding in an HTTP/1.0 request');
    const codings = listTokens(transferEncoding);
    if (codings.length !== 1 || codings[0] !== 'chunked') {
      throw new HttpParseError(501, `transfer coding '${transferEncoding}' is not supported`);
    }
    body = { kind: 'chunked' };
  } else if (contentLength !== undefined) {
    if (!/^\d{1,15}$/.test(contentLength)) throw new HttpParseError(400, 'invalid Content-Length');
    const length = Number(contentLength);
    if (length > 0) body = { kind: 'length', length };
  }

  let upgrade = false;
  if (upgradeHeader !== undefined) {
    const protocols = listTokens(upgradeHeader);
    if (protocols.some((protocol) => protocol === 'h2c' || protocol.startsWith('h2c/'))) {
      throw new HttpParseError(400, 'HTTP/2 upgrade (h2c) is refused');
    }
    upgrade = connectionTokens.includes('upgrade') && protocols.length > 0;
  }
  return { method, target, minorVersion, headers, host, hostHeader, body, upgrade };
}

/** Fields a client may not set: the relay writes its own X-Forwarded-* from the real connection. */
const FORWARDING_FIELDS: ReadonlySet<string> = new Set([
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'x-forwarded-port',
  'x-real-ip',
]);

export interface ForwardingInfo {
  /** The client's address, as the relay's socket sees it. */
  readonly clientAddress: string;
  readonly proto: 'http' | 'https';
}

/**
 * Serializes a request head for the backend: the request as received, minus
 * any client-sent forwarding fields, plus X-Forwarded-For / -Proto / -Host from
 * the real connection. Forwarding-field names are also removed from Connection,
 * so a client cannot make a proxy behind the agent drop ours as hop-by-hop
 * (RFC 9110 §7.6.1 lets Connection name fields to remove).
 */
export function serializeForwardedHead(head: RequestHead, info: ForwardingInfo): Buffer {
  let text = `${head.method} ${head.target} HTTP/1.${head.minorVersion}\r\n`;
  for (const [name, value] of head.headers) {
    const lower = name.toLowerCase();
    if (FORWARDING_FIELDS.has(lower)) continue;
    if (lower === 'connection') {
      const kept = value
        .split(',')
        .map((element) => element.trim())
        .filter((element) => element.length > 0 && !FORWARDING_FIELDS.has(element.toLowerCase()));
      if (kept.length === 0) continue;
      text += `${name}: ${kept.join(', ')}\r\n`;
      continue;
    }
    text += `${name}: ${value}\r\n`;
  }
  text += `X-Forwarded-For: ${info.clientAddress}\r\nX-Forwarded-Proto: ${info.proto}\r\nX-Forwarded-Host: ${head.hostHeader}\r\n\r\n`;
  return Buffer.from(text, 'latin1');
}

// ---- chunked bodies ----------------------------------------------------------------------

/** Checks one trailer field line (without its CRLF) like a header field line (RFC 9112 §7.1.2). */
function checkTrailerField(field: string, limits: HttpLimits): void {
  parseFieldLines(splitHeadLines(field), 0, limits, 'trailer section');
}

/**
 * Chunked request bodies: malformed framing is a 400, trailers past the head
 * limits a 431, and every trailer line is checked like a header field line.
 */
export const REQUEST_CHUNKED: ChunkedProfile = {
  subject: 'request',
  malformedStatus: 400,
  tooLargeStatus: 431,
  checkTrailerField,
};

/**
 * Chunked response bodies: whatever is wrong is the backend's fault, a 502
 * (RFC 9110 §15.6.3); trailers, forwarded verbatim, are only bounded in size.
 */
export const RESPONSE_CHUNKED: ChunkedProfile = {
  subject: 'response',
  malformedStatus: 502,
  tooLargeStatus: 502,
  checkTrailerField: null,
};

/** Body states shared by requests and responses. */
type BodyState = 'length' | 'chunked';

// ---- request framing ----------------------------------------------------------------

export interface RequestHandler {
  /** The first byte of a request head arrived (start the header timer). */
  headStart(): void;
  /**
   * A complete, valid request head. Return false to stop at once: push()
   * returns, and the reader must not be used again (the caller refuses the request).
   */
  head(head: RequestHead): boolean;
  /** Body bytes to forward verbatim (for chunked bodies: validated framing included). */
  body(bytes: Buffer): void;
  /**
   * The request (head and body) is complete. Return false to stop before the
   * next request: push() returns the unconsumed input, to be pushed again later.
   */
  end(): boolean;
}

type RequestState = 'head' | BodyState | 'stopped' | 'failed';

/**
 * Frames a stream of requests. push() consumes input and calls the handler;
 * it throws HttpParseError on a malformed message, after which the reader is
 * failed and refuses input.
 */
export class RequestReader {
  private readonly limits: HttpLimits;
  private state: RequestState = 'head';
  /** An incomplete head, chunk-size line or trailer line. */
  private readonly buffered = new LineBuffer();
  /** Frames chunked bodies; forwards their encoding once validated. */
  private readonly chunked: ChunkedBodyDecoder;
  /** CRLFs skipped before the current request-line. */
  private leadingEmptyLines = 0;
  /** Content-Length body bytes still to come. */
  private remaining = 0;

  constructor(limits: HttpLimits = DEFAULT_HTTP_LIMITS) {
    checkLimits(limits);
    this.limits = limits;
    this.chunked = new ChunkedBodyDecoder(REQUEST_CHUNKED, limits, 'encoded', this.buffered);
  }

  /** True between messages with no byte of the next head received. */
  get idle(): boolean {
    return this.state === 'head' && this.buffered.length === 0;
  }

  /**
   * Consumes `chunk`. Returns the unconsumed rest when the handler's end()
   * asked to stop (null if nothing is left). Throws HttpParseError.
   */
  push(chunk: Buffer, handler: RequestHandler): Buffer | null {
    if (!Buffer.isBuffer(chunk)) throw new TypeError('chunk must be a Buffer');
    if (this.state === 'failed' || this.state === 'stopped') {
      throw new HttpParseError(400, 'the request stream already ended');
    }
    try {
      return this.consume(chunk, handler);
    } catch (error) {
      this.state = 'failed';
      this.buffered.clear();
      throw error;
    }
  }

  private consume(chunk: Buffer, handler: RequestHandler): Buffer | null {
    let offset = 0;
    const rest = (): Buffer | null => (offset < chunk.length ? chunk.subarray(offset) : null);
    while (offset < chunk.length) {
      switch (this.state) {
        case 'head': {
          if (this.buffered.length === 0) {
            offset = this.skipLeadingEmptyLines(chunk, offset);
            if (offset >= chunk.length) return null;
            handler.headStart();
          }
          const end = this.buffered.headEnd(chunk, offset);
          if (end < 0) {
            if (!this.buffered.stash(chunk.subarray(offset), this.limits.maxHeadBytes)) {
              throw new HttpParseError(
                431,
                `request head larger than ${this.limits.maxHeadBytes} bytes`,
              );
            }
            return null;
          }
          const headBytes = this.buffered.take(
            chunk.subarray(offset, end),
            this.limits.maxHeadBytes,
          );
          if (headBytes === null) {
            throw new HttpParseError(
              431,
              `request head larger than ${this.limits.maxHeadBytes} bytes`,
            );
          }
          offset = end;
          this.leadingEmptyLines = 0;
          const head = parseRequestHead(headBytes, this.limits);
          switch (head.body.kind) {
            case 'none':
              break;
            case 'length':
              this.state = 'length';
              this.remaining = head.body.length;
              break;
            case 'chunked':
              this.state = 'chunked';
              this.chunked.reset();
              break;
          }
          if (!handler.head(head)) {
            this.state = 'stopped';
            return rest();
          }
          if (head.body.kind === 'none' && !handler.end()) return rest();
          break;
        }
        case 'length': {
          const take = Math.min(this.remaining, chunk.length - offset);
          handler.body(chunk.subarray(offset, offset + take));
          offset += take;
          this.remaining -= take;
          if (this.remaining === 0) {
            this.state = 'head';
            if (!handler.end()) return rest();
          }
          break;
        }
        case 'chunked': {
          // Framing lines go to handler.body only once validated (RFC 9112 §11.2).
          offset = this.chunked.push(chunk, offset, handler);
          if (this.chunked.done) {
            this.state = 'head';
            if (!handler.end()) return rest();
          }
          break;
        }
        case 'stopped':
        case 'failed':
          throw new HttpParseError(400, 'the request stream already ended');
      }
    }
    return null;
  }

  /** Skips CRLFs before a request-line (RFC 9112 §2.2), a bounded number of them. */
  private skipLeadingEmptyLines(chunk: Buffer, offset: number): number {
    let at = offset;
    while (at < chunk.length && (chunk[at] === CR || chunk[at] === LF)) {
      if (chunk[at] === LF && ++this.leadingEmptyLines > MAX_LEADING_EMPTY_LINES) {
        throw new HttpParseError(400, 'too many empty lines before the request line');
      }
      at++;
    }
    return at;
  }
}

// ---- response observation ------------------------------------------------------------

export interface ResponseHandler {
  /**
   * A response head. `final` is false for 1xx other than 101. After a 101
   * nothing more is parsed: the connection switched protocols.
   */
  head(status: number, final: boolean): void;
  /** A final response is complete (close-delimited ones: at end()). */
  complete(): void;
}

/** What the reader must know about each request a response answers. */
export interface PendingRequest {
  /** A HEAD request: its response has no body whatever its headers say. */
  readonly isHead: boolean;
  /** The request asked to switch protocols: a 101 may answer it. */
  readonly upgrade: boolean;
}

type ResponseState = 'head' | BodyState | 'until-close' | 'switched' | 'failed';

/**
 * Tracks the backend's response framing (RFC 9112 §6.3) without changing a byte:
 * responses are forwarded verbatim, this only tells the relay where each ends.
 * The caller registers each request it forwards (`expect`), in order.
 * Malformed responses throw HttpParseError with status 502.
 */
export class ResponseReader {
  private readonly limits: HttpLimits;
  private readonly requests: PendingRequest[] = [];
  private state: ResponseState = 'head';
  private readonly buffered = new LineBuffer();
  /** Finds where chunked responses end (their bytes are only observed). */
  private readonly chunked: ChunkedBodyDecoder;
  private remaining = 0;
  private started = false;

  constructor(limits: HttpLimits = DEFAULT_HTTP_LIMITS) {
    checkLimits(limits);
    this.limits = limits;
    this.chunked = new ChunkedBodyDecoder(RESPONSE_CHUNKED, limits, 'none', this.buffered);
  }

  /** Registers the next request forwarded to the backend. */
  expect(request: PendingRequest): void {
    this.requests.push(request);
  }

  /** Requests forwarded whose final response is not complete yet. */
  get outstanding(): number {
    return this.requests.length;
  }

  /** True once a byte of the response to the oldest outstanding request was seen. */
  get responseStarted(): boolean {
    return this.started;
  }

  /** True after a 101: what follows is not HTTP. */
  get switched(): boolean {
    return this.state === 'switched';
  }

  /** Observes backend bytes. Throws HttpParseError (502) on a malformed response. */
  push(chunk: Buffer, handler: ResponseHandler): void {
    if (!Buffer.isBuffer(chunk)) throw new TypeError('chunk must be a Buffer');
    if (this.state === 'failed')
      throw new HttpParseError(502, 'the response stream already failed');
    try {
      this.consume(chunk, handler);
    } catch (error) {
      this.state = 'failed';
      this.buffered.clear();
      throw error;
    }
  }

  /** The backend closed its side: completes a close-delimited response. */
  end(handler: ResponseHandler): void {
    if (this.state !== 'until-close') return;
    this.state = 'head';
    this.finish(handler);
  }

  private consume(chunk: Buffer, handler: ResponseHandler): void {
    let offset = 0;
    while (offset < chunk.length) {
      switch (this.state) {
        case 'head': {
          if (this.requests.length === 0) {
            throw new HttpParseError(502, 'the backend sent a response to no request');
          }
          this.started = true;
          const end = this.buffered.headEnd(chunk, offset);
          if (end < 0) {
            if (!this.buffered.stash(chunk.subarray(offset), this.limits.maxHeadBytes)) {
              throw new HttpParseError(
                502,
                `response head larger than ${this.limits.maxHeadBytes} bytes`,
              );
            }
            return;
          }
          const headBytes = this.buffered.take(
            chunk.subarray(offset, end),
            this.limits.maxHeadBytes,
          );
          if (headBytes === null) {
            throw new HttpParseError(
              502,
              `response head larger than ${this.limits.maxHeadBytes} bytes`,
            );
          }
          offset = end;
          this.onHead(headBytes, handler);
          break;
        }
        case 'length': {
          const take = Math.min(this.remaining, chunk.length - offset);
          offset += take;
          this.remaining -= take;
          if (this.remaining === 0) {
            this.state = 'head';
            this.finish(handler);
          }
          break;
        }
        case 'chunked':
          offset = this.chunked.push(chunk, offset, null);
          if (this.chunked.done) {
            this.state = 'head';
            this.finish(handler);
          }
          break;
        case 'until-close':
        case 'switched':
          return;
        case 'failed':
          throw new HttpParseError(502, 'the response stream already failed');
      }
    }
  }

  private onHead(headBytes: Buffer, handler: ResponseHandler): void {
    let lines: string[];
    let headers: HeaderField[];
    try {
      lines = splitHeadLines(headBytes.toString('latin1', 0, headBytes.length - 4));
      headers = parseFieldLines(lines, 1, this.limits, 'response head');
    } catch (error) {
      throw new HttpParseError(
        502,
        `malformed response head: ${error instanceof Error ? error.message : String(error)}`,
      );
    }
    // RFC 9112 §4: status-line = HTTP-version SP status-code SP [ reason-phrase ].
    const match = /^HTTP\/1\.[01] ([1-9]\d\d)(?: [\t\x20-\x7e\x80-\xff]*)?$/.exec(lines[0] ?? '');
    if (match === null) throw new HttpParseError(502, 'malformed response status line');
    const status = Number(match[1]);
    const request = this.requests[0];
    if (request === undefined) {
      throw new HttpParseError(502, 'the backend sent a response to no request');
    }

    if (status === 101) {
      if (!request.upgrade) {
        throw new HttpParseError(
          502,
          '101 Switching Protocols answers a request that did not ask to upgrade',
        );
      }
      this.state = 'switched';
      this.requests.shift();
      this.started = false;
      handler.head(status, true);
      return;
    }
    if (status < 200) {
      // An interim response (100 Continue, 103 Early Hints): the final one follows.
      handler.head(status, false);
      return;
    }
    let contentLength: string | undefined;
    let transferEncoding: string | undefined;
    for (const [name, value] of headers) {
      const lower = name.toLowerCase();
      if (lower === 'content-length') {
        if (contentLength !== undefined && contentLength !== value) {
          throw new HttpParseError(502, 'conflicting Content-Length in the response');
        }
        contentLength = value;
      } else if (lower === 'transfer-encoding') {
        transferEncoding = transferEncoding === undefined ? value : `${transferEncoding}, ${value}`;
      }
    }
    if (contentLength !== undefined && !/^\d{1,15}$/.test(contentLength)) {
      throw new HttpParseError(502, 'invalid Content-Length in the response');
    }
    handler.head(status, true);
    // RFC 9112 §6.3, in its order.
    if (request.isHead || status === 204 || status === 304) {
      this.state = 'head';
      this.finish(handler);
    } else if (transferEncoding !== undefined) {
      const codings = listTokens(transferEncoding);
      if (codings[codings.length - 1] === 'chunked') {
        this.state = 'chunked';
        this.chunked.reset();
      } else {
        this.state = 'until-close';
      }
    } else if (contentLength !== undefined) {
      this.remaining = Number(contentLength);
      if (this.remaining === 0) {
        this.state = 'head';
        this.finish(handler);
      } else {
        this.state = 'length';
      }
    } else {
      this.state = 'until-close';
    }
  }

  private finish(handler: ResponseHandler): void {
    this.requests.shift();
    this.started = false;
    this.remaining = 0;
    handler.complete();
  }
}
