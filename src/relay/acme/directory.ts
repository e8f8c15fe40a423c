/**
 * The default ACME directory, in a module of its own with no dependencies, so
 * the CLI can show it in --help without loading the ACME client.
 */

/** Let's Encrypt's production directory (RFC 8555 §7.1.1). */
export const LETS_ENCRYPT_DIRECTORY_URL = 'https://acme-v02.api.letsencrypt.org/directory';
