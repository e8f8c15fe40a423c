import assert from 'node:assert/strict';
import * as net from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { formatCidr, formatIpAddress, parseIpAddress } from '../wireguard/allowed-ips.js';
import { UapiError } from './errors.js';
import {
  formatEndpoint,
  formatErrnoResponse,
  formatGetResponse,
  parseEndpoint,
  parseSetRequest,
  UapiSetParser,
  type UapiDeviceStatus,
  type UapiEndpoint,
  type UapiPeerConfig,
  type UapiSetRequest,
} from './uapi-protocol.js';

function hexKey(text: string): Uint8Array {
  assert.equal(text.length, 64);
  return Uint8Array.from(Buffer.from(text, 'hex'));
}

function ip(text: string): Uint8Array {
  return parseIpAddress(text).address;
}

function expectUapiError(
  lines: string[],
  code: UapiError['code'],
  messagePart: string | RegExp,
): void {
  assert.throws(
    () => parseSetRequest(lines),
    (error: unknown) => {
      assert.ok(error instanceof UapiError, `expected a UapiError, got ${String(error)}`);
      assert.equal(error.code, code, `${lines.join('\\n')}: ${error.message}`);
      if (typeof messagePart === 'string')
        assert.ok(error.message.includes(messagePart), error.message);
      else assert.match(error.message, messagePart);
      return true;
    },
  );
}

// The example set request of https://www.wireguard.com/xplatform/, as extended to
// use every field in wgctrl-go internal/wguser/client_test.go (okSet).
const XPLATFORM_SET_EXAMPLE = `private_key=e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a
listen_port=12912
fwmark=0
replace_peers=true
public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33
preshared_key=188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52
endpoint=[abcd:23::33%2]:51820
replace_allowed_ips=true
allowed_ip=192.168.4.4/32
public_key=58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376
update_only=true
endpoint=182.122.22.19:3233
persistent_keepalive_interval=111
replace_allowed_ips=true
allowed_ip=192.168.4.6/32
public_key=662e14fd594556f522604703340351258903b64f35553763f19426ab2a515c58
endpoint=5.152.198.39:51820
replace_allowed_ips=true
allowed_ip=192.168.4.10/32
allowed_ip=192.168.4.11/32
public_key=e818b58db5274087fcc1be5dc728cf53d3b5726b4cef6b9bab8f8f8c2452c25c
remove=true

`;

void describe('parseSetRequest', () => {
  void it('parses the xplatform example', () => {
    const request = parseSetRequest(XPLATFORM_SET_EXAMPLE.split('\n'));
    const expected: UapiSetRequest = {
      privateKey: hexKey('e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a'),
      listenPort: 12912,
      fwmark: 0,
      replacePeers: true,
      peers: [
        {
          publicKey: hexKey('b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33'),
          remove: false,
          updateOnly: false,
          presharedKey: hexKey('188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52'),
          endpoint: { family: 6, address: ip('abcd:23::33'), port: 51820, zone: '2' },
          replaceAllowedIps: true,
          allowedIps: [{ family: 4, address: ip('192.168.4.4'), cidr: 32, remove: false }],
        },
        {
          publicKey: hexKey('58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376'),
          remove: false,
          updateOnly: true,
          endpoint: { family: 4, address: ip('182.122.22.19'), port: 3233 },
          persistentKeepaliveInterval: 111,
          replaceAllowedIps: true,
          allowedIps: [{ family: 4, address: ip('192.168.4.6'), cidr: 32, remove: false }],
        },
        {
          publicKey: hexKey('662e14fd594556f522604703340351258903b64f35553763f19426ab2a515c58'),
          remove: false,
          updateOnly: false,
          endpoint: { family: 4, address: ip('5.152.198.39'), port: 51820 },
          replaceAllowedIps: true,
          allowedIps: [
            { family: 4, address: ip('192.168.4.10'), cidr: 32, remove: false },
            { family: 4, address: ip('192.168.4.11'), cidr: 32, remove: false },
          ],
        },
        {
          publicKey: hexKey('e818b58db5274087fcc1be5dc728cf53d3b5726b4cef6b9bab8f8f8c2452c25c'),
          remove: true,
          updateOnly: false,
          replaceAllowedIps: false,
          allowedIps: [],
        },
      ],
    };
    assert.deepEqual(request, expected);
  });

  void it('parses allowed_ip removal, IPv6, protocol_version and uppercase hex', () => {
    const request = parseSetRequest([
      `public_key=${'AB'.repeat(32)}`,
      'protocol_version=1',
      'allowed_ip=-10.0.0.0/8',
      'allowed_ip=fd00::1/64',
      'allowed_ip=::/0',
      'allowed_ip=::ffff:192.0.2.1/128',
      'persistent_keepalive_interval=0',
      '',
    ]);
    const peer = request.peers[0];
    assert.ok(peer !== undefined);
    assert.deepEqual(peer.publicKey, new Uint8Array(32).fill(0xab));
    assert.equal(peer.protocolVersion, 1);
    assert.equal(peer.persistentKeepaliveInterval, 0);
    assert.deepEqual(
      peer.allowedIps.map(
        (a) => `${a.remove ? '-' : ''}${formatCidr(a.address, a.cidr)}/${a.family}`,
      ),
      ['-10.0.0.0/8/4', 'fd00::1/64/6', '::/0/6', '::ffff:192.0.2.1/128/6'],
    );
    assert.equal(request.replacePeers, false);
    assert.equal(request.privateKey, undefined);
  });

  void it('an all-zero private key means "remove the key"; limits of numbers are accepted', () => {
    const request = parseSetRequest([
      `private_key=${'0'.repeat(64)}`,
      'listen_port=65535',
      'fwmark=4294967295',
    ]);
    assert.deepEqual(request.privateKey, new Uint8Array(32));
    assert.equal(request.listenPort, 65535);
    assert.equal(request.fwmark, 4294967295);
    assert.equal(parseSetRequest(['listen_port=0']).listenPort, 0);
    assert.equal(parseSetRequest(['listen_port=000080']).listenPort, 80); // strconv.ParseUint allows it
  });

  void it('replace_allowed_ips after allowed_ip lines drops those earlier lines, as wireguard-go applies them in order', () => {
    const request = parseSetRequest([
      `public_key=${'11'.repeat(32)}`,
      'allowed_ip=10.0.0.0/8',
      'replace_allowed_ips=true',
      'allowed_ip=10.1.0.0/16',
    ]);
    const peer = request.peers[0];
    assert.ok(peer !== undefined);
    assert.deepEqual(
      peer.allowedIps.map((a) => formatCidr(a.address, a.cidr)),
      ['10.1.0.0/16'],
    );
    assert.equal(peer.replaceAllowedIps, true);
  });

  void it('remove=true discards the section before and after it, but still checks the lines after', () => {
    const request = parseSetRequest([
      `public_key=${'22'.repeat(32)}`,
      `preshared_key=${'33'.repeat(32)}`,
      'allowed_ip=10.0.0.0/8',
      'remove=true',
      'endpoint=192.0.2.1:51820',
      'allowed_ip=10.2.0.0/16',
      `public_key=${'44'.repeat(32)}`,
      'allowed_ip=10.3.0.0/16',
    ]);
    assert.deepEqual(request.peers[0], {
      publicKey: new Uint8Array(32).fill(0x22),
      remove: true,
      updateOnly: false,
      replaceAllowedIps: false,
      allowedIps: [],
    });
    assert.equal(request.peers[1]?.allowedIps.length, 1);
    expectUapiError(
      [`public_key=${'22'.repeat(32)}`, 'remove=true', 'allowed_ip=bogus'],
      'ERR_UAPI_INVALID',
      'allowed_ip',
    );
  });

  void it('the same public key twice gives two sections, applied in order', () => {
    const request = parseSetRequest([
      `public_key=${'55'.repeat(32)}`,
      'remove=true',
      `public_key=${'55'.repeat(32)}`,
      'allowed_ip=10.5.0.0/16',
    ]);
    assert.equal(request.peers.length, 2);
    assert.equal(request.peers[0]?.remove, true);
    assert.equal(request.peers[1]?.allowedIps.length, 1);
  });

  void it('drops a trailing \\r and stops at the first blank line (or a lone \\r)', () => {
    const request = parseSetRequest(['listen_port=5\r', '', 'listen_port=6', 'garbage']);
    assert.equal(request.listenPort, 5);
    assert.equal(parseSetRequest(['listen_port=7', '\r', 'garbage']).listenPort, 7);
  });

  void it('reports each kind of bad line with the errno wireguard-go uses', () => {
    const peer = `public_key=${'66'.repeat(32)}`;
    const cases: [string[], UapiError['code'], string | RegExp][] = [
      [['listen_port'], 'ERR_UAPI_PROTOCOL', 'line 1: failed to parse line "listen_port"'],
      [['', 'whatever'], 'ERR_UAPI_PROTOCOL', 'never'], // placeholder, replaced below
      [['listen_port=65536'], 'ERR_UAPI_INVALID', 'listen_port "65536"'],
      [['listen_port=-1'], 'ERR_UAPI_INVALID', 'listen_port'],
      [['listen_port=+1'], 'ERR_UAPI_INVALID', 'listen_port'],
      [['listen_port='], 'ERR_UAPI_INVALID', 'listen_port'],
      [['listen_port= 1'], 'ERR_UAPI_INVALID', 'listen_port'],
      [['listen_port=0x10'], 'ERR_UAPI_INVALID', 'listen_port'],
      [['fwmark=4294967296'], 'ERR_UAPI_INVALID', 'fwmark'],
      [['replace_peers=false'], 'ERR_UAPI_INVALID', 'replace_peers'],
      [['replace_peers=TRUE'], 'ERR_UAPI_INVALID', 'replace_peers'],
      [['private_key=abc'], 'ERR_UAPI_INVALID', 'private_key'],
      [[`private_key=${'g'.repeat(64)}`], 'ERR_UAPI_INVALID', 'private_key'],
      [['bogus=1'], 'ERR_UAPI_INVALID', 'invalid UAPI device key "bogus"'],
      [['=1'], 'ERR_UAPI_INVALID', 'invalid UAPI device key ""'],
      [['update_only=true'], 'ERR_UAPI_INVALID', 'device key "update_only"'],
      [['public_key=1234'], 'ERR_UAPI_INVALID', 'public_key "1234"'],
      [[peer, 'listen_port=1'], 'ERR_UAPI_INVALID', 'line 2: invalid UAPI peer key "listen_port"'],
      [[peer, 'replace_peers=true'], 'ERR_UAPI_INVALID', 'peer key "replace_peers"'],
      [[peer, 'protocol_version=2'], 'ERR_UAPI_INVALID', 'protocol_version "2"'],
      [[peer, 'update_only=1'], 'ERR_UAPI_INVALID', 'update_only'],
      [[peer, 'remove=yes'], 'ERR_UAPI_INVALID', 'remove'],
      [[peer, 'replace_allowed_ips=false'], 'ERR_UAPI_INVALID', 'replace_allowed_ips'],
      [
        [peer, 'persistent_keepalive_interval=65536'],
        'ERR_UAPI_INVALID',
        'persistent_keepalive_interval',
      ],
      [[peer, 'preshared_key=00'], 'ERR_UAPI_INVALID', 'preshared_key'],
      [[peer, 'allowed_ip=10.0.0.0'], 'ERR_UAPI_INVALID', 'missing /prefix length'],
      [[peer, 'allowed_ip=10.0.0.0/33'], 'ERR_UAPI_INVALID', 'allowed_ip "10.0.0.0/33"'],
      [[peer, 'allowed_ip=--10.0.0.0/8'], 'ERR_UAPI_INVALID', 'allowed_ip'],
      [[peer, 'allowed_ip=fe80::/64%eth0'], 'ERR_UAPI_INVALID', 'allowed_ip'],
      [[peer, 'allowed_ip=10.0.0.0/8 '], 'ERR_UAPI_INVALID', 'allowed_ip'],
      [[peer, 'endpoint=192.0.2.1'], 'ERR_UAPI_INVALID', 'endpoint "192.0.2.1"'],
      [[peer, 'endpoint=192.0.2.1:65536'], 'ERR_UAPI_INVALID', 'port'],
      [[peer, 'endpoint=192.0.2.1:'], 'ERR_UAPI_INVALID', 'port'],
      [[peer, 'endpoint=:51820'], 'ERR_UAPI_INVALID', 'no IP'],
      [[peer, 'endpoint=[192.0.2.1]:51820'], 'ERR_UAPI_INVALID', 'only for IPv6'],
      [[peer, 'endpoint=192.0.2.1%eth0:51820'], 'ERR_UAPI_INVALID', 'only for IPv6'],
      [[peer, 'endpoint=2001:db8::1:51820'], 'ERR_UAPI_INVALID', 'square brackets'],
      [[peer, 'endpoint=[2001:db8::1:51820'], 'ERR_UAPI_INVALID', 'missing ]'],
      [[peer, 'endpoint=[fe80::1%]:51820'], 'ERR_UAPI_INVALID', 'zone'],
      [[peer, 'endpoint=example.com:51820'], 'ERR_UAPI_INVALID', 'bad IP address'],
    ];
    cases.splice(1, 1); // a blank first line simply ends an empty request
    for (const [lines, code, part] of cases) expectUapiError(lines, code, part);
    assert.deepEqual(parseSetRequest(['', 'whatever']), { replacePeers: false, peers: [] });
  });

  void it('never puts secret key material into error messages', () => {
    const secret = `${'ab'.repeat(31)}zz`;
    for (const line of [
      `private_key=${secret}`,
      `public_key=${'11'.repeat(32)}\npreshared_key=${secret}`,
    ]) {
      assert.throws(
        () => parseSetRequest(line.split('\n')),
        (error: Error) => !error.message.includes('abab'),
      );
    }
  });

  void it('the streaming parser refuses lines after the end', () => {
    const parser = new UapiSetParser();
    assert.equal(parser.feedLine('listen_port=1'), false);
    assert.equal(parser.feedLine(''), true);
    assert.throws(() => parser.feedLine('listen_port=2'), /already ended/);
    assert.equal(parser.finish().listenPort, 1);
  });
});

void describe('parseSetRequest fuzz', () => {
  const keys = [
    'private_key',
    'listen_port',
    'fwmark',
    'replace_peers',
    'public_key',
    'preshared_key',
    'endpoint',
    'persistent_keepalive_interval',
    'replace_allowed_ips',
    'allowed_ip',
    'update_only',
    'remove',
    'protocol_version',
  ];
  const value = fc.oneof(
    fc.string(),
    fc.constantFrom(
      'true',
      '1',
      '0',
      '65535',
      '65536',
      '-1',
      '::',
      '::/0',
      '-::/0',
      '1.2.3.4/32',
      '[::1]:1',
    ),
    fc.stringMatching(/^[0-9a-fA-F]{64}$/),
    fc.stringMatching(/^-?[0-9a-f:.]{0,20}\/[0-9]{1,3}$/),
    fc.stringMatching(/^\[?[0-9a-f:.%a-z]{0,24}\]?:[0-9]{0,6}$/),
  );
  const line = fc.oneof(
    {
      weight: 5,
      arbitrary: fc.tuple(fc.constantFrom(...keys), value).map(([k, v]) => `${k}=${v}`),
    },
    { weight: 1, arbitrary: fc.string() },
    { weight: 1, arbitrary: fc.string({ unit: 'binary' }) },
  );

  void it('arbitrary lines give a request or a UapiError, never another exception', () => {
    fc.assert(
      fc.property(fc.array(line, { maxLength: 25 }), (lines) => {
        try {
          const request = parseSetRequest(lines);
          for (const peer of request.peers) assert.equal(peer.publicKey.length, 32);
        } catch (error) {
          assert.ok(error instanceof UapiError, `unexpected ${String(error)}`);
          assert.ok(error.code === 'ERR_UAPI_INVALID' || error.code === 'ERR_UAPI_PROTOCOL');
        }
      }),
      { numRuns: 3000, interruptAfterTimeLimit: 20_000 },
    );
  });
});

/** Writes a request the way wg does (wireguard-tools ipc-uapi.h userspace_set_device). */
function serializeLikeWg(request: UapiSetRequest): string[] {
  const lines: string[] = [];
  const hex = (key: Uint8Array): string => Buffer.from(key).toString('hex');
  if (request.privateKey !== undefined) lines.push(`private_key=${hex(request.privateKey)}`);
  if (request.listenPort !== undefined) lines.push(`listen_port=${request.listenPort}`);
  if (request.fwmark !== undefined) lines.push(`fwmark=${request.fwmark}`);
  if (request.replacePeers) lines.push('replace_peers=true');
  for (const peer of request.peers) {
    lines.push(`public_key=${hex(peer.publicKey)}`);
    if (peer.remove) {
      lines.push('remove=true');
      continue;
    }
    if (peer.updateOnly) lines.push('update_only=true');
    if (peer.presharedKey !== undefined) lines.push(`preshared_key=${hex(peer.presharedKey)}`);
    if (peer.endpoint !== undefined) lines.push(`endpoint=${formatEndpoint(peer.endpoint)}`);
    if (peer.persistentKeepaliveInterval !== undefined) {
      lines.push(`persistent_keepalive_interval=${peer.persistentKeepaliveInterval}`);
    }
    if (peer.replaceAllowedIps) lines.push('replace_allowed_ips=true');
    for (const entry of peer.allowedIps) {
      lines.push(`allowed_ip=${entry.remove ? '-' : ''}${formatCidr(entry.address, entry.cidr)}`);
    }
  }
  lines.push('');
  return lines;
}

void describe('set round trip', () => {
  const key = fc.uint8Array({ minLength: 32, maxLength: 32 });
  const address4 = fc.uint8Array({ minLength: 4, maxLength: 4 });
  const address6 = fc.uint8Array({ minLength: 16, maxLength: 16 });
  const endpoint: fc.Arbitrary<UapiEndpoint> = fc.oneof(
    fc.record(
      {
        family: fc.constant(4 as const),
        address: address4,
        port: fc.integer({ min: 0, max: 65535 }),
      },
      { noNullPrototype: true },
    ),
    fc.record(
      {
        family: fc.constant(6 as const),
        address: address6,
        port: fc.integer({ min: 0, max: 65535 }),
        zone: fc.constantFrom('eth0', '2', 'wg-uplink'),
      },
      { requiredKeys: ['family', 'address', 'port'], noNullPrototype: true },
    ),
  );
  const allowedIp = fc.oneof(
    fc.record(
      {
        family: fc.constant(4 as const),
        address: address4,
        cidr: fc.integer({ min: 0, max: 32 }),
        remove: fc.boolean(),
      },
      { noNullPrototype: true },
    ),
    fc.record(
      {
        family: fc.constant(6 as const),
        address: address6,
        cidr: fc.integer({ min: 0, max: 128 }),
        remove: fc.boolean(),
      },
      { noNullPrototype: true },
    ),
  );
  const livePeer: fc.Arbitrary<UapiPeerConfig> = fc.record(
    {
      publicKey: key,
      remove: fc.constant(false),
      updateOnly: fc.boolean(),
      presharedKey: key,
      endpoint,
      persistentKeepaliveInterval: fc.integer({ min: 0, max: 65535 }),
      replaceAllowedIps: fc.boolean(),
      allowedIps: fc.array(allowedIp, { maxLength: 6 }),
    },
    {
      requiredKeys: ['publicKey', 'remove', 'updateOnly', 'replaceAllowedIps', 'allowedIps'],
      noNullPrototype: true,
    },
  );
  const removedPeer: fc.Arbitrary<UapiPeerConfig> = key.map((publicKey) => ({
    publicKey,
    remove: true,
    updateOnly: false,
    replaceAllowedIps: false,
    allowedIps: [],
  }));
  const request: fc.Arbitrary<UapiSetRequest> = fc.record(
    {
      privateKey: key,
      listenPort: fc.integer({ min: 0, max: 65535 }),
      fwmark: fc.integer({ min: 0, max: 0xffff_ffff }),
      replacePeers: fc.boolean(),
      peers: fc.array(
        fc.oneof({ weight: 4, arbitrary: livePeer }, { weight: 1, arbitrary: removedPeer }),
        {
          maxLength: 4,
        },
      ),
    },
    { requiredKeys: ['replacePeers', 'peers'], noNullPrototype: true },
  );

  void it('what wg would send parses back to the same request', () => {
    fc.assert(
      fc.property(request, (original) => {
        assert.deepEqual(parseSetRequest(serializeLikeWg(original)), original);
      }),
      { numRuns: 500 },
    );
  });
});

void describe('endpoints', () => {
  void it('parses and prints the netip.AddrPort forms', () => {
    const vectors: [string, UapiEndpoint][] = [
      ['192.0.2.1:51820', { family: 4, address: ip('192.0.2.1'), port: 51820 }],
      ['[2001:db8::1]:51820', { family: 6, address: ip('2001:db8::1'), port: 51820 }],
      ['[fe80::1%eth0]:1', { family: 6, address: ip('fe80::1'), port: 1, zone: 'eth0' }],
      ['[::ffff:192.0.2.1]:0', { family: 6, address: ip('::ffff:192.0.2.1'), port: 0 }],
    ];
    for (const [text, endpoint] of vectors) {
      assert.deepEqual(parseEndpoint(text), endpoint);
      assert.equal(formatEndpoint(endpoint), text);
    }
    assert.equal(formatEndpoint(parseEndpoint('[2001:DB8:0::1]:00080')), '[2001:db8::1]:80');
  });
});

void describe('address parsing against Node (inet_pton)', () => {
  // parseEndpoint and allowed_ip rely on parseIpAddress; check it accepts exactly
  // what Node's net.isIP accepts, and that re-reading Node's inet_ntop form of an
  // IPv6 address (an independent conversion) gives the same bytes.
  const parses = (text: string): Uint8Array | null => {
    try {
      return parseIpAddress(text).address;
    } catch {
      return null;
    }
  };

  void it('accepts the same texts and reads the same bytes (fuzz)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.stringMatching(/^[0-9a-fA-F:.]{0,41}$/),
          fc.stringMatching(
            /^(::)?([0-9a-f]{1,4}:){0,7}[0-9a-f]{0,4}(::)?([0-9]{1,3}\.){0,3}[0-9]{0,3}$/,
          ),
        ),
        (text) => {
          const mine = parses(text);
          assert.equal(mine !== null, net.isIP(text) !== 0, JSON.stringify(text));
          if (mine !== null && mine.length === 16) {
            const normalised = new net.SocketAddress({ address: text, family: 'ipv6' }).address;
            assert.deepEqual(parses(normalised), mine, `${text} vs ${normalised}`);
          }
        },
      ),
      { numRuns: 20_000 },
    );
  });
});

void describe('formatGetResponse', () => {
  const privateKey = hexKey('e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a');
  const peerA = hexKey('b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33');
  const psk = hexKey('188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52');
  const peerB = hexKey('58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376');

  void it('prints the fields in wireguard-go order and ends with errno=0 and a blank line', () => {
    const status: UapiDeviceStatus = {
      privateKey,
      listenPort: 12912,
      fwmark: 51820,
      peers: [
        {
          publicKey: peerA,
          presharedKey: psk,
          endpoint: { family: 6, address: ip('abcd:23::33'), port: 51820, zone: '2' },
          persistentKeepaliveInterval: 0,
          lastHandshakeTimeSec: 1_700_000_000,
          lastHandshakeTimeNsec: 123_456_789,
          rxBytes: 2224n,
          txBytes: 38333n,
          allowedIps: [{ address: ip('192.168.4.4'), cidr: 32 }],
        },
        {
          publicKey: peerB,
          presharedKey: null,
          endpoint: null,
          persistentKeepaliveInterval: 111,
          lastHandshakeTimeSec: 0,
          lastHandshakeTimeNsec: 0,
          rxBytes: 2n ** 64n - 1n,
          txBytes: 0n,
          allowedIps: [
            { address: ip('192.168.4.6'), cidr: 32 },
            { address: ip('fd00::'), cidr: 8 },
          ],
        },
      ],
    };
    assert.equal(
      formatGetResponse(status),
      [
        'private_key=e84b5a6d2717c1003a13b431570353dbaca9146cf150c5f8575680feba52027a',
        'listen_port=12912',
        'fwmark=51820',
        'public_key=b85996fecc9c7f1fc6d2572a76eda11d59bcd20be8e543b15ce4bd85a8e75a33',
        'preshared_key=188515093e952f5f22e865cef3012e72f8b5f0b598ac0309d5dacce3b70fcf52',
        'protocol_version=1',
        'endpoint=[abcd:23::33%2]:51820',
        'last_handshake_time_sec=1700000000',
        'last_handshake_time_nsec=123456789',
        'tx_bytes=38333',
        'rx_bytes=2224',
        'persistent_keepalive_interval=0',
        'allowed_ip=192.168.4.4/32',
        'public_key=58402e695ba1772b1cc9309755f043251ea77fdcf10fbe63989ceb7e19321376',
        `preshared_key=${'0'.repeat(64)}`,
        'protocol_version=1',
        'last_handshake_time_sec=0',
        'last_handshake_time_nsec=0',
        'tx_bytes=0',
        'rx_bytes=18446744073709551615',
        'persistent_keepalive_interval=111',
        'allowed_ip=192.168.4.6/32',
        'allowed_ip=fd00::/8',
        'errno=0',
        '',
        '',
      ].join('\n'),
    );
  });

  void it('omits an unset private key, port and fwmark, like wireguard-go', () => {
    const empty = { privateKey: null, listenPort: 0, fwmark: 0, peers: [] };
    assert.equal(formatGetResponse(empty), 'errno=0\n\n');
    assert.equal(formatGetResponse({ ...empty, privateKey: new Uint8Array(32) }), 'errno=0\n\n');
  });

  void it('refuses malformed status (programming errors) by name', () => {
    const base = { privateKey: null, listenPort: 0, fwmark: 0, peers: [] };
    assert.throws(() => formatGetResponse({ ...base, listenPort: 70000 }), /listenPort/);
    assert.throws(
      () => formatGetResponse({ ...base, privateKey: new Uint8Array(31) }),
      /privateKey/,
    );
    const peer = {
      publicKey: new Uint8Array(32),
      presharedKey: null,
      endpoint: null,
      persistentKeepaliveInterval: 0,
      lastHandshakeTimeSec: 0,
      lastHandshakeTimeNsec: 1e9,
      rxBytes: 0n,
      txBytes: 0n,
      allowedIps: [],
    };
    assert.throws(() => formatGetResponse({ ...base, peers: [peer] }), /lastHandshakeTimeNsec/);
    assert.throws(
      () =>
        formatGetResponse({
          ...base,
          peers: [{ ...peer, lastHandshakeTimeNsec: 0, rxBytes: -1n }],
        }),
      /rxBytes/,
    );
  });

  void it('prints every IPv6 allowed IP the way Go netip does', () => {
    const addresses = ['2001:db8::1:0:0:1', '::ffff:10.0.0.1', '::', '1::'];
    const text = formatGetResponse({
      privateKey: null,
      listenPort: 0,
      fwmark: 0,
      peers: [
        {
          publicKey: peerA,
          presharedKey: null,
          endpoint: { family: 4, address: ip('192.0.2.9'), port: 9 },
          persistentKeepaliveInterval: 0,
          lastHandshakeTimeSec: 0,
          lastHandshakeTimeNsec: 0,
          rxBytes: 0n,
          txBytes: 0n,
          allowedIps: addresses.map((a) => ({ address: ip(a), cidr: 128 })),
        },
      ],
    });
    for (const a of addresses)
      assert.ok(text.includes(`\nallowed_ip=${formatIpAddress(ip(a))}/128\n`), a);
    assert.ok(text.includes('\nendpoint=192.0.2.9:9\n'));
  });
});

void describe('formatErrnoResponse', () => {
  void it('negates the errno, as wireguard-go writes it and wg reads it', () => {
    assert.equal(formatErrnoResponse(0), 'errno=0\n\n');
    assert.equal(formatErrnoResponse(22), 'errno=-22\n\n');
    assert.equal(
      formatErrnoResponse(new UapiError('ERR_UAPI_PROTOCOL', 'x').errno),
      'errno=-71\n\n',
    );
    assert.throws(() => formatErrnoResponse(-22), /errno/);
  });
});
