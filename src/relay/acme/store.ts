/**
 * Where the ACME account key and the certificates live, so a restart reuses
 * them (Let's Encrypt limits new orders and accounts; a relay must not ask
 * again for what it has):
 *
 *   DATA_DIR/acme/                          0700
 *   DATA_DIR/acme/DIRECTORY-ID/directory.url  the ACME directory these belong to
 *   DATA_DIR/acme/DIRECTORY-ID/account.key    the account's key (0600)
 *   DATA_DIR/acme/DIRECTORY-ID/certs/HOST.crt the chain, leaf first
 *   DATA_DIR/acme/DIRECTORY-ID/certs/HOST.key its key (0600)
 *
 * DIRECTORY-ID is the directory's host and a hash of its URL: switching CAs
 * (a test CA, staging, production) never serves one CA's certificate as
 * another's. Files are written to a temporary name and renamed, so a crash
 * leaves the old file or the new one, never half of one; a certificate whose
 * key does not match (a crash between the two renames) is not loaded.
 */
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { canonicalHost, inspectCertificate, newPrivateKeyPem } from './certificate.js';
import type { CertificateMaterial } from './certificate.js';
import { AcmeStorageError } from './errors.js';

/** A certificate on disk that could not be used, and why (it is re-ordered when needed). */
export interface UnusableCertificate {
  readonly host: string;
  readonly reason: string;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function isMissing(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === 'ENOENT';
}

/** The folder name for one ACME directory URL. */
export function directoryId(directoryUrl: string): string {
  const url = new URL(directoryUrl);
  const host = url.host.toLowerCase().replace(/[^a-z0-9.-]/g, '_');
  const digest = createHash('sha256').update(directoryUrl).digest('hex').slice(0, 12);
  return `${host}-${digest}`;
}

async function writeAtomically(path: string, data: string, mode: number): Promise<void> {
  const temporary = `${path}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(temporary, data, { mode, flag: 'wx' });
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  }
}

/** Keys must be readable by their owner only (like the token secret). */
async function checkPrivate(path: string): Promise<void> {
  const info = await stat(path);
  if ((info.mode & 0o077) !== 0) {
    throw new AcmeStorageError(
      `${path} is readable by others (mode ${(info.mode & 0o777).toString(8)}); chmod 600 it`,
    );
  }
}

export class AcmeStore {
  /** DATA_DIR/acme/DIRECTORY-ID */
  readonly root: string;
  private readonly certsDir: string;

  private constructor(root: string) {
    this.root = root;
    this.certsDir = join(root, 'certs');
  }

  /** Creates the folders (0700) for `directoryUrl` under dataDir/acme. */
  static async open(dataDir: string, directoryUrl: string): Promise<AcmeStore> {
    if (typeof dataDir !== 'string' || dataDir.length === 0) {
      throw new TypeError('dataDir must be a non-empty string');
    }
    const store = new AcmeStore(join(dataDir, 'acme', directoryId(directoryUrl)));
    try {
      await mkdir(store.certsDir, { recursive: true, mode: 0o700 });
      await chmod(join(dataDir, 'acme'), 0o700);
      await writeFile(join(store.root, 'directory.url'), `${directoryUrl}\n`);
    } catch (error) {
      throw new AcmeStorageError(`cannot create ${store.root}: ${describe(error)}`, {
        cause: error,
      });
    }
    return store;
  }

  /** The account key, made (ECDSA P-256, 0600) the first time. */
  async accountKey(): Promise<string> {
    const path = join(this.root, 'account.key');
    try {
      await checkPrivate(path);
      return await readFile(path, 'utf8');
    } catch (error) {
      if (error instanceof AcmeStorageError) throw error;
      if (!isMissing(error)) {
        throw new AcmeStorageError(`cannot read ${path}: ${describe(error)}`, { cause: error });
      }
    }
    const key = newPrivateKeyPem();
    try {
      await writeAtomically(path, key, 0o600);
    } catch (error) {
      throw new AcmeStorageError(`cannot write ${path}: ${describe(error)}`, { cause: error });
    }
    return key;
  }

  /** Every stored certificate that still matches its key and names its host. */
  async loadCertificates(): Promise<{
    certificates: CertificateMaterial[];
    unusable: UnusableCertificate[];
  }> {
    let names: string[];
    try {
      names = await readdir(this.certsDir);
    } catch (error) {
      throw new AcmeStorageError(`cannot list ${this.certsDir}: ${describe(error)}`, {
        cause: error,
      });
    }
    const certificates: CertificateMaterial[] = [];
    const unusable: UnusableCertificate[] = [];
    for (const name of names) {
      if (!name.endsWith('.crt')) continue;
      const host = canonicalHost(name.slice(0, -4));
      if (host === null || `${host}.crt` !== name) continue;
      const keyPath = join(this.certsDir, `${host}.key`);
      try {
        await checkPrivate(keyPath);
        const certificatePem = await readFile(join(this.certsDir, name), 'utf8');
        const privateKeyPem = await readFile(keyPath, 'utf8');
        certificates.push(inspectCertificate(host, certificatePem, privateKeyPem));
      } catch (error) {
        if (error instanceof AcmeStorageError) throw error;
        unusable.push({ host, reason: describe(error) });
      }
    }
    return { certificates, unusable };
  }

  /** Stores a certificate and its key (the key first: a chain is never left without it). */
  async saveCertificate(material: CertificateMaterial): Promise<void> {
    const host = canonicalHost(material.host);
    if (host === null) throw new TypeError(`'${material.host}' is not a host name`);
    try {
      await writeAtomically(join(this.certsDir, `${host}.key`), material.privateKeyPem, 0o600);
      await writeAtomically(join(this.certsDir, `${host}.crt`), material.certificatePem, 0o644);
    } catch (error) {
      throw new AcmeStorageError(`cannot store the certificate for ${host}: ${describe(error)}`, {
        cause: error,
      });
    }
  }
}
