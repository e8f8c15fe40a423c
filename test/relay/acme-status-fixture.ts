/** ACME certificate states for the dashboard's metrics, status and page tests. */
import type { AcmeHostStatus } from '../../src/relay/acme/manager.js';

/** One name with a certificate, one whose orders failed twice (with `lastError`), one ordering. */
export function acmeStatusFixture(lastError: string): AcmeHostStatus[] {
  return [
    {
      host: 'app.tunnel.test',
      notAfter: Date.UTC(2027, 0, 1),
      renewAt: Date.UTC(2026, 11, 1),
      ordering: false,
      failures: 0,
      retryAt: null,
      lastError: null,
    },
    {
      host: 'new.tunnel.test',
      notAfter: null,
      renewAt: null,
      ordering: false,
      failures: 2,
      retryAt: Date.UTC(2026, 10, 23),
      lastError,
    },
    {
      host: 'next.tunnel.test',
      notAfter: null,
      renewAt: null,
      ordering: true,
      failures: 0,
      retryAt: null,
      lastError: null,
    },
  ];
}
