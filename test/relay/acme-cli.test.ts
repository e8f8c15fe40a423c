/**
 * `warren relay --acme…` flags as a command: the combinations it refuses (with
 * exit status 2 and a message naming the flags), and that --help and the
 * README document every ACME flag and the no-wildcard rule.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const RUNNER = fileURLToPath(new URL('./cli-runner.js', import.meta.url));
const README = fileURLToPath(new URL('../../../README.md', import.meta.url));
const run = promisify(execFile);
const BASE = ['relay', '--domain', 'tunnel.test', '--data-dir', '/nonexistent/warren-acme-cli'];
const ACME_FLAGS = ['--acme', '--acme-email', '--acme-directory', '--acme-ca'];

async function refused(args: string[]): Promise<string> {
  try {
    await run(process.execPath, [RUNNER, ...BASE, ...args]);
  } catch (error) {
    const failure = error as { code?: number; stderr?: string };
    assert.equal(failure.code, 2, failure.stderr);
    return failure.stderr ?? '';
  }
  assert.fail(`warren relay ${args.join(' ')} was accepted`);
}

describe('warren relay --acme flags', () => {
  it('refuses --acme together with another certificate source', async () => {
    assert.match(
      await refused(['--acme', '--tls-cert', 'a.crt', '--tls-key', 'a.key']),
      /one of --tls-cert\/--tls-key, --dev-ca or --acme/,
    );
    assert.match(await refused(['--acme', '--dev-ca']), /one of .* or --acme/);
  });

  it('refuses --acme without public HTTP, where HTTP-01 comes in', async () => {
    assert.match(await refused(['--acme', '--http-listen', 'off']), /--acme needs public HTTP/);
  });

  it('refuses the --acme-* options without --acme, and malformed values', async () => {
    assert.match(await refused(['--acme-email', 'a@b.example', '--dev-ca']), /go with --acme/);
    assert.match(await refused(['--acme-ca', 'x.pem', '--dev-ca']), /go with --acme/);
    assert.match(
      await refused(['--acme', '--acme-directory', 'http://127.0.0.1:14000/dir']),
      /--acme-directory: .* is not an https:\/\/ URL/,
    );
    assert.match(await refused(['--acme', '--acme-email', 'nobody']), /not an e-mail address/);
  });

  it('still asks for a certificate source, naming --acme among them', async () => {
    assert.match(await refused([]), /--tls-cert and --tls-key are required \(or --acme/);
  });

  it('documents every ACME flag, the wildcard limit and pebble in --help and the README', async () => {
    const { stdout: help } = await run(process.execPath, [RUNNER, 'relay', '--help']);
    const readme = await readFile(README, 'utf8');
    for (const flag of ACME_FLAGS) {
      assert.match(help, new RegExp(`^\\s+${flag}\\b`, 'm'), `--help lists ${flag}`);
      assert.ok(readme.includes(flag), `the README mentions ${flag}`);
    }
    assert.match(help, /acme-v02\.api\.letsencrypt\.org\/directory/);
    for (const text of [help, readme]) {
      assert.match(text, /DNS-01/);
      assert.match(text, /pebble/);
      assert.match(text, /--dev-ca/);
    }
  });
});
