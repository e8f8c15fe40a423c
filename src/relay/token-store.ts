/**
 * Where a relay keeps its token-signing secret and its record of issued and
 * revoked tokens.
 *
 * TokenStore is the seam for later stores (SQLite by default, PostgreSQL
 * optional, issue 4); JsonFileTokenStore is the first one: a JSON file in the
 * data directory, replaced atomically (write + rename) on every change and
 * re-read by a running relay when it changes on disk, so `warren relay token
 * revoke` in another process takes effect on the next check.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { RelayConfigError, RelaySecretError, TokenStoreError } from './errors.js';
import { MIN_SECRET_BYTES } from './token.js';
import type { PortRange, TokenGrant } from './token.js';

export const SECRET_FILE = 'token-secret';
export const TOKENS_FILE = 'tokens.json';

/** An issued token as the store remembers it (never the token itself). */
export interface TokenRecord extends TokenGrant {
  /** Unix seconds, or null while the token is valid. */
  readonly revokedAt: number | null;
}

export interface TokenStore {
  /** Records an issued token (for listing and revocation by name). */
  add(grant: TokenGrant): Promise<void>;
  /**
   * Revokes the tokens whose id or name is `idOrName`; returns the records it
   * revoked (empty when none matched or all were revoked already).
   */
  revoke(idOrName: string, nowSeconds?: number): Promise<TokenRecord[]>;
  /** True if the token id was revoked. Throws (fails closed) if the store cannot be read. */
  isRevoked(tokenId: string): Promise<boolean>;
  list(): Promise<TokenRecord[]>;
  close(): Promise<void>;
}

/**
 * Reads the relay's secret from DIR/token-secret, creating it (32 random bytes,
 * mode 0600, exclusively) on first start. Refuses a secret file that group or
 * others may read, as ssh refuses such private keys.
 */
export async function loadOrCreateSecret(dataDir: string): Promise<Buffer> {
  if (typeof dataDir !== 'string' || dataDir.length === 0) {
    throw new TypeError('dataDir must be a non-empty string');
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const path = join(dataDir, SECRET_FILE);
  try {
    const handle = await open(path, 'wx', 0o600);
    const secret = randomBytes(MIN_SECRET_BYTES);
    try {
      await handle.writeFile(secret.toString('base64') + '\n');
    } finally {
      await handle.close();
    }
    return secret;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new RelaySecretError(`cannot create ${path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  let info;
  let text;
  try {
    info = await stat(path);
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new RelaySecretError(`cannot read ${path}: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if ((info.mode & 0o077) !== 0) {
    throw new RelaySecretError(
      `${path} is readable by group or others (mode ${(info.mode & 0o777).toString(8)}): chmod 600 it`,
    );
  }
  const secret = Buffer.from(text.trim(), 'base64');
  if (secret.length < MIN_SECRET_BYTES || !/^[A-Za-z0-9+/]+=*$/.test(text.trim())) {
    throw new RelaySecretError(
      `${path} does not hold a base64 secret of at least ${MIN_SECRET_BYTES} bytes`,
    );
  }
  return secret;
}

interface TokensFile {
  readonly version: 1;
  readonly tokens: TokenRecord[];
}

function isRecord(value: unknown): value is TokenRecord {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Record<string, unknown>;
  const tcp = record.tcp;
  return (
    typeof record.id === 'string' &&
    typeof record.name === 'string' &&
    Array.isArray(record.subdomains) &&
    record.subdomains.every((pattern) => typeof pattern === 'string') &&
    (typeof tcp === 'boolean' ||
      (Array.isArray(tcp) &&
        tcp.every(
          (range: unknown) =>
            Array.isArray(range) && range.length === 2 && range.every(Number.isInteger),
        ))) &&
    Number.isSafeInteger(record.issuedAt) &&
    (record.expiresAt === null || Number.isSafeInteger(record.expiresAt)) &&
    (record.revokedAt === null || Number.isSafeInteger(record.revokedAt))
  );
}

/** The JSON-file TokenStore: DIR/tokens.json. */
export class JsonFileTokenStore implements TokenStore {
  readonly path: string;
  private records: TokenRecord[] = [];
  /** What the file looked like when last read: re-read when it changes. */
  private loadedStamp = '';

  private constructor(path: string) {
    this.path = path;
  }

  /** Opens (and reads) DIR/tokens.json; a missing file is an empty store. */
  static async open(dataDir: string): Promise<JsonFileTokenStore> {
    if (typeof dataDir !== 'string' || dataDir.length === 0) {
      throw new TypeError('dataDir must be a non-empty string');
    }
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    const store = new JsonFileTokenStore(join(dataDir, TOKENS_FILE));
    await store.refresh();
    return store;
  }

  async add(grant: TokenGrant): Promise<void> {
    await this.refresh();
    if (this.records.some((record) => record.id === grant.id)) {
      throw new RelayConfigError(`token id ${grant.id} is already recorded`);
    }
    const tcp: boolean | PortRange[] =
      typeof grant.tcp === 'boolean' ? grant.tcp : grant.tcp.map(([a, b]) => [a, b] as const);
    this.records.push({ ...grant, subdomains: [...grant.subdomains], tcp, revokedAt: null });
    await this.save();
  }

  async revoke(
    idOrName: string,
    nowSeconds = Math.floor(Date.now() / 1000),
  ): Promise<TokenRecord[]> {
    if (typeof idOrName !== 'string' || idOrName.length === 0) {
      throw new TypeError('idOrName must be a non-empty string');
    }
    await this.refresh();
    const revoked: TokenRecord[] = [];
    this.records = this.records.map((record) => {
      if ((record.id !== idOrName && record.name !== idOrName) || record.revokedAt !== null) {
        return record;
      }
      const updated = { ...record, revokedAt: nowSeconds };
      revoked.push(updated);
      return updated;
    });
    if (revoked.length > 0) await this.save();
    return revoked;
  }

  async isRevoked(tokenId: string): Promise<boolean> {
    await this.refresh();
    return this.records.some((record) => record.id === tokenId && record.revokedAt !== null);
  }

  async list(): Promise<TokenRecord[]> {
    await this.refresh();
    return [...this.records];
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  /** Re-reads the file if it changed since the last read. */
  private async refresh(): Promise<void> {
    let stamp: string;
    try {
      const info = await stat(this.path);
      stamp = `${info.ino}:${info.size}:${info.mtimeMs}`;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
        this.records = [];
        this.loadedStamp = '';
        return;
      }
      throw new TokenStoreError(`cannot read ${this.path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (stamp === this.loadedStamp) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(this.path, 'utf8'));
    } catch (error) {
      throw new TokenStoreError(`${this.path} is not valid JSON: ${(error as Error).message}`, {
        cause: error,
      });
    }
    const file = parsed as Partial<TokensFile> | null;
    if (file?.version !== 1 || !Array.isArray(file.tokens) || !file.tokens.every(isRecord)) {
      throw new TokenStoreError(`${this.path} is not a warren token list (version 1)`);
    }
    this.records = file.tokens;
    this.loadedStamp = stamp;
  }

  private async save(): Promise<void> {
    const file: TokensFile = { version: 1, tokens: this.records };
    const temporary = `${this.path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
    await writeFile(temporary, JSON.stringify(file, null, 2) + '\n', { mode: 0o600, flag: 'wx' });
    await rename(temporary, this.path);
    const info = await stat(this.path);
    this.loadedStamp = `${info.ino}:${info.size}:${info.mtimeMs}`;
  }
}
