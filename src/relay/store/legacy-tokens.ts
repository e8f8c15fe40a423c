/**
 * The relay's first token store was a JSON file, DATA_DIR/tokens.json:
 *
 *   { "version": 1, "tokens": [ { id, name, subdomains, tcp, issuedAt, expiresAt, revokedAt } ] }
 *
 * On first open, the new store imports it once (under the "default" account,
 * which tokens without an account belong to) so tokens issued earlier keep
 * working and revoked ones stay revoked, then renames it tokens.json.imported.
 * A file that does not parse stops the store from opening: its revocations
 * must not be silently lost.
 */
import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { TokenStoreError } from '../errors.js';
import { DEFAULT_ACCOUNT } from '../token.js';
import type { PortRange } from '../token.js';
import type { SqlRelayStore } from './sql-store.js';
import type { TokenRecord } from './types.js';

export const LEGACY_TOKENS_FILE = 'tokens.json';
export const IMPORTED_SUFFIX = '.imported';

function isPortRange(value: unknown): value is PortRange {
  return (
    Array.isArray(value) &&
    value.length === 2 &&
    value.every(
      (port) => Number.isInteger(port) && (port as number) >= 1 && (port as number) <= 65535,
    )
  );
}

function isLegacyRecord(value: unknown): value is Omit<TokenRecord, 'account'> {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Record<string, unknown>;
  const tcp = record.tcp;
  return (
    typeof record.id === 'string' &&
    /^[0-9a-f]{32}$/.test(record.id) &&
    typeof record.name === 'string' &&
    Array.isArray(record.subdomains) &&
    record.subdomains.every((pattern) => typeof pattern === 'string') &&
    (typeof tcp === 'boolean' || (Array.isArray(tcp) && tcp.every(isPortRange))) &&
    Number.isSafeInteger(record.issuedAt) &&
    (record.expiresAt === null || Number.isSafeInteger(record.expiresAt)) &&
    (record.revokedAt === null || Number.isSafeInteger(record.revokedAt))
  );
}

/** Parses the text of a tokens.json; throws TokenStoreError naming `path` if it is not one. */
export function parseLegacyTokens(text: string, path: string): TokenRecord[] {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new TokenStoreError(
      `${path} is not valid JSON (${error instanceof Error ? error.message : String(error)}): fix or remove it`,
      { cause: error },
    );
  }
  const file =
    typeof parsed === 'object' && parsed !== null
      ? (parsed as { version?: unknown; tokens?: unknown })
      : null;
  if (file?.version !== 1 || !Array.isArray(file.tokens) || !file.tokens.every(isLegacyRecord)) {
    throw new TokenStoreError(`${path} is not a warren token list (version 1): fix or remove it`);
  }
  return file.tokens.map((record) => ({ ...record, account: DEFAULT_ACCOUNT }));
}

/**
 * Imports DATA_DIR/tokens.json into `store` if it exists, then renames it.
 * Returns how many tokens were added (0 when there was no file). Safe to run
 * from two processes at once: ids already recorded are skipped and a rename
 * that lost the race is not an error.
 */
export async function importLegacyTokens(store: SqlRelayStore, dataDir: string): Promise<number> {
  if (typeof dataDir !== 'string' || dataDir.length === 0) {
    throw new TypeError('dataDir must be a non-empty string');
  }
  const path = join(dataDir, LEGACY_TOKENS_FILE);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw new TokenStoreError(`cannot read ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const added = await store.importTokens(parseLegacyTokens(text, path), DEFAULT_ACCOUNT);
  try {
    await rename(path, path + IMPORTED_SUFFIX);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new TokenStoreError(
        `imported ${path} but cannot rename it: ${(error as Error).message}`,
        { cause: error },
      );
    }
  }
  return added;
}
