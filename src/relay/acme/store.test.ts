import assert from 'node:assert/strict';
import { chmod, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ensureDevCertificate } from '../dev-ca.js';
import type { DevCertificate } from '../dev-ca.js';
import {
  canonicalHost,
  inspectCertificate,
  newPrivateKeyPem,
  splitPemChain,
} from './certificate.js';
import { AcmeStorageError } from './errors.js';
import { AcmeStore, directoryId } from './store.js';

const DIRECTORY = 'https://ca.example.com/directory';
const HOST = 'store.test';

let dir: string;
let dev: DevCertificate;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'warren-acme-store-'));
  dev = await ensureDevCertificate(join(dir, 'ca'), HOST);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('canonicalHost', () => {
  it('lower-cases and drops a trailing dot', () => {
    assert.equal(canonicalHost('App.Example.COM.'), 'app.example.com');
  });

  it('refuses what HTTP-01 cannot prove', () => {
    for (const bad of [
      '*.example.com',
      '127.0.0.1',
      '::1',
      'localhost',
      '',
      'a..b',
      '-a.b',
      'a_b.c',
    ]) {
      assert.equal(canonicalHost(bad), null, bad);
    }
    assert.equal(canonicalHost(42 as unknown as string), null);
    assert.equal(canonicalHost(`${'a'.repeat(64)}.com`), null);
  });
});

describe('inspectCertificate', () => {
  it('reads the validity and serial of a matching chain and key', () => {
    const certificatePem = dev.cert.toString();
    const material = inspectCertificate(HOST, certificatePem, dev.key.toString());
    assert.ok(material.notAfter > Date.now() && material.notBefore < Date.now());
    assert.match(material.serialNumber, /^[0-9A-F]+$/);
    assert.equal(splitPemChain(material.certificatePem).length, 1);
  });

  it('refuses a key that is not the certificate’s, a host it does not name, no PEM', () => {
    assert.throws(() => inspectCertificate(HOST, dev.cert.toString(), newPrivateKeyPem()), /key/);
    assert.throws(
      () => inspectCertificate('other.test', dev.cert.toString(), dev.key.toString()),
      /name/,
    );
    assert.throws(() => inspectCertificate(HOST, 'nothing', dev.key.toString()), /no PEM/);
  });
});

describe('AcmeStore', () => {
  it('keeps one folder per directory URL', () => {
    assert.notEqual(directoryId(DIRECTORY), directoryId('https://ca.example.com/other'));
    assert.match(directoryId('https://127.0.0.1:14000/dir'), /^127\.0\.0\.1_14000-[0-9a-f]{12}$/);
  });

  it('makes the account key once, 0600, in a 0700 folder', async () => {
    const dataDir = join(dir, 'account');
    const store = await AcmeStore.open(dataDir, DIRECTORY);
    const key = await store.accountKey();
    assert.match(key, /BEGIN PRIVATE KEY/);
    assert.equal(await (await AcmeStore.open(dataDir, DIRECTORY)).accountKey(), key);
    assert.equal((await stat(join(store.root, 'account.key'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(dataDir, 'acme'))).mode & 0o777, 0o700);
    assert.deepEqual((await readdir(store.root)).sort(), ['account.key', 'certs', 'directory.url']);
  });

  it('saves and loads certificates; a mismatched pair is reported unusable, not served', async () => {
    const store = await AcmeStore.open(join(dir, 'certs'), DIRECTORY);
    const material = inspectCertificate(HOST, dev.cert.toString(), dev.key.toString());
    await store.saveCertificate(material);
    assert.equal((await stat(join(store.root, 'certs', `${HOST}.key`))).mode & 0o777, 0o600);
    const loaded = await store.loadCertificates();
    assert.deepEqual(loaded.unusable, []);
    assert.deepEqual(loaded.certificates, [material]);
    assert.deepEqual((await readdir(join(store.root, 'certs'))).sort(), [
      `${HOST}.crt`,
      `${HOST}.key`,
    ]);

    // A crash between the key's rename and the chain's leaves a new key with the old chain.
    await writeFile(join(store.root, 'certs', `${HOST}.key`), newPrivateKeyPem(), { mode: 0o600 });
    const after = await store.loadCertificates();
    assert.deepEqual(after.certificates, []);
    assert.equal(after.unusable[0]?.host, HOST);
  });

  it('refuses a certificate key others can read', async () => {
    const store = await AcmeStore.open(join(dir, 'modes'), DIRECTORY);
    await store.saveCertificate(inspectCertificate(HOST, dev.cert.toString(), dev.key.toString()));
    await chmod(join(store.root, 'certs', `${HOST}.key`), 0o640);
    await assert.rejects(store.loadCertificates(), AcmeStorageError);
  });

  it('checks its arguments', async () => {
    await assert.rejects(AcmeStore.open('', DIRECTORY), TypeError);
    const store = await AcmeStore.open(join(dir, 'args'), DIRECTORY);
    const material = inspectCertificate(HOST, dev.cert.toString(), dev.key.toString());
    await assert.rejects(store.saveCertificate({ ...material, host: '../x' }), TypeError);
  });
});
