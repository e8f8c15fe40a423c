import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { StoreConnectError, TokenStoreError } from '../errors.js';
import { createToken } from '../token.js';
import { defineRelayStoreContract } from './contract.js';
import { openRelayStore } from './open.js';
import { SCHEMA_VERSION } from './schema.js';
import { SQLITE_FILE } from './sqlite.js';

describe('RelayStore contract: SQLite', () => {
  defineRelayStoreContract(() => ({
    backend: 'sqlite',
    freshDatabase: () => Promise.resolve(undefined),
  }));
});

describe('SQLite store', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });
  async function tempDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'warren-sqlite-test-'));
    dirs.push(dir);
    return dir;
  }

  it('keeps DATA_DIR/relay.db mode 0600 (and its WAL), in WAL mode, at the schema version', async () => {
    const dataDir = join(await tempDir(), 'fresh-data');
    const store = await openRelayStore({ dataDir });
    await store.createAccount('acme');
    assert.equal(store.backend, 'sqlite');
    assert.equal(store.location, join(dataDir, SQLITE_FILE));
    assert.equal((await stat(dataDir)).mode & 0o777, 0o700);
    assert.equal((await stat(join(dataDir, SQLITE_FILE))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dataDir, `${SQLITE_FILE}-wal`))).mode & 0o777, 0o600);
    const peek = new Database(join(dataDir, SQLITE_FILE), { readonly: true });
    try {
      assert.equal(peek.pragma('journal_mode', { simple: true }), 'wal');
      assert.equal(peek.pragma('user_version', { simple: true }), SCHEMA_VERSION);
    } finally {
      peek.close();
    }
    await store.close();
  });

  it('refuses a database from a newer warren, and a file that is not SQLite', async () => {
    const newer = await tempDir();
    await (await openRelayStore({ dataDir: newer })).close();
    const db = new Database(join(newer, SQLITE_FILE));
    db.pragma(`user_version = ${String(SCHEMA_VERSION + 1)}`);
    db.close();
    await assert.rejects(openRelayStore({ dataDir: newer }), (error: unknown) => {
      assert.ok(error instanceof TokenStoreError);
      assert.match(error.message, /newer than this warren/);
      return true;
    });

    const garbage = await tempDir();
    await writeFile(join(garbage, SQLITE_FILE), randomBytes(4096), { mode: 0o600 });
    await assert.rejects(openRelayStore({ dataDir: garbage }), StoreConnectError);
  });

  it('sees a revocation made by another process on its next check', async () => {
    const dataDir = await tempDir();
    const store = await openRelayStore({ dataDir });
    const { grant } = createToken(randomBytes(32), { name: 'laptop' });
    await store.addToken(grant);
    assert.equal(await store.checkToken(grant), 'valid');
    const openModule = fileURLToPath(new URL('./open.js', import.meta.url));
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { openRelayStore } = await import(${JSON.stringify(openModule)});
         const store = await openRelayStore({ dataDir: ${JSON.stringify(dataDir)} });
         const revoked = await store.revokeToken('laptop');
         await store.close();
         process.exitCode = revoked.length === 1 ? 0 : 3;`,
      ],
      { stdio: 'inherit' },
    );
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0);
    assert.equal(await store.checkToken(grant), 'revoked');
    await store.close();
  });
});
