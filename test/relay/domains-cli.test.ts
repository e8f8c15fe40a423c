/**
 * `warren relay account …`, `token … --account` and `domain …` as commands in
 * child processes, against the default SQLite store and a tiny DNS responder
 * on 127.0.0.1 (for `domain verify --resolver`).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { randomBytes } from 'node:crypto';
import { TestDnsServer } from '../../src/relay/store/dns-test-server.js';
import { SQLITE_FILE } from '../../src/relay/store/sqlite.js';

const RUNNER = fileURLToPath(new URL('./cli-runner.js', import.meta.url));
const execute = promisify(execFile);

interface Outcome {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `warren relay ARGS…` and returns its exit code and output (never throws on exit != 0). */
async function relay(...args: string[]): Promise<Outcome> {
  try {
    const { stdout, stderr } = await execute(process.execPath, [RUNNER, 'relay', ...args], {
      env: { ...process.env, WARREN_RELAY_DATABASE: '' },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failed.code ?? -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

describe('warren relay account / token / domain commands', () => {
  let dir: string;
  let dns: TestDnsServer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'warren-domains-cli-'));
    dns = await TestDnsServer.start();
  });

  after(async () => {
    await dns.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('documents the store, accounts and domains in --help', async () => {
    const help = await relay('--help');
    assert.equal(help.code, 0);
    for (const text of [
      '--database URL',
      'WARREN_RELAY_DATABASE',
      'relay.db',
      'warren relay account create|remove',
      'warren relay domain verify',
      '--resolver IP[:PORT]',
      '--account NAME',
      '_warren-challenge.HOST',
    ]) {
      assert.ok(help.stdout.includes(text), text);
    }
    assert.equal((await relay('domain', 'add', '--help')).stdout, help.stdout);
  });

  it('creates, lists and removes accounts; tokens belong to them', async () => {
    assert.equal((await relay('account', 'create', '--data-dir', dir, 'acme')).code, 0);
    assert.equal((await stat(join(dir, SQLITE_FILE))).mode & 0o777, 0o600);
    const again = await relay('account', 'create', '--data-dir', dir, 'acme');
    assert.equal(again.code, 1);
    assert.match(again.stderr, /ERR_RELAY_ACCOUNT_EXISTS/);
    assert.equal((await relay('account', 'create', '--data-dir', dir, 'Bad Name')).code, 2);

    const token = await relay(
      'token',
      'create',
      '--data-dir',
      dir,
      '--account',
      'acme',
      '--name',
      'ci',
    );
    assert.equal(token.code, 0);
    assert.match(token.stdout, /^wrn1\.\S+\n$/);
    assert.match(token.stderr, /for account 'acme'/);
    const payload = JSON.parse(
      Buffer.from(token.stdout.split('.')[1] ?? '', 'base64url').toString(),
    ) as { a?: string };
    assert.equal(payload.a, 'acme', 'the account is in the signed payload');

    const defaulted = await relay('token', 'create', '--data-dir', dir, '--name', 'laptop');
    assert.equal(defaulted.code, 0);
    assert.match(defaulted.stderr, /for account 'default'/);
    const missing = await relay(
      'token',
      'create',
      '--data-dir',
      dir,
      '--account',
      'ghost',
      '--name',
      'x',
    );
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /ERR_RELAY_ACCOUNT_NOT_FOUND/);
    // Bad input is named by the flag it came from, exit 2.
    const badSubdomain = await relay(
      'token',
      'create',
      '--data-dir',
      dir,
      '--name',
      'y',
      '--subdomain',
      'Bad_Name!',
    );
    assert.equal(badSubdomain.code, 2);
    assert.match(badSubdomain.stderr, /--subdomain: 'bad_name!' is not a subdomain pattern/);
    const badName = await relay('token', 'create', '--data-dir', dir, '--name', ' y');
    assert.equal(badName.code, 2);
    assert.match(badName.stderr, /--name: " y" is not a token name/);

    const listed = await relay('token', 'list', '--data-dir', dir, '--account', 'acme');
    assert.match(
      listed.stdout,
      /^[0-9a-f]{32} {2}ci {2}\[random names\] {2}no tcp {2}never expires {2}account acme\n$/,
    );
    const accounts = await relay('account', 'list', '--data-dir', dir);
    assert.match(
      accounts.stdout,
      /^acme {2}created 20\d\d-.* 1 valid token\(s\) of 1 {2}0 domain\(s\)$/m,
    );
    assert.match(accounts.stdout, /^default {2}created /m);

    const removed = await relay('account', 'remove', '--data-dir', dir, 'acme');
    assert.equal(removed.code, 0);
    assert.match(
      removed.stderr,
      /account 'acme' removed: 1 token\(s\) revoked, 0 domain\(s\) dropped/,
    );
    assert.match(
      (await relay('token', 'list', '--data-dir', dir, '--account', 'acme')).stdout,
      / account acme REVOKED\n$/,
    );
    const gone = await relay('account', 'remove', '--data-dir', dir, 'acme');
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /ERR_RELAY_ACCOUNT_NOT_FOUND/);
  });

  it('adds a domain with printed DNS records, verifies it through DNS, lists and removes it', async () => {
    assert.equal((await relay('account', 'create', '--data-dir', dir, 'shop')).code, 0);
    const added = await relay(
      'domain',
      'add',
      '--data-dir',
      dir,
      '--account',
      'shop',
      '--domain',
      'tunnel.example.com',
      'Store.Example.org',
    );
    assert.equal(added.code, 0, added.stderr);
    const challenge =
      /_warren-challenge\.store\.example\.org\. {2}TXT {4}"([A-Za-z0-9_-]{32})"/.exec(
        added.stdout,
      )?.[1];
    assert.ok(challenge !== undefined, added.stdout);
    assert.match(added.stdout, /store\.example\.org\. {2}CNAME {2}tunnel\.example\.com\./);

    const listedBefore = await relay('domain', 'list', '--data-dir', dir);
    assert.match(listedBefore.stdout, /^store\.example\.org {2}account shop {2}NOT VERIFIED/m);

    // Wrong value, then no record at all: exit 1 with the stable code, still unverified.
    /** `warren relay domain verify` of store.example.org against the loopback DNS server. */
    const verifyStore = () =>
      relay('domain', 'verify', '--data-dir', dir, '--resolver', dns.address, 'store.example.org');
    dns.txt.set('_warren-challenge.store.example.org', [['wrong']]);
    const wrong = await verifyStore();
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /ERR_RELAY_DOMAIN_VERIFY/);
    dns.txt.delete('_warren-challenge.store.example.org');
    const nxdomain = await verifyStore();
    assert.equal(nxdomain.code, 1);
    assert.match(nxdomain.stderr, /NXDOMAIN/);

    dns.txt.set('_warren-challenge.store.example.org', [[challenge]]);
    const verified = await verifyStore();
    assert.equal(verified.code, 0, verified.stderr);
    assert.match(verified.stderr, /domain store\.example\.org verified for account 'shop'/);
    assert.match(
      (await relay('domain', 'list', '--data-dir', dir, '--account', 'shop')).stdout,
      /^store\.example\.org {2}account shop {2}verified 20\d\d-/m,
    );

    const taken = await relay(
      'domain',
      'add',
      '--data-dir',
      dir,
      '--account',
      'default',
      'store.example.org',
    );
    assert.equal(taken.code, 1);
    assert.match(taken.stderr, /ERR_RELAY_DOMAIN_EXISTS/);
    assert.equal(
      (await relay('domain', 'add', '--data-dir', dir, '--account', 'shop', '192.0.2.1')).code,
      2,
    );
    assert.equal(
      (await relay('domain', 'add', '--data-dir', dir, 'x.example.org')).code,
      2,
      'needs --account',
    );
    assert.equal(
      (
        await relay(
          'domain',
          'verify',
          '--data-dir',
          dir,
          '--resolver',
          'dns.example',
          'store.example.org',
        )
      ).code,
      2,
    );

    assert.equal((await relay('domain', 'remove', '--data-dir', dir, 'store.example.org')).code, 0);
    const notThere = await relay('domain', 'remove', '--data-dir', dir, 'store.example.org');
    assert.equal(notThere.code, 1);
    assert.match(notThere.stderr, /ERR_RELAY_DOMAIN_NOT_FOUND/);
  });

  it('warren expose takes --hostname for http tunnels only, and checks it', async () => {
    const expose = async (...args: string[]): Promise<Outcome> => {
      try {
        const { stdout, stderr } = await execute(process.execPath, [RUNNER, 'expose', ...args]);
        return { code: 0, stdout, stderr };
      } catch (error) {
        const failed = error as { code?: number; stdout?: string; stderr?: string };
        return {
          code: failed.code ?? -1,
          stdout: failed.stdout ?? '',
          stderr: failed.stderr ?? '',
        };
      }
    };
    assert.match((await expose('--help')).stdout, /--hostname HOST/);
    const relayArgs = ['--relay', '127.0.0.1:1', '--token', 'wrn1.x.y', '--no-inspect'];
    for (const [args, message] of [
      [['http', '3000', '--hostname', 'localhost'], /--hostname: 'localhost' is not a host name/],
      [['http', '3000', '--hostname', '192.0.2.1'], /is not a host name/],
      [['http', '3000', '--hostname', 'a.example.org', '--subdomain', 'a'], /not both/],
      [['tcp', '22', '--hostname', 'a.example.org'], /--hostname is for http/],
    ] as const) {
      const outcome = await expose(...args, ...relayArgs);
      assert.equal(outcome.code, 2, args.join(' '));
      assert.match(outcome.stderr, message);
    }
  });

  it('imports an old tokens.json once and refuses a --database that is not PostgreSQL', async () => {
    const legacyDir = await mkdtemp(join(dir, 'legacy-'));
    const id = randomBytes(16).toString('hex');
    const file = JSON.stringify({
      version: 1,
      tokens: [
        {
          id,
          name: 'old-laptop',
          subdomains: ['app'],
          tcp: false,
          issuedAt: 1,
          expiresAt: null,
          revokedAt: null,
        },
      ],
    });
    await writeFile(join(legacyDir, 'tokens.json'), file, { mode: 0o600 });
    const listed = await relay('token', 'list', '--data-dir', legacyDir);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(
      listed.stdout,
      new RegExp(`^${id} {2}old-laptop {2}\\[app\\] .* account default\\n$`),
    );
    assert.equal(await readFile(join(legacyDir, 'tokens.json.imported'), 'utf8'), file);

    const bad = await relay(
      'account',
      'list',
      '--data-dir',
      legacyDir,
      '--database',
      'mysql://x:secret@db/x',
    );
    assert.equal(bad.code, 2);
    assert.doesNotMatch(bad.stderr, /secret/);
  });
});
