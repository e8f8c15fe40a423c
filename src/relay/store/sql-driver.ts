/**
 * The small seam between the store's logic (./sql-store.ts, written once) and
 * its two databases. SQL is written with `?` placeholders in the subset both
 * SQLite (3.35+) and PostgreSQL understand (`ON CONFLICT DO NOTHING`,
 * `RETURNING`); the PostgreSQL driver numbers the placeholders ($1, $2…).
 */
import type { StoreBackend } from './types.js';

export type SqlValue = string | number | null;
export type SqlRow = Readonly<Record<string, unknown>>;

export interface SqlStatement {
  readonly sql: string;
  readonly params?: readonly SqlValue[];
}

export interface SqlExecutor {
  /** Runs a statement that returns rows (SELECT, or … RETURNING). */
  query(sql: string, params?: readonly SqlValue[]): Promise<SqlRow[]>;
  /** Runs a statement and returns how many rows it changed. */
  execute(sql: string, params?: readonly SqlValue[]): Promise<number>;
}

export interface SqlDriver extends SqlExecutor {
  readonly backend: StoreBackend;
  /** For messages: the file, or the database URL without its password. */
  readonly location: string;
  /** Runs `work` in one transaction: committed if it resolves, rolled back if it throws. */
  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T>;
  /**
   * Inside a migration transaction: takes the lock that keeps other processes
   * from migrating at the same time, and returns the schema version (0: new).
   */
  lockSchema(tx: SqlExecutor): Promise<number>;
  writeSchemaVersion(tx: SqlExecutor, version: number): Promise<void>;
  close(): Promise<void>;
}

/** Rewrites `?` placeholders as PostgreSQL's `$1`, `$2`… (our SQL has no `?` in literals). */
export function numberPlaceholders(sql: string): string {
  if (typeof sql !== 'string') throw new TypeError('sql must be a string');
  let index = 0;
  return sql.replace(/\?/g, () => `$${String(++index)}`);
}
