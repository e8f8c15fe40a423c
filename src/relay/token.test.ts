import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createHmac } from 'node:crypto';
import { chmod, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import {
  NotPermittedError,
  RelaySecretError,
  TokenExpiredError,
  TokenInvalidError,
} from './errors.js';
import { TokenBucket } from './rate-limit.js';
import {
  DEFAULT_ACCOUNT,
  MAX_HOST_NAME_LENGTH,
  chooseSubdomain,
  createToken,
  isValidAccountName,
  isValidHostName,
  isValidSubdomainPattern,
  parseDuration,
  parsePortRange,
  subdomainAllowed,
  tcpPortAllowed,
  verifyToken,
} from './token.js';
import type { TokenGrant } from './token.js';
import { SECRET_FILE, loadOrCreateSecret } from './secret.js';

const secret = randomBytes(32);
const NOW = 1_800_000_000;

describe('capability tokens', () => {
  it('verify with the secret that signed them and carry their grant', () => {
    const { token, grant } = createToken(
      secret,
      { name: 'laptop', subdomains: ['app', 'dev-*'], tcp: [[41000, 41009]], expiresAt: NOW + 60 },
      NOW,
    );
    assert.match(token, /^wrn1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    assert.deepEqual(verifyToken(secret, token, NOW), grant);
    assert.equal(grant.issuedAt, NOW);
    assert.match(grant.id, /^[0-9a-f]{32}$/);
  });

  it('refuse a signature whose last character differs only in its pad bits', () => {
    // Found by a CI run: a token altered in the last character's two pad bits
    // decoded to the same signature and verified.
    for (let round = 0; round < 64; round++) {
      const { token } = createToken(secret, { name: 'x', expiresAt: NOW + 60 }, NOW);
      const last = token.at(-1) ?? '';
      const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
      const value = alphabet.indexOf(last);
      for (let pad = 1; pad < 4; pad++) {
        const sibling = alphabet[(value & ~3) | pad] ?? '';
        assert.throws(
          () => verifyToken(secret, token.slice(0, -1) + sibling, NOW),
          TokenInvalidError,
          `${last} -> ${sibling}`,
        );
      }
    }
  });

  it('refuse another secret, any altered byte, expiry and garbage', () => {
    const { token } = createToken(secret, { name: 'x', expiresAt: NOW + 60 }, NOW);
    assert.throws(() => verifyToken(randomBytes(32), token, NOW), TokenInvalidError);
    assert.throws(() => verifyToken(secret, token, NOW + 60), TokenExpiredError);
    // Every 7th character, and the last one: its pad bits must not be ignored.
    for (const i of [
      ...Array.from({ length: Math.ceil((token.length - 5) / 7) }, (_, k) => 5 + 7 * k),
      token.length - 1,
    ]) {
      const altered = token.slice(0, i) + (token[i] === 'A' ? 'B' : 'A') + token.slice(i + 1);
      if (altered === token) continue;
      assert.throws(() => verifyToken(secret, altered, NOW), TokenInvalidError, `byte ${i}`);
    }
    for (const garbage of [
      '',
      'wrn1.',
      'wrn1..',
      'abc',
      'wrn1.e30.' + 'A'.repeat(43),
      'x'.repeat(5000),
    ]) {
      assert.throws(
        () => verifyToken(secret, garbage, NOW),
        TokenInvalidError,
        garbage.slice(0, 20),
      );
    }
  });

  it('fuzz: random strings never verify and fail only with TokenInvalidError', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.string().map((s) => `wrn1.${s}`),
        ),
        (text) => {
          assert.throws(() => verifyToken(secret, text, NOW), TokenInvalidError);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('carry their account; tokens made before accounts belong to the default account', () => {
    const { token, grant } = createToken(secret, { name: 'ci', account: 'acme' }, NOW);
    assert.equal(grant.account, 'acme');
    assert.equal(verifyToken(secret, token, NOW).account, 'acme');
    assert.equal(createToken(secret, { name: 'x' }, NOW).grant.account, DEFAULT_ACCOUNT);

    // A token as the relay signed them before accounts existed: no "a" in its payload.
    const payload = Buffer.from(
      JSON.stringify({
        v: 1,
        id: 'ab'.repeat(16),
        n: 'old',
        s: ['app'],
        t: false,
        iat: NOW,
        exp: null,
      }),
    ).toString('base64url');
    const signed = `wrn1.${payload}`;
    const old = `${signed}.${createHmac('sha256', secret).update(signed, 'latin1').digest('base64url')}`;
    assert.deepEqual(verifyToken(secret, old, NOW), {
      id: 'ab'.repeat(16),
      name: 'old',
      account: DEFAULT_ACCOUNT,
      subdomains: ['app'],
      tcp: false,
      issuedAt: NOW,
      expiresAt: null,
    });
  });

  it('check account names and custom host names', () => {
    for (const good of ['default', 'acme', 'a', 'team.dev_1-x', 'x'.repeat(64)]) {
      assert.ok(isValidAccountName(good), good);
    }
    for (const bad of ['', 'Acme', '-x', '.x', 'a b', 'x'.repeat(65), 'é']) {
      assert.ok(!isValidAccountName(bad), bad);
      assert.throws(() => createToken(secret, { name: 'x', account: bad }), RangeError, bad);
    }
    for (const good of ['app.example.org', 'a.b', 'xn--bcher-kva.example', '1.example.org']) {
      assert.ok(isValidHostName(good), good);
    }
    for (const bad of [
      'localhost',
      'App.example.org',
      'example.org.',
      '192.0.2.1',
      'a..b',
      '-a.b',
      'a_b.example',
      `${'a.'.repeat(MAX_HOST_NAME_LENGTH)}org`.slice(-(MAX_HOST_NAME_LENGTH + 1)),
    ]) {
      assert.ok(!isValidHostName(bad), bad);
    }
    fc.assert(
      fc.property(fc.domain(), (domain) => {
        // What fast-check calls a domain is one if it is short enough and not all-digit at the end.
        const expected =
          domain.length <= MAX_HOST_NAME_LENGTH &&
          domain.includes('.') &&
          !/\.\d+$/.test(domain) &&
          domain.split('.').every((label) => /^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(label));
        assert.equal(isValidHostName(domain), expected, domain);
      }),
      { numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.string(), (text) => {
        assert.equal(typeof isValidHostName(text), 'boolean');
      }),
      { numRuns: 500 },
    );
  });

  it('refuse bad grants when created', () => {
    assert.throws(() => createToken(secret, { name: '' }), RangeError);
    assert.throws(() => createToken(secret, { name: 'x', subdomains: ['a.b'] }), RangeError);
    assert.throws(() => createToken(secret, { name: 'x', subdomains: ['*x'] }), RangeError);
    assert.throws(() => createToken(secret, { name: 'x', tcp: [[5, 4]] }), RangeError);
    assert.throws(() => createToken(Buffer.alloc(8), { name: 'x' }), TypeError);
  });
});

describe('what a grant allows', () => {
  const grant = (subdomains: string[], tcp: TokenGrant['tcp'] = false): TokenGrant => ({
    id: '0'.repeat(32),
    name: 'g',
    account: DEFAULT_ACCOUNT,
    subdomains,
    tcp,
    issuedAt: 0,
    expiresAt: null,
  });

  it('matches exact names, * and prefix patterns', () => {
    assert.ok(subdomainAllowed(grant(['app']), 'app'));
    assert.ok(!subdomainAllowed(grant(['app']), 'other'));
    assert.ok(subdomainAllowed(grant(['*']), 'anything'));
    assert.ok(subdomainAllowed(grant(['dev-*']), 'dev-1'));
    assert.ok(!subdomainAllowed(grant(['dev-*']), 'dev-'));
    assert.ok(!subdomainAllowed(grant(['dev-*']), 'prod-1'));
    assert.ok(!subdomainAllowed(grant(['*']), 'Not.A.Label'));
    assert.ok(isValidSubdomainPattern('dev-*'));
    assert.ok(!isValidSubdomainPattern('-dev*'));
  });

  it('chooses subdomains: requested, the only exact one, prefix + random, or random', () => {
    const random = (): string => 'r4nd0m';
    assert.equal(chooseSubdomain(grant(['app']), 'APP', random), 'app');
    assert.throws(() => chooseSubdomain(grant(['app']), 'other', random), NotPermittedError);
    assert.throws(() => chooseSubdomain(grant([]), 'app', random), NotPermittedError);
    assert.equal(chooseSubdomain(grant(['app']), undefined, random), 'app');
    assert.equal(chooseSubdomain(grant(['dev-*']), undefined, random), 'dev-r4nd0m');
    assert.equal(chooseSubdomain(grant([]), undefined, random), 'r4nd0m');
    assert.equal(chooseSubdomain(grant(['*']), undefined, random), 'r4nd0m');
    assert.throws(() => chooseSubdomain(grant(['a', 'b']), undefined, random), NotPermittedError);
    assert.match(chooseSubdomain(grant([]), undefined), /^[0-9a-f]{8}$/);
  });

  it('allows TCP ports by flag or by range', () => {
    assert.ok(!tcpPortAllowed(grant([]), 41000));
    assert.ok(tcpPortAllowed(grant([], true), 41000));
    assert.ok(tcpPortAllowed(grant([], [[41000, 41001]]), 41001));
    assert.ok(!tcpPortAllowed(grant([], [[41000, 41001]]), 41002));
  });

  it('parses port ranges and durations', () => {
    assert.deepEqual(parsePortRange('41000-41999'), [41000, 41999]);
    assert.deepEqual(parsePortRange('5432'), [5432, 5432]);
    for (const bad of ['0', '5-4', '70000', 'a-b', '1-'])
      assert.throws(() => parsePortRange(bad), RangeError);
    assert.equal(parseDuration('30d'), 30 * 86400);
    assert.equal(parseDuration('90s'), 90);
    assert.equal(parseDuration('2w'), 14 * 86400);
    for (const bad of ['30', 'd', '1y', '-1d']) assert.throws(() => parseDuration(bad), RangeError);
  });
});

describe('token secret', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });
  const tempDir = async (): Promise<string> => {
    const dir = await mkdtemp(join(tmpdir(), 'warren-token-'));
    dirs.push(dir);
    return dir;
  };

  it('creates the secret 0600 once, reuses it, and refuses a readable one', async () => {
    const dir = await tempDir();
    const first = await loadOrCreateSecret(dir);
    assert.equal(first.length, 32);
    assert.equal((await stat(join(dir, SECRET_FILE))).mode & 0o777, 0o600);
    assert.deepEqual(await loadOrCreateSecret(dir), first);
    await chmod(join(dir, SECRET_FILE), 0o644);
    await assert.rejects(loadOrCreateSecret(dir), RelaySecretError);
    await chmod(join(dir, SECRET_FILE), 0o600);
    await writeFile(join(dir, SECRET_FILE), 'short\n');
    await assert.rejects(loadOrCreateSecret(dir), RelaySecretError);
  });
});

describe('TokenBucket', () => {
  it('allows the burst, then the rate', () => {
    const bucket = new TokenBucket(10, 3, 0);
    assert.deepEqual(
      [bucket.take(0), bucket.take(0), bucket.take(0), bucket.take(0)],
      [true, true, true, false],
    );
    assert.equal(bucket.take(50), false, 'half a token after 50 ms');
    assert.equal(bucket.take(100), true, 'one token after 100 ms');
    assert.equal(bucket.take(100_000), true);
    assert.throws(() => new TokenBucket(0, 1), RangeError);
    assert.throws(() => new TokenBucket(1, 0.5), RangeError);
  });
});
