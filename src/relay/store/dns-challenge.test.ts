import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { DomainNotFoundError, DomainVerificationError, RelayConfigError } from '../errors.js';
import { DEFAULT_ACCOUNT } from '../token.js';
import {
  challengeRecordName,
  checkDnsChallenge,
  parseResolverAddress,
  verifyDomain,
} from './dns-challenge.js';
import { TestDnsServer, answerDnsQuestion, parseDnsQuestion } from './dns-test-server.js';
import { openRelayStore } from './open.js';
import type { RelayStore } from './types.js';

function reasonOf(error: unknown): string {
  assert.ok(error instanceof DomainVerificationError, String(error));
  assert.equal(error.code, 'ERR_RELAY_DOMAIN_VERIFY');
  return error.reason;
}

describe('custom domain DNS challenge', () => {
  let dns: TestDnsServer;
  let dir: string;
  let store: RelayStore;

  before(async () => {
    dns = await TestDnsServer.start();
    dir = await mkdtemp(join(tmpdir(), 'warren-dns-test-'));
    store = await openRelayStore({ dataDir: dir });
  });

  after(async () => {
    await store.close();
    await dns.close();
    await rm(dir, { recursive: true, force: true });
  });

  const lookup = { timeoutMs: 1_000, tries: 1 };

  it('names the TXT record _warren-challenge.HOST', () => {
    assert.equal(challengeRecordName('App.Example.org.'), '_warren-challenge.app.example.org');
    assert.throws(() => challengeRecordName('localhost'), RangeError);
  });

  it('succeeds when a TXT record holds the value, even split into character-strings', async () => {
    dns.txt.set('_warren-challenge.ok.example.org', [['unrelated'], ['abc', 'DEF']]);
    await checkDnsChallenge('ok.example.org', 'abcDEF', { ...lookup, resolvers: [dns.address] });
    assert.ok(dns.asked.includes('_warren-challenge.ok.example.org'));
  });

  it('fails with mismatch, no-record (NXDOMAIN, NODATA) and dns-failure (SERVFAIL)', async () => {
    const options = { ...lookup, resolvers: [dns.address] };
    dns.txt.set('_warren-challenge.wrong.example.org', [['not-it']]);
    await assert.rejects(checkDnsChallenge('wrong.example.org', 'expected', options), (error) => {
      assert.equal(reasonOf(error), 'mismatch');
      assert.match((error as Error).message, /not-it/);
      return true;
    });
    await assert.rejects(
      checkDnsChallenge('missing.example.org', 'expected', options),
      (error) => reasonOf(error) === 'no-record',
    );
    dns.txt.set('_warren-challenge.empty.example.org', []);
    await assert.rejects(
      checkDnsChallenge('empty.example.org', 'expected', options),
      (error) => reasonOf(error) === 'no-record',
    );
    dns.servfail.add('_warren-challenge.broken.example.org');
    await assert.rejects(
      checkDnsChallenge('broken.example.org', 'expected', options),
      (error) => reasonOf(error) === 'dns-failure',
    );
  });

  it('verifies a stored domain only when its own challenge is published', async () => {
    const domain = await store.addDomain(DEFAULT_ACCOUNT, 'shop.example.org');
    const options = { ...lookup, resolvers: [dns.address] };
    dns.txt.set('_warren-challenge.shop.example.org', [['someone-elses-value']]);
    await assert.rejects(verifyDomain(store, 'shop.example.org', options), DomainVerificationError);
    assert.equal((await store.getDomain('shop.example.org'))?.verifiedAt, null);

    dns.txt.set('_warren-challenge.shop.example.org', [[domain.challenge]]);
    const verified = await verifyDomain(store, 'SHOP.example.org', options);
    assert.equal(verified.host, 'shop.example.org');
    assert.ok(verified.verifiedAt !== null);
    assert.deepEqual(await store.getDomain('shop.example.org'), verified);
    await assert.rejects(verifyDomain(store, 'unknown.example.org', options), DomainNotFoundError);
  });

  it('parses --resolver addresses', () => {
    assert.equal(parseResolverAddress('127.0.0.1'), '127.0.0.1');
    assert.equal(parseResolverAddress('127.0.0.1:5353'), '127.0.0.1:5353');
    assert.equal(parseResolverAddress('[::1]:53'), '[::1]:53');
    assert.equal(parseResolverAddress('::1'), '::1');
    for (const bad of [
      '',
      'dns.example',
      '127.0.0.1:0',
      '127.0.0.1:70000',
      '[127.0.0.1]:53',
      '1.2.3',
    ]) {
      assert.throws(() => parseResolverAddress(bad), RelayConfigError, bad);
    }
    fc.assert(
      fc.property(fc.string(), (text) => {
        try {
          assert.equal(typeof parseResolverAddress(text), 'string');
        } catch (error) {
          assert.ok(error instanceof RelayConfigError, String(error));
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('test responder: fuzzed packets are dropped or answered, never thrown on', () => {
    const txt = new Map([['a.example', [['x']]]]);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        const question = parseDnsQuestion(Buffer.from(bytes));
        if (question !== null) {
          const answer = answerDnsQuestion(question, txt, new Set());
          assert.equal(answer.readUInt16BE(0), question.id);
        }
      }),
      { numRuns: 1000 },
    );
    assert.equal(parseDnsQuestion(randomBytes(5)), null);
  });
});
