import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { YamuxProtocolError } from './errors.js';
import {
  Flag,
  FrameReader,
  FrameType,
  GoAwayCode,
  HEADER_LENGTH,
  INITIAL_STREAM_WINDOW,
  decodeHeader,
  encodeHeader,
} from './frame.js';
import type { FrameHandler, FrameHeader } from './frame.js';

interface Decoded {
  header: FrameHeader;
  payload: Buffer;
}

/** Feeds `chunks` to a reader; returns the frames, or the error that stopped it. */
function readAll(
  chunks: readonly Buffer[],
  maxDataLength?: number,
): { frames: Decoded[]; error: unknown; maxBuffered: number } {
  const reader = new FrameReader(maxDataLength);
  const frames: Decoded[] = [];
  let pieces: Buffer[] = [];
  let current: FrameHeader | null = null;
  let maxBuffered = 0;
  const handler: FrameHandler = {
    header(header) {
      assert.equal(current, null, 'a header arrived inside a frame');
      current = header;
      pieces = [];
    },
    payload(piece) {
      assert.notEqual(current, null, 'payload outside a frame');
      pieces.push(piece);
    },
    end(header) {
      assert.equal(header, current);
      frames.push({ header, payload: Buffer.concat(pieces) });
      current = null;
    },
  };
  try {
    for (const chunk of chunks) {
      reader.push(chunk, handler);
      maxBuffered = Math.max(maxBuffered, reader.bufferedBytes);
    }
  } catch (error) {
    return { frames, error, maxBuffered };
  }
  return { frames, error: undefined, maxBuffered };
}

function frame(
  type: FrameType,
  flags: number,
  streamId: number,
  length: number,
  payload?: Buffer,
): Buffer {
  const header = encodeHeader(type, flags, streamId, length);
  return payload === undefined ? header : Buffer.concat([header, payload]);
}

/** Cuts `bytes` at the given (sorted, deduplicated) offsets. */
function split(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let start = 0;
  for (const point of points) {
    chunks.push(bytes.subarray(start, point));
    start = point;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}

describe('yamux frame header', () => {
  it('lays out version, type, flags, stream id and length big-endian (spec.md "Framing")', () => {
    // Window Update, SYN|ACK, stream 0x01020304, delta 0x0a0b0c0d.
    const bytes = encodeHeader(FrameType.WindowUpdate, Flag.SYN | Flag.ACK, 0x01020304, 0x0a0b0c0d);
    assert.equal(bytes.toString('hex'), '0001000301020304' + '0a0b0c0d');
    assert.equal(bytes.length, HEADER_LENGTH);
    assert.deepEqual(decodeHeader(bytes), {
      version: 0,
      type: FrameType.WindowUpdate,
      flags: 3,
      streamId: 0x01020304,
      length: 0x0a0b0c0d,
    });
  });

  it('encodes the spec constants with their spec values', () => {
    assert.deepEqual(
      [FrameType.Data, FrameType.WindowUpdate, FrameType.Ping, FrameType.GoAway],
      [0, 1, 2, 3],
    );
    assert.deepEqual([Flag.SYN, Flag.ACK, Flag.FIN, Flag.RST], [1, 2, 4, 8]);
    assert.deepEqual(
      [GoAwayCode.Normal, GoAwayCode.ProtocolError, GoAwayCode.InternalError],
      [0, 1, 2],
    );
    assert.equal(INITIAL_STREAM_WINDOW, 262_144);
  });

  it('round-trips the largest field values', () => {
    const bytes = encodeHeader(FrameType.Data, 0xffff, 0xffff_ffff, 0xffff_ffff);
    assert.equal(bytes.toString('hex'), '0000ffffffffffffffffffff');
    const header = decodeHeader(bytes);
    assert.equal(header.streamId, 0xffff_ffff);
    assert.equal(header.length, 0xffff_ffff);
    assert.equal(header.flags, 0xffff);
  });

  it('writes into a target at an offset', () => {
    const target = Buffer.alloc(20, 0xee);
    encodeHeader(FrameType.Ping, Flag.ACK, 0, 7, target, 4);
    assert.equal(target.toString('hex'), 'eeeeeeee' + '000200020000000000000007' + 'eeeeeeee');
    assert.equal(decodeHeader(target, 4).length, 7);
  });

  it('refuses out-of-range values, naming the field', () => {
    assert.throws(() => encodeHeader(FrameType.Data, 0x1_0000, 1, 0), /flags/);
    assert.throws(() => encodeHeader(FrameType.Data, 0, -1, 0), /streamId/);
    assert.throws(() => encodeHeader(FrameType.Data, 0, 1, 2 ** 32), /length/);
    assert.throws(() => encodeHeader(FrameType.Data, 0, 1, 1.5), /length/);
    assert.throws(() => encodeHeader(FrameType.Data, 0, 1, 0, Buffer.alloc(11)), /offset/);
    assert.throws(() => decodeHeader(Buffer.alloc(11)), /offset/);
  });

  it('rejects a version other than 0 and types beyond Go Away', () => {
    const badVersion = encodeHeader(FrameType.Data, 0, 1, 0);
    badVersion[0] = 1;
    assert.throws(
      () => decodeHeader(badVersion),
      (error: unknown) => {
        assert.ok(error instanceof YamuxProtocolError);
        assert.equal(error.code, 'ERR_YAMUX_PROTOCOL');
        assert.match(error.message, /version 1/);
        return true;
      },
    );
    const badType = encodeHeader(FrameType.Data, 0, 1, 0);
    badType[1] = 4;
    assert.throws(() => decodeHeader(badType), /unknown frame type 4/);
  });

  it('rejects session frames on a stream and stream frames on stream 0 (spec.md "StreamID Field")', () => {
    assert.throws(
      () => decodeHeader(encodeHeader(FrameType.Ping, Flag.SYN, 1, 0)),
      YamuxProtocolError,
    );
    assert.throws(() => decodeHeader(encodeHeader(FrameType.GoAway, 0, 2, 0)), YamuxProtocolError);
    assert.throws(() => decodeHeader(encodeHeader(FrameType.Data, 0, 0, 0)), YamuxProtocolError);
    assert.throws(
      () => decodeHeader(encodeHeader(FrameType.WindowUpdate, 0, 0, 0)),
      YamuxProtocolError,
    );
  });
});

describe('FrameReader', () => {
  const stream = Buffer.concat([
    frame(FrameType.WindowUpdate, Flag.SYN, 1, 0),
    frame(FrameType.Data, 0, 1, 5, Buffer.from('hello')),
    frame(FrameType.Ping, Flag.SYN, 0, 42),
    frame(FrameType.Data, Flag.FIN, 1, 0),
    frame(FrameType.GoAway, 0, 0, GoAwayCode.Normal),
  ]);

  function summary(frames: readonly Decoded[]): string[] {
    return frames.map(
      ({ header, payload }) =>
        `${header.type}/${header.flags}/${header.streamId}/${header.length}/${payload.toString('hex')}`,
    );
  }

  it('cuts a byte stream into frames with their payloads', () => {
    const { frames, error } = readAll([stream]);
    assert.equal(error, undefined);
    assert.deepEqual(summary(frames), [
      '1/1/1/0/',
      `0/0/1/5/${Buffer.from('hello').toString('hex')}`,
      '2/1/0/42/',
      '0/4/1/0/',
      '3/0/0/0/',
    ]);
  });

  it('gives the same frames whatever the chunking, down to single bytes', () => {
    const whole = summary(readAll([stream]).frames);
    const bytewise = [...stream].map((byte) => Buffer.from([byte]));
    assert.deepEqual(summary(readAll(bytewise).frames), whole);
    for (let cut = 0; cut <= stream.length; cut++) {
      assert.deepEqual(
        summary(readAll([stream.subarray(0, cut), stream.subarray(cut)]).frames),
        whole,
      );
    }
  });

  it('passes payload through as views, without copying', () => {
    const payload = Buffer.from('zero-copy');
    const input = frame(FrameType.Data, 0, 3, payload.length, payload);
    const reader = new FrameReader();
    const pieces: Buffer[] = [];
    reader.push(input, {
      header: () => undefined,
      payload: (piece) => pieces.push(piece),
      end: () => undefined,
    });
    assert.equal(pieces.length, 1);
    assert.equal(pieces[0]?.buffer, input.buffer, 'the piece shares the input chunk memory');
  });

  it('refuses a Data length above the limit before reading its payload, and stays failed', () => {
    const reader = new FrameReader(1024);
    let payloadSeen = false;
    const handler: FrameHandler = {
      header: () => undefined,
      payload: () => {
        payloadSeen = true;
      },
      end: () => undefined,
    };
    const big = frame(FrameType.Data, 0, 1, 1025);
    assert.throws(() => {
      reader.push(big, handler);
    }, /exceeds the limit of 1024/);
    assert.equal(payloadSeen, false);
    assert.throws(() => {
      reader.push(frame(FrameType.Ping, Flag.SYN, 0, 1), handler);
    }, YamuxProtocolError);
    // A Window Update's length is a delta, not a payload: no limit applies.
    assert.doesNotThrow(() => {
      new FrameReader(1024).push(frame(FrameType.WindowUpdate, 0, 1, 0xffff_ffff), handler);
    });
  });

  it('reports frame boundaries', () => {
    const reader = new FrameReader();
    const handler: FrameHandler = {
      header: () => undefined,
      payload: () => undefined,
      end: () => undefined,
    };
    assert.equal(reader.atFrameBoundary, true);
    reader.push(frame(FrameType.Data, 0, 1, 4, Buffer.from('ab')), handler);
    assert.equal(reader.atFrameBoundary, false);
    reader.push(Buffer.from('cd'), handler);
    assert.equal(reader.atFrameBoundary, true);
    reader.push(Buffer.alloc(5), handler);
    assert.equal(reader.bufferedBytes, 5);
    assert.equal(reader.atFrameBoundary, false);
  });

  it('fuzz: arbitrary bytes in arbitrary chunks give frames or a protocol error, with bounded memory', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 512 }),
        fc.array(fc.nat(), { maxLength: 16 }),
        fc.integer({ min: 0, max: 4096 }),
        (bytes, cuts, limit) => {
          const { frames, error, maxBuffered } = readAll(split(Buffer.from(bytes), cuts), limit);
          if (error !== undefined) {
            assert.ok(
              error instanceof YamuxProtocolError,
              error instanceof Error ? error.message : 'not an Error',
            );
          }
          assert.ok(maxBuffered < HEADER_LENGTH, `the reader held ${maxBuffered} bytes`);
          for (const { header, payload } of frames) {
            assert.equal(header.version, 0);
            assert.ok(header.type <= FrameType.GoAway);
            assert.equal(payload.length, header.type === FrameType.Data ? header.length : 0);
            assert.ok(header.type !== FrameType.Data || header.length <= limit);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('fuzz: any sequence of valid frames, however chunked, decodes to itself', () => {
    const frameArbitrary = fc.oneof(
      fc.record({
        type: fc.constant(FrameType.Data),
        flags: fc.integer({ min: 0, max: 0xffff }),
        streamId: fc.integer({ min: 1, max: 0xffff_ffff }),
        payload: fc.uint8Array({ maxLength: 300 }),
      }),
      fc.record({
        type: fc.constantFrom(FrameType.WindowUpdate),
        flags: fc.integer({ min: 0, max: 0xffff }),
        streamId: fc.integer({ min: 1, max: 0xffff_ffff }),
        length: fc.integer({ min: 0, max: 0xffff_ffff }),
      }),
      fc.record({
        type: fc.constantFrom(FrameType.Ping, FrameType.GoAway),
        flags: fc.integer({ min: 0, max: 0xffff }),
        length: fc.integer({ min: 0, max: 0xffff_ffff }),
      }),
    );
    fc.assert(
      fc.property(
        fc.array(frameArbitrary, { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 20 }),
        (specs, cuts) => {
          const expected: string[] = [];
          const encoded: Buffer[] = [];
          for (const spec of specs) {
            if ('payload' in spec) {
              encoded.push(
                frame(
                  spec.type,
                  spec.flags,
                  spec.streamId,
                  spec.payload.length,
                  Buffer.from(spec.payload),
                ),
              );
              expected.push(
                `${spec.type}/${spec.flags}/${spec.streamId}/${Buffer.from(spec.payload).toString('hex')}`,
              );
            } else {
              const streamId = 'streamId' in spec ? spec.streamId : 0;
              encoded.push(frame(spec.type, spec.flags, streamId, spec.length));
              expected.push(`${spec.type}/${spec.flags}/${streamId}/${spec.length}`);
            }
          }
          const { frames, error } = readAll(split(Buffer.concat(encoded), cuts));
          assert.equal(error, undefined);
          const actual = frames.map(({ header, payload }) =>
            header.type === FrameType.Data
              ? `${header.type}/${header.flags}/${header.streamId}/${payload.toString('hex')}`
              : `${header.type}/${header.flags}/${header.streamId}/${header.length}`,
          );
          assert.deepEqual(actual, expected);
        },
      ),
      { numRuns: 500 },
    );
  });
});
