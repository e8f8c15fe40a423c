/**
 * The store's schema, the same tables in SQLite and PostgreSQL, and its
 * migrations. The version lives in SQLite's `PRAGMA user_version` and in
 * PostgreSQL's one-row table `warren_schema` (PostgreSQL has no user_version);
 * each backend applies the missing migrations in one transaction, under a lock
 * (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so two processes
 * opening a new database at once do not both migrate it.
 *
 * Table names carry a `warren_` prefix: a PostgreSQL database may be shared
 * with other applications.
 */
import { TokenStoreError } from '../errors.js';
import { DEFAULT_ACCOUNT } from '../token.js';
import type { SqlDriver, SqlStatement } from './sql-driver.js';
import type { StoreBackend } from './types.js';

/** The schema version this build writes and understands. */
export const SCHEMA_VERSION = 1;

interface Migration {
  readonly version: number;
  readonly statements: (backend: StoreBackend, nowSeconds: number) => readonly SqlStatement[];
}

const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    statements: (backend, nowSeconds) => [
      {
        sql: 'CREATE TABLE warren_accounts (name TEXT PRIMARY KEY, created_at BIGINT NOT NULL)',
      },
      {
        // `seq` keeps the order tokens were recorded in (listing); `id` is what revocation names.
        sql: `CREATE TABLE warren_tokens (
          seq ${backend === 'sqlite' ? 'INTEGER PRIMARY KEY AUTOINCREMENT' : 'BIGSERIAL PRIMARY KEY'},
          id TEXT NOT NULL UNIQUE,
          account TEXT NOT NULL,
          name TEXT NOT NULL,
          subdomains TEXT NOT NULL,
          tcp TEXT NOT NULL,
          issued_at BIGINT NOT NULL,
          expires_at BIGINT,
          revoked_at BIGINT
        )`,
      },
      { sql: 'CREATE INDEX warren_tokens_account ON warren_tokens (account)' },
      { sql: 'CREATE INDEX warren_tokens_name ON warren_tokens (name)' },
      {
        // Token records outlive their account (revoked, for the record); domains do not.
        sql: `CREATE TABLE warren_domains (
          host TEXT PRIMARY KEY,
          account TEXT NOT NULL REFERENCES warren_accounts (name),
          challenge TEXT NOT NULL,
          created_at BIGINT NOT NULL,
          verified_at BIGINT
        )`,
      },
      { sql: 'CREATE INDEX warren_domains_account ON warren_domains (account)' },
      {
        // Tokens made without --account, and all made before accounts existed, are "default"'s.
        sql: 'INSERT INTO warren_accounts (name, created_at) VALUES (?, ?)',
        params: [DEFAULT_ACCOUNT, nowSeconds],
      },
    ],
  },
];

/** Brings the database to SCHEMA_VERSION; refuses one written by a newer warren. */
export async function migrate(
  driver: SqlDriver,
  nowSeconds = Math.floor(Date.now() / 1000),
): Promise<void> {
  await driver.transaction(async (tx) => {
    const current = await driver.lockSchema(tx);
    if (current > SCHEMA_VERSION) {
      throw new TokenStoreError(
        `${driver.location} has schema version ${current}, newer than this warren understands (${SCHEMA_VERSION}): upgrade warren`,
      );
    }
    if (current === SCHEMA_VERSION) return;
    for (const migration of MIGRATIONS) {
      if (migration.version <= current) continue;
      for (const statement of migration.statements(driver.backend, nowSeconds)) {
        await tx.execute(statement.sql, statement.params);
      }
    }
    await driver.writeSchemaVersion(tx, SCHEMA_VERSION);
  });
}
