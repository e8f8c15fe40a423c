import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { RelayConfigError, StoreConnectError, TokenStoreError } from '../errors.js';
import { defineRelayStoreContract } from './contract.js';
import { openRelayStore } from './open.js';
import { PostgresCluster } from './postgres-cluster.js';
import { redactDatabaseUrl } from './postgres.js';
import { SCHEMA_VERSION } from './schema.js';

let cluster: PostgresCluster | null = null;

function running(): PostgresCluster {
  if (cluster === null) throw new Error('the PostgreSQL test cluster is not running');
  return cluster;
}

before(async () => {
  cluster = await PostgresCluster.start();
});

after(async () => {
  await cluster?.stop();
});

describe('RelayStore contract: PostgreSQL', () => {
  defineRelayStoreContract(() => ({
    backend: 'postgres',
    freshDatabase: () => running().createDatabase(),
  }));
});

describe('PostgreSQL store', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });
  async function tempDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'warren-pg-store-test-'));
    dirs.push(dir);
    return dir;
  }

  it('test cluster listens on its unix socket only, no TCP address', async () => {
    // postmaster.pid line 6 is the listen address (empty: none); line 5 the socket directory.
    const lines = (await readFile(join(running().dir, 'data', 'postmaster.pid'), 'utf8')).split(
      '\n',
    );
    assert.equal(lines[4], running().dir);
    assert.equal(lines[5], '');
  });

  it('records its schema version in warren_schema, once, however many open it at once', async () => {
    const database = await running().createDatabase();
    const dataDir = await tempDir();
    const stores = await Promise.all(
      Array.from({ length: 4 }, () => openRelayStore({ dataDir, database })),
    );
    assert.ok(stores.every((store) => store.backend === 'postgres'));
    const client = new pg.Client({ connectionString: database });
    await client.connect();
    try {
      const { rows } = await client.query<{ version: number }>('SELECT version FROM warren_schema');
      assert.deepEqual(rows, [{ version: SCHEMA_VERSION }]);
      const accounts = await client.query('SELECT name FROM warren_accounts');
      assert.equal(accounts.rowCount, 1);
    } finally {
      await client.end();
    }
    for (const store of stores) await store.close();
  });

  it('refuses a database from a newer warren', async () => {
    const database = await running().createDatabase();
    const dataDir = await tempDir();
    await (await openRelayStore({ dataDir, database })).close();
    const client = new pg.Client({ connectionString: database });
    await client.connect();
    await client.query('UPDATE warren_schema SET version = $1', [SCHEMA_VERSION + 1]);
    await client.end();
    await assert.rejects(openRelayStore({ dataDir, database }), (error: unknown) => {
      assert.ok(error instanceof TokenStoreError);
      assert.match(error.message, /newer than this warren/);
      return true;
    });
  });

  it('reports an unreachable server or a missing database as ERR_RELAY_STORE_CONNECT, without the password', async () => {
    const dataDir = await tempDir();
    const nobodyHome = await tempDir(); // a socket directory with no server in it
    for (const database of [
      `postgresql://postgres:hunter2@/postgres?host=${encodeURIComponent(nobodyHome)}`,
      running().url('no_such_database').replace('postgres@', 'postgres:hunter2@'),
    ]) {
      await assert.rejects(openRelayStore({ dataDir, database }), (error: unknown) => {
        assert.ok(error instanceof StoreConnectError, String(error));
        assert.equal(error.code, 'ERR_RELAY_STORE_CONNECT');
        assert.doesNotMatch(error.message, /hunter2/);
        assert.match(error.message, /postgres:\*\*\*@/);
        return true;
      });
    }
  });

  it('fails closed with ERR_RELAY_STORE_CONNECT when the server goes away', async () => {
    const own = await PostgresCluster.start();
    try {
      const store = await openRelayStore({
        dataDir: await tempDir(),
        database: await own.createDatabase(),
      });
      assert.equal(await store.checkToken({ id: 'x', account: 'default' }), 'valid');
      await own.stop();
      await assert.rejects(
        store.checkToken({ id: 'x', account: 'default' }),
        (error: unknown) => error instanceof StoreConnectError,
      );
      await store.close();
    } finally {
      await own.stop();
    }
  });

  it('takes only postgres:// and postgresql:// URLs, and redacts passwords', async () => {
    await assert.rejects(
      openRelayStore({ dataDir: await tempDir(), database: 'mysql://root:pw@db/x' }),
      (error: unknown) => error instanceof RelayConfigError && !error.message.includes(':pw@'),
    );
    assert.equal(redactDatabaseUrl('postgres://u:p%40ss@db:5432/x'), 'postgres://u:***@db:5432/x');
    assert.equal(
      redactDatabaseUrl('postgresql://u@db/x?password=s&sslmode=require'),
      'postgresql://u@db/x?password=***&sslmode=require',
    );
    assert.equal(redactDatabaseUrl('postgresql:///x'), 'postgresql:///x');
  });
});
