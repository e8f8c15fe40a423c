/**
 * What the relay's store holds, and the one interface both backends (SQLite
 * by default, ./sqlite.ts; PostgreSQL, ./postgres.ts) implement.
 *
 * The store never holds a token or the signing secret: only what each issued
 * token grants (to list and revoke it), the accounts tokens belong to, and the
 * custom domains of each account with their DNS challenge. Every call reads the
 * database afresh, so a change made by another process (`warren relay token
 * revoke`, `account remove`, `domain remove`) is seen on the relay's next check.
 */
import type { TokenGrant } from '../token.js';

/** Unix seconds. */
export type UnixSeconds = number;

export interface AccountRecord {
  readonly name: string;
  readonly createdAt: UnixSeconds;
}

/** An issued token as the store remembers it (never the token itself). */
export interface TokenRecord extends TokenGrant {
  /** Unix seconds, or null while the token is valid. */
  readonly revokedAt: UnixSeconds | null;
}

/** A custom domain an account asked for: routed to its tunnels once verified. */
export interface DomainRecord {
  /** Lower-case host name ("app.example.org"). */
  readonly host: string;
  readonly account: string;
  /** The random value the TXT record `_warren-challenge.HOST` must hold. */
  readonly challenge: string;
  readonly createdAt: UnixSeconds;
  /** When the DNS challenge last checked out; null: not verified. */
  readonly verifiedAt: UnixSeconds | null;
}

/**
 * What the store says about a signed token: usable, revoked, or refused
 * because its account no longer exists.
 */
export type TokenStanding = 'valid' | 'revoked' | 'account-removed';

/** What `removeAccount` did. */
export interface AccountRemoval {
  readonly account: AccountRecord;
  /** The account's tokens it revoked (those not revoked before). */
  readonly revokedTokens: readonly TokenRecord[];
  /** The account's custom domains it dropped. */
  readonly removedDomains: readonly DomainRecord[];
}

export type StoreBackend = 'sqlite' | 'postgres';

export interface RelayStore {
  readonly backend: StoreBackend;
  /** Where the data is, for people: the SQLite file, or the database URL without its password. */
  readonly location: string;

  // ---- accounts
  /** Creates an account. Throws AccountExistsError if the name is taken. */
  createAccount(name: string, nowSeconds?: UnixSeconds): Promise<AccountRecord>;
  /** The account, created if it does not exist (the CLI's "default"). */
  ensureAccount(name: string, nowSeconds?: UnixSeconds): Promise<AccountRecord>;
  getAccount(name: string): Promise<AccountRecord | null>;
  /** All accounts, by name. */
  listAccounts(): Promise<AccountRecord[]>;
  /**
   * Removes an account: revokes its tokens (their records stay, revoked) and
   * drops its custom domains, in one transaction. Throws AccountNotFoundError.
   */
  removeAccount(name: string, nowSeconds?: UnixSeconds): Promise<AccountRemoval>;

  // ---- tokens
  /**
   * Records an issued token (for listing and revocation). Its account must
   * exist (AccountNotFoundError); a token id already recorded is a TokenStoreError.
   */
  addToken(grant: TokenGrant): Promise<void>;
  /**
   * Revokes the tokens whose id or name is `idOrName`; returns the records it
   * revoked (empty when none matched or all were revoked already).
   */
  revokeToken(idOrName: string, nowSeconds?: UnixSeconds): Promise<TokenRecord[]>;
  /** True if the token id was revoked. Throws (fails closed) if the store cannot be read. */
  isRevoked(tokenId: string): Promise<boolean>;
  /**
   * Whether a signed token may be used: not revoked and its account exists.
   * What the relay asks when a session opens and on every tunnel request.
   */
  checkToken(grant: Pick<TokenGrant, 'id' | 'account'>): Promise<TokenStanding>;
  /** Tokens in the order they were recorded; only one account's with `account`. */
  listTokens(account?: string): Promise<TokenRecord[]>;

  // ---- custom domains
  /**
   * Records a custom domain for an account with a fresh random challenge, or
   * returns the account's existing record of that host. Throws
   * AccountNotFoundError, or DomainExistsError if another account has it.
   */
  addDomain(account: string, host: string, nowSeconds?: UnixSeconds): Promise<DomainRecord>;
  getDomain(host: string): Promise<DomainRecord | null>;
  /** Marks the domain verified (its DNS challenge checked out). Throws DomainNotFoundError. */
  markDomainVerified(host: string, nowSeconds?: UnixSeconds): Promise<DomainRecord>;
  /** Domains by host name; only one account's with `account`. */
  listDomains(account?: string): Promise<DomainRecord[]>;
  /** Drops a domain and returns what it was. Throws DomainNotFoundError. */
  removeDomain(host: string): Promise<DomainRecord>;

  close(): Promise<void>;
}
