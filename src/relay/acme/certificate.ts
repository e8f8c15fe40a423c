/**
 * Checks a certificate chain and its key before the relay serves them: the
 * leaf names the host, the key is the leaf's, and the validity is read once so
 * the renewal schedule (./schedule.ts) can work from numbers.
 */
import { X509Certificate, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { isIP } from 'node:net';
import { isValidSubdomain } from '../token.js';

/** A certificate chain and its key, as stored and served. */
export interface CertificateMaterial {
  readonly host: string;
  /** PEM: the leaf first, then the intermediates (as the CA sent them). */
  readonly certificatePem: string;
  /** PEM (PKCS#8) private key of the leaf. */
  readonly privateKeyPem: string;
  /** Validity of the leaf, ms since the epoch. */
  readonly notBefore: number;
  readonly notAfter: number;
  readonly serialNumber: string;
  /** The leaf's issuer, as OpenSSL prints it. */
  readonly issuer: string;
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** The PEM certificates of a chain, in order. */
export function splitPemChain(pem: string): string[] {
  if (typeof pem !== 'string') throw new TypeError('pem must be a string');
  return pem.match(PEM_CERTIFICATE) ?? [];
}

/**
 * The host name in canonical form (lower case, no trailing dot) when HTTP-01
 * can prove it, else null: wildcards need DNS-01 (RFC 8555 §8.4; not done
 * here) and IP addresses are not DNS identifiers (RFC 8555 §7.1.4).
 */
export function canonicalHost(host: string): string | null {
  if (typeof host !== 'string') return null;
  let name = host.toLowerCase();
  if (name.endsWith('.')) name = name.slice(0, -1);
  if (name.length === 0 || name.length > 253 || isIP(name) !== 0) return null;
  const labels = name.split('.');
  // At least two labels: ACME CAs issue for registered domains, never for a bare TLD or "localhost".
  if (labels.length < 2 || !labels.every(isValidSubdomain)) return null;
  return name;
}

/** A new private key for a certificate or an account: ECDSA P-256, PKCS#8 PEM. */
export function newPrivateKeyPem(): string {
  const { privateKey } = generateKeyPairSync('ec', {
    namedCurve: 'prime256v1',
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
    publicKeyEncoding: { type: 'spki', format: 'pem' },
  });
  return privateKey;
}

/**
 * Reads a chain and key for `host`; throws an Error saying what is wrong when
 * the chain is empty or unreadable, the leaf does not name the host, or the
 * key is not the leaf's.
 */
export function inspectCertificate(
  host: string,
  certificatePem: string,
  privateKeyPem: string,
): CertificateMaterial {
  const chain = splitPemChain(certificatePem);
  const leafPem = chain[0];
  if (leafPem === undefined) throw new Error(`no PEM certificate for ${host}`);
  const leaf = new X509Certificate(leafPem);
  const key = createPrivateKey(privateKeyPem);
  if (!leaf.checkPrivateKey(key)) throw new Error(`the key is not the certificate's for ${host}`);
  if (leaf.checkHost(host, { wildcards: false }) === undefined) {
    throw new Error(`the certificate does not name ${host}`);
  }
  const notBefore = Date.parse(leaf.validFrom);
  const notAfter = Date.parse(leaf.validTo);
  if (!Number.isFinite(notBefore) || !Number.isFinite(notAfter) || notAfter <= notBefore) {
    throw new Error(`the certificate for ${host} has no usable validity period`);
  }
  return {
    host,
    certificatePem: chain.join('\n') + '\n',
    privateKeyPem,
    notBefore,
    notAfter,
    serialNumber: leaf.serialNumber,
    issuer: leaf.issuer,
  };
}
