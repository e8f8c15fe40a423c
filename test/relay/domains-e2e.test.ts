/**
 * Custom domains end to end: an account's domain verified through a DNS TXT
 * challenge (against a tiny DNS responder on 127.0.0.1), an agent asking for
 * it with --hostname, and public requests whose Host is that name reaching the
 * agent's local server through the relay. Other accounts, unverified domains
 * and names under the relay's own domain are refused with stable codes; a
 * domain or an account removed while tunnels are live ends them on the
 * relay's next check.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import type { Agent, TunnelStatus } from '../../src/relay/agent.js';
import type { RelayError } from '../../src/relay/errors.js';
import { verifyDomain } from '../../src/relay/store/dns-challenge.js';
import { TestDnsServer } from '../../src/relay/store/dns-test-server.js';
import { openRelayStore } from '../../src/relay/store/open.js';
import type { RelayStore } from '../../src/relay/store/types.js';
import { DOMAIN, RelayFixture, httpAsk, waitFor } from './relay-fixture.js';

async function fatalOf(agent: Agent): Promise<RelayError> {
  const [error] = (await once(agent, 'fatal')) as [RelayError];
  return error;
}

describe('custom domains through the relay', () => {
  let fixture: RelayFixture;
  let store: RelayStore;
  let dns: TestDnsServer;
  let appPort: number;
  let localRequests = 0;
  let acmeToken: string;
  let otherToken: string;

  /** Adds HOST for ACCOUNT and verifies it through the DNS responder, as the CLI does. */
  async function verifiedDomain(account: string, host: string): Promise<void> {
    const domain = await store.addDomain(account, host);
    dns.txt.set(`_warren-challenge.${host}`, [[domain.challenge]]);
    await verifyDomain(store, host, { resolvers: [dns.address], timeoutMs: 1_000, tries: 1 });
  }

  before(async () => {
    fixture = await RelayFixture.create();
    await fixture.startRelay({ tokenRecheckIntervalMs: 150 });
    dns = await TestDnsServer.start();
    store = await openRelayStore({ dataDir: fixture.dir });
    await store.createAccount('acme');
    await store.createAccount('other');
    acmeToken = await fixture.token({ name: 'acme-laptop', account: 'acme' });
    otherToken = await fixture.token({ name: 'other-laptop', account: 'other' });
    const app = await fixture.httpServer((request, response) => {
      localRequests++;
      response.end(`local saw ${request.url ?? ''} for ${String(request.headers.host)}`);
    });
    appPort = app.port;
  });

  after(async () => {
    await store.close();
    await dns.close();
    await fixture.close();
  });

  it('routes requests whose Host is a verified domain of the token account to its agent', async () => {
    await verifiedDomain('acme', 'app.example.org');
    const agent = fixture.agent(acmeToken, [
      { proto: 'http', localPort: appPort, hostname: 'app.example.org' },
    ]);
    const [status] = await agent.ready();
    assert.equal(status?.name, 'app.example.org');
    assert.equal(status.url, `https://app.example.org:${String(fixture.ports.https)}`);
    assert.ok(
      fixture.relay?.tunnelsInfo().some((tunnel) => tunnel.name === 'app.example.org'),
      'listed among the relay tunnels',
    );
    const answer = await httpAsk(fixture.ports.http, 'GET', '/hello', {
      host: 'App.Example.org:8080',
    });
    assert.equal(answer.status, 200);
    assert.equal(answer.body, 'local saw /hello for App.Example.org:8080');
    // A subdomain of the relay's own domain is still a different name.
    const other = await httpAsk(fixture.ports.http, 'GET', '/', { host: `app.${DOMAIN}` });
    assert.equal(other.status, 404);
    await agent.close();
  });

  it('refuses a domain verified for another account, with a token of that other account', async () => {
    await verifiedDomain('acme', 'shop.example.org');
    const agent = fixture.agent(otherToken, [
      { proto: 'http', localPort: appPort, hostname: 'shop.example.org' },
    ]);
    const refused = once(agent, 'tunnel-refused') as Promise<[TunnelStatus, boolean]>;
    const fatal = fatalOf(agent);
    const [status, permanent] = await refused;
    assert.equal(permanent, true);
    assert.equal(status.error?.code, 'ERR_RELAY_DOMAIN_NOT_VERIFIED');
    assert.match(status.error.message, /not a custom domain of the account 'other'/);
    assert.equal((await fatal).code, 'ERR_RELAY_DOMAIN_NOT_VERIFIED');
    const before = localRequests;
    const answer = await httpAsk(fixture.ports.http, 'GET', '/', { host: 'shop.example.org' });
    assert.equal(answer.status, 404);
    assert.equal(localRequests, before, 'nothing reached the local server');
  });

  it('refuses a domain that is not verified yet, and names under the relay domain', async () => {
    await store.addDomain('acme', 'pending.example.org');
    const pending = fixture.agent(acmeToken, [
      { proto: 'http', localPort: appPort, hostname: 'pending.example.org' },
    ]);
    const error = await fatalOf(pending);
    assert.equal(error.code, 'ERR_RELAY_DOMAIN_NOT_VERIFIED');
    assert.match(error.message, /not verified yet/);

    const own = fixture.agent(acmeToken, [
      { proto: 'http', localPort: appPort, hostname: `sneaky.${DOMAIN}` },
    ]);
    assert.equal((await fatalOf(own)).code, 'ERR_RELAY_NOT_PERMITTED');
  });

  it('ends a live custom-domain tunnel once the domain is removed', async () => {
    await verifiedDomain('acme', 'gone.example.org');
    const agent = fixture.agent(acmeToken, [
      { proto: 'http', localPort: appPort, hostname: 'gone.example.org' },
    ]);
    await agent.ready();
    assert.equal(
      (await httpAsk(fixture.ports.http, 'GET', '/', { host: 'gone.example.org' })).status,
      200,
    );
    const fatal = fatalOf(agent);
    await store.removeDomain('gone.example.org');
    assert.equal((await fatal).code, 'ERR_RELAY_DOMAIN_NOT_VERIFIED');
    const before = localRequests;
    const answer = await httpAsk(fixture.ports.http, 'GET', '/', { host: 'gone.example.org' });
    assert.notEqual(answer.status, 200);
    assert.equal(localRequests, before);
  });

  it('refuses every token of a removed account, live sessions included', async () => {
    await store.createAccount('leaving');
    const token = await fixture.token({
      name: 'leaving-ci',
      account: 'leaving',
      subdomains: ['leaving'],
    });
    await verifiedDomain('leaving', 'leaving.example.org');
    const agent = fixture.agent(token, [
      { proto: 'http', localPort: appPort, hostname: 'leaving.example.org' },
      { proto: 'http', localPort: appPort, subdomain: 'leaving' },
    ]);
    await agent.ready();
    const fatal = fatalOf(agent);
    const removal = await store.removeAccount('leaving');
    assert.equal(removal.revokedTokens.length, 1);
    assert.deepEqual(
      removal.removedDomains.map((domain) => domain.host),
      ['leaving.example.org'],
    );
    const error = await fatal;
    assert.equal(error.code, 'ERR_RELAY_ACCOUNT_REMOVED');
    await waitFor(
      () => !(fixture.relay?.tunnelsInfo() ?? []).some((tunnel) => tunnel.name === 'leaving'),
      'the tunnels are gone',
    );
    // A new session with the same token is refused at hello.
    const again = fixture.agent(token, [{ proto: 'http', localPort: appPort }]);
    assert.equal((await fatalOf(again)).code, 'ERR_RELAY_ACCOUNT_REMOVED');
  });
});
