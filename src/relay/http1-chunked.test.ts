import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { HttpParseError } from './errors.js';
import {
  ChunkedBodyDecoder,
  LineBuffer,
  MAX_CHUNK_LINE,
  parseChunkSizeLine,
} from './http1-chunked.js';
import type { ChunkedOutput, ChunkedProfile } from './http1-chunked.js';
import { REQUEST_CHUNKED, RESPONSE_CHUNKED } from './http1.js';
import type { HttpLimits } from './http1.js';

const FUZZ_RUNS = 300;
/** Small limits, so that generated trailers reach them. */
const LIMITS: HttpLimits = { maxHeadBytes: 64, maxHeaderCount: 3 };

type Outcome =
  | { readonly kind: 'done'; readonly payload: Buffer; readonly consumed: number }
  | { readonly kind: 'incomplete'; readonly payload: Buffer }
  | { readonly kind: 'error'; readonly status: number };

// ---- a naive reference decoder: the whole input at once, regular expressions, no state machine ----

const SIZE_LINE = /^([0-9A-Fa-f]{1,13})([ \t]*;[\t\x20-\x7e\x80-\xff]*)?\r\n$/;
/** A field line as RFC 9110 §5 / RFC 9112 §5 have it: token ":" field-value characters. */
const FIELD_LINE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*$/;

function referenceDecode(input: Buffer, strict: boolean, limits: HttpLimits): Outcome {
  const malformed: Outcome = { kind: 'error', status: strict ? 400 : 502 };
  const tooLarge: Outcome = { kind: 'error', status: strict ? 431 : 502 };
  const text = input.toString('latin1');
  const payload: Buffer[] = [];
  const incomplete = (): Outcome => ({ kind: 'incomplete', payload: Buffer.concat(payload) });
  let at = 0;
  for (;;) {
    const lf = text.indexOf('\n', at);
    if (lf < 0) return text.length - at > MAX_CHUNK_LINE ? malformed : incomplete();
    const line = text.slice(at, lf + 1);
    if (line.length > MAX_CHUNK_LINE) return malformed;
    const match = SIZE_LINE.exec(line);
    if (match === null) return malformed;
    const size = Number.parseInt(match[1] ?? '', 16);
    at = lf + 1;
    if (size === 0) break;
    if (text.length - at < size) {
      payload.push(input.subarray(at));
      return incomplete();
    }
    payload.push(input.subarray(at, at + size));
    at += size;
    for (const expected of '\r\n') {
      if (at >= text.length) return incomplete();
      if (text[at] !== expected) return malformed;
      at++;
    }
  }
  let trailerBytes = 0;
  let trailerCount = 0;
  for (;;) {
    const lf = text.indexOf('\n', at);
    if (lf < 0) return text.length - at > limits.maxHeadBytes ? tooLarge : incomplete();
    const line = text.slice(at, lf + 1);
    if (line.length > limits.maxHeadBytes) return tooLarge;
    at = lf + 1;
    if (strict) {
      if (!line.endsWith('\r\n')) return malformed;
      if (line === '\r\n') break;
      trailerBytes += line.length;
      trailerCount++;
      if (trailerBytes > limits.maxHeadBytes || trailerCount > limits.maxHeaderCount) {
        return tooLarge;
      }
      if (!FIELD_LINE.test(line.slice(0, -2))) return malformed;
    } else {
      if (line === '\r\n') break;
      trailerBytes += line.length;
      if (trailerBytes > limits.maxHeadBytes) return tooLarge;
    }
  }
  return { kind: 'done', payload: Buffer.concat(payload), consumed: at };
}

// ---- the decoder under test, fed in pieces ---------------------------------------------------------

function decodeInPieces(
  pieces: readonly Buffer[],
  profile: ChunkedProfile,
  output: ChunkedOutput,
): { outcome: Outcome; sunk: Buffer } {
  const decoder = new ChunkedBodyDecoder(profile, LIMITS, output);
  const sunk: Buffer[] = [];
  // Copied: what a sink gets is valid during the call only (the input may be reused).
  const sink = { body: (bytes: Buffer) => sunk.push(Buffer.from(bytes)) };
  let before = 0;
  try {
    for (const piece of pieces) {
      const end = decoder.push(piece, 0, sink);
      if (decoder.done) {
        return {
          outcome: { kind: 'done', payload: Buffer.concat(sunk), consumed: before + end },
          sunk: Buffer.concat(sunk),
        };
      }
      assert.equal(end, piece.length, 'an unfinished body consumes all its input');
      before += piece.length;
    }
  } catch (error) {
    assert.ok(error instanceof HttpParseError, `only HttpParseError escapes: ${String(error)}`);
    return { outcome: { kind: 'error', status: error.status }, sunk: Buffer.concat(sunk) };
  }
  return {
    outcome: { kind: 'incomplete', payload: Buffer.concat(sunk) },
    sunk: Buffer.concat(sunk),
  };
}

function splitAt(bytes: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let previous = 0;
  for (const point of points) {
    if (point > previous) chunks.push(bytes.subarray(previous, point));
    previous = point;
  }
  if (previous < bytes.length) chunks.push(bytes.subarray(previous));
  return chunks;
}

// ---- generators -------------------------------------------------------------------------------------

const token = fc.stringMatching(/^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,8}$/);
const fieldValue = fc.stringMatching(/^[\x21-\x7e]{0,10}$/);
const chunkArbitrary = fc.record({
  data: fc.uint8Array({ minLength: 1, maxLength: 80 }),
  padding: fc.integer({ min: 0, max: 11 }),
  upper: fc.boolean(),
  extension: fc.option(fc.stringMatching(/^[ \t]{0,2};[\t\x20-\x7e]{0,12}$/), { nil: undefined }),
});
const validBody = fc.record({
  chunks: fc.array(chunkArbitrary, { maxLength: 6 }),
  lastExtension: fc.option(fc.stringMatching(/^;[a-z]{1,5}$/), { nil: undefined }),
  trailers: fc.array(fc.tuple(token, fieldValue), { maxLength: 2 }),
  after: fc.uint8Array({ maxLength: 20 }),
});

/** Encodes a generated body (valid under both profiles with LIMITS) and what follows it. */
function encode(body: {
  chunks: readonly {
    data: Uint8Array;
    padding: number;
    upper: boolean;
    extension: string | undefined;
  }[];
  lastExtension: string | undefined;
  trailers: readonly (readonly [string, string])[];
  after: Uint8Array;
}): { wire: Buffer; payload: Buffer; length: number } {
  const parts: Buffer[] = [];
  for (const chunk of body.chunks) {
    let size = chunk.data.length.toString(16);
    if (chunk.upper) size = size.toUpperCase();
    size = '0'.repeat(chunk.padding) + size;
    parts.push(Buffer.from(`${size}${chunk.extension ?? ''}\r\n`, 'latin1'));
    parts.push(Buffer.from(chunk.data), Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`0${body.lastExtension ?? ''}\r\n`, 'latin1'));
  for (const [name, value] of body.trailers) parts.push(Buffer.from(`${name}: ${value}\r\n`));
  parts.push(Buffer.from('\r\n'));
  const encoded = Buffer.concat(parts);
  return {
    wire: Buffer.concat([encoded, Buffer.from(body.after)]),
    payload: Buffer.concat(body.chunks.map((chunk) => Buffer.from(chunk.data))),
    length: encoded.length,
  };
}

/**
 * Bodies at and past the limits: chunk sizes of up to 15 digits (13 is the
 * most), up to 5 trailers (3 is the most) of any length, lines ended by CRLF
 * or a bare LF.
 */
const edgyBody = fc
  .record({
    sizes: fc.array(
      fc.record({
        size: fc.integer({ min: 1, max: 20 }),
        padding: fc.integer({ min: 0, max: 14 }),
      }),
      { maxLength: 3 },
    ),
    trailers: fc.array(
      fc.tuple(
        token,
        fc.stringMatching(/^[\x20-\x7e]{0,40}$/),
        fc.constantFrom('\r\n', '\r\n', '\n'),
      ),
      { maxLength: 5 },
    ),
  })
  .map(({ sizes, trailers }) => {
    let text = '';
    for (const { size, padding } of sizes) {
      text += `${'0'.repeat(padding)}${size.toString(16)}\r\n${'d'.repeat(size)}\r\n`;
    }
    text += '0\r\n';
    for (const [name, value, end] of trailers) text += `${name}:${value}${end}`;
    return Buffer.from(`${text}\r\n`, 'latin1');
  });

/** A valid body damaged at random: a byte replaced, inserted or removed. */
const damagedBody = fc
  .tuple(
    validBody,
    fc.array(
      fc.record({
        at: fc.nat(),
        kind: fc.constantFrom('replace', 'insert', 'remove'),
        byte: fc.constantFrom(0x0d, 0x0a, 0x20, 0x09, 0x3b, 0x3a, 0x30, 0x61, 0x7f, 0x00, 0xff),
      }),
      { minLength: 1, maxLength: 3 },
    ),
  )
  .map(([body, edits]) => {
    let wire = encode(body).wire;
    for (const edit of edits) {
      const at = edit.at % (wire.length + 1);
      const byte = Buffer.from([edit.byte]);
      if (edit.kind === 'insert') {
        wire = Buffer.concat([wire.subarray(0, at), byte, wire.subarray(at)]);
      } else if (at < wire.length) {
        wire = Buffer.concat([
          wire.subarray(0, at),
          edit.kind === 'replace' ? byte : Buffer.alloc(0),
          wire.subarray(at + 1),
        ]);
      }
    }
    return wire;
  });

const PROFILES: readonly [string, ChunkedProfile, boolean][] = [
  ['request', REQUEST_CHUNKED, true],
  ['response', RESPONSE_CHUNKED, false],
];

describe('ChunkedBodyDecoder', () => {
  it('decodes, forwards verbatim or only frames the same body, however it is split', () => {
    fc.assert(
      fc.property(validBody, fc.array(fc.nat(), { maxLength: 12 }), (body, cuts) => {
        const { wire, payload, length } = encode(body);
        for (const [, profile, strict] of PROFILES) {
          const reference = referenceDecode(wire, strict, LIMITS);
          assert.deepEqual(reference, { kind: 'done', payload, consumed: length });
          const pieces = splitAt(wire, cuts);
          const decoded = decodeInPieces(pieces, profile, 'decoded');
          assert.deepEqual(decoded.outcome, reference);
          const encoded = decodeInPieces(pieces, profile, 'encoded');
          assert.deepEqual(encoded.sunk, wire.subarray(0, length), 'forwarded exactly as received');
          const framed = decodeInPieces(pieces, profile, 'none');
          assert.equal(framed.sunk.length, 0);
          assert.equal(framed.outcome.kind === 'done' && framed.outcome.consumed, length);
        }
      }),
      { numRuns: FUZZ_RUNS },
    );
  });

  it('fuzz: damaged bodies and garbage fail as the reference says, with HttpParseError only', () => {
    const input = fc.oneof(
      damagedBody,
      edgyBody,
      fc.uint8Array({ maxLength: 200 }).map((bytes) => Buffer.from(bytes)),
      fc
        .stringMatching(/^[0-9a-fA-F;\t \r\n:xX-]{0,120}$/)
        .map((text) => Buffer.from(text, 'latin1')),
    );
    fc.assert(
      fc.property(input, fc.array(fc.nat(), { maxLength: 8 }), (wire, cuts) => {
        for (const [name, profile, strict] of PROFILES) {
          const reference = referenceDecode(wire, strict, LIMITS);
          const { outcome, sunk } = decodeInPieces(splitAt(wire, cuts), profile, 'decoded');
          assert.deepEqual(outcome, reference, name);
          if (reference.kind !== 'error') assert.deepEqual(sunk, reference.payload);
          // Forwarded bytes are always a prefix of the input: never a byte past a rejected line.
          const encoded = decodeInPieces(splitAt(wire, cuts), profile, 'encoded');
          assert.deepEqual(encoded.outcome.kind, reference.kind, name);
          assert.ok(
            wire.subarray(0, encoded.sunk.length).equals(encoded.sunk),
            'forwarded bytes are the input',
          );
        }
      }),
      { numRuns: FUZZ_RUNS * 3 },
    );
  });

  it('fails requests with 400/431 and responses with 502, for every kind of failure', () => {
    const longExtension = `1;${'x'.repeat(MAX_CHUNK_LINE)}\r\n`;
    const cases: [string, number, number][] = [
      ['zz\r\n', 400, 502],
      ['1 \r\n', 400, 502],
      ['12345678901234\r\n', 400, 502],
      ['00000000000001\r\n', 400, 502],
      ['4\nwiki\r\n', 400, 502],
      ['4\r\nwikiX\r\n', 400, 502],
      ['4\r\nwiki\rX', 400, 502],
      [longExtension, 400, 502],
      ['1;\x01\r\n', 400, 502],
      [`0\r\nX-Long: ${'v'.repeat(70)}\r\n`, 431, 502],
      ['0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n', 431, 0],
      ['0\r\nA: 1\nB: 2\r\n\r\n', 400, 0],
      ['0\r\nBad Name: 1\r\n\r\n', 400, 0],
      ['0\r\n folded\r\n\r\n', 400, 0],
      ['0\r\nNoColon\r\n\r\n', 400, 0],
      ['0\r\nA: \x00\r\n\r\n', 400, 0],
    ];
    for (const [wire, requestStatus, responseStatus] of cases) {
      for (const [profile, expected] of [
        [REQUEST_CHUNKED, requestStatus],
        [RESPONSE_CHUNKED, responseStatus],
      ] as const) {
        for (const pieces of [
          [Buffer.from(wire, 'latin1')],
          [...Buffer.from(wire, 'latin1')].map((byte) => Buffer.from([byte])),
        ]) {
          const { outcome } = decodeInPieces(pieces, profile, 'decoded');
          if (expected === 0) assert.equal(outcome.kind, 'done', JSON.stringify(wire));
          else assert.deepEqual(outcome, { kind: 'error', status: expected }, JSON.stringify(wire));
        }
      }
    }
  });

  it('forwards a framing line only once it is whole and valid, and refuses input after failing', () => {
    const sunk: Buffer[] = [];
    const sink = { body: (bytes: Buffer) => sunk.push(Buffer.from(bytes)) };
    const decoder = new ChunkedBodyDecoder(REQUEST_CHUNKED, LIMITS, 'encoded');
    assert.equal(decoder.push(Buffer.from('3\r\nabc\r\n1'), 0, sink), 9);
    assert.equal(Buffer.concat(sunk).toString(), '3\r\nabc\r\n', 'the partial size line waits');
    assert.throws(
      () => decoder.push(Buffer.from('X\r\n'), 0, sink),
      (error: unknown) => error instanceof HttpParseError && error.status === 400,
    );
    assert.equal(Buffer.concat(sunk).toString(), '3\r\nabc\r\n', 'the bad line is not forwarded');
    assert.throws(() => decoder.push(Buffer.from('0\r\n\r\n'), 0, sink), /already failed/);
    decoder.reset();
    sunk.length = 0;
    const next = Buffer.from('1\r\nz\r\n0\r\nT: 1\r\n\r\nGET');
    assert.equal(decoder.push(next, 0, sink), next.length - 3);
    assert.equal(decoder.done, true);
    assert.equal(Buffer.concat(sunk).toString(), '1\r\nz\r\n0\r\nT: 1\r\n\r\n');
  });

  it('starts at an offset and shares a line buffer', () => {
    const buffered = new LineBuffer();
    const decoder = new ChunkedBodyDecoder(RESPONSE_CHUNKED, LIMITS, 'none', buffered);
    assert.equal(decoder.push(Buffer.from('HEAD2\r\nab\r\n0\r'), 4, null), 13);
    assert.equal(buffered.length, 2, 'the partial last-chunk line is held');
    assert.equal(decoder.push(Buffer.from('\n\r\nrest'), 0, null), 3);
    assert.equal(decoder.done, true);
    assert.equal(buffered.length, 0);
  });

  it('checks its arguments', () => {
    assert.throws(
      () => new ChunkedBodyDecoder(null as unknown as ChunkedProfile, LIMITS, 'none'),
      /profile/,
    );
    assert.throws(
      () => new ChunkedBodyDecoder(REQUEST_CHUNKED, {} as HttpLimits, 'none'),
      /limits/,
    );
    assert.throws(
      () => new ChunkedBodyDecoder(REQUEST_CHUNKED, LIMITS, 'raw' as ChunkedOutput),
      /output must be one of/,
    );
    assert.throws(() => parseChunkSizeLine('1\r\n' as unknown as Buffer), /line must be a Buffer/);
  });
});
