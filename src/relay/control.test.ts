import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  FrameDecoder,
  MAX_CONTROL_MESSAGE,
  encodeFrame,
  parseAgentMessage,
  parseRelayMessage,
  parseStreamPreamble,
} from './control.js';
import type { AgentMessage, RelayMessage } from './control.js';
import { ControlProtocolError } from './errors.js';

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

function payloadOf(frame: Buffer): Buffer {
  return frame.subarray(4);
}

describe('control frames', () => {
  it('round-trips every message type through encodeFrame, FrameDecoder and the parsers', () => {
    const agentMessages: AgentMessage[] = [
      { t: 'hello', v: 1, token: 'wrn1.abc.def', agent: 'warren' },
      { t: 'open', id: 1, proto: 'http', subdomain: 'app' },
      { t: 'open', id: 2, proto: 'http' },
      { t: 'open', id: 4, proto: 'http', hostname: 'app.example.org' },
      { t: 'open', id: 3, proto: 'tcp', port: 41000 },
      { t: 'close', tunnel: 'abcd' },
    ];
    const relayMessages: RelayMessage[] = [
      { t: 'welcome', v: 1, session: 's', domain: 't.test', tokenName: 'laptop', httpsPort: 443 },
      { t: 'opened', id: 1, tunnel: 'x', proto: 'http', name: 'app', url: 'https://app.t.test' },
      {
        t: 'opened',
        id: 4,
        tunnel: 'z',
        proto: 'http',
        name: 'app.example.org',
        url: 'https://app.example.org',
      },
      { t: 'opened', id: 3, tunnel: 'y', proto: 'tcp', port: 41000, url: 'tcp://t.test:41000' },
      { t: 'refused', id: 2, code: 'ERR_RELAY_NAME_IN_USE', message: 'taken' },
      { t: 'error', code: 'ERR_RELAY_TOKEN_INVALID', message: 'bad' },
      { t: 'shutdown', message: 'bye' },
    ];
    const decoder = new FrameDecoder();
    const wire = Buffer.concat(agentMessages.map(encodeFrame));
    const frames = [...wire].flatMap((byte) => decoder.push(Buffer.from([byte])));
    assert.deepEqual(frames.map(parseAgentMessage), agentMessages);
    assert.equal(decoder.bufferedBytes, 0);
    for (const message of relayMessages) {
      assert.deepEqual(parseRelayMessage(payloadOf(encodeFrame(message))), message);
    }
    const preamble = {
      t: 'stream',
      tunnel: 'x',
      proto: 'https',
      remoteAddress: '192.0.2.1',
      remotePort: 5000,
    } as const;
    assert.deepEqual(parseStreamPreamble(payloadOf(encodeFrame(preamble))), preamble);
  });

  it('refuses an oversized frame as soon as its length is known', () => {
    const decoder = new FrameDecoder();
    const header = Buffer.alloc(4);
    header.writeUInt32BE(MAX_CONTROL_MESSAGE + 1);
    assert.throws(() => decoder.push(header), ControlProtocolError);
    assert.throws(
      () => encodeFrame({ t: 'shutdown', message: 'x'.repeat(MAX_CONTROL_MESSAGE) }),
      RangeError,
    );
  });

  it('refuses malformed, mistyped and unknown messages', () => {
    const bad: unknown[] = [
      [],
      'hello',
      null,
      { t: 'hello', v: 1 },
      { t: 'hello', v: '1', token: 'x' },
      { t: 'hello', v: 1, token: 'x'.repeat(5000) },
      { t: 'open', id: 0, proto: 'http' },
      { t: 'open', id: 1.5, proto: 'http' },
      { t: 'open', id: 1, proto: 'udp' },
      { t: 'open', id: 1, proto: 'tcp', port: 70000 },
      { t: 'open', id: 1, proto: 'http', subdomain: 7 },
      { t: 'open', id: 1, proto: 'http', hostname: 'localhost' },
      { t: 'open', id: 1, proto: 'http', hostname: 'App.Example.org' },
      { t: 'open', id: 1, proto: 'http', hostname: '192.0.2.1' },
      { t: 'open', id: 1, proto: 'http', hostname: `${'a.'.repeat(120)}org` },
      { t: 'open', id: 1, proto: 'http', hostname: 'a.example.org', subdomain: 'a' },
      { t: 'open', id: 1, proto: 'tcp', hostname: 'a.example.org' },
      { t: 'close' },
      { t: 'welcome', v: 1 },
      { t: 'nope' },
      { t: { toString: 1 } },
    ];
    for (const value of bad) {
      assert.throws(
        () => parseAgentMessage(json(value)),
        ControlProtocolError,
        JSON.stringify(value),
      );
    }
    assert.throws(() => parseAgentMessage(Buffer.from([0xff, 0xfe])), ControlProtocolError);
    assert.throws(() => parseAgentMessage(Buffer.from('{"t":')), ControlProtocolError);
    assert.throws(
      () => parseRelayMessage(json({ t: 'refused', id: 1, code: 'ERR_BOGUS', message: 'x' })),
      ControlProtocolError,
    );
    assert.throws(
      () =>
        parseRelayMessage(
          json({ t: 'opened', id: 1, tunnel: 'x', proto: 'http', name: 'a b', url: 'u' }),
        ),
      ControlProtocolError,
    );
    assert.throws(() => parseStreamPreamble(json({ t: 'hello' })), ControlProtocolError);
    // An inherited property is not a field.
    assert.throws(
      () => parseAgentMessage(json({ t: 'close', __proto__: { tunnel: 'x' } })),
      ControlProtocolError,
    );
  });

  it('fuzz: arbitrary bytes through the decoder and parsers fail only with ControlProtocolError', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 10 }), (chunks) => {
        const decoder = new FrameDecoder(256);
        for (const chunk of chunks) {
          let frames: Buffer[];
          try {
            frames = decoder.push(Buffer.from(chunk));
          } catch (error) {
            assert.ok(error instanceof ControlProtocolError);
            return;
          }
          for (const frame of frames) {
            for (const parse of [parseAgentMessage, parseRelayMessage, parseStreamPreamble]) {
              try {
                parse(frame);
              } catch (error) {
                assert.ok(error instanceof ControlProtocolError, String(error));
              }
            }
          }
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('fuzz: arbitrary JSON values are either valid messages or ControlProtocolError', () => {
    const message = fc.oneof(
      fc.jsonValue(),
      fc.record(
        {
          t: fc.constantFrom(
            'hello',
            'open',
            'close',
            'welcome',
            'opened',
            'refused',
            'error',
            'shutdown',
            'stream',
          ),
          v: fc.oneof(fc.integer(), fc.string()),
          id: fc.oneof(fc.integer(), fc.double(), fc.string()),
          token: fc.string(),
          proto: fc.constantFrom('http', 'https', 'tcp', 'udp', 1),
          port: fc.oneof(fc.integer(), fc.string()),
          subdomain: fc.oneof(fc.string(), fc.integer()),
          hostname: fc.oneof(
            fc.string(),
            fc.domain(),
            fc.constantFrom('app.example.org', 'x.y', '10.0.0.1'),
          ),
          tunnel: fc.string(),
          code: fc.constantFrom('ERR_RELAY_LIMIT', 'ERR_X', 5),
          message: fc.string(),
          session: fc.string(),
          domain: fc.string(),
          tokenName: fc.string(),
          url: fc.string(),
          name: fc.oneof(fc.string(), fc.domain()),
          remoteAddress: fc.string(),
          remotePort: fc.integer(),
        },
        { requiredKeys: ['t'] },
      ),
    );
    fc.assert(
      fc.property(message, (value) => {
        for (const parse of [parseAgentMessage, parseRelayMessage, parseStreamPreamble]) {
          try {
            const parsed = parse(json(value)) as unknown as Record<string, unknown>;
            // What parses is exactly what was sent, field for field.
            for (const [key, field] of Object.entries(parsed)) {
              assert.deepEqual(field, (value as Record<string, unknown>)[key]);
            }
          } catch (error) {
            assert.ok(error instanceof ControlProtocolError, String(error));
          }
        }
      }),
      { numRuns: 1000 },
    );
  });
});
