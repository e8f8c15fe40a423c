/**
 * Per-tunnel access rules without the network: the CIDR matcher (documentation
 * ranges, IPv6, IPv4-mapped IPv6), basic-auth hashing and verification, the
 * tunnel request's new fields in the control codec, and the agent config file.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BasicAuthVerifier,
  IpAllowlist,
  MAX_ALLOWED_IPS,
  MAX_BASIC_AUTH_CREDENTIALS,
  checkAllowedIps,
  checkCredentials,
  hashCredentials,
  parseCredential,
} from '../../src/relay/access.js';
import { parseAgentConfig } from '../../src/relay/agent-config.js';
import { encodeFrame, parseAgentMessage, parseRelayMessage } from '../../src/relay/control.js';
import type { OpenHttpMessage } from '../../src/relay/control.js';
import { ControlProtocolError, RelayConfigError } from '../../src/relay/errors.js';

function basic(userPassword: string): string {
  return `Basic ${Buffer.from(userPassword, 'utf8').toString('base64')}`;
}

/** The payload of an encoded frame (what parseAgentMessage reads). */
function payload(message: unknown): Buffer {
  return Buffer.from(JSON.stringify(message), 'utf8');
}

describe('IpAllowlist', () => {
  it('matches IPv4 documentation ranges by prefix, including non-byte-aligned ones', () => {
    const list = new IpAllowlist(['203.0.113.0/24', '198.51.100.64/26', '192.0.2.7']);
    assert.equal(list.allows('203.0.113.0'), true);
    assert.equal(list.allows('203.0.113.255'), true);
    assert.equal(list.allows('203.0.114.1'), false);
    assert.equal(list.allows('198.51.100.64'), true);
    assert.equal(list.allows('198.51.100.127'), true);
    assert.equal(list.allows('198.51.100.63'), false);
    assert.equal(list.allows('198.51.100.128'), false);
    assert.equal(list.allows('192.0.2.7'), true, 'a bare address is a /32');
    assert.equal(list.allows('192.0.2.8'), false);
  });

  it('matches IPv6 prefixes and keeps the families apart', () => {
    const list = new IpAllowlist(['2001:db8:1::/48', '::1']);
    assert.equal(list.allows('2001:db8:1:ffff::5'), true);
    assert.equal(list.allows('2001:db8:2::5'), false);
    assert.equal(list.allows('::1'), true);
    assert.equal(list.allows('::2'), false);
    assert.equal(list.allows('127.0.0.1'), false, 'v6 entries do not admit v4 clients');
    assert.equal(new IpAllowlist(['127.0.0.0/8']).allows('::1'), false);
  });

  it('matches IPv4-mapped IPv6 client addresses against IPv4 entries, and mapped entries too', () => {
    const v4 = new IpAllowlist(['203.0.113.0/24']);
    assert.equal(v4.allows('::ffff:203.0.113.9'), true);
    assert.equal(v4.allows('::ffff:203.0.112.9'), false);
    const mapped = new IpAllowlist(['::ffff:198.51.100.0/120']);
    assert.equal(mapped.allows('198.51.100.200'), true);
    assert.equal(mapped.allows('::ffff:198.51.100.200'), true);
    assert.equal(mapped.allows('198.51.101.1'), false);
  });

  it('handles /0, zones and addresses that are not addresses', () => {
    assert.equal(new IpAllowlist(['0.0.0.0/0']).allows('192.0.2.1'), true);
    assert.equal(new IpAllowlist(['0.0.0.0/0']).allows('2001:db8::1'), false);
    assert.equal(new IpAllowlist(['::/0']).allows('2001:db8::1'), true);
    assert.equal(new IpAllowlist(['fe80::/10']).allows('fe80::1%eth0'), true);
    const list = new IpAllowlist(['0.0.0.0/0', '::/0']);
    assert.equal(list.allows('unknown'), false);
    assert.equal(list.allows(undefined), false);
    assert.equal(list.allows(''), false);
  });

  it('refuses bad CIDRs and too many, naming the entry', () => {
    assert.throws(() => new IpAllowlist(['203.0.113.0/33']), /allowIps\[0\].*prefix length/);
    assert.throws(() => new IpAllowlist(['192.0.2.0/24', 'nonsense']), /allowIps\[1\]/);
    assert.throws(() => new IpAllowlist([]), RelayConfigError);
    const many = Array.from({ length: MAX_ALLOWED_IPS + 1 }, (_, i) => `192.0.2.${i}`);
    assert.throws(() => {
      checkAllowedIps(many, '--allow-ip');
    }, /--allow-ip must list 1-64/);
    checkAllowedIps(many.slice(0, MAX_ALLOWED_IPS), '--allow-ip');
  });
});

describe('basic auth', () => {
  it('parses USER:PASSWORD with colons allowed in the password only', () => {
    assert.deepEqual(parseCredential('ann:se:cret', 'x'), { user: 'ann', password: 'se:cret' });
    assert.throws(() => parseCredential('nocolon', 'x'), RelayConfigError);
    assert.throws(() => parseCredential(':pw', 'x'), RelayConfigError);
    assert.throws(() => parseCredential('ann:', 'x'), RelayConfigError);
    assert.throws(() => parseCredential('ann:p\nw', 'x'), /control characters/);
    assert.throws(() => {
      checkCredentials(
        Array.from({ length: MAX_BASIC_AUTH_CREDENTIALS + 1 }, (_, i) => `u${i}:p`),
        '--basic-auth',
      );
    }, /--basic-auth must list 1-32/);
  });

  it('sends salted hashes, never the password, with a fresh salt each time', () => {
    const first = hashCredentials(['ann:correct horse']);
    const second = hashCredentials(['ann:correct horse']);
    assert.equal(first.hashes.length, 1);
    assert.notEqual(first.salt, second.salt);
    assert.notDeepEqual(first.hashes, second.hashes);
    const wire = JSON.stringify(first);
    assert.doesNotMatch(wire, /correct|horse|ann/);
    assert.doesNotMatch(wire, new RegExp(Buffer.from('ann:correct horse').toString('base64')));
  });

  it('verifies the right credentials of several and refuses everything else', () => {
    const verifier = new BasicAuthVerifier(hashCredentials(['ann:one', 'bob:two:2']));
    assert.equal(verifier.verify(basic('ann:one')), true);
    assert.equal(verifier.verify(basic('bob:two:2')), true);
    assert.equal(verifier.verify(`basic   ${Buffer.from('ann:one').toString('base64')}`), true);
    assert.equal(verifier.verify(basic('ann:two:2')), false, 'a password of another user');
    assert.equal(verifier.verify(basic('ann:one ')), false);
    assert.equal(verifier.verify(undefined), false);
    assert.equal(verifier.verify(''), false);
    assert.equal(verifier.verify('Bearer abc'), false);
    assert.equal(verifier.verify('Basic !!!'), false);
    assert.equal(verifier.verify(`Basic ${'A'.repeat(5000)}`), false);
  });

  it('refuses malformed hash material', () => {
    const good = hashCredentials(['a:b']);
    assert.throws(() => new BasicAuthVerifier({ ...good, salt: 'c2hvcnQ' }), /salt/);
    assert.throws(() => new BasicAuthVerifier({ ...good, hashes: ['c2hvcnQ'] }), /hashes\[0\]/);
    assert.throws(() => new BasicAuthVerifier({ ...good, hashes: [] }), /hashes/);
  });
});

describe('tunnel requests carry the access rules', () => {
  const auth = hashCredentials(['ann:pw']);

  it('round-trips basicAuth and allowIps through the codec', () => {
    const message: OpenHttpMessage = {
      t: 'open',
      id: 7,
      proto: 'http',
      subdomain: 'app',
      basicAuth: auth,
      allowIps: ['203.0.113.0/24', '2001:db8::/32'],
    };
    const frame = encodeFrame(message);
    assert.deepEqual(parseAgentMessage(frame.subarray(4)), message);
    assert.deepEqual(
      parseAgentMessage(payload({ t: 'open', id: 8, proto: 'tcp', allowIps: ['::1'] })),
      { t: 'open', id: 8, proto: 'tcp', allowIps: ['::1'] },
    );
  });

  it("carries the relay's confirmation that it enforces the rules", () => {
    const opened = { t: 'opened', id: 3, tunnel: 'abc', proto: 'tcp', url: 'tcp://x:1', port: 1 };
    assert.deepEqual(parseRelayMessage(payload({ ...opened, access: true })), {
      ...opened,
      access: true,
    });
    assert.deepEqual(parseRelayMessage(payload(opened)), opened);
    assert.throws(
      () => parseRelayMessage(payload({ ...opened, access: 'yes' })),
      /'access' must be true/,
    );
  });

  it('fits the largest allowed rules in one control frame', () => {
    const credentials = Array.from({ length: MAX_BASIC_AUTH_CREDENTIALS }, (_, i) => `u${i}:p`);
    const cidrs = Array.from(
      { length: MAX_ALLOWED_IPS },
      (_, i) => `2001:db8:${i.toString(16)}:ffff:ffff:ffff:ffff:0/112`,
    );
    const message: OpenHttpMessage = {
      t: 'open',
      id: 1,
      proto: 'http',
      subdomain: 'a'.repeat(63),
      basicAuth: hashCredentials(credentials),
      allowIps: cidrs,
    };
    assert.deepEqual(parseAgentMessage(encodeFrame(message).subarray(4)), message);
  });

  it('refuses too many entries, bad CIDRs and malformed hashes with clear errors', () => {
    const open = { t: 'open', id: 1, proto: 'http' };
    const cases: [unknown, RegExp][] = [
      [{ ...open, allowIps: ['192.0.2.0/24', '10.0.0.0/99'] }, /allowIps\[1\].*prefix length/],
      [{ ...open, allowIps: ['bogus'] }, /allowIps\[0\].*bad address/],
      [{ ...open, allowIps: [] }, /allowIps must list 1-64/],
      [{ ...open, allowIps: Array(MAX_ALLOWED_IPS + 1).fill('192.0.2.1') }, /allowIps must list/],
      [{ ...open, allowIps: [5] }, /allowIps\[0\] must be a string/],
      [{ ...open, allowIps: '192.0.2.1' }, /allowIps must list/],
      [
        { ...open, basicAuth: { salt: auth.salt, hashes: Array(33).fill(auth.hashes[0]) } },
        /hashes must list 1-32/,
      ],
      [{ ...open, basicAuth: { salt: 'x', hashes: auth.hashes } }, /basicAuth\.salt/],
      [{ ...open, basicAuth: { salt: auth.salt, hashes: ['ann:pw'] } }, /hashes\[0\]/],
      [{ ...open, basicAuth: ['ann:pw'] }, /'basicAuth' must be an object/],
      [{ t: 'open', id: 1, proto: 'tcp', basicAuth: auth }, /basicAuth is for http/],
    ];
    for (const [message, pattern] of cases) {
      assert.throws(
        () => parseAgentMessage(payload(message)),
        (error: unknown) => error instanceof ControlProtocolError && pattern.test(error.message),
        JSON.stringify(message).slice(0, 80),
      );
    }
  });
});

describe('agent config file', () => {
  it('reads basicAuth and allowIps per tunnel', () => {
    const config = parseAgentConfig(
      JSON.stringify({
        tunnels: [
          { http: 3000, basicAuth: ['ann:pw'], allowIps: ['203.0.113.0/24'] },
          { tcp: 5432, allowIps: ['2001:db8::/32'] },
        ],
      }),
    );
    assert.deepEqual(config.tunnels, [
      { proto: 'http', localPort: 3000, basicAuth: ['ann:pw'], allowIps: ['203.0.113.0/24'] },
      { proto: 'tcp', localPort: 5432, allowIps: ['2001:db8::/32'] },
    ]);
  });

  it('names the bad field', () => {
    const parse = (tunnel: unknown): unknown =>
      parseAgentConfig(JSON.stringify({ tunnels: [tunnel] }));
    assert.throws(() => parse({ tcp: 1, basicAuth: ['a:b'] }), /basicAuth is for http/);
    assert.throws(
      () => parse({ http: 1, basicAuth: 'a:b' }),
      /tunnels\[0\]\.basicAuth must be a list/,
    );
    assert.throws(() => parse({ http: 1, basicAuth: ['ab'] }), /tunnels\[0\]\.basicAuth\[0\]/);
    assert.throws(
      () => parse({ http: 1, allowIps: ['1.2.3.4/40'] }),
      /tunnels\[0\]\.allowIps\[0\]/,
    );
  });
});
