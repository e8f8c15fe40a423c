/**
 * Opens the relay's store: SQLite in DATA_DIR/relay.db by default, PostgreSQL
 * when a postgres:// or postgresql:// URL is given (`--database`, or
 * WARREN_RELAY_DATABASE). Either way DATA_DIR keeps the token secret, and an
 * old DATA_DIR/tokens.json is imported once (./legacy-tokens.ts).
 */
import { RelayConfigError } from '../errors.js';
import { importLegacyTokens } from './legacy-tokens.js';
import { isPostgresUrl, redactDatabaseUrl } from './postgres-url.js';
import type { SqlRelayStore } from './sql-store.js';
import type { RelayStore } from './types.js';

/** The environment variable `--database` defaults to. */
export const DATABASE_ENV = 'WARREN_RELAY_DATABASE';

export interface OpenStoreOptions {
  /** The relay's data directory (SQLite file, token secret, tokens.json to import). */
  readonly dataDir: string;
  /** A postgres:// or postgresql:// URL; undefined or empty: SQLite in dataDir. */
  readonly database?: string | undefined;
}

/** `--database` if given, else WARREN_RELAY_DATABASE if set and not empty. */
export function databaseFromEnvironment(
  flag: string | undefined,
  environment: NodeJS.ProcessEnv = process.env,
): string | undefined {
  if (flag !== undefined) return flag;
  const fromEnvironment = environment[DATABASE_ENV];
  return fromEnvironment === undefined || fromEnvironment === '' ? undefined : fromEnvironment;
}

/** Throws RelayConfigError unless `database` is undefined, empty or a PostgreSQL URL. */
export function checkDatabaseUrl(database: string | undefined): void {
  if (database === undefined || database === '') return;
  if (typeof database !== 'string' || !isPostgresUrl(database)) {
    throw new RelayConfigError(
      `--database: '${typeof database === 'string' ? redactDatabaseUrl(database) : typeof database}' is not a postgres:// or postgresql:// URL (leave it out for SQLite in the data directory)`,
    );
  }
}

/** Opens (creating and migrating as needed) the store, and imports tokens.json once. */
export async function openRelayStore(options: OpenStoreOptions): Promise<RelayStore> {
  if (typeof options !== 'object') throw new TypeError('options must be an object');
  if (typeof options.dataDir !== 'string' || options.dataDir.length === 0) {
    throw new RelayConfigError('options.dataDir must be a directory path');
  }
  checkDatabaseUrl(options.database);
  // Each driver is loaded only when chosen: a relay on SQLite never loads pg,
  // and commands that need no store load neither.
  const store: SqlRelayStore =
    options.database === undefined || options.database === ''
      ? await (await import('./sqlite.js')).openSqliteStore(options.dataDir)
      : await (await import('./postgres.js')).openPostgresStore(options.database);
  try {
    await importLegacyTokens(store, options.dataDir);
  } catch (error) {
    await store.close();
    throw error;
  }
  return store;
}
