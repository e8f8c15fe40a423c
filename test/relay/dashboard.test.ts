/**
 * The relay's admin listener on 127.0.0.1 through a real Relay and Agent:
 * /metrics parses as Prometheus text and moves with traffic, /api/status lists
 * agents and tunnels, bearer auth, the Host check (DNS rebinding), security
 * headers, and the page's script rendering hostile names as text.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { runInNewContext } from 'node:vm';
import { AdminServer, DASHBOARD_CSP, DASHBOARD_HTML } from '../../src/relay/dashboard/index.js';
import type { RelayStatus } from '../../src/relay/dashboard/index.js';
import { RelayConfigError } from '../../src/relay/errors.js';
import type { RelayError } from '../../src/relay/errors.js';
import type { RelayLimits } from '../../src/relay/relay.js';
import {
  DOMAIN,
  RelayFixture,
  exchange,
  readUntil,
  statusOf,
  tcpConnect,
  waitFor,
  httpAsk,
} from './relay-fixture.js';
import type { HttpAnswer } from './relay-fixture.js';
import { acmeStatusFixture } from './acme-status-fixture.js';

const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
/** A token name a hostile operator (or a leaked token) could pick: printable ASCII is allowed. */
const HOSTILE_NAME = `<img src=x onerror="alert(1)">&\\'`;

type Reply = HttpAnswer;

function adminGet(
  port: number,
  path: string,
  options: { host?: string; token?: string; method?: string } = {},
): Promise<Reply> {
  return httpAsk(port, options.method ?? 'GET', path, {
    ...(options.host === undefined ? {} : { host: options.host }),
    ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
  });
}

// ---- a small Prometheus text parser, independent of the formatter ------------------------------

interface Family {
  help: string;
  type: string;
  /** `suffix`: '' for counters and gauges; '_bucket', '_sum' or '_count' in a histogram. */
  samples: { suffix: string; labels: Record<string, string>; value: number }[];
}

function parseLabels(text: string): Record<string, string> {
  const labels: Record<string, string> = {};
  let rest = text;
  while (rest.length > 0) {
    const match = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/.exec(rest);
    if (match === null) throw new Error(`bad labels: ${text}`);
    const name = match[1] ?? '';
    labels[name] = (match[2] ?? '').replace(/\\([\\"n])/g, (_all, char: string) =>
      char === 'n' ? '\n' : char,
    );
    rest = rest.slice(match[0].length);
  }
  return labels;
}

function parseExposition(text: string): Map<string, Family> {
  assert.ok(text.endsWith('\n'), 'the exposition ends with a line feed');
  const families = new Map<string, Family>();
  let current: string | null = null;
  for (const line of text.slice(0, -1).split('\n')) {
    const help = /^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*)$/.exec(line);
    if (help !== null) {
      const name = help[1] ?? '';
      assert.ok(!families.has(name), `${name} is described once`);
      families.set(name, { help: help[2] ?? '', type: '', samples: [] });
      current = name;
      continue;
    }
    const type =
      /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type !== null) {
      assert.equal(type[1], current, `TYPE follows HELP for ${type[1] ?? ''}`);
      const family = families.get(current ?? '');
      assert.ok(family?.type === '', 'one TYPE per family');
      family.type = type[2] ?? '';
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(sample !== null, `a sample line: ${line}`);
    const family = families.get(current ?? '');
    assert.ok(family !== undefined, `sample ${line} comes after a HELP line`);
    // A histogram's samples are NAME_bucket, NAME_sum and NAME_count; the rest are NAME.
    const suffixes = family.type === 'histogram' ? ['_bucket', '_sum', '_count'] : [''];
    const suffix = suffixes.find((each) => sample[1] === `${current ?? ''}${each}`);
    assert.ok(suffix !== undefined, `sample ${line} belongs to the family described above it`);
    const value = sample[3] === '+Inf' ? Infinity : Number(sample[3]);
    assert.ok(!Number.isNaN(value), `a numeric value: ${line}`);
    family.samples.push({ suffix, labels: parseLabels(sample[2] ?? ''), value });
  }
  for (const [name, family] of families) {
    assert.notEqual(family.type, '', `${name} has a TYPE`);
    if (family.type === 'counter') assert.ok(name.endsWith('_total'), `${name} ends in _total`);
    if (family.type === 'histogram') checkHistogram(name, family);
  }
  return families;
}

/** A histogram's series: cumulative buckets ending at le="+Inf", which equals _count. */
function checkHistogram(name: string, family: Family): void {
  const series = new Map<string, { les: number[]; counts: number[]; count?: number }>();
  for (const sample of family.samples) {
    const { le, ...rest } = sample.labels;
    const key = JSON.stringify(rest);
    const entry = series.get(key) ?? { les: [], counts: [] };
    series.set(key, entry);
    if (sample.suffix === '_bucket') {
      assert.ok(le !== undefined, `${name}_bucket has an le label`);
      entry.les.push(le === '+Inf' ? Infinity : Number(le));
      entry.counts.push(sample.value);
    } else if (sample.suffix === '_count') {
      entry.count = sample.value;
    }
  }
  for (const [key, entry] of series) {
    assert.equal(entry.les[entry.les.length - 1], Infinity, `${name}${key} ends at +Inf`);
    for (let i = 1; i < entry.les.length; i++) {
      assert.ok((entry.les[i] ?? 0) > (entry.les[i - 1] ?? 0), `${name}${key}: le ascends`);
      assert.ok((entry.counts[i] ?? 0) >= (entry.counts[i - 1] ?? 0), `${name}${key}: cumulative`);
    }
    assert.equal(
      entry.counts[entry.counts.length - 1],
      entry.count,
      `${name}${key}: +Inf = _count`,
    );
  }
}

/** The value of the sample of `name` whose labels include `labels` (0 when absent). */
function valueOf(
  families: Map<string, Family>,
  name: string,
  labels: Record<string, string> = {},
): number {
  const family = families.get(name);
  assert.ok(family !== undefined, `metric ${name} exists`);
  const sample = family.samples.find(
    (candidate) =>
      candidate.suffix === '' &&
      Object.entries(labels).every(([key, value]) => candidate.labels[key] === value),
  );
  return sample?.value ?? 0;
}

/** An element of fakeDocument(): what the dashboard's script touches, nothing more. */
interface FakeNode {
  tag: string;
  textContent: string;
  className: string;
  colSpan: number;
  style: Record<string, string>;
  value: string;
  children: FakeNode[];
  append(...nodes: FakeNode[]): void;
  replaceChildren(): void;
  addEventListener(): void;
}

/**
 * A minimal DOM to run the dashboard page's script in: elements are plain
 * objects found by id in `byId`, and every HTML sink (innerHTML, outerHTML,
 * document.write) throws, so a page that renders with them fails the test.
 */
function fakeDocument(): {
  document: {
    getElementById(id: string): FakeNode;
    createElement(tag: string): FakeNode;
    write(): never;
  };
  byId: Map<string, FakeNode>;
} {
  const makeNode = (tag: string): FakeNode => {
    const node: FakeNode = {
      tag,
      textContent: '',
      className: '',
      colSpan: 1,
      style: {},
      value: '',
      children: [],
      append(...nodes) {
        node.children.push(...nodes);
      },
      replaceChildren() {
        node.children = [];
      },
      addEventListener() {
        // The token form is not exercised by these tests.
      },
    };
    for (const sink of ['innerHTML', 'outerHTML']) {
      Object.defineProperty(node, sink, {
        set() {
          throw new Error(`${sink} used`);
        },
      });
    }
    return node;
  };
  const byId = new Map<string, FakeNode>();
  const document = {
    getElementById(id: string): FakeNode {
      let node = byId.get(id);
      if (node === undefined) {
        node = makeNode(id);
        byId.set(id, node);
      }
      return node;
    },
    createElement: makeNode,
    write(): never {
      throw new Error('document.write used');
    },
  };
  return { document, byId };
}

/** A relay started with `limits` and its admin listener (token ADMIN_TOKEN) on port 0. */
async function startRelayWithAdmin(
  limits: Partial<RelayLimits> = {},
): Promise<{ fixture: RelayFixture; admin: AdminServer; adminPort: number }> {
  const fixture = await RelayFixture.create();
  const relay = await fixture.startRelay(limits);
  const admin = await AdminServer.start({
    relay,
    listen: { host: '127.0.0.1', port: 0 },
    token: ADMIN_TOKEN,
  });
  return { fixture, admin, adminPort: admin.address().port };
}

/** GET /metrics from the admin listener on `adminPort`, parsed. */
async function scrapeMetrics(adminPort: number): Promise<Map<string, Family>> {
  const reply = await adminGet(adminPort, '/metrics', { token: ADMIN_TOKEN });
  assert.equal(reply.status, 200);
  assert.equal(reply.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  return parseExposition(reply.body);
}

describe('relay admin listener: /metrics, /api/status, dashboard', () => {
  let fixture: RelayFixture;
  let admin: AdminServer;
  let adminPort: number;

  const scrape = (): Promise<Map<string, Family>> => scrapeMetrics(adminPort);
  const status = async (): Promise<RelayStatus> => {
    const reply = await adminGet(adminPort, '/api/status', { token: ADMIN_TOKEN });
    assert.equal(reply.status, 200);
    assert.match(reply.headers['content-type'] ?? '', /^application\/json/);
    return JSON.parse(reply.body) as RelayStatus;
  };

  before(async () => {
    ({ fixture, admin, adminPort } = await startRelayWithAdmin());
  });

  after(async () => {
    await admin.close();
    await fixture.close();
  });

  it('counts agents, tunnels, requests and bytes as traffic flows, monotonically', async () => {
    const initial = await scrape();
    assert.equal(valueOf(initial, 'warren_relay_agents_connected'), 0);
    assert.equal(valueOf(initial, 'warren_relay_tunnels', { proto: 'http' }), 0);

    const app = await fixture.httpServer((_request, response) => {
      response.end('hello from the app');
    });
    const token = await fixture.token({ name: 'laptop', subdomains: ['app'], tcp: true });
    const echo = await fixture.echoServer();
    const agent = fixture.agent(token, [
      { proto: 'http', localPort: app.port, subdomain: 'app' },
      { proto: 'tcp', localPort: echo.port },
    ]);
    const tunnels = await agent.ready();
    const tcpPort = tunnels.find((tunnel) => tunnel.spec.proto === 'tcp')?.port;
    assert.ok(tcpPort !== undefined);

    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    for (let i = 0; i < 3; i++) {
      const [response] = await exchange(
        socket,
        `GET /${i} HTTP/1.1\r\nHost: app.${DOMAIN}\r\n\r\n`,
      );
      assert.equal(statusOf(response), 200);
    }
    socket.destroy();
    const tcp = fixture.track(await tcpConnect(tcpPort));
    tcp.write('ping through the tunnel');
    await readUntil(tcp, (bytes) => bytes.toString() === 'ping through the tunnel');
    tcp.destroy();

    // Byte counts are taken as data passes; give the TCP tunnel's last chunk a moment.
    let during = await scrape();
    for (let i = 0; i < 50; i++) {
      if (
        valueOf(during, 'warren_relay_tunnel_sent_bytes_total', { proto: 'tcp' }) >= 23 &&
        valueOf(during, 'warren_relay_tunnel_received_bytes_total', { proto: 'tcp' }) >= 23
      ) {
        break;
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
      during = await scrape();
    }
    assert.equal(valueOf(during, 'warren_relay_agents_connected'), 1);
    assert.equal(valueOf(during, 'warren_relay_agents_connected_total'), 1);
    assert.equal(valueOf(during, 'warren_relay_tunnels', { proto: 'http' }), 1);
    assert.equal(valueOf(during, 'warren_relay_tunnels', { proto: 'tcp' }), 1);
    const appLabels = { proto: 'http', tunnel: 'app' };
    assert.equal(valueOf(during, 'warren_relay_tunnel_requests_total', appLabels), 3);
    const tcpLabels = { proto: 'tcp', tunnel: String(tcpPort) };
    assert.equal(valueOf(during, 'warren_relay_tunnel_connections_total', tcpLabels), 1);
    assert.equal(valueOf(during, 'warren_relay_tunnel_received_bytes_total', tcpLabels), 23);
    assert.equal(valueOf(during, 'warren_relay_tunnel_sent_bytes_total', tcpLabels), 23);
    assert.ok(
      valueOf(during, 'warren_relay_tunnel_received_bytes_total', appLabels) >=
        3 * `GET /0 HTTP/1.1\r\nHost: app.${DOMAIN}\r\n\r\n`.length,
    );
    assert.ok(
      valueOf(during, 'warren_relay_tunnel_sent_bytes_total', appLabels) >=
        3 * 'hello from the app'.length,
    );
    assert.ok(
      valueOf(during, 'warren_relay_public_connections_total', { listener: 'http' }) >=
        valueOf(initial, 'warren_relay_public_connections_total', { listener: 'http' }) + 1,
    );
    assert.equal(valueOf(during, 'warren_relay_yamux_sessions'), 1);
    assert.ok(valueOf(during, 'warren_relay_yamux_streams') >= 1, 'the control stream at least');

    // /api/status lists the agent and its tunnels.
    const snapshot = await status();
    assert.equal(snapshot.domain, DOMAIN);
    assert.equal(snapshot.agents.length, 1);
    const agentInfo = snapshot.agents[0];
    assert.ok(agentInfo !== undefined);
    assert.equal(agentInfo.name, 'laptop');
    assert.equal(agentInfo.remoteAddress, '127.0.0.1');
    assert.ok(Math.abs(agentInfo.connectedAt - Date.now()) < 60_000);
    const httpTunnel = snapshot.tunnels.find((tunnel) => tunnel.proto === 'http');
    assert.equal(httpTunnel?.url, `https://app.${DOMAIN}:${fixture.ports.https}`);
    assert.equal(httpTunnel.requests, 3);
    assert.equal(httpTunnel.agentName, 'laptop');
    assert.equal(httpTunnel.agentId, agentInfo.id);
    const tcpTunnel = snapshot.tunnels.find((tunnel) => tunnel.proto === 'tcp');
    assert.equal(tcpTunnel?.name, String(tcpPort));
    assert.equal(tcpTunnel.connections, 1);

    // The agent leaves: gauges drop, counters keep what the closed tunnels carried.
    await agent.close();
    let gone = await scrape();
    for (let i = 0; i < 100 && valueOf(gone, 'warren_relay_agents_connected') !== 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      gone = await scrape();
    }
    assert.equal(valueOf(gone, 'warren_relay_agents_connected'), 0);
    assert.equal(valueOf(gone, 'warren_relay_tunnels', { proto: 'http' }), 0);
    assert.equal(valueOf(gone, 'warren_relay_tunnel_requests_total', appLabels), 3);
    assert.equal(valueOf(gone, 'warren_relay_tunnel_sent_bytes_total', tcpLabels), 23);
    assert.equal(valueOf(gone, 'warren_relay_agents_connected_total'), 1);
    assert.deepEqual((await status()).agents, []);
  });

  it('counts refused requests by reason and status, token rejections and handshake failures', async () => {
    const before = await scrape();
    const socket = fixture.track(await tcpConnect(fixture.ports.http));
    const [response] = await exchange(
      socket,
      `GET / HTTP/1.1\r\nHost: nothing-here.${DOMAIN}\r\n\r\n`,
    );
    assert.equal(statusOf(response), 404);
    socket.destroy();

    const badAgent = fixture.agent('not-a-token', [{ proto: 'http', localPort: 1 }]);
    const [fatal] = (await once(badAgent, 'fatal')) as [RelayError];
    assert.equal(fatal.code, 'ERR_RELAY_TOKEN_INVALID');

    const garbage = fixture.track(await tcpConnect(fixture.ports.agent));
    garbage.write('this is not TLS\r\n\r\n');
    await readUntil(garbage, () => false, 5_000).catch(() => undefined);

    let after = await scrape();
    for (
      let i = 0;
      i < 100 &&
      valueOf(after, 'warren_relay_handshake_failures_total', { listener: 'agent' }) ===
        valueOf(before, 'warren_relay_handshake_failures_total', { listener: 'agent' });
      i++
    ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      after = await scrape();
    }
    const refused = { listener: 'http', reason: 'ERR_RELAY_CONFIG', status: '404' };
    assert.equal(
      valueOf(after, 'warren_relay_refused_total', refused) -
        valueOf(before, 'warren_relay_refused_total', refused),
      1,
    );
    const byClass = { listener: 'http', status_class: '4xx' };
    assert.equal(
      valueOf(after, 'warren_relay_refused_by_status_class_total', byClass) -
        valueOf(before, 'warren_relay_refused_by_status_class_total', byClass),
      1,
    );
    const invalid = { reason: 'ERR_RELAY_TOKEN_INVALID' };
    assert.equal(
      valueOf(after, 'warren_relay_token_rejections_total', invalid) -
        valueOf(before, 'warren_relay_token_rejections_total', invalid),
      1,
    );
    assert.ok(
      valueOf(after, 'warren_relay_agents_rejected_total', invalid) >
        valueOf(before, 'warren_relay_agents_rejected_total', invalid),
    );
    assert.equal(
      valueOf(after, 'warren_relay_handshake_failures_total', { listener: 'agent' }) -
        valueOf(before, 'warren_relay_handshake_failures_total', { listener: 'agent' }),
      1,
    );
  });

  it('requires the bearer token for /metrics and /api/status', async () => {
    for (const path of ['/metrics', '/api/status']) {
      const missing = await adminGet(adminPort, path);
      assert.equal(missing.status, 401, path);
      assert.match(missing.headers['www-authenticate'] ?? '', /^Bearer/);
      assert.doesNotMatch(missing.body, /warren_relay|laptop/);
      assert.equal(
        (await adminGet(adminPort, path, { token: 'wrong-token-0123456789' })).status,
        401,
      );
      assert.equal((await adminGet(adminPort, path, { token: `${ADMIN_TOKEN}x` })).status, 401);
      assert.equal((await adminGet(adminPort, path, { token: ADMIN_TOKEN })).status, 200);
    }
    // The page is static: it carries no data and asks for the token itself.
    const page = await adminGet(adminPort, '/');
    assert.equal(page.status, 200);
    assert.equal(page.body, DASHBOARD_HTML);
  });

  it('refuses a Host that is not the admin listener (DNS rebinding)', async () => {
    for (const host of [
      `evil.example:${adminPort}`,
      `127.0.0.1:${adminPort + 1}`,
      '127.0.0.1',
      `127.0.0.2:${adminPort}`,
      'bad host',
    ]) {
      const reply = await adminGet(adminPort, '/api/status', { host, token: ADMIN_TOKEN });
      assert.equal(reply.status, 421, host);
      assert.doesNotMatch(reply.body, /laptop|tunnel/);
      assert.equal((await adminGet(adminPort, '/', { host })).status, 421, host);
    }
    const local = await adminGet(adminPort, '/api/status', {
      host: `localhost:${adminPort}`,
      token: ADMIN_TOKEN,
    });
    assert.equal(local.status, 200);
  });

  it('sets nosniff, CSP and no-store, answers only GET/HEAD, 404 elsewhere', async () => {
    const page = await adminGet(adminPort, '/');
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    assert.equal(page.headers['content-security-policy'], DASHBOARD_CSP);
    assert.match(page.headers['content-type'] ?? '', /^text\/html; charset=utf-8/);
    assert.equal(page.headers['cache-control'], 'no-store');
    assert.equal(page.headers['x-frame-options'], 'DENY');
    const metrics = await adminGet(adminPort, '/metrics', { token: ADMIN_TOKEN });
    assert.equal(metrics.headers['x-content-type-options'], 'nosniff');
    assert.match(String(metrics.headers['content-security-policy']), /default-src 'none'/);
    assert.equal((await adminGet(adminPort, '/', { method: 'POST' })).status, 405);
    const head = await adminGet(adminPort, '/metrics', { method: 'HEAD', token: ADMIN_TOKEN });
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    assert.equal((await adminGet(adminPort, '/nope')).status, 404);
  });

  it('without a token: loopback only, and says so by refusing other addresses', async () => {
    const relay = fixture.relay;
    assert.ok(relay !== null);
    await assert.rejects(
      AdminServer.start({ relay, listen: { host: '0.0.0.0', port: 0 } }),
      (error: unknown) => error instanceof RelayConfigError && error.message.includes('loopback'),
    );
    await assert.rejects(
      AdminServer.start({ relay, listen: { port: 0 } }),
      (error: unknown) => error instanceof RelayConfigError && error.message.includes('loopback'),
    );
    await assert.rejects(
      AdminServer.start({ relay, listen: { host: '127.0.0.1', port: 0 }, token: 'short' }),
      /at least 16/,
    );
    const open = await AdminServer.start({ relay, listen: { host: '127.0.0.1', port: 0 } });
    try {
      assert.equal(open.authenticated, false);
      const reply = await adminGet(open.address().port, '/metrics');
      assert.equal(reply.status, 200);
      assert.match(reply.body, /^# HELP warren_relay_agents_connected /m);
    } finally {
      await open.close();
    }
  });

  it("the page's script renders hostile agent names as text, never markup", async () => {
    const script = /<script>([\s\S]*)<\/script>/.exec(DASHBOARD_HTML)?.[1];
    assert.ok(script !== undefined);
    // The CSP allows exactly this inline script, by hash.
    const { createHash } = await import('node:crypto');
    const hash = createHash('sha256').update(script).digest('base64');
    assert.ok(DASHBOARD_CSP.includes(`'sha256-${hash}'`));
    const style = /<style>([\s\S]*)<\/style>/.exec(DASHBOARD_HTML)?.[1];
    assert.ok(style !== undefined);
    const styleHash = createHash('sha256').update(style).digest('base64');
    assert.ok(DASHBOARD_CSP.includes(`style-src 'sha256-${styleHash}'`));
    assert.doesNotMatch(
      DASHBOARD_HTML,
      /<(?:link|img|iframe)\b|src=|https?:\/\//,
      'no external assets',
    );
    assert.doesNotMatch(script, /innerHTML|outerHTML|insertAdjacentHTML|document\.write/);

    // A real agent whose token carries a hostile name, seen through /api/status.
    const app = await fixture.httpServer((_request, response) => {
      response.end('ok');
    });
    const token = await fixture.token({ name: HOSTILE_NAME, subdomains: ['hostile'] });
    const agent = fixture.agent(token, [
      { proto: 'http', localPort: app.port, subdomain: 'hostile' },
    ]);
    await agent.ready();
    const reply = await adminGet(adminPort, '/api/status', { token: ADMIN_TOKEN });
    assert.ok(
      (JSON.parse(reply.body) as RelayStatus).agents.some((each) => each.name === HOSTILE_NAME),
    );

    // Run the page's script against a minimal DOM in which any HTML sink throws.
    const { document, byId } = fakeDocument();
    const timers: unknown[] = [];
    const fetchStatus = async (): Promise<{ status: number; ok: boolean; json(): unknown }> => {
      const answer = await adminGet(adminPort, '/api/status', { token: ADMIN_TOKEN });
      return {
        status: answer.status,
        ok: answer.status === 200,
        json: () => JSON.parse(answer.body) as unknown,
      };
    };
    runInNewContext(script, {
      document,
      fetch: fetchStatus,
      sessionStorage: { getItem: () => null, setItem: () => undefined },
      setInterval: (callback: unknown) => timers.push(callback),
      Date,
      Map,
      Math,
      Number,
      String,
      Error,
    });
    await waitFor(
      () => (byId.get('agents')?.children.length ?? 0) > 0,
      'the agents table to render',
    );
    const row = (byId.get('agents')?.children ?? []).find(
      (candidate) => candidate.children[0]?.textContent === HOSTILE_NAME,
    );
    assert.ok(row !== undefined, 'the hostile name is rendered verbatim as text');
    assert.equal(row.tag, 'tr');
    assert.equal(row.children[0]?.tag, 'td');
    assert.equal(row.children[1]?.textContent, 'default', "the token's account");
    assert.equal(row.children[2]?.textContent, '127.0.0.1');
    const tunnelCells = (byId.get('tunnels')?.children ?? []).flatMap((row) => row.children);
    assert.ok(
      tunnelCells.some(
        (cell) => cell.textContent === `https://hostile.${DOMAIN}:${fixture.ports.https}`,
      ),
    );
    assert.ok(tunnelCells.some((cell) => cell.textContent === HOSTILE_NAME));
    assert.equal(timers.length, 1, 'the page refreshes on a timer');
    await agent.close();
  });
});

describe('relay admin listener: HTTP responses by source and status class', () => {
  let fixture: RelayFixture;
  let admin: AdminServer;
  let adminPort: number;

  const scrape = (): Promise<Map<string, Family>> => scrapeMetrics(adminPort);

  before(async () => {
    // A burst of 3 requests per tunnel: the 4th of a quick burst gets the relay's 429.
    ({ fixture, admin, adminPort } = await startRelayWithAdmin({
      requestsPerSecond: 1,
      requestBurst: 3,
    }));
  });

  after(async () => {
    await admin.close();
    await fixture.close();
  });

  it("counts exactly the app's 200, 404, 503 and the relay's own 404 and 429", async () => {
    const app = await fixture.httpServer((request, response) => {
      response.statusCode = request.url === '/missing' ? 404 : request.url === '/down' ? 503 : 200;
      response.end(`answered ${request.url ?? ''}`);
    });
    const token = await fixture.token({ name: 'laptop', subdomains: ['app'] });
    const agent = fixture.agent(token, [{ proto: 'http', localPort: app.port, subdomain: 'app' }]);
    await agent.ready();

    // Four requests in one write: the app answers three; the fourth is over the
    // tunnel's burst, and the relay answers it 429 after the others, then closes.
    const pipelined = fixture.track(await tcpConnect(fixture.ports.http));
    const responses = await exchange(
      pipelined,
      ['/ok', '/missing', '/down', '/ok']
        .map((path) => `GET ${path} HTTP/1.1\r\nHost: app.${DOMAIN}\r\n\r\n`)
        .join(''),
      4,
    );
    assert.deepEqual(responses.map(statusOf), [200, 404, 503, 429]);
    pipelined.destroy();
    // A host no tunnel serves: the relay's own 404.
    const stranger = fixture.track(await tcpConnect(fixture.ports.http));
    const [unknown] = await exchange(stranger, `GET / HTTP/1.1\r\nHost: nobody.${DOMAIN}\r\n\r\n`);
    assert.equal(statusOf(unknown), 404);
    stranger.destroy();

    const expected = [
      { tunnel: 'app', source: 'app', status_class: '1xx', value: 0 },
      { tunnel: 'app', source: 'app', status_class: '2xx', value: 1 },
      { tunnel: 'app', source: 'app', status_class: '3xx', value: 0 },
      { tunnel: 'app', source: 'app', status_class: '4xx', value: 1 },
      { tunnel: 'app', source: 'app', status_class: '5xx', value: 1 },
      { tunnel: 'app', source: 'relay', status_class: '4xx', status: '429', value: 1 },
      { source: 'relay', status_class: '4xx', status: '404', value: 1 },
    ];
    const responseSamples = (families: Map<string, Family>): Record<string, unknown>[] =>
      (families.get('warren_relay_http_responses_total')?.samples ?? []).map((sample) => ({
        ...sample.labels,
        value: sample.value,
      }));
    // The relay counts the 429 as it writes it: the client may read it a moment before.
    let metrics = await scrape();
    for (let i = 0; i < 100 && responseSamples(metrics).length < expected.length; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      metrics = await scrape();
    }
    assert.equal(metrics.get('warren_relay_http_responses_total')?.type, 'counter');
    assert.deepEqual(responseSamples(metrics), expected);
    const durations = metrics.get('warren_relay_http_request_duration_seconds');
    assert.equal(durations?.type, 'histogram');
    const count = durations.samples.find(
      (sample) => sample.suffix === '_count' && sample.labels.tunnel === 'app',
    );
    assert.equal(count?.value, 3, 'one duration per request the app answered');
    const sum = durations.samples.find((sample) => sample.suffix === '_sum');
    assert.ok(sum !== undefined && sum.value > 0 && sum.value < 30);

    // /api/status: the same counts for the live tunnel, and the unrouted answers.
    const reply = await adminGet(adminPort, '/api/status', { token: ADMIN_TOKEN });
    const snapshot = JSON.parse(reply.body) as RelayStatus;
    const tunnel = snapshot.tunnels.find((each) => each.name === 'app');
    assert.deepEqual(tunnel?.responses?.app, { '1xx': 0, '2xx': 1, '3xx': 0, '4xx': 1, '5xx': 1 });
    assert.deepEqual(tunnel.responses.relay, { '429': 1 });
    assert.equal(tunnel.responses.duration.count, 3);
    assert.deepEqual(snapshot.unroutedResponses, { '404': 1 });

    // The dashboard page shows them (rendered with its own script, as text).
    const cells = await renderTunnelCells(snapshot);
    assert.ok(cells.includes('2xx 1, 4xx 1, 5xx 1'), JSON.stringify(cells));
    assert.ok(cells.includes('429 \u00d71'), JSON.stringify(cells));
    assert.ok(
      cells.some((cell) => cell.endsWith(' ms')),
      'the mean request time',
    );
    assert.match(cells[cells.length - 1] ?? '', /no tunnel.*404 \u00d71/);

    // The agent leaves: the counts stay (the series are monotonic).
    await agent.close();
    let gone = await scrape();
    for (
      let i = 0;
      i < 100 && valueOf(gone, 'warren_relay_tunnels', { proto: 'http' }) !== 0;
      i++
    ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      gone = await scrape();
    }
    assert.equal(valueOf(gone, 'warren_relay_tunnels', { proto: 'http' }), 0);
    assert.deepEqual(responseSamples(gone), expected);
  });
});

/**
 * Runs the dashboard page's script against a tiny fake DOM whose fetch
 * answers `status`, until the table `tableId` has rows; returns the elements by id.
 */
async function renderPage(status: RelayStatus, tableId: string): Promise<Map<string, FakeNode>> {
  const script = /<script>([\s\S]*)<\/script>/.exec(DASHBOARD_HTML)?.[1];
  assert.ok(script !== undefined);
  const { document, byId } = fakeDocument();
  runInNewContext(script, {
    document,
    fetch: () =>
      Promise.resolve({
        status: 200,
        ok: true,
        json: () => JSON.parse(JSON.stringify(status)) as unknown,
      }),
    sessionStorage: { getItem: () => null, setItem: () => undefined },
    setInterval: () => undefined,
  });
  await waitFor(() => (byId.get(tableId)?.children.length ?? 0) > 0, `${tableId} to render`);
  return byId;
}

/** The tunnel table's cell texts, then the unrouted-answers line, as the page renders `status`. */
async function renderTunnelCells(status: RelayStatus): Promise<string[]> {
  const byId = await renderPage(status, 'tunnels');
  const cells = (byId.get('tunnels')?.children ?? []).flatMap((row) =>
    row.children.map((cell) => cell.textContent),
  );
  return [...cells, byId.get('unrouted')?.textContent ?? ''];
}

describe('dashboard page: ACME certificates', () => {
  const base: RelayStatus = {
    domain: DOMAIN,
    now: Date.UTC(2026, 10, 22),
    agents: [],
    tunnels: [],
    unroutedResponses: {},
  };

  it('lists each name with its expiry, renewal and state; the error shown as text', async () => {
    const byId = await renderPage(
      {
        ...base,
        certificates: acmeStatusFixture(HOSTILE_NAME),
      },
      'certificates',
    );
    assert.equal(byId.get('certificates-section')?.style.display, 'block');
    const rows = (byId.get('certificates')?.children ?? []).map((row) =>
      row.children.map((cell) => cell.textContent),
    );
    assert.deepEqual(rows, [
      ['app.tunnel.test', '2027-01-01T00:00:00.000Z', '2026-12-01T00:00:00.000Z', 'ok'],
      ['new.tunnel.test', '', '', `2 failed: ${HOSTILE_NAME} (retry 2026-11-23T00:00:00.000Z)`],
      ['next.tunnel.test', '', '', 'ordering'],
    ]);
  });

  it('hides the section when the relay has no --acme', async () => {
    const byId = await renderPage(
      {
        ...base,
        agents: [
          {
            id: 'a',
            name: 'n',
            account: 'default',
            remoteAddress: '127.0.0.1',
            connectedAt: 0,
            tunnels: [],
          },
        ],
      },
      'agents',
    );
    assert.equal(byId.get('certificates-section')?.style.display, 'none');
  });
});
