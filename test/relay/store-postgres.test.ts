/**
 * The relay and its commands on the PostgreSQL store: a throw-away cluster on
 * a unix socket (src/relay/store/postgres-cluster.ts), `--database` and
 * WARREN_RELAY_DATABASE on the commands, a relay started with `database`,
 * revocation from another process reaching it, a custom domain served from
 * PostgreSQL's records, and an unreachable database refused at start.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { Agent } from '../../src/relay/agent.js';
import { StoreConnectError } from '../../src/relay/errors.js';
import type { RelayError } from '../../src/relay/errors.js';
import { Relay } from '../../src/relay/relay.js';
import { openRelayStore } from '../../src/relay/store/open.js';
import { PostgresCluster } from '../../src/relay/store/postgres-cluster.js';
import type { RelayStore } from '../../src/relay/store/types.js';
import { createToken } from '../../src/relay/token.js';
import { DOMAIN, RelayFixture, httpAsk } from './relay-fixture.js';

const RUNNER = fileURLToPath(new URL('./cli-runner.js', import.meta.url));
const execute = promisify(execFile);

async function relayCommand(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execute(process.execPath, [RUNNER, 'relay', ...args], {
      env: { ...process.env, WARREN_RELAY_DATABASE: '', ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

async function fatalOf(agent: Agent): Promise<RelayError> {
  const [error] = (await once(agent, 'fatal')) as [RelayError];
  return error;
}

describe('the relay on PostgreSQL', () => {
  let cluster: PostgresCluster;
  let database: string;
  let fixture: RelayFixture;
  let store: RelayStore;
  let appPort: number;

  before(async () => {
    cluster = await PostgresCluster.start();
    database = await cluster.createDatabase();
    fixture = await RelayFixture.create();
    await fixture.startRelay({ tokenRecheckIntervalMs: 150 }, {}, { database });
    store = await openRelayStore({ dataDir: fixture.dir, database });
    const app = await fixture.httpServer((request, response) => {
      response.end(`local saw ${request.url ?? ''}`);
    });
    appPort = app.port;
  });

  after(async () => {
    await store.close();
    await fixture.close();
    await cluster.stop();
  });

  /** A token signed with the relay's secret and recorded in PostgreSQL. */
  async function token(
    name: string,
    account = 'default',
    subdomains: string[] = [],
  ): Promise<string> {
    const created = createToken(fixture.secret, { name, account, subdomains });
    await store.addToken(created.grant);
    return created.token;
  }

  it('takes --database, or WARREN_RELAY_DATABASE, on the commands', async () => {
    const dataDir = fixture.dir;
    assert.equal(
      (
        await relayCommand([
          'account',
          'create',
          '--data-dir',
          dataDir,
          '--database',
          database,
          'acme',
        ])
      ).code,
      0,
    );
    const listed = await relayCommand(['account', 'list', '--data-dir', dataDir], {
      WARREN_RELAY_DATABASE: database,
    });
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^acme {2}created /m);
    assert.ok((await store.getAccount('acme')) !== null, 'in PostgreSQL, not in SQLite');
    const sqlite = await relayCommand(['account', 'list', '--data-dir', dataDir]);
    assert.doesNotMatch(sqlite.stdout, /acme/);
  });

  it('serves an agent whose token is in PostgreSQL, and ends it when another process revokes it', async () => {
    const agentToken = await token('pg-laptop', 'default', ['pg']);
    const agent = fixture.agent(agentToken, [
      { proto: 'http', localPort: appPort, subdomain: 'pg' },
    ]);
    await agent.ready();
    const answer = await httpAsk(fixture.ports.http, 'GET', '/via-pg', { host: `pg.${DOMAIN}` });
    assert.equal(answer.body, 'local saw /via-pg');

    const fatal = fatalOf(agent);
    const revoked = await relayCommand([
      'token',
      'revoke',
      '--data-dir',
      fixture.dir,
      '--database',
      database,
      'pg-laptop',
    ]);
    assert.equal(revoked.code, 0, revoked.stderr);
    assert.equal((await fatal).code, 'ERR_RELAY_TOKEN_REVOKED');
    const again = fixture.agent(agentToken, [{ proto: 'http', localPort: appPort }]);
    assert.equal((await fatalOf(again)).code, 'ERR_RELAY_TOKEN_REVOKED');
  });

  it('routes a verified custom domain recorded in PostgreSQL', async () => {
    await store.createAccount('web');
    await store.addDomain('web', 'www.example.net');
    await store.markDomainVerified('www.example.net');
    const agent = fixture.agent(await token('web-laptop', 'web'), [
      { proto: 'http', localPort: appPort, hostname: 'www.example.net' },
    ]);
    await agent.ready();
    const answer = await httpAsk(fixture.ports.http, 'GET', '/custom', { host: 'www.example.net' });
    assert.equal(answer.status, 200);
    assert.equal(answer.body, 'local saw /custom');
    await agent.close();
  });

  it('refuses to start on a database it cannot reach', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'warren-no-pg-'));
    try {
      await assert.rejects(
        Relay.start({
          domain: DOMAIN,
          dataDir: empty,
          database: `postgresql://postgres:pw@/postgres?host=${encodeURIComponent(empty)}`,
          tls: { cert: fixture.cert.cert, key: fixture.cert.key },
          agentListen: { host: '127.0.0.1', port: 0 },
        }),
        (error: unknown) =>
          error instanceof StoreConnectError && error.code === 'ERR_RELAY_STORE_CONNECT',
      );
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });
});
