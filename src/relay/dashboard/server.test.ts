import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isLoopbackHost, parseHostHeader } from './server.js';

describe('admin listener helpers', () => {
  it('parses Host headers with names, IPv4, bracketed IPv6 and optional ports', () => {
    assert.deepEqual(parseHostHeader('127.0.0.1:9090'), { host: '127.0.0.1', port: 9090 });
    assert.deepEqual(parseHostHeader('LocalHost'), { host: 'localhost', port: null });
    assert.deepEqual(parseHostHeader('[::1]:8080'), { host: '::1', port: 8080 });
    assert.deepEqual(parseHostHeader('admin.example.com:1'), {
      host: 'admin.example.com',
      port: 1,
    });
    for (const bad of ['', 'a b', 'host:99999', 'host:', '::1:80', 'user@host', 'a/b']) {
      assert.equal(parseHostHeader(bad), null, bad);
    }
  });

  it('knows loopback addresses', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost', '::ffff:127.0.0.1']) {
      assert.equal(isLoopbackHost(host), true, host);
    }
    for (const host of ['0.0.0.0', '::', '192.0.2.1', '128.0.0.1', 'example.com', '127.example']) {
      assert.equal(isLoopbackHost(host), false, host);
    }
  });
});
