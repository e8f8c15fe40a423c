import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RelayConfigError } from './errors.js';
import { describeLimits, limitsHelp, parseLimitOptions } from './limits-option.js';
import { DEFAULT_RELAY_LIMITS } from './relay.js';

describe('--limit NAME=VALUE', () => {
  it('maps kebab-case names to RelayLimits fields', () => {
    assert.deepEqual(
      parseLimitOptions([
        'requests-per-second=1000',
        'max-connections-per-ip=4096',
        'keepalive-interval-ms=0',
        'requests-per-second=1500',
      ]),
      { requestsPerSecond: 1500, maxConnectionsPerIp: 4096, keepaliveIntervalMs: 0 },
    );
    assert.deepEqual(parseLimitOptions([]), {});
  });

  it('describes parsed limits with the same names', () => {
    const texts = ['requests-per-second=1000', 'max-connections-per-ip=4096'];
    assert.equal(describeLimits(parseLimitOptions(texts)), texts.join(', '));
    assert.equal(describeLimits({}), '');
  });

  it('refuses unknown names, missing values and values that are not whole numbers', () => {
    const cases: [string, RegExp][] = [
      ['requests-per-minute=5', /unknown limit 'requests-per-minute'/],
      ['requestsPerSecond=5', /unknown limit 'requestsPerSecond'/],
      ['requests-per-second', /expected requests-per-second=VALUE/],
      ['requests-per-second=', /must be a whole number >= 1, got ''/],
      ['requests-per-second=0', /must be a whole number >= 1, got '0'/],
      ['requests-per-second=1.5', /got '1\.5'/],
      ['requests-per-second=-1', /got '-1'/],
      ['requests-per-second=1e3', /got '1e3'/],
      ['requests-per-second=99999999999999999999', /got '99999999999999999999'/],
      ['keepalive-interval-ms=-1', /keepalive-interval-ms must be a whole number >= 0/],
    ];
    for (const [text, message] of cases) {
      assert.throws(
        () => parseLimitOptions([text]),
        (error: unknown) => error instanceof RelayConfigError && message.test(error.message),
        text,
      );
    }
  });

  it('lists every limit with its default in --help', () => {
    const help = limitsHelp();
    const keys = Object.keys(DEFAULT_RELAY_LIMITS);
    assert.equal(help.trimEnd().split('\n').length, keys.length);
    assert.match(help, /^ {2}requests-per-second=200 +requests per second per HTTP tunnel$/m);
    assert.match(help, /^ {2}max-streams-per-session=1024 /m);
    // Each listed name parses back to its own default.
    for (const line of help.trimEnd().split('\n')) {
      const option = line.trim().split(/\s+/)[0] ?? '';
      const parsed = Object.entries(parseLimitOptions([option]));
      assert.equal(parsed.length, 1, option);
      const [key, value] = parsed[0] ?? [];
      assert.equal(value, DEFAULT_RELAY_LIMITS[key as keyof typeof DEFAULT_RELAY_LIMITS]);
    }
  });
});
