/**
 * The RelayStore contract: one set of tests every backend must pass, run by
 * ./sqlite.test.ts and ./postgres.test.ts (as hono runs one suite against each
 * runtime). Each test opens stores through openRelayStore, the way the relay
 * and the CLI do, on a fresh location the backend's harness provides.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import {
  AccountExistsError,
  AccountNotFoundError,
  DomainExistsError,
  DomainNotFoundError,
  TokenStoreError,
} from '../errors.js';
import { DEFAULT_ACCOUNT, createToken } from '../token.js';
import type { NewTokenGrant, TokenGrant } from '../token.js';
import { IMPORTED_SUFFIX, LEGACY_TOKENS_FILE } from './legacy-tokens.js';
import { openRelayStore } from './open.js';
import type { RelayStore, StoreBackend } from './types.js';

export interface StoreLocation {
  readonly dataDir: string;
  /** Undefined for SQLite (the file in dataDir). */
  readonly database?: string;
}

export interface StoreHarness {
  readonly backend: StoreBackend;
  /** A new, empty database (the data directory is made by the contract). */
  freshDatabase(): Promise<string | undefined>;
}

const NOW = 1_800_000_000;
const secret = randomBytes(32);

/** Defines the contract's tests; `harness` is called once the backend is up (in a test). */
export function defineRelayStoreContract(harness: () => StoreHarness): void {
  const stores: RelayStore[] = [];
  const dirs: string[] = [];

  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
    for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  });

  async function location(): Promise<StoreLocation> {
    const dataDir = await mkdtemp(join(tmpdir(), 'warren-store-test-'));
    dirs.push(dataDir);
    const database = await harness().freshDatabase();
    return database === undefined ? { dataDir } : { dataDir, database };
  }

  async function open(where: StoreLocation): Promise<RelayStore> {
    const store = await openRelayStore(where);
    stores.push(store);
    return store;
  }

  async function fresh(): Promise<{ store: RelayStore; where: StoreLocation }> {
    const where = await location();
    return { store: await open(where), where };
  }

  function grant(request: NewTokenGrant): TokenGrant {
    return createToken(secret, request, NOW).grant;
  }

  describe('accounts', () => {
    it('start with the default account only, and keep their data across reopening', async () => {
      const { store, where } = await fresh();
      assert.equal(store.backend, harness().backend);
      assert.deepEqual(
        (await store.listAccounts()).map((account) => account.name),
        [DEFAULT_ACCOUNT],
      );
      await store.createAccount('acme', NOW);
      await store.close();
      const again = await open(where);
      assert.deepEqual(await again.getAccount('acme'), { name: 'acme', createdAt: NOW });
    });

    it('are created once, listed by name, and ensured idempotently', async () => {
      const { store } = await fresh();
      assert.deepEqual(await store.createAccount('zeta', NOW), { name: 'zeta', createdAt: NOW });
      await store.createAccount('alpha', NOW + 1);
      await assert.rejects(store.createAccount('zeta', NOW), AccountExistsError);
      assert.deepEqual(
        (await store.listAccounts()).map((account) => account.name),
        ['alpha', DEFAULT_ACCOUNT, 'zeta'],
      );
      assert.deepEqual(await store.ensureAccount('zeta', NOW + 5), {
        name: 'zeta',
        createdAt: NOW,
      });
      assert.deepEqual(await store.ensureAccount('new', NOW + 5), {
        name: 'new',
        createdAt: NOW + 5,
      });
      assert.equal(await store.getAccount('missing'), null);
      for (const bad of ['', 'Upper', '-dash', 'a b', 'x'.repeat(65), 'sémantique']) {
        await assert.rejects(async () => store.createAccount(bad), RangeError, JSON.stringify(bad));
      }
    });

    it('removal revokes their tokens, drops their domains, and is seen by another instance', async () => {
      const { store, where } = await fresh();
      const other = await open(where);
      await store.createAccount('acme', NOW);
      const kept = grant({ name: 'kept' });
      const laptop = grant({ name: 'laptop', account: 'acme' });
      const ci = grant({ name: 'ci', account: 'acme' });
      for (const issued of [kept, laptop, ci]) await store.addToken(issued);
      await store.revokeToken('ci', NOW);
      await store.addDomain('acme', 'app.example.org', NOW);
      assert.equal(await other.checkToken(laptop), 'valid');

      const removal = await store.removeAccount('acme', NOW + 10);
      assert.deepEqual(removal.account, { name: 'acme', createdAt: NOW });
      assert.deepEqual(
        removal.revokedTokens.map((record) => [record.name, record.revokedAt]),
        [['laptop', NOW + 10]],
        'only the tokens not revoked before',
      );
      assert.deepEqual(
        removal.removedDomains.map((domain) => domain.host),
        ['app.example.org'],
      );
      assert.equal(await other.checkToken(laptop), 'account-removed');
      assert.equal(await other.checkToken(ci), 'account-removed');
      assert.equal(await other.checkToken(kept), 'valid');
      assert.equal(await other.getDomain('app.example.org'), null);
      assert.equal(await other.getAccount('acme'), null);
      // The records stay, revoked, for the record.
      assert.deepEqual(
        (await other.listTokens('acme')).map((record) => [record.name, record.revokedAt]),
        [
          ['laptop', NOW + 10],
          ['ci', NOW],
        ],
      );
      await assert.rejects(store.removeAccount('acme'), AccountNotFoundError);

      // An account made again under the old name does not bring its old tokens back.
      await store.createAccount('acme', NOW + 20);
      assert.equal(await other.checkToken(laptop), 'revoked');
    });
  });

  describe('tokens', () => {
    it('are recorded with every field, in order, and listed per account', async () => {
      const { store } = await fresh();
      await store.createAccount('acme', NOW);
      const first = grant({
        name: 'laptop',
        subdomains: ['app', 'dev-*'],
        tcp: [
          [41000, 41009],
          [5432, 5432],
        ],
        expiresAt: NOW + 3600,
      });
      const second = grant({ name: 'ci', account: 'acme', tcp: true });
      const third = grant({ name: 'bot', subdomains: ['*'] });
      await store.addToken(first);
      await store.addToken(second);
      await store.addToken(third);
      assert.deepEqual(await store.listTokens(), [
        { ...first, revokedAt: null },
        { ...second, revokedAt: null },
        { ...third, revokedAt: null },
      ]);
      assert.deepEqual(
        (await store.listTokens('acme')).map((record) => record.id),
        [second.id],
      );
      assert.deepEqual(await store.listTokens('nobody'), []);
    });

    it('need an existing account and a new id', async () => {
      const { store } = await fresh();
      const orphan = grant({ name: 'orphan', account: 'ghost' });
      await assert.rejects(store.addToken(orphan), AccountNotFoundError);
      const issued = grant({ name: 'laptop' });
      await store.addToken(issued);
      await assert.rejects(store.addToken(issued), TokenStoreError);
      await assert.rejects(async () => store.addToken({ ...issued, id: 'not-hex' }), RangeError);
      assert.deepEqual(
        (await store.listTokens()).map((record) => record.id),
        [issued.id],
      );
    });

    it('are revoked by id or name, once, and another instance sees it on its next check', async () => {
      const { store, where } = await fresh();
      const relay = await open(where);
      const a = grant({ name: 'laptop' });
      const b = grant({ name: 'ci', tcp: true });
      const c = grant({ name: 'laptop' });
      for (const issued of [a, b, c]) await store.addToken(issued);
      assert.equal(await relay.isRevoked(a.id), false);
      assert.equal(await relay.checkToken(a), 'valid');

      const revoked = await store.revokeToken('laptop', NOW);
      assert.deepEqual(
        revoked.map((record) => [record.id, record.revokedAt]),
        [
          [a.id, NOW],
          [c.id, NOW],
        ],
      );
      assert.equal(await relay.isRevoked(a.id), true);
      assert.equal(await relay.checkToken(c), 'revoked');
      assert.equal(await relay.checkToken(b), 'valid');
      assert.deepEqual(await store.revokeToken('laptop'), [], 'already revoked');
      assert.deepEqual(await store.revokeToken('nothing'), []);
      assert.equal((await store.revokeToken(b.id, NOW + 1)).length, 1);
      assert.equal(await relay.checkToken(b), 'revoked');
      await assert.rejects(async () => store.revokeToken(''), TypeError);
    });

    it('not recorded are valid while their account exists (signed is what counts)', async () => {
      const { store } = await fresh();
      const unrecorded = grant({ name: 'never-recorded' });
      assert.equal(await store.isRevoked(unrecorded.id), false);
      assert.equal(await store.checkToken(unrecorded), 'valid');
      assert.equal(
        await store.checkToken({ id: unrecorded.id, account: 'never-made' }),
        'account-removed',
      );
    });

    it('are checked correctly under many concurrent calls', async () => {
      const { store } = await fresh();
      const grants = Array.from({ length: 40 }, (_, index) => grant({ name: `t${String(index)}` }));
      await Promise.all(grants.map((issued) => store.addToken(issued)));
      await Promise.all(
        grants.filter((_, index) => index % 2 === 0).map((issued) => store.revokeToken(issued.id)),
      );
      const standings = await Promise.all(grants.map((issued) => store.checkToken(issued)));
      assert.deepEqual(
        standings,
        grants.map((_, index) => (index % 2 === 0 ? 'revoked' : 'valid')),
      );
      assert.equal((await store.listTokens()).length, 40);
    });
  });

  describe('custom domains', () => {
    it('are added with a random challenge, normalized, verified, listed and removed', async () => {
      const { store, where } = await fresh();
      const relay = await open(where);
      await store.createAccount('acme', NOW);
      const added = await store.addDomain('acme', 'App.Example.ORG.', NOW);
      assert.equal(added.host, 'app.example.org');
      assert.equal(added.account, 'acme');
      assert.match(added.challenge, /^[A-Za-z0-9_-]{32}$/);
      assert.equal(added.createdAt, NOW);
      assert.equal(added.verifiedAt, null);
      const another = await store.addDomain(DEFAULT_ACCOUNT, 'www.example.net', NOW);
      assert.notEqual(another.challenge, added.challenge);

      // Adding it again for the same account gives back the same record (same challenge).
      assert.deepEqual(await store.addDomain('acme', 'app.example.org', NOW + 5), added);
      await assert.rejects(store.addDomain(DEFAULT_ACCOUNT, 'app.example.org'), DomainExistsError);
      await assert.rejects(store.addDomain('ghost', 'x.example.org'), AccountNotFoundError);

      const verified = await store.markDomainVerified('app.example.org', NOW + 60);
      assert.deepEqual(verified, { ...added, verifiedAt: NOW + 60 });
      assert.deepEqual(await relay.getDomain('APP.example.org'), verified);
      assert.deepEqual(
        (await relay.listDomains()).map((domain) => domain.host),
        ['app.example.org', 'www.example.net'],
      );
      assert.deepEqual(
        (await relay.listDomains('acme')).map((domain) => domain.host),
        ['app.example.org'],
      );

      assert.deepEqual(await store.removeDomain('app.example.org'), verified);
      assert.equal(await relay.getDomain('app.example.org'), null);
      await assert.rejects(store.removeDomain('app.example.org'), DomainNotFoundError);
      await assert.rejects(store.markDomainVerified('app.example.org'), DomainNotFoundError);
    });

    it('must be host names', async () => {
      const { store } = await fresh();
      for (const bad of [
        'localhost',
        '192.0.2.1',
        'a..b',
        '-a.example.org',
        'a_b.example.org',
        'x'.repeat(64) + '.example.org',
        `${'a.'.repeat(120)}org`,
        '',
      ]) {
        await assert.rejects(
          async () => store.addDomain(DEFAULT_ACCOUNT, bad),
          RangeError,
          JSON.stringify(bad),
        );
      }
      assert.equal(await store.getDomain('not a host'), null);
    });
  });

  describe('the old tokens.json', () => {
    it('is imported once under the default account, revocations kept, then renamed', async () => {
      const where = await location();
      const valid = grant({ name: 'laptop', subdomains: ['app'], tcp: [[41000, 41001]] });
      const revoked = grant({ name: 'old', expiresAt: NOW + 10 });
      const legacy = (record: TokenGrant, revokedAt: number | null): Record<string, unknown> => ({
        id: record.id,
        name: record.name,
        subdomains: record.subdomains,
        tcp: record.tcp,
        issuedAt: record.issuedAt,
        expiresAt: record.expiresAt,
        revokedAt,
      });
      const path = join(where.dataDir, LEGACY_TOKENS_FILE);
      const text = JSON.stringify({
        version: 1,
        tokens: [legacy(valid, null), legacy(revoked, NOW + 5)],
      });
      await writeFile(path, text, { mode: 0o600 });

      const store = await open(where);
      assert.deepEqual(await store.listTokens(), [
        { ...valid, revokedAt: null },
        { ...revoked, revokedAt: NOW + 5 },
      ]);
      assert.equal(await store.checkToken(valid), 'valid');
      assert.equal(await store.checkToken(revoked), 'revoked');
      await assert.rejects(stat(path), { code: 'ENOENT' });
      assert.equal(await readFile(path + IMPORTED_SUFFIX, 'utf8'), text);

      // Opening again imports nothing more; a tokens.json put back is merged, not duplicated.
      await writeFile(path, text);
      const again = await open(where);
      assert.equal((await again.listTokens()).length, 2);
      assert.equal(await again.checkToken(revoked), 'revoked');
    });

    it('that is corrupt stops the store from opening and is left alone', async () => {
      const where = await location();
      const path = join(where.dataDir, LEGACY_TOKENS_FILE);
      for (const garbage of ['not json', '{"version":1,"tokens":[{"id":5}]}', '{"version":2}']) {
        await writeFile(path, garbage);
        await assert.rejects(openRelayStore(where), TokenStoreError);
        assert.equal(await readFile(path, 'utf8'), garbage);
      }
    });
  });

  it('refuses calls once closed', async () => {
    const { store } = await fresh();
    await store.close();
    await assert.rejects(store.listAccounts(), TokenStoreError);
    await store.close();
  });
}
