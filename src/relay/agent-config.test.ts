import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseAgentConfig, parseHostPort } from './agent-config.js';
import { RelayConfigError } from './errors.js';

describe('agent config file', () => {
  it('reads tunnels and connection settings', () => {
    const config = parseAgentConfig(
      JSON.stringify({
        relay: 'tunnel.example.com:8443',
        tokenFile: '/etc/warren/token',
        ca: '/etc/warren/ca.crt',
        tunnels: [
          { http: 3000, subdomain: 'app' },
          { tcp: 5432, remotePort: 41234, localHost: '::1' },
          { http: 8080, hostname: 'App.Example.org' },
        ],
      }),
    );
    assert.deepEqual(config, {
      relay: 'tunnel.example.com:8443',
      tokenFile: '/etc/warren/token',
      ca: '/etc/warren/ca.crt',
      tunnels: [
        { proto: 'http', localPort: 3000, subdomain: 'app' },
        { proto: 'tcp', localPort: 5432, localHost: '::1', remotePort: 41234 },
        { proto: 'http', localPort: 8080, hostname: 'app.example.org' },
      ],
    });
  });

  it('refuses typos, conflicts and bad values, naming the field', () => {
    const cases: [unknown, RegExp][] = [
      [{ tunnels: [] }, /tunnels/],
      [{ tunnels: [{ http: 3000 }], relya: 'x' }, /relya/],
      [{ tunnels: [{ http: 3000, tcp: 22 }] }, /exactly one/],
      [{ tunnels: [{ htp: 3000 }] }, /htp/],
      [{ tunnels: [{ http: 0 }] }, /tunnels\[0\]\.http/],
      [{ tunnels: [{ http: 80, subdomain: 'a.b' }] }, /subdomain/],
      [{ tunnels: [{ http: 80, remotePort: 5 }] }, /remotePort/],
      [{ tunnels: [{ tcp: 22, subdomain: 'x' }] }, /subdomain/],
      [{ tunnels: [{ http: 80, hostname: 'localhost' }] }, /tunnels\[0\]\.hostname/],
      [{ tunnels: [{ http: 80, hostname: '192.0.2.1' }] }, /hostname/],
      [{ tunnels: [{ http: 80, hostname: 'a.example.org', subdomain: 'a' }] }, /not both/],
      [{ tunnels: [{ tcp: 22, hostname: 'a.example.org' }] }, /hostname is for http/],
      [{ tunnels: [{ http: 80 }], token: 'a', tokenFile: 'b' }, /not both/],
      [{ tunnels: [{ http: 80 }], relay: 'a b' }, /HOST/],
      [[1], /object/],
    ];
    for (const [value, message] of cases) {
      assert.throws(() => parseAgentConfig(JSON.stringify(value)), message, JSON.stringify(value));
    }
    assert.throws(() => parseAgentConfig('{'), RelayConfigError);
  });

  it('parses HOST[:PORT]', () => {
    assert.deepEqual(parseHostPort('relay.example.com', 443), {
      host: 'relay.example.com',
      port: 443,
    });
    assert.deepEqual(parseHostPort('127.0.0.1:8443', 443), { host: '127.0.0.1', port: 8443 });
    assert.deepEqual(parseHostPort('[::1]:9', 443), { host: '::1', port: 9 });
    for (const bad of ['', ':1', 'a:0', 'a:70000', '::1', 'a/b']) {
      assert.throws(() => parseHostPort(bad, 443), RelayConfigError, bad);
    }
  });

  it('fuzz: any text or JSON is a config or a RelayConfigError', () => {
    const tunnel = fc.record(
      {
        http: fc.oneof(fc.integer(), fc.string()),
        tcp: fc.oneof(fc.integer(), fc.string()),
        subdomain: fc.oneof(fc.string(), fc.constant('app')),
        hostname: fc.oneof(fc.string(), fc.domain(), fc.integer()),
        localHost: fc.string(),
        remotePort: fc.integer(),
      },
      { requiredKeys: [] },
    );
    const config = fc.record(
      {
        relay: fc.oneof(fc.string(), fc.constant('r.example:443')),
        token: fc.string(),
        ca: fc.string(),
        tunnels: fc.oneof(fc.array(tunnel, { maxLength: 4 }), fc.jsonValue()),
      },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          config.map((value) => JSON.stringify(value)),
        ),
        (text) => {
          try {
            const parsed = parseAgentConfig(text);
            assert.ok(parsed.tunnels.length > 0);
            for (const spec of parsed.tunnels) {
              assert.ok(
                Number.isInteger(spec.localPort) && spec.localPort >= 1 && spec.localPort <= 65535,
              );
            }
          } catch (error) {
            assert.ok(error instanceof RelayConfigError, String(error));
          }
        },
      ),
      { numRuns: 1000 },
    );
  });
});
