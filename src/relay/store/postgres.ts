/**
 * The optional store: PostgreSQL through node-postgres (`pg`, pure
 * JavaScript), chosen with `--database postgres://…` (or
 * WARREN_RELAY_DATABASE). The same tables as SQLite (./schema.ts); the schema
 * version is the one row of `warren_schema`, changed under an advisory lock.
 *
 * A database that cannot be reached (refused, unknown host, no such socket,
 * authentication failed, no such database, shut down, timed out) is a
 * StoreConnectError (ERR_RELAY_STORE_CONNECT) naming the URL without its
 * password; the relay then fails closed.
 */
import pg from 'pg';
import { isPostgresUrl, redactDatabaseUrl } from './postgres-url.js';

export { isPostgresUrl, redactDatabaseUrl } from './postgres-url.js';
import type { PoolClient } from 'pg';
import { RelayError, StoreConnectError, TokenStoreError } from '../errors.js';
import { migrate } from './schema.js';
import { numberPlaceholders } from './sql-driver.js';
import type { SqlDriver, SqlExecutor, SqlRow, SqlValue } from './sql-driver.js';
import { SqlRelayStore } from './sql-store.js';

/** How long connecting may take before it counts as unreachable (ms). */
export const CONNECT_TIMEOUT_MS = 5_000;
/** Connections the relay keeps at most: checks are short single queries. */
const POOL_SIZE = 4;
/** Any 64-bit key: held while migrating, so two processes never migrate at once. */
const MIGRATION_LOCK_KEY = 0x77617272656e; // "warren"

/** Node errno codes and SQLSTATEs that mean "cannot reach or use this database at all". */
const CONNECT_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOENT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EACCES',
  'EPIPE',
]);

function isConnectFailure(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') {
    if (CONNECT_ERRNOS.has(code)) return true;
    // SQLSTATE classes (PostgreSQL appendix A): 08 connection exception, 28 invalid
    // authorization; 3D000 no such database; 57P01-57P03 shutting down / cannot connect now.
    if (/^(08|28)[0-9A-Z]{3}$/.test(code) || code === '3D000' || /^57P0[1-3]$/.test(code)) {
      return true;
    }
  }
  // pg's own wording for a pool timeout and a dropped connection (no code).
  return /timeout exceeded when trying to connect|Connection terminated/i.test(error.message);
}

class PostgresDriver implements SqlDriver {
  readonly backend = 'postgres' as const;

  constructor(
    private readonly pool: pg.Pool,
    readonly location: string,
  ) {}

  query(sql: string, params?: readonly SqlValue[]): Promise<SqlRow[]> {
    return this.run(async () => (await send(this.pool, sql, params)).rows);
  }

  execute(sql: string, params?: readonly SqlValue[]): Promise<number> {
    return this.run(async () => (await send(this.pool, sql, params)).rowCount ?? 0);
  }

  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.run(async () => {
      const client = await this.pool.connect();
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const result = await work(clientExecutor(client));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        try {
          await client.query('ROLLBACK');
        } catch (rollbackError) {
          // A connection that cannot roll back is not given to the next caller.
          broken = rollbackError instanceof Error ? rollbackError : new Error('rollback failed');
        }
        throw error;
      } finally {
        client.release(broken);
      }
    });
  }

  async lockSchema(tx: SqlExecutor): Promise<number> {
    await tx.query('SELECT pg_advisory_xact_lock(?)', [MIGRATION_LOCK_KEY]);
    await tx.execute('CREATE TABLE IF NOT EXISTS warren_schema (version INTEGER NOT NULL)');
    const [row] = await tx.query('SELECT MAX(version) AS version FROM warren_schema');
    const version = row?.version;
    return typeof version === 'number' ? version : 0;
  }

  async writeSchemaVersion(tx: SqlExecutor, version: number): Promise<void> {
    await tx.execute('DELETE FROM warren_schema');
    await tx.execute('INSERT INTO warren_schema (version) VALUES (?)', [version]);
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  /** Connection failures become StoreConnectError; the rest pass to the store's guard. */
  private async run<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      if (error instanceof RelayError || !isConnectFailure(error)) throw error;
      throw new StoreConnectError(
        `cannot connect to PostgreSQL at ${this.location}: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }
}

function send(
  target: pg.Pool | PoolClient,
  sql: string,
  params: readonly SqlValue[] = [],
): Promise<pg.QueryResult<SqlRow>> {
  return target.query<SqlRow>(numberPlaceholders(sql), [...params]);
}

function clientExecutor(client: PoolClient): SqlExecutor {
  return {
    async query(sql, params) {
      return (await send(client, sql, params)).rows;
    },
    async execute(sql, params) {
      return (await send(client, sql, params)).rowCount ?? 0;
    },
  };
}

/** Connects to `url`, checks it answers, and migrates the schema. */
export async function openPostgresStore(url: string): Promise<SqlRelayStore> {
  if (!isPostgresUrl(url)) {
    throw new TypeError('url must be a postgres:// or postgresql:// URL');
  }
  const location = redactDatabaseUrl(url);
  const pool = new pg.Pool({
    connectionString: url,
    max: POOL_SIZE,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    idleTimeoutMillis: 30_000,
    application_name: 'warren-relay',
  });
  // An idle connection the server drops (restart, idle timeout) must not crash
  // the process; the next query gets a fresh connection or a StoreConnectError.
  pool.on('error', () => undefined);
  const driver = new PostgresDriver(pool, location);
  try {
    await driver.query('SELECT 1');
    await migrate(driver);
  } catch (error) {
    await pool.end().catch(() => undefined);
    if (error instanceof RelayError) throw error;
    throw new TokenStoreError(
      `cannot set up the store in ${location}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  return new SqlRelayStore(driver);
}
