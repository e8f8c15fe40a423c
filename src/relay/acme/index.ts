/**
 * Automatic certificates for the relay (ACME, RFC 8555, HTTP-01): see ./manager.ts.
 */
export { AcmeCertificateManager, LETS_ENCRYPT_DIRECTORY_URL } from './manager.js';
export type { AcmeCertificate, AcmeHostStatus, AcmeManagerOptions } from './manager.js';
export {
  AcmeBackoffError,
  AcmeHostNotServedError,
  AcmeOrderError,
  AcmeStorageError,
} from './errors.js';
export { canonicalHost } from './certificate.js';
export type { CertificateMaterial } from './certificate.js';
export {
  ACME_CHALLENGE_PATH,
  interceptAcmeChallenge,
  peekChallengeRequest,
} from './http-challenge.js';
export type { ChallengeInterceptOptions, ChallengePeek } from './http-challenge.js';
export { DEFAULT_RENEWAL_POLICY, renewalTime, retryDelay } from './schedule.js';
export type { RenewalPolicy, RetryPolicy } from './schedule.js';
