/**
 * `--dev-ca`: a local certificate authority and a wildcard certificate for the
 * relay's domain, for tests and trying the relay out without ACME.
 *
 * Node 20 can parse certificates (crypto.X509Certificate) but cannot create
 * them, so the certificates are made with the `openssl` command (Debian's
 * openssl package) through execFile, no shell. The private keys are generated
 * by node:crypto (ECDSA P-256) and written 0600 before openssl reads them.
 *
 *   DATA_DIR/dev-ca/ca.crt, ca.key            the CA (10 years); give ca.crt to agents (--ca)
 *   DATA_DIR/dev-ca/DOMAIN.crt, DOMAIN.key    DOMAIN, *.DOMAIN, localhost, 127.0.0.1, ::1
 *
 * Existing files are reused while the server certificate is valid for 30 more
 * days and names the domain; otherwise a new server certificate is issued.
 */
import { execFile } from 'node:child_process';
import { X509Certificate, generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RelayTlsSetupError } from './errors.js';
import { isValidSubdomain } from './token.js';

const run = promisify(execFile);
const RENEW_BEFORE_MS = 30 * 24 * 3600 * 1000;

export interface DevCertificate {
  /** The CA certificate agents and clients must trust. */
  readonly caCertPath: string;
  readonly certPath: string;
  readonly keyPath: string;
  /** PEM contents of the server certificate and key. */
  readonly cert: Buffer;
  readonly key: Buffer;
}

async function exists(path: string): Promise<boolean> {
  try {
    await readFile(path);
    return true;
  } catch {
    return false;
  }
}

async function writePrivateKey(path: string): Promise<void> {
  const { privateKey } = generateKeyPairSync('ec', {
    namedCurve: 'prime256v1',
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  await writeFile(path, privateKey, { mode: 0o600 });
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 30_000 });
  } catch (error) {
    const detail = (error as { stderr?: string }).stderr ?? (error as Error).message;
    throw new RelayTlsSetupError(
      `openssl ${args[0] ?? ''} failed (is the openssl package installed?): ${detail.trim()}`,
      { cause: error },
    );
  }
}

function stillGood(pem: Buffer, domain: string): boolean {
  try {
    const certificate = new X509Certificate(pem);
    const names = certificate.subjectAltName ?? '';
    return (
      Date.parse(certificate.validTo) - Date.now() > RENEW_BEFORE_MS &&
      names.includes(`DNS:${domain}`) &&
      names.includes(`DNS:*.${domain}`)
    );
  } catch {
    return false;
  }
}

/** Makes (or reuses) the dev CA and the domain's wildcard certificate under dataDir/dev-ca. */
export async function ensureDevCertificate(
  dataDir: string,
  domain: string,
): Promise<DevCertificate> {
  if (typeof dataDir !== 'string' || dataDir.length === 0) {
    throw new TypeError('dataDir must be a non-empty string');
  }
  const lower = typeof domain === 'string' ? domain.toLowerCase() : '';
  if (lower.length === 0 || !lower.split('.').every(isValidSubdomain)) {
    throw new RelayTlsSetupError(`'${lower}' is not a DNS name`);
  }
  const dir = join(dataDir, 'dev-ca');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const caKey = join(dir, 'ca.key');
  const caCert = join(dir, 'ca.crt');
  const keyPath = join(dir, `${lower}.key`);
  const certPath = join(dir, `${lower}.crt`);

  if (!(await exists(caCert)) || !(await exists(caKey))) {
    await writePrivateKey(caKey);
    await openssl([
      'req',
      '-x509',
      '-new',
      '-key',
      caKey,
      '-out',
      caCert,
      '-days',
      '3650',
      '-subj',
      `/CN=warren relay dev CA ${randomBytes(4).toString('hex')}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ]);
  }
  if ((await exists(certPath)) && (await exists(keyPath))) {
    const cert = await readFile(certPath);
    if (stillGood(cert, lower)) {
      return { caCertPath: caCert, certPath, keyPath, cert, key: await readFile(keyPath) };
    }
  }
  await writePrivateKey(keyPath);
  const csr = join(dir, `${lower}.csr`);
  const extensions = join(dir, `${lower}.ext`);
  await writeFile(
    extensions,
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
      `subjectAltName=DNS:${lower},DNS:*.${lower},DNS:localhost,IP:127.0.0.1,IP:::1`,
      '',
    ].join('\n'),
  );
  try {
    await openssl(['req', '-new', '-key', keyPath, '-subj', `/CN=${lower}`, '-out', csr]);
    await openssl([
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      caCert,
      '-CAkey',
      caKey,
      '-set_serial',
      `0x${randomBytes(16).toString('hex')}`,
      // 397 days: the longest validity browsers accept for a server certificate.
      '-days',
      '397',
      '-extfile',
      extensions,
      '-out',
      certPath,
    ]);
  } finally {
    await rm(csr, { force: true });
    await rm(extensions, { force: true });
  }
  return {
    caCertPath: caCert,
    certPath,
    keyPath,
    cert: await readFile(certPath),
    key: await readFile(keyPath),
  };
}
