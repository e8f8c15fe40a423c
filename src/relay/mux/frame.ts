/**
 * The yamux frame codec: the 12-byte header and an incremental reader that cuts
 * a byte stream into frames. Pure (no I/O): the session feeds it what the
 * transport delivers.
 *
 * Spec: hashicorp/yamux spec.md, "Framing":
 *
 *   Version (8 bits) | Type (8 bits) | Flags (16 bits) | StreamID (32 bits) | Length (32 bits)
 *
 * all big-endian. Length is the payload length for Data, the window delta for
 * Window Update, an opaque value for Ping and an error code for Go Away; only
 * Data frames carry a payload.
 */
import { YamuxProtocolError } from './errors.js';

/** spec.md "Version Field": always 0. */
export const YAMUX_VERSION = 0;
/** spec.md "Framing": "each header has a 12 byte overhead". */
export const HEADER_LENGTH = 12;
/**
 * spec.md "Flow Control": "Yamux initially starts each stream with a 256KB window
 * size"; both sides assume it until a Window Update says otherwise
 * (hashicorp/yamux const.go initialStreamWindow = 256 * 1024).
 */
export const INITIAL_STREAM_WINDOW = 256 * 1024;
/** Lengths, ids and window sizes are unsigned 32-bit fields. */
export const MAX_UINT32 = 0xffff_ffff;

/** spec.md "Type Field". */
export const FrameType = {
  Data: 0,
  WindowUpdate: 1,
  Ping: 2,
  GoAway: 3,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

/** spec.md "Flag Field" (a bit set). Unknown bits are ignored, as hashicorp/yamux does. */
export const Flag = {
  SYN: 0x1,
  ACK: 0x2,
  FIN: 0x4,
  RST: 0x8,
} as const;

/** spec.md "Session termination": the Go Away codes. */
export const GoAwayCode = {
  Normal: 0,
  ProtocolError: 1,
  InternalError: 2,
} as const;

export interface FrameHeader {
  readonly version: number;
  readonly type: FrameType;
  readonly flags: number;
  readonly streamId: number;
  readonly length: number;
}

function checkUint(value: number, bits: 8 | 16 | 32, name: string): void {
  const max = bits === 8 ? 0xff : bits === 16 ? 0xffff : MAX_UINT32;
  if (!Number.isInteger(value) || value < 0 || value > max) {
    throw new RangeError(`${name} must be an integer in [0, ${max}], got ${String(value)}`);
  }
}

function isFrameType(value: number): value is FrameType {
  return value <= FrameType.GoAway;
}

/**
 * Writes a header into `target` at `offset` (12 bytes) and returns `target`.
 * Without `target` a new 12-byte Buffer is returned. The values are checked
 * against their field widths; nothing else is (a caller may build any frame,
 * which tests of the reader need).
 */
export function encodeHeader(
  type: FrameType,
  flags: number,
  streamId: number,
  length: number,
  target: Buffer = Buffer.allocUnsafe(HEADER_LENGTH),
  offset = 0,
): Buffer {
  checkUint(type, 8, 'type');
  checkUint(flags, 16, 'flags');
  checkUint(streamId, 32, 'streamId');
  checkUint(length, 32, 'length');
  if (!Number.isInteger(offset) || offset < 0 || offset + HEADER_LENGTH > target.length) {
    throw new RangeError(
      `offset ${String(offset)} leaves no room for a ${HEADER_LENGTH}-byte header in a ${target.length}-byte target`,
    );
  }
  target[offset] = YAMUX_VERSION;
  target[offset + 1] = type;
  target.writeUInt16BE(flags, offset + 2);
  target.writeUInt32BE(streamId, offset + 4);
  target.writeUInt32BE(length, offset + 8);
  return target;
}

/**
 * Decodes and validates the 12 bytes at `offset`. Throws YamuxProtocolError for
 * a version other than 0 or a type other than the four of the spec, or when a
 * Ping/Go Away names a stream, or a Data/Window Update names stream 0
 * (spec.md "StreamID Field": "the 0 ID is reserved to represent the session.
 * Both Ping and Go Away messages should always use the 0 StreamID").
 */
export function decodeHeader(source: Uint8Array, offset = 0): FrameHeader {
  if (!Number.isInteger(offset) || offset < 0 || offset + HEADER_LENGTH > source.length) {
    throw new RangeError(
      `offset ${String(offset)} leaves no ${HEADER_LENGTH}-byte header in ${source.length} bytes`,
    );
  }
  const version = source[offset] ?? 0;
  const type = source[offset + 1] ?? 0;
  const flags = ((source[offset + 2] ?? 0) << 8) | (source[offset + 3] ?? 0);
  const streamId = readUint32(source, offset + 4);
  const length = readUint32(source, offset + 8);
  if (version !== YAMUX_VERSION) {
    throw new YamuxProtocolError(`unsupported yamux version ${version}`);
  }
  if (!isFrameType(type)) {
    throw new YamuxProtocolError(`unknown frame type ${type}`);
  }
  const sessionFrame = type === FrameType.Ping || type === FrameType.GoAway;
  if (sessionFrame && streamId !== 0) {
    throw new YamuxProtocolError(`${frameTypeName(type)} frame on stream ${streamId}, not 0`);
  }
  if (!sessionFrame && streamId === 0) {
    throw new YamuxProtocolError(`${frameTypeName(type)} frame on the reserved stream 0`);
  }
  return { version, type, flags, streamId, length };
}

function readUint32(source: Uint8Array, offset: number): number {
  return (
    (source[offset] ?? 0) * 0x100_0000 +
    (((source[offset + 1] ?? 0) << 16) |
      ((source[offset + 2] ?? 0) << 8) |
      (source[offset + 3] ?? 0))
  );
}

export function frameTypeName(type: FrameType): string {
  switch (type) {
    case FrameType.Data:
      return 'Data';
    case FrameType.WindowUpdate:
      return 'WindowUpdate';
    case FrameType.Ping:
      return 'Ping';
    case FrameType.GoAway:
      return 'GoAway';
  }
}

/** What the reader hands its consumer, frame by frame, in stream order. */
export interface FrameHandler {
  /** A validated header. For a Data frame its payload follows through `payload`. */
  header(header: FrameHeader): void;
  /** The next piece of the current Data frame's payload (a view, not a copy). */
  payload(piece: Buffer): void;
  /** The current frame is complete (its whole payload was delivered). */
  end(header: FrameHeader): void;
}

/**
 * Cuts a byte stream into frames. Payloads are passed through as views of the
 * input chunks (no copy, no reassembly), so the reader itself holds at most one
 * partial 12-byte header whatever the input: memory stays bounded even when a
 * peer announces a huge length. Data lengths above `maxDataLength` are refused
 * before any payload is read.
 *
 * `push` throws YamuxProtocolError on a malformed header; after that the reader
 * is poisoned (every later push throws the same error), since the byte stream
 * has lost its framing.
 */
export class FrameReader {
  private readonly partialHeader = Buffer.alloc(HEADER_LENGTH);
  private partialHeaderLength = 0;
  private current: FrameHeader | null = null;
  private payloadRemaining = 0;
  private failure: YamuxProtocolError | null = null;
  private maxDataLengthValue: number;

  constructor(maxDataLength: number = MAX_UINT32) {
    checkUint(maxDataLength, 32, 'maxDataLength');
    this.maxDataLengthValue = maxDataLength;
  }

  /** The largest Data length accepted. */
  get maxDataLength(): number {
    return this.maxDataLengthValue;
  }

  set maxDataLength(value: number) {
    checkUint(value, 32, 'maxDataLength');
    this.maxDataLengthValue = value;
  }

  /** Bytes the reader holds between pushes (at most one partial header). */
  get bufferedBytes(): number {
    return this.partialHeaderLength;
  }

  /** True between frames: no partial header, no payload still expected. */
  get atFrameBoundary(): boolean {
    return this.partialHeaderLength === 0 && this.current === null;
  }

  push(chunk: Buffer, handler: FrameHandler): void {
    if (this.failure !== null) throw this.failure;
    let offset = 0;
    const length = chunk.length;
    while (offset < length) {
      const current = this.current;
      if (current !== null) {
        // Inside a Data payload: pass through what this chunk has of it.
        const take = Math.min(this.payloadRemaining, length - offset);
        this.payloadRemaining -= take;
        const piece = chunk.subarray(offset, offset + take);
        offset += take;
        if (this.payloadRemaining === 0) this.current = null;
        handler.payload(piece);
        if (this.payloadRemaining === 0) handler.end(current);
        continue;
      }
      let header: FrameHeader;
      if (this.partialHeaderLength === 0 && length - offset >= HEADER_LENGTH) {
        header = this.decode(chunk, offset);
        offset += HEADER_LENGTH;
      } else {
        const take = Math.min(HEADER_LENGTH - this.partialHeaderLength, length - offset);
        chunk.copy(this.partialHeader, this.partialHeaderLength, offset, offset + take);
        this.partialHeaderLength += take;
        offset += take;
        if (this.partialHeaderLength < HEADER_LENGTH) break;
        this.partialHeaderLength = 0;
        header = this.decode(this.partialHeader, 0);
      }
      const hasPayload = header.type === FrameType.Data && header.length > 0;
      if (hasPayload) {
        this.current = header;
        this.payloadRemaining = header.length;
      }
      handler.header(header);
      if (!hasPayload) handler.end(header);
    }
  }

  private decode(source: Buffer, offset: number): FrameHeader {
    let header: FrameHeader;
    try {
      header = decodeHeader(source, offset);
    } catch (error) {
      if (error instanceof YamuxProtocolError) this.failure = error;
      throw error;
    }
    if (header.type === FrameType.Data && header.length > this.maxDataLengthValue) {
      this.failure = new YamuxProtocolError(
        `Data frame of ${header.length} bytes on stream ${header.streamId} exceeds the limit of ${this.maxDataLengthValue}`,
      );
      throw this.failure;
    }
    return header;
  }
}
