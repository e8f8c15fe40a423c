/**
 * Unit and fuzz tests of the sandbox's name-service files and path handling.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import {
  finalTarget,
  hostsFile,
  isValidHostname,
  nsswitchConf,
  resolvConf,
} from './nameservice.js';

const scratch = mkdtempSync('/tmp/warren-nameservice-test-');
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

/** The active (non-comment) lines of a file. */
function activeLines(text: string): string[] {
  return text.split('\n').filter((line) => line.trim() !== '' && !line.trimStart().startsWith('#'));
}

describe('resolvConf', () => {
  test('names exactly the given servers, in order, and nothing else', () => {
    assert.deepEqual(activeLines(resolvConf(['192.0.2.53', '2001:db8::53'])), [
      'nameserver 192.0.2.53',
      'nameserver 2001:db8::53',
    ]);
  });

  test('no servers: no nameserver line (glibc then asks 127.0.0.1, which answers nothing inside)', () => {
    assert.deepEqual(activeLines(resolvConf([])), []);
  });

  test('more than three servers: all listed, with a note on glibc MAXNS', () => {
    const text = resolvConf(['192.0.2.1', '192.0.2.2', '192.0.2.3', '192.0.2.4']);
    assert.equal(activeLines(text).length, 4);
    assert.match(text, /first 3/);
  });
});

describe('hostsFile', () => {
  test('localhost and the hostname on loopback; IPv6 names only with IPv6', () => {
    const v4 = activeLines(hostsFile('box', false));
    assert.deepEqual(v4, ['127.0.0.1\tlocalhost', '127.0.1.1\tbox']);
    const v6 = activeLines(hostsFile('box', true));
    assert.ok(v6.includes('::1\tlocalhost ip6-localhost ip6-loopback'));
    assert.ok(v6.includes('127.0.1.1\tbox'));
  });
});

describe('nsswitchConf', () => {
  test('replaces the hosts database and keeps everything else', () => {
    const host = [
      '# comment',
      'passwd:         files systemd',
      'group:          files systemd',
      'hosts:          files mdns4_minimal [NOTFOUND=return] resolve [!UNAVAIL=return] dns myhostname',
      'networks:       files',
      '',
    ].join('\n');
    const lines = nsswitchConf(host).split('\n');
    assert.ok(lines.includes('passwd:         files systemd'));
    assert.ok(lines.includes('group:          files systemd'));
    assert.ok(lines.includes('networks:       files'));
    assert.deepEqual(
      lines.filter((line) => /^\s*hosts\s*:/.test(line)),
      ['hosts:          files dns'],
    );
  });

  test('adds a hosts line when the host file has none, and writes a minimal file without one', () => {
    assert.match(nsswitchConf('passwd: files\n'), /^hosts:\s+files dns$/m);
    const minimal = nsswitchConf(null);
    assert.match(minimal, /^passwd:\s+files$/m);
    assert.match(minimal, /^hosts:\s+files dns$/m);
  });

  test('fuzz: any host file gives exactly one active hosts line, `files dns`, and keeps the other lines', () => {
    const line = fc.oneof(
      fc.string({ maxLength: 40 }).map((text) => text.replace(/\n/g, ' ')),
      fc.constantFrom(
        'hosts: files resolve dns',
        '  hosts :nis',
        'hosts:',
        'passwd: files',
        '#hosts: x',
      ),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 12 }), (lines) => {
        const output = nsswitchConf(lines.join('\n')).split('\n');
        const hosts = output.filter((entry) => /^\s*hosts\s*:/.test(entry));
        assert.deepEqual(hosts, ['hosts:          files dns']);
        for (const original of lines) {
          if (/^\s*hosts\s*:/.test(original) || original === '') continue;
          assert.ok(output.includes(original), `kept ${JSON.stringify(original)}`);
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe('finalTarget', () => {
  test('follows relative and absolute symlinks, also through directories', () => {
    const real = join(scratch, 'real');
    mkdirSync(join(real, 'resolve'), { recursive: true });
    writeFileSync(join(real, 'resolve', 'stub'), 'x');
    mkdirSync(join(scratch, 'etc'));
    symlinkSync('../real/resolve/stub', join(scratch, 'etc', 'relative'));
    symlinkSync(join(scratch, 'etc', 'relative'), join(scratch, 'etc', 'chained'));
    symlinkSync(join(scratch, 'real'), join(scratch, 'run'));
    symlinkSync(join(scratch, 'run', 'resolve', 'stub'), join(scratch, 'etc', 'via-dir-link'));
    const expected = join(real, 'resolve', 'stub');
    assert.equal(finalTarget(join(scratch, 'etc', 'relative')), expected);
    assert.equal(finalTarget(join(scratch, 'etc', 'chained')), expected);
    assert.equal(finalTarget(join(scratch, 'etc', 'via-dir-link')), expected);
    assert.equal(finalTarget(expected), expected, 'a plain file is its own target');
  });

  test('a dangling link names the missing file; a missing directory gives null; a loop throws', () => {
    mkdirSync(join(scratch, 'dangling'));
    symlinkSync(join(scratch, 'real', 'absent.conf'), join(scratch, 'dangling', 'link'));
    assert.equal(
      finalTarget(join(scratch, 'dangling', 'link')),
      join(scratch, 'real', 'absent.conf'),
    );
    symlinkSync(join(scratch, 'no-such-dir', 'file'), join(scratch, 'dangling', 'deep'));
    assert.equal(finalTarget(join(scratch, 'dangling', 'deep')), null);
    symlinkSync('loop-b', join(scratch, 'dangling', 'loop-a'));
    symlinkSync('loop-a', join(scratch, 'dangling', 'loop-b'));
    assert.throws(() => finalTarget(join(scratch, 'dangling', 'loop-a')), /too many levels/);
  });
});

describe('isValidHostname', () => {
  test('accepts RFC 1123 names of at most 64 bytes, rejects the rest', () => {
    for (const name of ['box', 'my-host', 'a.b.example', 'x'.repeat(63), '0start']) {
      assert.equal(isValidHostname(name), true, name);
    }
    for (const name of [
      '',
      '-lead',
      'trail-',
      'two..dots',
      'sp ace',
      'x'.repeat(65),
      'under_score',
      'a'.repeat(64) + '.b',
    ]) {
      assert.equal(isValidHostname(name), false, name);
    }
  });
});
