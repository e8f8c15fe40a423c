/**
 * The default store: SQLite in DATA_DIR/relay.db through better-sqlite3.
 *
 * - The file is made mode 0600 before SQLite opens it (SQLite gives its -wal
 *   and -shm files the database file's mode), in a directory made 0700.
 * - WAL journal mode: the relay's reads never wait for a writer (a CLI in
 *   another process revoking a token), and a commit is visible to the next
 *   read of every connection, so `token revoke` reaches a running relay on its
 *   next check. synchronous=NORMAL is durable across process crashes in WAL
 *   mode (https://www.sqlite.org/pragma.html#pragma_synchronous).
 * - busy_timeout: a writer waits up to BUSY_TIMEOUT_MS for another writer.
 * - better-sqlite3 is synchronous and this is one connection: calls are run one
 *   at a time through a queue, so an asynchronous transaction never has another
 *   caller's statement slip into it between its awaits.
 */
import { mkdir, open } from 'node:fs/promises';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Database as SqliteDatabase, Statement } from 'better-sqlite3';
import { StoreConnectError, TokenStoreError } from '../errors.js';
import { migrate } from './schema.js';
import type { SqlDriver, SqlExecutor, SqlRow, SqlValue } from './sql-driver.js';
import { SqlRelayStore } from './sql-store.js';

export const SQLITE_FILE = 'relay.db';
export const BUSY_TIMEOUT_MS = 5_000;
/** Prepared statements kept per connection (the store uses a few dozen). */
const MAX_CACHED_STATEMENTS = 128;

class SqliteExecutor implements SqlExecutor {
  private readonly statements = new Map<string, Statement<SqlValue[], SqlRow>>();

  constructor(private readonly db: SqliteDatabase) {}

  query(sql: string, params: readonly SqlValue[] = []): Promise<SqlRow[]> {
    return Promise.resolve(this.prepare(sql).all(...params));
  }

  execute(sql: string, params: readonly SqlValue[] = []): Promise<number> {
    return Promise.resolve(this.prepare(sql).run(...params).changes);
  }

  private prepare(sql: string): Statement<SqlValue[], SqlRow> {
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      statement = this.db.prepare<SqlValue[], SqlRow>(sql);
      if (this.statements.size >= MAX_CACHED_STATEMENTS) this.statements.clear();
      this.statements.set(sql, statement);
    }
    return statement;
  }
}

class SqliteDriver implements SqlDriver {
  readonly backend = 'sqlite' as const;
  private readonly direct: SqliteExecutor;
  /** Every call waits for the one before it (see the module comment). */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly db: SqliteDatabase,
    readonly location: string,
  ) {
    this.direct = new SqliteExecutor(db);
  }

  query(sql: string, params?: readonly SqlValue[]): Promise<SqlRow[]> {
    return this.exclusive(() => this.direct.query(sql, params));
  }

  execute(sql: string, params?: readonly SqlValue[]): Promise<number> {
    return this.exclusive(() => this.direct.execute(sql, params));
  }

  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T> {
    return this.exclusive(async () => {
      // IMMEDIATE takes the write lock now: no deadlock upgrading a read lock later.
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const result = await work(this.direct);
        this.db.exec('COMMIT');
        return result;
      } catch (error) {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw error;
      }
    });
  }

  lockSchema(_tx: SqlExecutor): Promise<number> {
    // BEGIN IMMEDIATE already holds the write lock.
    const version: unknown = this.db.pragma('user_version', { simple: true });
    return Promise.resolve(typeof version === 'number' ? version : 0);
  }

  writeSchemaVersion(_tx: SqlExecutor, version: number): Promise<void> {
    if (!Number.isSafeInteger(version) || version < 0) {
      throw new RangeError('version must be a non-negative integer');
    }
    // PRAGMA takes no parameters; `version` is a checked integer.
    this.db.pragma(`user_version = ${String(version)}`);
    return Promise.resolve();
  }

  close(): Promise<void> {
    return this.exclusive(() => {
      this.db.close();
    });
  }

  private exclusive<T>(work: () => Promise<T> | T): Promise<T> {
    const run = this.queue.then(work);
    this.queue = run.catch(() => undefined);
    return run;
  }
}

/** Opens (creating and migrating as needed) DATA_DIR/relay.db. */
export async function openSqliteStore(dataDir: string): Promise<SqlRelayStore> {
  if (typeof dataDir !== 'string' || dataDir.length === 0) {
    throw new TypeError('dataDir must be a non-empty string');
  }
  const path = join(dataDir, SQLITE_FILE);
  let db: SqliteDatabase;
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    try {
      // Made 0600 before SQLite sees it, so it never exists readable by others.
      await (await open(path, 'wx', 0o600)).close();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    }
    db = new Database(path, { timeout: BUSY_TIMEOUT_MS });
  } catch (error) {
    throw new StoreConnectError(
      `cannot open ${path}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.pragma(`busy_timeout = ${String(BUSY_TIMEOUT_MS)}`);
  } catch (error) {
    db.close();
    throw new StoreConnectError(
      `cannot open ${path} as a SQLite database: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  const driver = new SqliteDriver(db, path);
  try {
    await migrate(driver);
  } catch (error) {
    await driver.close();
    if (error instanceof TokenStoreError) throw error;
    throw new TokenStoreError(
      `cannot set up ${path}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
  return new SqlRelayStore(driver);
}
