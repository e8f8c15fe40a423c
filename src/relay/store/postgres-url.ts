/**
 * Recognizing and redacting PostgreSQL URLs, apart from the driver, so that
 * checking `--database` does not load pg.
 */

/** True for a postgres:// or postgresql:// URL. */
export function isPostgresUrl(url: string): boolean {
  return typeof url === 'string' && /^postgres(?:ql)?:\/\//i.test(url);
}

/** The URL with its password (user:PASSWORD@, ?password=) replaced by ***: for messages. */
export function redactDatabaseUrl(url: string): string {
  if (typeof url !== 'string') throw new TypeError('url must be a string');
  return url
    .replace(/^([a-z]+:\/\/[^:/@?#]*):[^@/?#]*@/i, '$1:***@')
    .replace(/([?&]password=)[^&#]*/gi, '$1***');
}
