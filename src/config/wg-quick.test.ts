import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ConfigError } from './errors.js';
import { parseWgQuickConfig } from './wg-quick.js';

const PRIVATE = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=';
const PUBLIC = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
const PSK = 'FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE=';

const GOOD = `# a Mullvad-style config
[Interface]
PrivateKey = ${PRIVATE}
Address = 10.64.0.2/32, fc00:bbbb:bbbb:bb01::2/128
DNS = 10.64.0.1, corp.example
MTU = 1380
PostUp = echo ignored

[Peer]
PublicKey = ${PUBLIC}
PresharedKey = ${PSK}
AllowedIPs = 0.0.0.0/0, ::/0
Endpoint = 198.51.100.1:51820
PersistentKeepalive = 25
`;

function errorOf(text: string): ConfigError {
  try {
    parseWgQuickConfig(text, 'wg0.conf');
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected a ConfigError');
}

describe('wg-quick config', () => {
  it('parses a full client config', () => {
    const config = parseWgQuickConfig(GOOD, 'wg0.conf');
    assert.equal(Buffer.from(config.privateKey).toString('base64'), PRIVATE);
    assert.deepEqual(
      config.addresses.map((a) => [a.family, a.cidr]),
      [
        [4, 32],
        [6, 128],
      ],
    );
    assert.deepEqual(config.dnsServers, ['10.64.0.1']);
    assert.deepEqual(config.dnsSearch, ['corp.example']);
    assert.equal(config.mtu, 1380);
    assert.deepEqual(config.ignored, [{ key: 'PostUp', line: 7 }]);
    assert.equal(config.peers.length, 1);
    const [peer] = config.peers;
    assert.ok(peer);
    assert.equal(Buffer.from(peer.publicKey).toString('base64'), PUBLIC);
    assert.equal(Buffer.from(peer.presharedKey ?? []).toString('base64'), PSK);
    assert.deepEqual(peer.endpoint, { host: '198.51.100.1', port: 51820 });
    assert.deepEqual(
      peer.allowedIps.map((a) => [a.family, a.cidr]),
      [
        [4, 0],
        [6, 0],
      ],
    );
    assert.equal(peer.persistentKeepalive, 25);
  });

  it('accepts any key case, comments, CRLF, IPv6 and hostname endpoints, several peers', () => {
    const config = parseWgQuickConfig(
      `[interface]\r\nprivatekey=${PRIVATE} # key\r\naddress = 10.0.0.2/24\r\n` +
        `[PEER]\r\npublickey = ${PUBLIC}\r\nendpoint = [2001:db8::1]:51820\r\n` +
        `[Peer]\nPublicKey = ${PUBLIC}\nEndpoint = vpn.example.com:443\n`,
    );
    assert.equal(config.addresses[0]?.cidr, 24);
    assert.deepEqual(config.peers[0]?.endpoint, { host: '2001:db8::1', port: 51820 });
    assert.deepEqual(config.peers[1]?.endpoint, { host: 'vpn.example.com', port: 443 });
  });

  it('names the file and line of each kind of mistake', () => {
    const cases: [string, number, RegExp][] = [
      [`[Interface]\nPrivateKey = nope\n`, 2, /PrivateKey/],
      [`[Interface]\nPrivateKey = ${PRIVATE}\nAddress = 10.0.0.300/32\n`, 3, /Address/],
      [`[Interface]\nPrivateKey = ${PRIVATE}\nMTU = big\n`, 3, /MTU/],
      [`[Interface]\nPrivateKey = ${PRIVATE}\nColour = blue\n`, 3, /unknown key 'Colour'/],
      [`[Interface]\nPrivateKey = ${PRIVATE}\n[Peer]\nEndpoint = host\n`, 4, /Endpoint/],
      [`[Interface]\nPrivateKey = ${PRIVATE}\n[Peer]\nEndpoint = h:99999\n`, 4, /port/],
      [`[Interface]\nPrivateKey = ${PRIVATE}\n[Peer]\nAllowedIPs = 10.0.0.0/33\n`, 4, /AllowedIPs/],
      [`[Interface]\nPrivateKey = ${PRIVATE}\n[Peer]\nAllowedIPs = 0.0.0.0/0\n`, 3, /no PublicKey/],
      [`PrivateKey = ${PRIVATE}\n`, 1, /outside any section/],
      [`[Interface]\nPrivateKey = ${PRIVATE}\n[Tunnel]\n`, 3, /unknown section/],
      [`[Interface]\nPrivateKey = ${PRIVATE}\njust words\n`, 3, /Key = Value/],
      [`[Interface]\nPrivateKey = ${PRIVATE}\nDNS = not/valid\n`, 3, /DNS/],
    ];
    for (const [text, line, pattern] of cases) {
      const error = errorOf(text);
      assert.equal(error.code, 'ERR_CONFIG_INVALID');
      assert.equal(error.file, 'wg0.conf');
      assert.equal(error.line, line, `${error.message} (for ${JSON.stringify(text)})`);
      assert.match(error.message, pattern);
      assert.match(error.message, new RegExp(`^wg0\\.conf:${line}: `));
    }
    assert.match(errorOf('').message, /no \[Interface\]/);
    assert.match(errorOf('[Interface]\nMTU = 1400\n').message, /no PrivateKey/);
  });

  it('never leaks a key into an error message', () => {
    const secret = PRIVATE.slice(0, 43) + '!';
    assert.doesNotMatch(errorOf(`[Interface]\nPrivateKey = ${secret}\n`).message, /yAnz5TF/);
  });

  it('fuzz: any text gives a config or a ConfigError, nothing else', () => {
    const fragments = fc.constantFrom(
      '[Interface]',
      '[Peer]',
      `PrivateKey = ${PRIVATE}`,
      `PublicKey = ${PUBLIC}`,
      'Address = 10.0.0.1/24',
      'AllowedIPs = 0.0.0.0/0, ::/0',
      'Endpoint = [::1]:1',
      'DNS = 1.1.1.1',
      'MTU = 1420',
      '=',
      '# comment',
      '',
    );
    const line = fc.oneof(fragments, fc.string({ maxLength: 40 }));
    fc.assert(
      fc.property(fc.array(line, { maxLength: 20 }), (lines) => {
        try {
          parseWgQuickConfig(lines.join('\n'));
        } catch (error) {
          if (!(error instanceof ConfigError)) throw error;
        }
      }),
      { numRuns: 2000 },
    );
  });
});
