/**
 * AcmeCertificateManager against a real ACME server: pebble on loopback
 * (./acme-pebble.ts), with real HTTP-01 validation answered by a small HTTP
 * server that asks the manager for key authorizations. Covers issuance and the
 * chain to pebble's root, reuse from disk after a restart, renewal through an
 * injected clock, refusal of names the relay does not serve, de-duplication of
 * concurrent requests, failure back-off, SNI, and key file modes.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { chmod, mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import type { Server as HttpServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect as tlsConnect, createServer as createTlsServer } from 'node:tls';
import type { TLSSocket } from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AcmeBackoffError,
  AcmeCertificateManager,
  AcmeHostNotServedError,
  AcmeOrderError,
  AcmeStorageError,
} from '../../src/relay/acme/index.js';
import type { AcmeManagerOptions } from '../../src/relay/acme/index.js';
import type {
  AcmeCertificateEvent,
  AcmeOrderFailedEvent,
  AcmeOrderStartedEvent,
} from '../../src/relay/diagnostics.js';
import { relayDiagnostics } from '../../src/relay/diagnostics.js';
import fc from 'fast-check';
import { LoopbackDns, Pebble, dnsAnswer, parseDnsQuestion } from './acme-pebble.js';
import { portOf } from './relay-fixture.js';

const ZONE = 'acme.test';
const CHALLENGE_PREFIX = '/.well-known/acme-challenge/';

let dir: string;
let dns: LoopbackDns;
let pebble: Pebble;
let challengeServer: HttpServer;
let root: X509Certificate;
/** Managers the challenge server asks for key authorizations. */
const managers = new Set<AcmeCertificateManager>();
/** Names whose challenges the server refuses to answer (validation then fails). */
const brokenHosts = new Set<string>();
/** Tokens the challenge server answered, with their host. */
const answered: { host: string; token: string }[] = [];

const started: AcmeOrderStartedEvent[] = [];
const issued: AcmeCertificateEvent[] = [];
const loaded: AcmeCertificateEvent[] = [];
const failed: AcmeOrderFailedEvent[] = [];
const subscriptions: [string, (message: unknown) => void][] = [
  [
    relayDiagnostics.acmeOrderStarted.name as string,
    (m) => started.push(m as AcmeOrderStartedEvent),
  ],
  [
    relayDiagnostics.acmeCertificateIssued.name as string,
    (m) => issued.push(m as AcmeCertificateEvent),
  ],
  [
    relayDiagnostics.acmeCertificateLoaded.name as string,
    (m) => loaded.push(m as AcmeCertificateEvent),
  ],
  [relayDiagnostics.acmeOrderFailed.name as string, (m) => failed.push(m as AcmeOrderFailedEvent)],
];

function ordersFor(host: string): AcmeOrderStartedEvent[] {
  return started.filter((event) => event.host === host);
}

async function openManager(
  dataDir: string,
  extra: Partial<AcmeManagerOptions> = {},
): Promise<AcmeCertificateManager> {
  const manager = await AcmeCertificateManager.open({
    dataDir,
    directoryUrl: pebble.directoryUrl,
    directoryCa: pebble.tlsCa,
    email: 'ops@example.com',
    isServedHost: (host) => host.endsWith(`.${ZONE}`) && !host.startsWith('stranger.'),
    pollIntervalMs: 100,
    ...extra,
  });
  managers.add(manager);
  return manager;
}

async function closeManager(manager: AcmeCertificateManager): Promise<void> {
  await manager.close();
  managers.delete(manager);
}

/** Checks leaf ← intermediate(s) ← pebble's root, signature by signature. */
function assertChainToRoot(chainPem: string, host: string): X509Certificate {
  const chain = chainPem
    .split(/(?=-----BEGIN CERTIFICATE-----)/)
    .filter((pem) => pem.includes('BEGIN CERTIFICATE'))
    .map((pem) => new X509Certificate(pem));
  const leaf = chain[0];
  assert.ok(leaf !== undefined && chain.length >= 2, 'a leaf and an intermediate');
  assert.equal(leaf.checkHost(host), host);
  for (let i = 0; i + 1 < chain.length; i++) {
    const [child, parent] = [chain[i], chain[i + 1]];
    assert.ok(child !== undefined && parent !== undefined);
    assert.ok(child.checkIssued(parent) && child.verify(parent.publicKey), `link ${i} verifies`);
  }
  const top = chain[chain.length - 1];
  assert.ok(top !== undefined && top.checkIssued(root) && top.verify(root.publicKey));
  return leaf;
}

before(async () => {
  for (const [name, handler] of subscriptions) subscribe(name, handler);
  dir = await mkdtemp(join(tmpdir(), 'warren-acme-test-'));
  dns = await LoopbackDns.start((name) => name.endsWith(`.${ZONE}`));
  challengeServer = createHttpServer((request, response) => {
    const host = (request.headers.host ?? '').replace(/:\d+$/, '');
    const path = request.url ?? '';
    const token = path.startsWith(CHALLENGE_PREFIX) ? path.slice(CHALLENGE_PREFIX.length) : '';
    let keyAuthorization: string | null = null;
    if (!brokenHosts.has(host)) {
      for (const manager of managers) {
        keyAuthorization ??= manager.challengeResponse(token, host);
      }
    }
    if (keyAuthorization === null) {
      response.writeHead(404).end();
      return;
    }
    answered.push({ host, token });
    response.writeHead(200, { 'content-type': 'application/octet-stream' }).end(keyAuthorization);
  });
  challengeServer.listen(0, '127.0.0.1');
  await once(challengeServer, 'listening');
  pebble = await Pebble.start({ dir, httpPort: portOf(challengeServer), dnsPort: dns.port });
  root = new X509Certificate(await pebble.issuerRoot());
});

after(async () => {
  for (const manager of managers) await manager.close();
  await pebble.stop();
  challengeServer.close();
  await dns.close();
  await rm(dir, { recursive: true, force: true });
  for (const [name, handler] of subscriptions) unsubscribe(name, handler);
});

describe('AcmeCertificateManager against pebble', () => {
  it('obtains a certificate by HTTP-01 that chains to pebble’s root, stored with 0600 keys', async () => {
    const dataDir = join(dir, 'obtain');
    const manager = await openManager(dataDir);
    const host = `app.${ZONE}`;
    const certificate = await manager.obtain(host);
    const leaf = assertChainToRoot(certificate.certificatePem, host);
    assert.equal(certificate.serialNumber, leaf.serialNumber);
    assert.equal(certificate.notAfter, Date.parse(leaf.validTo));
    // Renewal lands in the last third of the lifetime, at most 5 % earlier.
    const lifetime = certificate.notAfter - certificate.notBefore;
    assert.ok(certificate.renewAt <= certificate.notAfter - lifetime / 3);
    assert.ok(certificate.renewAt >= certificate.notAfter - lifetime * (1 / 3 + 0.05) - 1);

    // The challenge was answered for this host, and its token is forgotten afterwards.
    const proof = answered.find((entry) => entry.host === host);
    assert.ok(proof !== undefined, 'pebble fetched the challenge from our server');
    assert.equal(manager.challengeResponse(proof.token), null);
    assert.ok(dns.queries.includes(host), 'pebble resolved the name through the loopback DNS');

    const stored = join(manager.storageDir, 'certs');
    assert.equal((await stat(join(stored, `${host}.key`))).mode & 0o777, 0o600);
    assert.equal((await stat(join(manager.storageDir, 'account.key'))).mode & 0o777, 0o600);
    assert.equal(await readFile(join(stored, `${host}.crt`), 'utf8'), certificate.certificatePem);
    assert.equal(manager.certificateFor(host.toUpperCase()), certificate);
    assert.equal(ordersFor(host).length, 1);
    assert.equal(ordersFor(host)[0]?.reason, 'new');
    await closeManager(manager);
  });

  it('reuses the account key and certificates from disk after a restart', async () => {
    const dataDir = join(dir, 'restart');
    const host = `again.${ZONE}`;
    const first = await openManager(dataDir);
    const original = await first.obtain(host);
    const accountKey = await readFile(join(first.storageDir, 'account.key'), 'utf8');
    await closeManager(first);

    const loadedBefore = loaded.length;
    const second = await openManager(dataDir);
    assert.equal(second.storageDir, first.storageDir);
    assert.equal(await readFile(join(second.storageDir, 'account.key'), 'utf8'), accountKey);
    const inHand = second.certificateFor(host);
    assert.ok(inHand !== null, 'loaded without asking the CA');
    assert.equal(inHand.serialNumber, original.serialNumber);
    assert.ok(loaded.slice(loadedBefore).some((event) => event.host === host));
    const obtained = await second.obtain(host);
    assert.equal(obtained.serialNumber, original.serialNumber);
    assert.equal(ordersFor(host).length, 1, 'no second order');

    // The same account key orders again under the restarted manager (the account is found again).
    const other = await second.obtain(`other.${ZONE}`);
    assertChainToRoot(other.certificatePem, `other.${ZONE}`);
    await closeManager(second);
  });

  it('renews when the clock reaches the renewal time, and re-orders an expired certificate', async () => {
    const dataDir = join(dir, 'renew');
    const host = `renew.${ZONE}`;
    let clock = Date.now();
    const manager = await openManager(dataDir, { now: () => clock });
    const original = await manager.obtain(host);

    await manager.renewDue();
    assert.equal(ordersFor(host).length, 1, 'not due yet: nothing ordered');

    clock = original.renewAt + 1;
    await manager.renewDue();
    assert.equal(ordersFor(host).length, 2);
    assert.equal(ordersFor(host)[1]?.reason, 'renewal');
    const renewed = manager.certificateFor(host);
    assert.ok(renewed !== null);
    assert.notEqual(renewed.serialNumber, original.serialNumber);
    assertChainToRoot(renewed.certificatePem, host);
    const onDisk = await readFile(join(manager.storageDir, 'certs', `${host}.crt`), 'utf8');
    assert.equal(onDisk, renewed.certificatePem);

    // Past notAfter the certificate is no longer served; obtain() orders a new one.
    clock = renewed.notAfter + 1;
    assert.equal(manager.certificateFor(host), null);
    const replaced = await manager.obtain(host);
    assert.equal(ordersFor(host)[2]?.reason, 'expired');
    assert.notEqual(replaced.serialNumber, renewed.serialNumber);
    await closeManager(manager);
  });

  it('does not renew a name the relay no longer serves', async () => {
    const dataDir = join(dir, 'unserved-renewal');
    const host = `gone.${ZONE}`;
    let clock = Date.now();
    let served = true;
    const manager = await openManager(dataDir, {
      now: () => clock,
      isServedHost: (name) => served && name === host,
    });
    const original = await manager.obtain(host);
    served = false;
    clock = original.renewAt + 1;
    await manager.renewDue();
    assert.equal(ordersFor(host).length, 1);
    assert.equal(manager.certificateFor(host)?.serialNumber, original.serialNumber);
    await closeManager(manager);
  });

  it('refuses names it does not serve, wildcards and addresses without asking the CA', async () => {
    const manager = await openManager(join(dir, 'refuse'));
    const queriesBefore = dns.queries.length;
    const startedBefore = started.length;
    for (const host of [`stranger.${ZONE}`, 'example.org', `*.${ZONE}`, '127.0.0.1', 'localhost']) {
      await assert.rejects(manager.obtain(host), (error: unknown) => {
        assert.ok(error instanceof AcmeHostNotServedError, String(error));
        assert.equal(error.code, 'ERR_RELAY_ACME_NOT_SERVED');
        return true;
      });
    }
    assert.equal(started.length, startedBefore, 'no order was placed');
    assert.equal(dns.queries.length, queriesBefore, 'pebble was not asked to validate anything');
    await closeManager(manager);
  });

  it('shares one order among concurrent requests for the same name', async () => {
    const manager = await openManager(join(dir, 'dedup'));
    const host = `dup.${ZONE}`;
    const results = await Promise.all(Array.from({ length: 6 }, () => manager.obtain(host)));
    assert.equal(new Set(results.map((result) => result.serialNumber)).size, 1);
    assert.equal(ordersFor(host).length, 1);
    await closeManager(manager);
  });

  it('backs off after a failed validation instead of asking the CA again at once', async () => {
    const manager = await openManager(join(dir, 'backoff'), {
      retry: { retryMinMs: 600, retryMaxMs: 10_000 },
    });
    const host = `broken.${ZONE}`;
    brokenHosts.add(host);
    await assert.rejects(manager.obtain(host), (error: unknown) => {
      assert.ok(error instanceof AcmeOrderError, String(error));
      assert.equal(error.code, 'ERR_RELAY_ACME_ORDER');
      return true;
    });
    assert.equal(ordersFor(host).length, 1);
    const firstFailure = failed.find((event) => event.host === host);
    assert.equal(firstFailure?.failures, 1);

    // Within the back-off: refused at once, no new order.
    await assert.rejects(manager.obtain(host), (error: unknown) => {
      assert.ok(error instanceof AcmeBackoffError, String(error));
      assert.equal(error.code, 'ERR_RELAY_ACME_BACKOFF');
      assert.equal(error.retryAt, firstFailure.retryAt);
      assert.ok(error.cause instanceof AcmeOrderError);
      return true;
    });
    assert.equal(ordersFor(host).length, 1);

    // After it: one more order, which fails again and doubles the wait.
    await sleep(Math.max(0, firstFailure.retryAt - Date.now()) + 20);
    await assert.rejects(manager.obtain(host), AcmeOrderError);
    assert.equal(ordersFor(host).length, 2);
    const status = manager.status().find((entry) => entry.host === host);
    assert.equal(status?.failures, 2);
    assert.ok(status.retryAt !== null && status.retryAt - Date.now() > 600);

    // Once the name validates again, it gets its certificate and the failures are forgotten.
    brokenHosts.delete(host);
    await sleep(Math.max(0, status.retryAt - Date.now()) + 20);
    const certificate = await manager.obtain(host);
    assertChainToRoot(certificate.certificatePem, host);
    assert.equal(manager.status().find((entry) => entry.host === host)?.failures, 0);
    await closeManager(manager);
  });

  it('serves certificates through SNICallback, ordered on demand', async () => {
    const manager = await openManager(join(dir, 'sni'));
    const server = createTlsServer({ SNICallback: manager.SNICallback }, (socket) => {
      socket.end('hello');
    });
    server.on('tlsClientError', () => undefined);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const handshake = async (servername: string): Promise<X509Certificate> => {
      const socket: TLSSocket = tlsConnect({
        host: '127.0.0.1',
        port: portOf(server),
        servername,
        ca: root.toString(),
      });
      try {
        await once(socket, 'secureConnect');
        const peer = socket.getPeerX509Certificate();
        assert.ok(peer !== undefined);
        return peer;
      } finally {
        socket.destroy();
      }
    };
    const peer = await handshake(`sni.${ZONE}`);
    assert.equal(peer.checkHost(`sni.${ZONE}`), `sni.${ZONE}`);
    // A name the relay does not serve: the handshake fails, nothing is ordered.
    await assert.rejects(handshake(`stranger.${ZONE}`));
    assert.equal(ordersFor(`stranger.${ZONE}`).length, 0);
    server.close();
    await closeManager(manager);
  });

  it('refuses an account key others can read', async () => {
    const dataDir = join(dir, 'modes');
    const manager = await openManager(dataDir);
    await closeManager(manager);
    await chmod(join(manager.storageDir, 'account.key'), 0o644);
    await assert.rejects(openManager(dataDir), AcmeStorageError);
  });
});

describe('the loopback DNS responder pebble resolves with', () => {
  function query(id: number, name: string, type: number): Buffer {
    const labels = name.split('.').map((label) => {
      const bytes = Buffer.from(label, 'latin1');
      return Buffer.concat([Buffer.from([bytes.length]), bytes]);
    });
    const header = Buffer.alloc(12);
    header.writeUInt16BE(id, 0);
    header.writeUInt16BE(0x0100, 2); // RD
    header.writeUInt16BE(1, 4);
    const tail = Buffer.alloc(4);
    tail.writeUInt16BE(type, 0);
    tail.writeUInt16BE(1, 2);
    return Buffer.concat([header, ...labels, Buffer.from([0]), tail]);
  }

  it('answers A 127.0.0.1 for known names only, NXDOMAIN for the rest', () => {
    const known = (name: string): boolean => name === `app.${ZONE}`;
    const a = dnsAnswer(query(7, `App.${ZONE}`, 1), known);
    assert.ok(a !== null);
    assert.equal(a.readUInt16BE(0), 7);
    assert.equal(a.readUInt16BE(6), 1, 'one answer');
    assert.deepEqual([...a.subarray(a.length - 4)], [127, 0, 0, 1]);
    const aaaa = dnsAnswer(query(8, `app.${ZONE}`, 28), known);
    assert.ok(aaaa !== null);
    assert.equal(aaaa.readUInt16BE(6), 0, 'no AAAA record');
    assert.equal(aaaa.readUInt16BE(2) & 0xf, 0, 'NOERROR');
    const other = dnsAnswer(query(9, 'example.org', 1), known);
    assert.ok(other !== null);
    assert.equal(other.readUInt16BE(2) & 0xf, 3, 'NXDOMAIN');
  });

  it('never throws on arbitrary bytes, and answers only with the question it was asked (fuzz)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        const message = Buffer.from(bytes);
        const answer = dnsAnswer(message, () => true);
        if (answer === null) return;
        const question = parseDnsQuestion(message);
        assert.ok(question !== null);
        assert.equal(answer.readUInt16BE(0), question.id);
        assert.deepEqual(answer.subarray(12, question.end), message.subarray(12, question.end));
      }),
    );
  });
});
