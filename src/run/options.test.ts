import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { ConfigError } from '../config/errors.js';
import { RunError } from './errors.js';
import { tunnelSettings } from './options.js';

const PRIVATE = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=';
const PUBLIC = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=';
const OTHER_PUBLIC = 'TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=';

const dir = mkdtempSync(join(tmpdir(), 'warren-run-options-'));
after(() => {
  rmSync(dir, { recursive: true, force: true });
});
const file = (name: string, text: string): string => {
  const path = join(dir, name);
  writeFileSync(path, text, { mode: 0o600 });
  return path;
};
const keyFile = file('private.key', `${PRIVATE}\n`);
const config = file(
  'wg0.conf',
  `[Interface]\nPrivateKey = ${PRIVATE}\nAddress = 198.51.100.2/32\nDNS = 198.51.100.1\nMTU = 1380\n` +
    `[Peer]\nPublicKey = ${PUBLIC}\nEndpoint = 192.0.2.1:51820\nAllowedIPs = 0.0.0.0/0\n`,
);

function runError(fn: () => unknown): RunError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof RunError, String(error));
    return error;
  }
  assert.fail('expected a RunError');
}

describe('warren run settings', () => {
  it('takes everything from a wg-quick config', () => {
    const s = tunnelSettings(config, {}, {});
    assert.equal(s.mtu, 1380);
    assert.deepEqual(s.dnsServers, ['198.51.100.1']);
    assert.equal(s.peers.length, 1);
    assert.deepEqual(s.peers[0]?.endpoint, { host: '192.0.2.1', port: 51820 });
  });

  it('builds the same from --wg-* flags, with default allowed IPs and MTU', () => {
    const s = tunnelSettings(
      undefined,
      {
        endpoint: 'vpn.example:51820',
        publicKey: PUBLIC,
        privateKeyFile: keyFile,
        address: '198.51.100.9/32',
      },
      {},
    );
    assert.equal(s.mtu, 1420);
    assert.equal(Buffer.from(s.privateKey).toString('base64'), PRIVATE);
    assert.deepEqual(s.peers[0]?.endpoint, { host: 'vpn.example', port: 51820 });
    assert.deepEqual(
      s.peers[0].allowedIps.map((a) => [a.family, a.cidr]),
      [
        [4, 0],
        [6, 0],
      ],
    );
  });

  it('reads WARREN_WG_* variables; flags win over them, and both over the config', () => {
    const env = {
      WARREN_WG_ENDPOINT: '192.0.2.7:1000',
      WARREN_WG_PUBLIC_KEY: OTHER_PUBLIC,
      WARREN_WG_DNS: '203.0.113.53',
    };
    const fromEnv = tunnelSettings(config, {}, env);
    assert.deepEqual(fromEnv.peers[0]?.endpoint, { host: '192.0.2.7', port: 1000 });
    assert.equal(Buffer.from(fromEnv.peers[0].publicKey).toString('base64'), OTHER_PUBLIC);
    assert.deepEqual(fromEnv.dnsServers, ['203.0.113.53']);
    const fromFlag = tunnelSettings(
      config,
      { endpoint: '[2001:db8::1]:2000', dns: '192.0.2.53' },
      env,
    );
    assert.deepEqual(fromFlag.peers[0]?.endpoint, { host: '2001:db8::1', port: 2000 });
    assert.deepEqual(fromFlag.dnsServers, ['192.0.2.53']);
    // The config's allowed IPs stay when the flags only change the endpoint.
    assert.equal(fromFlag.peers[0].allowedIps.length, 1);
  });

  it('says what is missing or wrong, naming the flag or file', () => {
    assert.equal(runError(() => tunnelSettings(undefined, {}, {})).code, 'ERR_RUN_MISSING_SETTING');
    assert.match(
      runError(() => tunnelSettings(undefined, { privateKeyFile: keyFile }, {})).message,
      /tunnel address/,
    );
    assert.match(
      runError(() =>
        tunnelSettings(
          undefined,
          { privateKeyFile: keyFile, address: '198.51.100.2/32', publicKey: PUBLIC },
          {},
        ),
      ).message,
      /endpoint/,
    );
    assert.match(
      runError(() => tunnelSettings(undefined, { privateKeyFile: join(dir, 'missing.key') }, {}))
        .message,
      /--wg-private-key-file: cannot read .*missing\.key: ENOENT/,
    );
    assert.match(
      runError(() => tunnelSettings(config, { endpoint: 'no-port' }, {})).message,
      /--wg-endpoint/,
    );
    assert.match(
      runError(() => tunnelSettings(config, { address: '300.1.1.1' }, {})).message,
      /--wg-address/,
    );
    assert.match(runError(() => tunnelSettings(config, { mtu: '10' }, {})).message, /--mtu/);
    assert.match(
      runError(() => tunnelSettings(config, { publicKey: 'short' }, {})).message,
      /--wg-public-key/,
    );
    assert.throws(
      () => tunnelSettings(join(dir, 'nope.conf'), {}, {}),
      (error: unknown) =>
        error instanceof ConfigError && error.message.endsWith('nope.conf: cannot read: ENOENT'),
    );
  });
});
