/**
 * `warren relay --acme` end to end, against pebble on loopback: the relay (as a
 * command, in a child process) gets a certificate for its domain from pebble by
 * HTTP-01 on its own public HTTP listener, an agent that trusts only pebble's
 * root connects and exposes a local HTTP server, the tunnel's host gets its
 * own certificate before any public request, and an HTTPS client trusting only
 * pebble's root fetches the page by SNI NAME.DOMAIN. Agents and HTTPS share one
 * TLS port (ALPN) as in the default :443 deployment. After a restart the
 * certificates come from disk, not from a new order.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { Agent } from '../../src/relay/agent.js';
import { RelayConfigError } from '../../src/relay/errors.js';
import { Relay } from '../../src/relay/relay.js';
import { LoopbackDns, Pebble, freePort } from './acme-pebble.js';
import { CLI_RUNNER, startCli, terminate as stopRelay, untilPrinted } from './cli-process.js';
import type { RunningCli } from './cli-process.js';
import { httpAsk, portOf } from './relay-fixture.js';

const run = promisify(execFile);
const DOMAIN = 'acme-e2e.test';
const TUNNEL_HOST = `app.${DOMAIN}`;

/** `warren relay ARGS…` */
function startRelay(args: string[]): RunningCli {
  return startCli(['relay', ...args]);
}

/** Waits for `pattern` on `stream`; ACME orders against pebble can take a while. */
function until(
  running: RunningCli,
  pattern: RegExp,
  stream: 'stdout' | 'stderr',
): Promise<RegExpExecArray> {
  return untilPrinted(running, pattern, stream, 30_000);
}

/** A TLS handshake to 127.0.0.1:port as `servername`, trusting only `ca`. */
async function handshake(port: number, servername: string, ca: string): Promise<TLSSocket> {
  const socket = tlsConnect({
    host: '127.0.0.1',
    port,
    servername,
    ca,
    ALPNProtocols: ['http/1.1'],
  });
  await once(socket, 'secureConnect');
  return socket;
}

/**
 * Ends a TLS connection and waits for it to close. (destroy() right after the
 * handshake can drop the client's Finished message, leaving the relay's side
 * half-open until its handshake timeout.)
 */
async function closeTls(socket: TLSSocket): Promise<void> {
  const closed = once(socket, 'close');
  socket.end();
  socket.resume();
  await closed;
}

async function httpsGet(port: number, host: string, ca: string, path = '/'): Promise<string> {
  const socket = await handshake(port, host, ca);
  socket.end(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(socket, 'close');
  return Buffer.concat(chunks).toString();
}

describe('warren relay --acme against pebble', () => {
  let dir: string;
  let dns: LoopbackDns;
  let pebble: Pebble;
  let root: string;
  let local: Server;
  let httpPort: number;
  let tlsPort: number;
  let relayArgs: string[];
  const relays: RunningCli[] = [];
  let agent: Agent | null = null;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-acme-e2e-'));
    dns = await LoopbackDns.start((name) => name === DOMAIN || name.endsWith(`.${DOMAIN}`));
    httpPort = await freePort();
    tlsPort = await freePort();
    pebble = await Pebble.start({ dir: join(dir, 'pebble'), httpPort, dnsPort: dns.port });
    root = await pebble.issuerRoot();
    local = createServer((request, response) => {
      response.end(`hello from the service: ${request.url ?? ''}`);
    });
    local.listen(0, '127.0.0.1');
    await once(local, 'listening');
    const dataDir = join(dir, 'relay');
    relayArgs = [
      '--domain',
      DOMAIN,
      '--data-dir',
      dataDir,
      '--agent-listen',
      `127.0.0.1:${tlsPort}`,
      '--https-listen',
      `127.0.0.1:${tlsPort}`,
      '--http-listen',
      `127.0.0.1:${httpPort}`,
      '--admin-listen',
      '127.0.0.1:0',
      '--acme',
      '--acme-email',
      'ops@example.com',
      '--acme-directory',
      pebble.directoryUrl,
      '--acme-ca',
      pebble.tlsCaPath,
      '--verbose',
    ];
  });

  after(async () => {
    await agent?.close();
    for (const relay of relays) await stopRelay(relay);
    await pebble.stop();
    local.close();
    await dns.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves a tunnel over HTTPS with certificates issued by pebble', async () => {
    const created = await run(process.execPath, [
      CLI_RUNNER,
      'relay',
      'token',
      'create',
      '--data-dir',
      join(dir, 'relay'),
      '--name',
      'e2e',
      '--subdomain',
      'app',
    ]);
    const token = created.stdout.trim();

    const relay = startRelay(relayArgs);
    relays.push(relay);
    const ports = JSON.parse((await until(relay, /^\{"agent":.*$/m, 'stdout'))[0]) as {
      admin: number;
    };
    await until(relay, new RegExp(`certificate for ${DOMAIN} issued`), 'stderr');
    assert.ok(dns.queries.includes(DOMAIN), 'pebble validated the domain through our DNS');

    // The agent trusts only pebble's root and checks the relay's name.
    agent = new Agent({
      relayHost: '127.0.0.1',
      relayPort: tlsPort,
      servername: DOMAIN,
      ca: root,
      token,
      tunnels: [{ proto: 'http', localPort: portOf(local), subdomain: 'app' }],
      keepaliveIntervalMs: 0,
      reconnect: { initialDelayMs: 50, maxDelayMs: 400 },
    });
    agent.start();
    await once(agent, 'tunnel');

    // The tunnel's certificate is ordered when the tunnel opens, before any public request.
    await until(
      relay,
      new RegExp(`certificate for ${TUNNEL_HOST.replace(/\./g, '\\.')} issued`),
      'stderr',
    );

    const socket = await handshake(tlsPort, TUNNEL_HOST, root);
    assert.ok(socket.authorized, 'the chain verifies against pebble’s root alone');
    const peer = socket.getPeerX509Certificate();
    assert.ok(peer !== undefined);
    assert.equal(peer.checkHost(TUNNEL_HOST), TUNNEL_HOST);
    assert.equal(peer.checkHost(`other.${DOMAIN}`), undefined, 'not a wildcard');
    assert.notEqual(
      peer.issuer,
      new X509Certificate(root).subject,
      'issued by pebble’s intermediate',
    );
    await closeTls(socket);

    const page = await httpsGet(tlsPort, TUNNEL_HOST, root, '/index.html');
    assert.match(page, /^HTTP\/1\.1 200 /);
    assert.match(page, /hello from the service: \/index\.html$/);

    // Plain HTTP still reaches the tunnel through the challenge check, and so does a
    // challenge path with a token the relay is not waiting for (the service may use ACME itself).
    const plain = await httpAsk(httpPort, 'GET', '/', { host: TUNNEL_HOST });
    assert.equal(plain.status, 200);
    assert.equal(plain.body, 'hello from the service: /');
    const foreign = await httpAsk(httpPort, 'GET', '/.well-known/acme-challenge/not-ours', {
      host: TUNNEL_HOST,
    });
    assert.equal(foreign.body, 'hello from the service: /.well-known/acme-challenge/not-ours');

    // A name the relay does not serve gets no certificate, and pebble is never asked.
    await assert.rejects(handshake(tlsPort, `stranger.${DOMAIN}`, root));
    await until(relay, new RegExp(`no certificate ordered for stranger\\.${DOMAIN}`), 'stderr');
    assert.ok(!dns.queries.includes(`stranger.${DOMAIN}`));

    // The admin listener shows both certificates: /api/status and /metrics.
    const adminHost = { host: `127.0.0.1:${ports.admin}` };
    const status = JSON.parse(
      (await httpAsk(ports.admin, 'GET', '/api/status', adminHost)).body,
    ) as {
      certificates?: { host: string; notAfter: number | null; failures: number }[];
    };
    const held = (status.certificates ?? []).filter((entry) => entry.notAfter !== null);
    assert.deepEqual(held.map((entry) => entry.host).sort(), [DOMAIN, TUNNEL_HOST].sort());
    for (const entry of held) {
      assert.ok((entry.notAfter ?? 0) > Date.now(), `${entry.host} is valid`);
      assert.equal(entry.failures, 0);
    }
    const metrics = (await httpAsk(ports.admin, 'GET', '/metrics', adminHost)).body;
    assert.match(
      metrics,
      new RegExp(
        `^warren_relay_certificate_expiry_timestamp_seconds\\{host="${TUNNEL_HOST.replace(/\./g, '\\.')}"\\} \\d+`,
        'm',
      ),
    );
  });

  it('reads its certificates back from disk after a restart instead of ordering again', async () => {
    const first = relays[0];
    assert.ok(first !== undefined);
    const domainSocket = await handshake(tlsPort, DOMAIN, root);
    const serialBefore = domainSocket.getPeerX509Certificate()?.serialNumber;
    assert.ok(serialBefore !== undefined);
    await closeTls(domainSocket);
    await agent?.close();
    agent = null;
    assert.equal(await stopRelay(first), 0, first.stderr);

    const relay = startRelay(relayArgs);
    relays.push(relay);
    await until(relay, /^\{"agent":/m, 'stdout');
    await until(relay, new RegExp(`certificate for ${DOMAIN} read from`), 'stderr');
    await until(
      relay,
      new RegExp(`certificate for ${TUNNEL_HOST.replace(/\./g, '\\.')} read from`),
      'stderr',
    );
    const socket = await handshake(tlsPort, DOMAIN, root);
    assert.equal(socket.getPeerX509Certificate()?.serialNumber, serialBefore);
    await closeTls(socket);
    assert.doesNotMatch(relay.stderr, /issued/);
    assert.equal(await stopRelay(relay), 0, relay.stderr);
  });
});

describe('Relay.start with options.acme', () => {
  it('refuses acme with tls, acme without HTTP, and a domain no CA issues for', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'warren-acme-options-'));
    try {
      const base = {
        domain: DOMAIN,
        dataDir,
        agentListen: { host: '127.0.0.1', port: 0 },
        httpListen: { host: '127.0.0.1', port: 0 },
        acme: { directoryUrl: 'https://127.0.0.1:1/dir' },
      };
      const cases: [Parameters<typeof Relay.start>[0], RegExp][] = [
        [{ ...base, tls: { cert: 'x', key: 'y' } }, /not both/],
        [
          { domain: DOMAIN, dataDir, agentListen: base.agentListen, acme: base.acme },
          /needs options\.httpListen/,
        ],
        [{ ...base, domain: 'tunnel' }, /cannot issue for 'tunnel'/],
        [{ ...base, acme: { directoryUrl: 'http://127.0.0.1:1/dir' } }, /https:\/\/ URL/],
      ];
      for (const [options, message] of cases) {
        await assert.rejects(Relay.start(options), (error: unknown) => {
          assert.ok(error instanceof RelayConfigError, String(error));
          assert.match(error.message, message);
          return true;
        });
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
