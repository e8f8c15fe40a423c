/**
 * The relay's store of accounts, token records and custom domains: SQLite by
 * default (./sqlite.ts), PostgreSQL optional (./postgres.ts), one interface
 * (./types.ts) and one implementation of its logic (./sql-store.ts).
 */
export type {
  AccountRecord,
  AccountRemoval,
  DomainRecord,
  RelayStore,
  StoreBackend,
  TokenRecord,
  TokenStanding,
  UnixSeconds,
} from './types.js';
export { DATABASE_ENV, checkDatabaseUrl, databaseFromEnvironment, openRelayStore } from './open.js';
export type { OpenStoreOptions } from './open.js';
export { BUSY_TIMEOUT_MS, SQLITE_FILE, openSqliteStore } from './sqlite.js';
export { isPostgresUrl, openPostgresStore, redactDatabaseUrl } from './postgres.js';
export {
  IMPORTED_SUFFIX,
  LEGACY_TOKENS_FILE,
  importLegacyTokens,
  parseLegacyTokens,
} from './legacy-tokens.js';
export { SCHEMA_VERSION } from './schema.js';
export { SqlRelayStore, normalizeHostName } from './sql-store.js';
export {
  CHALLENGE_LABEL,
  challengeRecordName,
  checkDnsChallenge,
  parseResolverAddress,
  verifyDomain,
} from './dns-challenge.js';
export type { ChallengeLookupOptions } from './dns-challenge.js';
