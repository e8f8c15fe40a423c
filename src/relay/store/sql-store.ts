/**
 * The RelayStore's logic, written once over a SqlDriver (./sql-driver.ts):
 * SQLite and PostgreSQL run the same statements, so the shared contract tests
 * (./contract.ts) check one implementation on two databases.
 *
 * Every method validates its arguments, reads the database afresh (no cache:
 * another process's `token revoke` is seen by the next check) and turns any
 * database failure into a typed error: StoreConnectError when the database
 * cannot be reached, TokenStoreError otherwise. The relay fails closed on both.
 */
import { randomBytes } from 'node:crypto';
import {
  AccountExistsError,
  AccountNotFoundError,
  DomainExistsError,
  DomainNotFoundError,
  RelayError,
  TokenStoreError,
} from '../errors.js';
import { isValidAccountName, isValidHostName, isValidSubdomainPattern } from '../token.js';
import type { PortRange, TokenGrant } from '../token.js';
import type { SqlDriver, SqlExecutor, SqlRow, SqlValue } from './sql-driver.js';
import type {
  AccountRecord,
  AccountRemoval,
  DomainRecord,
  RelayStore,
  StoreBackend,
  TokenRecord,
  TokenStanding,
} from './types.js';

/** Random bytes in a domain's challenge value (base64url: 32 characters). */
const CHALLENGE_BYTES = 24;

function now(): number {
  return Math.floor(Date.now() / 1000);
}

function checkAccountName(name: string, what = 'account'): void {
  if (!isValidAccountName(name)) {
    throw new RangeError(
      `${what} must be 1-64 of a-z, 0-9, '.', '_', '-' (starting with a letter or digit), got ${JSON.stringify(name)}`,
    );
  }
}

function checkSeconds(value: number, what: string): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${what} must be a non-negative integer (unix seconds)`);
  }
}

/** Lower-cases a host name and drops a trailing dot; throws RangeError if it is not one. */
export function normalizeHostName(host: string, what = 'host'): string {
  if (typeof host !== 'string') throw new TypeError(`${what} must be a string`);
  let name = host.trim().toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (!isValidHostName(name)) {
    throw new RangeError(
      `${what}: '${host}' is not a host name (two or more DNS labels, not an IP address)`,
    );
  }
  return name;
}

// ---- rows ---------------------------------------------------------------------------------

function corrupt(what: string): TokenStoreError {
  return new TokenStoreError(`the store holds a malformed ${what}`);
}

/** SQLite gives numbers; PostgreSQL gives BIGINT as strings. */
function integer(value: unknown, what: string): number {
  const number =
    typeof value === 'number'
      ? value
      : typeof value === 'bigint'
        ? Number(value)
        : typeof value === 'string' && /^-?\d{1,16}$/.test(value)
          ? Number(value)
          : NaN;
  if (!Number.isSafeInteger(number)) throw corrupt(what);
  return number;
}

function integerOrNull(value: unknown, what: string): number | null {
  return value === null ? null : integer(value, what);
}

function text(value: unknown, what: string): string {
  if (typeof value !== 'string') throw corrupt(what);
  return value;
}

function accountFromRow(row: SqlRow): AccountRecord {
  return {
    name: text(row.name, 'account name'),
    createdAt: integer(row.created_at, 'account created_at'),
  };
}

function isPortRange(value: unknown): value is PortRange {
  return (
    Array.isArray(value) &&
    value.length === 2 &&
    value.every(
      (port) => Number.isInteger(port) && (port as number) >= 1 && (port as number) <= 65535,
    )
  );
}

function tokenFromRow(row: SqlRow): TokenRecord {
  let subdomains: unknown;
  let tcp: unknown;
  try {
    subdomains = JSON.parse(text(row.subdomains, 'token subdomains'));
    tcp = JSON.parse(text(row.tcp, 'token tcp'));
  } catch (error) {
    if (error instanceof RelayError) throw error;
    throw corrupt('token (its subdomains or tcp are not JSON)');
  }
  if (
    !Array.isArray(subdomains) ||
    !subdomains.every((pattern) => typeof pattern === 'string' && isValidSubdomainPattern(pattern))
  ) {
    throw corrupt('token (subdomains)');
  }
  if (typeof tcp !== 'boolean' && !(Array.isArray(tcp) && tcp.every(isPortRange))) {
    throw corrupt('token (tcp)');
  }
  return {
    id: text(row.id, 'token id'),
    name: text(row.name, 'token name'),
    account: text(row.account, 'token account'),
    subdomains,
    tcp,
    issuedAt: integer(row.issued_at, 'token issued_at'),
    expiresAt: integerOrNull(row.expires_at, 'token expires_at'),
    revokedAt: integerOrNull(row.revoked_at, 'token revoked_at'),
  };
}

function domainFromRow(row: SqlRow): DomainRecord {
  return {
    host: text(row.host, 'domain host'),
    account: text(row.account, 'domain account'),
    challenge: text(row.challenge, 'domain challenge'),
    createdAt: integer(row.created_at, 'domain created_at'),
    verifiedAt: integerOrNull(row.verified_at, 'domain verified_at'),
  };
}

const TOKEN_COLUMNS = 'seq, id, account, name, subdomains, tcp, issued_at, expires_at, revoked_at';
const DOMAIN_COLUMNS = 'host, account, challenge, created_at, verified_at';

function bySeq(rows: SqlRow[]): SqlRow[] {
  return [...rows].sort((a, b) => integer(a.seq, 'token seq') - integer(b.seq, 'token seq'));
}

// ---- the store ------------------------------------------------------------------------------

export class SqlRelayStore implements RelayStore {
  private closed = false;

  constructor(private readonly driver: SqlDriver) {}

  get backend(): StoreBackend {
    return this.driver.backend;
  }

  get location(): string {
    return this.driver.location;
  }

  // ---- accounts

  createAccount(name: string, nowSeconds = now()): Promise<AccountRecord> {
    checkAccountName(name, 'name');
    checkSeconds(nowSeconds, 'nowSeconds');
    return this.guard(async () => {
      const rows = await this.driver.query(
        'INSERT INTO warren_accounts (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING RETURNING name, created_at',
        [name, nowSeconds],
      );
      const [row] = rows;
      if (row === undefined) throw new AccountExistsError(`the account '${name}' exists already`);
      return accountFromRow(row);
    });
  }

  ensureAccount(name: string, nowSeconds = now()): Promise<AccountRecord> {
    checkAccountName(name, 'name');
    checkSeconds(nowSeconds, 'nowSeconds');
    return this.guard(async () => {
      await this.driver.execute(
        'INSERT INTO warren_accounts (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING',
        [name, nowSeconds],
      );
      const account = await this.readAccount(this.driver, name);
      // Removed again by another process between the two statements: as good as never made.
      if (account === null) throw new AccountNotFoundError(`the account '${name}' was removed`);
      return account;
    });
  }

  getAccount(name: string): Promise<AccountRecord | null> {
    if (typeof name !== 'string') throw new TypeError('name must be a string');
    return this.guard(() => this.readAccount(this.driver, name));
  }

  listAccounts(): Promise<AccountRecord[]> {
    return this.guard(async () =>
      (await this.driver.query('SELECT name, created_at FROM warren_accounts ORDER BY name')).map(
        accountFromRow,
      ),
    );
  }

  removeAccount(name: string, nowSeconds = now()): Promise<AccountRemoval> {
    checkAccountName(name, 'name');
    checkSeconds(nowSeconds, 'nowSeconds');
    return this.guard(() =>
      this.driver.transaction(async (tx) => {
        const account = await this.readAccount(tx, name);
        if (account === null) throw new AccountNotFoundError(`no account '${name}'`);
        const revoked = await tx.query(
          `UPDATE warren_tokens SET revoked_at = ? WHERE account = ? AND revoked_at IS NULL RETURNING ${TOKEN_COLUMNS}`,
          [nowSeconds, name],
        );
        const domains = await tx.query(
          `DELETE FROM warren_domains WHERE account = ? RETURNING ${DOMAIN_COLUMNS}`,
          [name],
        );
        await tx.execute('DELETE FROM warren_accounts WHERE name = ?', [name]);
        return {
          account,
          revokedTokens: bySeq(revoked).map(tokenFromRow),
          removedDomains: domains.map(domainFromRow).sort((a, b) => a.host.localeCompare(b.host)),
        };
      }),
    );
  }

  // ---- tokens

  addToken(grant: TokenGrant): Promise<void> {
    if (typeof grant !== 'object') throw new TypeError('grant must be an object');
    if (typeof grant.id !== 'string' || !/^[0-9a-f]{32}$/.test(grant.id)) {
      throw new RangeError('grant.id must be 32 hex digits');
    }
    checkAccountName(grant.account, 'grant.account');
    checkSeconds(grant.issuedAt, 'grant.issuedAt');
    if (grant.expiresAt !== null) checkSeconds(grant.expiresAt, 'grant.expiresAt');
    return this.guard(() =>
      this.driver.transaction(async (tx) => {
        if ((await this.readAccount(tx, grant.account)) === null) {
          throw new AccountNotFoundError(
            `no account '${grant.account}' (create it with 'warren relay account create')`,
          );
        }
        await this.insertToken(tx, { ...grant, revokedAt: null }, true);
      }),
    );
  }

  revokeToken(idOrName: string, nowSeconds = now()): Promise<TokenRecord[]> {
    if (typeof idOrName !== 'string' || idOrName.length === 0) {
      throw new TypeError('idOrName must be a non-empty string');
    }
    checkSeconds(nowSeconds, 'nowSeconds');
    return this.guard(async () =>
      bySeq(
        await this.driver.query(
          `UPDATE warren_tokens SET revoked_at = ? WHERE (id = ? OR name = ?) AND revoked_at IS NULL RETURNING ${TOKEN_COLUMNS}`,
          [nowSeconds, idOrName, idOrName],
        ),
      ).map(tokenFromRow),
    );
  }

  isRevoked(tokenId: string): Promise<boolean> {
    if (typeof tokenId !== 'string') throw new TypeError('tokenId must be a string');
    return this.guard(async () => {
      const [row] = await this.driver.query('SELECT revoked_at FROM warren_tokens WHERE id = ?', [
        tokenId,
      ]);
      return row !== undefined && row.revoked_at !== null;
    });
  }

  checkToken(grant: Pick<TokenGrant, 'id' | 'account'>): Promise<TokenStanding> {
    if (typeof grant !== 'object' || typeof grant.id !== 'string') {
      throw new TypeError('grant must carry a string id');
    }
    if (typeof grant.account !== 'string') throw new TypeError('grant.account must be a string');
    return this.guard(async () => {
      // One round trip: this runs on every session open and tunnel request.
      const [row] = await this.driver.query(
        `SELECT (SELECT COUNT(*) FROM warren_accounts WHERE name = ?) AS accounts,
                (SELECT COUNT(*) FROM warren_tokens WHERE id = ? AND revoked_at IS NOT NULL) AS revoked`,
        [grant.account, grant.id],
      );
      if (row === undefined) throw corrupt('answer to a token check');
      // A removed account's tokens were revoked with it: say why, not just "revoked".
      if (integer(row.accounts, 'account count') === 0) return 'account-removed';
      return integer(row.revoked, 'revoked count') > 0 ? 'revoked' : 'valid';
    });
  }

  listTokens(account?: string): Promise<TokenRecord[]> {
    if (account !== undefined && typeof account !== 'string') {
      throw new TypeError('account must be a string');
    }
    return this.guard(async () =>
      (account === undefined
        ? await this.driver.query(`SELECT ${TOKEN_COLUMNS} FROM warren_tokens ORDER BY seq`)
        : await this.driver.query(
            `SELECT ${TOKEN_COLUMNS} FROM warren_tokens WHERE account = ? ORDER BY seq`,
            [account],
          )
      ).map(tokenFromRow),
    );
  }

  /**
   * Records tokens of the old JSON store (tokens.json) under the "default"
   * account, which is made if it was removed; ids already recorded are kept
   * as they are. Returns how many were added.
   */
  importTokens(records: readonly TokenRecord[], account: string): Promise<number> {
    checkAccountName(account, 'account');
    return this.guard(() =>
      this.driver.transaction(async (tx) => {
        await tx.execute(
          'INSERT INTO warren_accounts (name, created_at) VALUES (?, ?) ON CONFLICT DO NOTHING',
          [account, now()],
        );
        let added = 0;
        for (const record of records) {
          if (await this.insertToken(tx, { ...record, account }, false)) added++;
        }
        return added;
      }),
    );
  }

  // ---- custom domains

  addDomain(account: string, host: string, nowSeconds = now()): Promise<DomainRecord> {
    checkAccountName(account, 'account');
    const name = normalizeHostName(host);
    checkSeconds(nowSeconds, 'nowSeconds');
    return this.guard(() =>
      this.driver.transaction(async (tx) => {
        if ((await this.readAccount(tx, account)) === null) {
          throw new AccountNotFoundError(`no account '${account}'`);
        }
        await tx.execute(
          'INSERT INTO warren_domains (host, account, challenge, created_at, verified_at) VALUES (?, ?, ?, ?, NULL) ON CONFLICT DO NOTHING',
          [name, account, randomBytes(CHALLENGE_BYTES).toString('base64url'), nowSeconds],
        );
        const domain = await this.readDomain(tx, name);
        if (domain === null) throw corrupt('domain (gone right after it was added)');
        if (domain.account !== account) {
          throw new DomainExistsError(`${name} belongs to another account ('${domain.account}')`);
        }
        return domain;
      }),
    );
  }

  getDomain(host: string): Promise<DomainRecord | null> {
    if (typeof host !== 'string') throw new TypeError('host must be a string');
    let name: string;
    try {
      name = normalizeHostName(host);
    } catch {
      return Promise.resolve(null);
    }
    return this.guard(() => this.readDomain(this.driver, name));
  }

  markDomainVerified(host: string, nowSeconds = now()): Promise<DomainRecord> {
    const name = normalizeHostName(host);
    checkSeconds(nowSeconds, 'nowSeconds');
    return this.guard(async () => {
      const [row] = await this.driver.query(
        `UPDATE warren_domains SET verified_at = ? WHERE host = ? RETURNING ${DOMAIN_COLUMNS}`,
        [nowSeconds, name],
      );
      if (row === undefined) throw new DomainNotFoundError(`no custom domain ${name}`);
      return domainFromRow(row);
    });
  }

  listDomains(account?: string): Promise<DomainRecord[]> {
    if (account !== undefined && typeof account !== 'string') {
      throw new TypeError('account must be a string');
    }
    return this.guard(async () =>
      (account === undefined
        ? await this.driver.query(`SELECT ${DOMAIN_COLUMNS} FROM warren_domains ORDER BY host`)
        : await this.driver.query(
            `SELECT ${DOMAIN_COLUMNS} FROM warren_domains WHERE account = ? ORDER BY host`,
            [account],
          )
      ).map(domainFromRow),
    );
  }

  removeDomain(host: string): Promise<DomainRecord> {
    const name = normalizeHostName(host);
    return this.guard(async () => {
      const [row] = await this.driver.query(
        `DELETE FROM warren_domains WHERE host = ? RETURNING ${DOMAIN_COLUMNS}`,
        [name],
      );
      if (row === undefined) throw new DomainNotFoundError(`no custom domain ${name}`);
      return domainFromRow(row);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.driver.close();
  }

  // ---- helpers

  private async readAccount(executor: SqlExecutor, name: string): Promise<AccountRecord | null> {
    const [row] = await executor.query(
      'SELECT name, created_at FROM warren_accounts WHERE name = ?',
      [name],
    );
    return row === undefined ? null : accountFromRow(row);
  }

  private async readDomain(executor: SqlExecutor, host: string): Promise<DomainRecord | null> {
    const [row] = await executor.query(
      `SELECT ${DOMAIN_COLUMNS} FROM warren_domains WHERE host = ?`,
      [host],
    );
    return row === undefined ? null : domainFromRow(row);
  }

  /** Inserts a token record; false if its id is recorded already (an error when `unique`). */
  private async insertToken(
    tx: SqlExecutor,
    record: TokenRecord,
    unique: boolean,
  ): Promise<boolean> {
    const values: SqlValue[] = [
      record.id,
      record.account,
      record.name,
      JSON.stringify(record.subdomains),
      JSON.stringify(record.tcp),
      record.issuedAt,
      record.expiresAt,
      record.revokedAt,
    ];
    const changed = await tx.execute(
      'INSERT INTO warren_tokens (id, account, name, subdomains, tcp, issued_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING',
      values,
    );
    if (changed === 0 && unique) {
      throw new TokenStoreError(`token id ${record.id} is already recorded`);
    }
    return changed > 0;
  }

  /** Runs a database call: typed errors pass, anything else becomes a TokenStoreError. */
  private async guard<T>(work: () => Promise<T>): Promise<T> {
    if (this.closed) throw new TokenStoreError(`the store ${this.location} is closed`);
    try {
      return await work();
    } catch (error) {
      if (error instanceof RelayError) throw error;
      throw new TokenStoreError(
        `the store ${this.location} failed: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      );
    }
  }
}
