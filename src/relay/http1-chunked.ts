/**
 * The chunked transfer coding (RFC 9112 §7.1), decoded incrementally, and the
 * bounded line buffer the HTTP/1 framers share.
 *
 * One state machine serves three readers that used to have one each:
 * - the relay's RequestReader (./http1.ts) forwards a request body verbatim,
 *   but only bytes it has validated: a framing line goes out once it is whole
 *   and well-formed, so a backend never sees a line the relay rejected
 *   (request smuggling, RFC 9112 §11.2);
 * - its ResponseReader only needs to know where a response ends;
 * - the agent's inspector (./inspector/recorder.ts) wants the decoded payload.
 *
 * What differs is a ChunkedProfile (which status a failure carries, how
 * strictly trailers are checked) and a ChunkedOutput (what reaches the sink:
 * the encoding as received, the payload, or nothing). The decoder itself makes
 * no closures and builds no strings on the way: chunk-size lines are parsed
 * in place in the input when they are whole in it, and the bytes handed to an
 * 'encoded' sink are one slice of the input per push, not one per line.
 */
import { HttpParseError } from './errors.js';
import type { HttpLimits } from './http1.js';

const CR = 0x0d;
const LF = 0x0a;
const SP = 0x20;
const HTAB = 0x09;
const SEMICOLON = 0x3b;
const DEL = 0x7f;
const HEAD_END = Buffer.from('\r\n\r\n', 'latin1');

/** Longest chunk-size line (size, extensions and CRLF) accepted. */
export const MAX_CHUNK_LINE = 4096;
/** chunk-size is at most 13 hex digits: below 2^52, so exact in a double. */
const MAX_CHUNK_SIZE_DIGITS = 13;

/** chunkSizeAt(): the line is not ended by CRLF. */
const SIZE_NOT_CRLF = -2;
/** chunkSizeAt(): the line does not match chunk-size [ chunk-ext ]. */
const SIZE_MALFORMED = -1;

/**
 * Bytes of an incomplete head or framing line, kept across input chunks and
 * bounded: beyond `max` bytes the message is refused.
 */
export class LineBuffer {
  private parts: Buffer[] = [];
  length = 0;

  /** Keeps a copy of `bytes` (the caller's chunk may be reused); false past `max`. */
  stash(bytes: Buffer, max: number): boolean {
    this.length += bytes.length;
    if (this.length > max) return false;
    this.parts.push(Buffer.from(bytes));
    return true;
  }

  /** The stashed bytes followed by `rest`; empties the buffer. Null past `max`. */
  take(rest: Buffer, max: number): Buffer | null {
    if (this.length + rest.length > max) return null;
    if (this.length === 0) return rest;
    const whole = Buffer.concat([...this.parts, rest]);
    this.clear();
    return whole;
  }

  /**
   * Where the head ends (just past its CRLFCRLF) in `chunk`, counting from
   * `offset`, when the terminator may straddle the stashed bytes; -1 if not yet.
   */
  headEnd(chunk: Buffer, offset: number): number {
    if (this.length > 0) {
      const last = this.parts[this.parts.length - 1] ?? Buffer.alloc(0);
      const tail = last.length >= 3 ? last.subarray(-3) : Buffer.concat(this.parts).subarray(-3);
      const joined = Buffer.concat([tail, chunk.subarray(offset, offset + 3)]);
      const straddle = joined.indexOf(HEAD_END);
      if (straddle >= 0) return offset + straddle + 4 - tail.length;
    }
    const at = chunk.indexOf(HEAD_END, offset);
    return at < 0 ? -1 : at + 4;
  }

  clear(): void {
    this.parts = [];
    this.length = 0;
  }
}

/** The value of an ASCII hex digit, or -1. */
function hexValue(byte: number): number {
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  const lower = byte | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return -1;
}

/**
 * The chunk size of the chunk-size line in bytes[start, end), CRLF included,
 * without copying it (RFC 9112 §7.1):
 *   chunk-size [ chunk-ext ] CRLF, chunk-ext = *( BWS ";" BWS ext-name [ ... ] )
 * checked as the relay always has: 1 to 13 hex digits, then nothing, or
 * optional spaces/tabs, ";" and any field-value characters (VCHAR, obs-text,
 * SP, HTAB). Returns SIZE_NOT_CRLF or SIZE_MALFORMED when it is not one.
 */
function chunkSizeAt(bytes: Uint8Array, start: number, end: number): number {
  if (end - start < 3 || bytes[end - 2] !== CR || bytes[end - 1] !== LF) return SIZE_NOT_CRLF;
  const stop = end - 2;
  let at = start;
  let size = 0;
  for (; at < stop; at++) {
    const digit = hexValue(bytes[at] ?? 0);
    if (digit < 0) break;
    if (at - start === MAX_CHUNK_SIZE_DIGITS) return SIZE_MALFORMED;
    size = size * 16 + digit;
  }
  if (at === start) return SIZE_MALFORMED;
  if (at === stop) return size;
  while (at < stop && (bytes[at] === SP || bytes[at] === HTAB)) at++;
  if (at === stop || bytes[at] !== SEMICOLON) return SIZE_MALFORMED;
  for (at++; at < stop; at++) {
    const byte = bytes[at] ?? 0;
    if (byte < SP ? byte !== HTAB : byte === DEL) return SIZE_MALFORMED;
  }
  return size;
}

/** Parses a chunk-size line including its CRLF (RFC 9112 §7.1); returns the chunk size. */
export function parseChunkSizeLine(line: Buffer): number {
  if (!Buffer.isBuffer(line)) throw new TypeError('line must be a Buffer');
  const size = chunkSizeAt(line, 0, line.length);
  if (size === SIZE_NOT_CRLF) throw new HttpParseError(400, 'chunk-size line not ended by CRLF');
  if (size === SIZE_MALFORMED) throw new HttpParseError(400, 'malformed chunk-size line');
  return size;
}

/** How one kind of message fails and checks its trailers. */
export interface ChunkedProfile {
  /** Names the message in errors: 'request', 'response'. */
  readonly subject: string;
  /** The status of malformed framing (400 for a request, 502 for a response). */
  readonly malformedStatus: number;
  /** The status of a trailer section over the limits (431 for a request, 502 for a response). */
  readonly tooLargeStatus: number;
  /**
   * Strict trailers: every trailer line must end with CRLF, there may be at
   * most `maxHeaderCount` of them, and each is checked by this function (given
   * the line without its CRLF) like a header field line; it throws
   * HttpParseError. Null: trailers are only bounded in size (`maxHeadBytes`)
   * and the section ends at the first line that is exactly CRLF.
   */
  readonly checkTrailerField: ((field: string, limits: HttpLimits) => void) | null;
}

/**
 * What the decoder hands its sink:
 * - 'encoded': the encoding exactly as received, each framing line only once
 *   validated (for forwarding);
 * - 'decoded': the payload, without framing;
 * - 'none': nothing (only where the body ends matters).
 */
export type ChunkedOutput = 'encoded' | 'decoded' | 'none';

/** Receives bytes from a ChunkedBodyDecoder (a RequestHandler is one). */
export interface ChunkedSink {
  /** A slice of the input (or a whole line that straddled inputs); valid during the call only. */
  body(bytes: Buffer): void;
}

const SIZE_LINE = 0;
const DATA = 1;
const DATA_CR = 2;
const DATA_LF = 3;
const TRAILER_LINE = 4;
const DONE = 5;
const FAILED = 6;
type DecoderState =
  | typeof SIZE_LINE
  | typeof DATA
  | typeof DATA_CR
  | typeof DATA_LF
  | typeof TRAILER_LINE
  | typeof DONE
  | typeof FAILED;

const OUTPUTS: readonly ChunkedOutput[] = ['encoded', 'decoded', 'none'];

/**
 * Decodes one chunked body after another (reset() between them). push()
 * consumes input up to the end of the body and says where that is; it throws
 * HttpParseError with the profile's statuses, after which the decoder refuses
 * input until reset().
 */
export class ChunkedBodyDecoder {
  private readonly profile: ChunkedProfile;
  private readonly limits: HttpLimits;
  private readonly output: ChunkedOutput;
  /** An incomplete framing line (shared with a reader's head buffer: never both at once). */
  private readonly buffered: LineBuffer;
  private state: DecoderState = SIZE_LINE;
  /** Data bytes of the current chunk still to come. */
  private remaining = 0;
  private trailerBytes = 0;
  private trailerCount = 0;

  constructor(
    profile: ChunkedProfile,
    limits: HttpLimits,
    output: ChunkedOutput,
    buffered: LineBuffer = new LineBuffer(),
  ) {
    const checkedProfile = profile as Partial<ChunkedProfile> | null;
    if (
      typeof checkedProfile !== 'object' ||
      checkedProfile === null ||
      !Number.isInteger(checkedProfile.malformedStatus) ||
      !Number.isInteger(checkedProfile.tooLargeStatus)
    ) {
      throw new TypeError('profile must be a ChunkedProfile');
    }
    const checkedLimits = limits as Partial<HttpLimits> | null;
    if (
      typeof checkedLimits !== 'object' ||
      checkedLimits === null ||
      !Number.isSafeInteger(checkedLimits.maxHeadBytes) ||
      !Number.isSafeInteger(checkedLimits.maxHeaderCount)
    ) {
      throw new TypeError('limits must be HttpLimits');
    }
    const checkedOutput: unknown = output;
    if (!OUTPUTS.includes(output)) {
      throw new RangeError(
        `output must be one of ${OUTPUTS.join(', ')}, got ${String(checkedOutput)}`,
      );
    }
    if (!(buffered instanceof LineBuffer)) throw new TypeError('buffered must be a LineBuffer');
    this.profile = profile;
    this.limits = limits;
    this.output = output;
    this.buffered = buffered;
  }

  /** True once the body's last CRLF (after the trailer section) was consumed. */
  get done(): boolean {
    return this.state === DONE;
  }

  /** Starts a new body (also after a failure). */
  reset(): void {
    this.state = SIZE_LINE;
    this.remaining = 0;
    this.trailerBytes = 0;
    this.trailerCount = 0;
  }

  /**
   * Consumes `chunk` from `offset` and returns the offset where the body's
   * bytes in it end: chunk.length unless the body ended inside the chunk
   * (then `done` is true and the rest belongs to what follows the body).
   */
  push(chunk: Buffer, offset: number, sink: ChunkedSink | null): number {
    if (this.state === FAILED) {
      throw new HttpParseError(
        this.profile.malformedStatus,
        `the chunked ${this.profile.subject} body already failed`,
      );
    }
    const encoded = this.output === 'encoded' && sink !== null;
    const decoded = this.output === 'decoded' && sink !== null;
    const end = chunk.length;
    let at = offset;
    /** Start of the validated input not yet handed to an 'encoded' sink. */
    let run = offset;
    while (at < end && this.state !== DONE) {
      switch (this.state) {
        case SIZE_LINE:
        case TRAILER_LINE: {
          const trailer = this.state === TRAILER_LINE;
          const max = trailer ? this.limits.maxHeadBytes : MAX_CHUNK_LINE;
          const lineEnd = chunk.indexOf(LF, at) + 1;
          if (lineEnd === 0) {
            if (encoded && at > run) sink.body(chunk.subarray(run, at));
            if (!this.buffered.stash(chunk.subarray(at), max)) throw this.lineTooLong(trailer);
            return end;
          }
          if (this.buffered.length === 0) {
            // The whole line is in this input: check it in place (it stays in the run).
            if (lineEnd - at > max) throw this.lineTooLong(trailer);
            if (trailer) this.trailerLine(chunk, at, lineEnd);
            else this.sizeLine(chunk, at, lineEnd);
          } else {
            // The line started in an earlier input: join it, check it, then forward it whole.
            if (encoded && at > run) sink.body(chunk.subarray(run, at));
            const line = this.buffered.take(chunk.subarray(at, lineEnd), max);
            if (line === null) throw this.lineTooLong(trailer);
            if (trailer) this.trailerLine(line, 0, line.length);
            else this.sizeLine(line, 0, line.length);
            if (encoded) sink.body(line);
            run = lineEnd;
          }
          at = lineEnd;
          break;
        }
        case DATA: {
          const take = Math.min(this.remaining, end - at);
          if (decoded) sink.body(chunk.subarray(at, at + take));
          at += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = DATA_CR;
          break;
        }
        case DATA_CR:
        case DATA_LF:
          // The CRLF after chunk-data, byte by byte across inputs.
          if (chunk[at] !== (this.state === DATA_CR ? CR : LF)) {
            throw this.failure(
              this.profile.malformedStatus,
              `${this.profile.subject} chunk data not followed by CRLF`,
            );
          }
          at++;
          this.state = this.state === DATA_CR ? DATA_LF : SIZE_LINE;
          break;
        default:
          // DONE ends the loop and a failure throws: nothing else is left.
          return at;
      }
    }
    if (encoded && at > run) sink.body(chunk.subarray(run, at));
    return at;
  }

  private sizeLine(bytes: Uint8Array, start: number, end: number): void {
    const size = chunkSizeAt(bytes, start, end);
    if (size < 0) {
      throw this.failure(
        this.profile.malformedStatus,
        size === SIZE_NOT_CRLF
          ? `${this.profile.subject} chunk-size line not ended by CRLF`
          : `malformed chunk-size line in the ${this.profile.subject}`,
      );
    }
    if (size === 0) {
      // trailer-section = *( field-line CRLF ) CRLF (RFC 9112 §7.1.2).
      this.state = TRAILER_LINE;
    } else {
      this.state = DATA;
      this.remaining = size;
    }
  }

  private trailerLine(bytes: Buffer, start: number, end: number): void {
    const length = end - start;
    const check = this.profile.checkTrailerField;
    if (check === null) {
      if (length === 2 && bytes[start] === CR) {
        this.state = DONE;
        return;
      }
      this.trailerBytes += length;
      if (this.trailerBytes > this.limits.maxHeadBytes) {
        throw this.failure(
          this.profile.tooLargeStatus,
          `${this.profile.subject} trailer section too large`,
        );
      }
      return;
    }
    // RFC 9112 §2.2: bare LF is refused here, as in heads.
    if (length < 2 || bytes[end - 2] !== CR) {
      throw this.failure(this.profile.malformedStatus, 'bare LF in the trailer section');
    }
    if (length === 2) {
      this.state = DONE;
      return;
    }
    this.trailerBytes += length;
    this.trailerCount++;
    if (
      this.trailerBytes > this.limits.maxHeadBytes ||
      this.trailerCount > this.limits.maxHeaderCount
    ) {
      throw this.failure(
        this.profile.tooLargeStatus,
        `${this.profile.subject} trailer section too large`,
      );
    }
    try {
      check(bytes.toString('latin1', start, end - 2), this.limits);
    } catch (error) {
      this.state = FAILED;
      this.buffered.clear();
      throw error;
    }
  }

  private lineTooLong(trailer: boolean): HttpParseError {
    const max = trailer ? this.limits.maxHeadBytes : MAX_CHUNK_LINE;
    return this.failure(
      trailer ? this.profile.tooLargeStatus : this.profile.malformedStatus,
      `${this.profile.subject} ${trailer ? 'trailer' : 'chunk-size'} line longer than ${max} bytes`,
    );
  }

  /** Fails the decoder: the error to throw. */
  private failure(status: number, message: string): HttpParseError {
    this.state = FAILED;
    this.buffered.clear();
    return new HttpParseError(status, message);
  }
}
