/**
 * Tests of the sandbox init's native helpers (sandbox.c): spawnProgram,
 * waitChild, the terminal process-group calls, mount/bindMount and
 * sethostname. Needs root for the nested user namespace check; mounts and
 * the hostname change happen only inside throw-away `unshare --mount --uts`
 * children, never in the host's namespaces.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import * as native from './index.js';

const NATIVE_MODULE_URL = new URL('./index.js', import.meta.url).href;
const scratch = mkdtempSync('/tmp/warren-native-sandbox-test-');
const ENV = ['PATH=/usr/bin:/bin', 'LANG=C'];

after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

async function waitForExit(pid: number, untraced = false): Promise<native.ChildStatus> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const status = native.waitChild(pid, untraced);
    if (status !== null) return status;
    if (Date.now() > deadline) throw new Error(`child ${pid} did not change state`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function assertSystemError(error: unknown, code: string, syscall: string): true {
  assert.ok(native.isErrnoError(error), `expected a system error, got ${String(error)}`);
  assert.equal(error.code, code);
  assert.equal(error.syscall, syscall);
  return true;
}

/** Runs a module snippet in a fresh node, optionally under `unshare FLAGS`. */
function runNode(
  source: string,
  unshareFlags: string[] = [],
): { status: number | null; stdout: string; stderr: string } {
  const command = unshareFlags.length === 0 ? process.execPath : 'unshare';
  const prefix = unshareFlags.length === 0 ? [] : [...unshareFlags, '--', process.execPath];
  const result = spawnSync(command, [...prefix, '--input-type=module', '-e', source], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

function statFields(pid: number): string[] {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

describe('spawnProgram + waitChild', () => {
  test('runs argv with envp in cwd, inheriting stdout; the exit code is reported', async () => {
    const out = join(scratch, 'basic');
    const pid = native.spawnProgram(
      ['/bin/sh'],
      ['sh', '-c', `printf '%s|%s|%s' "$0" "$PROBE" "$(pwd)" > '${out}'; exit 5`],
      [...ENV, 'PROBE=probe value'],
      scratch,
      -1,
      -1,
      -1,
    );
    const status = await waitForExit(pid);
    assert.deepEqual(status, { pid, exitCode: 5, signal: 0, stopped: false });
    assert.equal(readFileSync(out, 'utf8'), `sh|probe value|${scratch}`);
  });

  test('searches the candidate paths in order, skipping missing ones', async () => {
    const pid = native.spawnProgram(
      ['/nonexistent/true', '/also/missing/true', '/bin/true'],
      ['true'],
      ENV,
      null,
      -1,
      -1,
      -1,
    );
    assert.equal((await waitForExit(pid)).exitCode, 0);
  });

  test('a missing program or directory is a typed error naming the failing step', () => {
    assert.throws(
      () => native.spawnProgram(['/nonexistent/x'], ['x'], ENV, null, -1, -1, -1),
      (error) => {
        assertSystemError(error, 'ENOENT', 'execve');
        assert.ok((error as Error).message.includes("'x'"), 'the message names the program');
        return true;
      },
    );
    assert.throws(
      () =>
        native.spawnProgram(['/bin/true'], ['true'], ENV, join(scratch, 'no-such-dir'), -1, -1, -1),
      (error) => assertSystemError(error, 'ENOENT', 'chdir'),
    );
    const notExecutable = join(scratch, 'plain-file');
    writeFileSync(notExecutable, 'not a program', { mode: 0o644 });
    assert.throws(
      () => native.spawnProgram([notExecutable], ['plain-file'], ENV, null, -1, -1, -1),
      (error) => assertSystemError(error, 'EACCES', 'execve'),
    );
  });

  test('the program gets stdin/stdout/stderr but no other fd, even non-close-on-exec ones', () => {
    // fd 3 of this child node is an inherited, non-close-on-exec pipe.
    const source = `
      const native = await import(${JSON.stringify(NATIVE_MODULE_URL)});
      const pid = native.spawnProgram(['/bin/ls'], ['ls', '/proc/self/fd'], ['PATH=/bin'], null, -1, -1, -1);
      for (;;) { const s = native.waitChild(pid, false); if (s !== null) { process.exitCode = s.exitCode; break; } }
    `;
    const result = spawnSync(process.execPath, ['--input-type=module', '-e', source], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe', 'pipe'],
    });
    assert.equal(result.status, 0, result.stderr);
    // ls's own directory fd is the 4th.
    assert.deepEqual(result.stdout.trim().split('\n'), ['0', '1', '2', '3']);
  });

  test('signal dispositions are reset: SIGPIPE (ignored by Node) kills the program', async () => {
    const pid = native.spawnProgram(
      ['/bin/sh'],
      ['sh', '-c', 'kill -PIPE $$; exit 0'],
      ENV,
      null,
      -1,
      -1,
      -1,
    );
    const status = await waitForExit(pid);
    assert.equal(status.exitCode, -1);
    assert.equal(status.signal, 13);
  });

  test('the program leads a process group of its own', async () => {
    const pid = native.spawnProgram(['/bin/sleep'], ['sleep', '5'], ENV, null, -1, -1, -1);
    try {
      assert.equal(Number(statFields(pid)[2]), pid);
      assert.notEqual(native.getpgrp(), pid);
    } finally {
      process.kill(pid, 'SIGKILL');
      assert.equal((await waitForExit(pid)).signal, 9);
    }
  });

  test('with uid/gid it runs in a nested user namespace as that user', async () => {
    assert.equal(process.getuid?.(), 0, 'needs root');
    const out = join(scratch, 'ids');
    const pid = native.spawnProgram(
      ['/bin/sh'],
      ['sh', '-c', `echo "$(id -u) $(id -g)" > '${out}'`],
      ENV,
      null,
      4242,
      4343,
      -1,
    );
    assert.equal((await waitForExit(pid)).exitCode, 0);
    assert.equal(readFileSync(out, 'utf8'), '4242 4343\n');
  });

  test('waitChild: null while running, stopped with untraced, ECHILD without children', async () => {
    const pid = native.spawnProgram(['/bin/sleep'], ['sleep', '5'], ENV, null, -1, -1, -1);
    try {
      assert.equal(native.waitChild(pid, true), null);
      process.kill(pid, 'SIGSTOP');
      const stopped = await waitForExit(pid, true);
      assert.deepEqual(stopped, { pid, exitCode: -1, signal: 19, stopped: true });
    } finally {
      process.kill(pid, 'SIGKILL');
      await waitForExit(pid);
    }
    const lonely = runNode(`
      const native = await import(${JSON.stringify(NATIVE_MODULE_URL)});
      try { native.waitChild(-1, false); } catch (error) { console.log(error.code, error.syscall); }
    `);
    assert.equal(lonely.stdout.trim(), 'ECHILD waitpid');
  });

  test('bad arguments name the argument', () => {
    assert.throws(() => native.spawnProgram([], ['x'], ENV, null, -1, -1, -1), {
      name: 'RangeError',
      message: /spawnProgram: argument 'paths' must not be empty/,
    });
    assert.throws(() => native.spawnProgram(['/bin/true'], [], ENV, null, -1, -1, -1), {
      name: 'RangeError',
      message: /argument 'argv'/,
    });
    assert.throws(() => native.spawnProgram(['/bin/true'], ['true'], ENV, null, 1000, -1, -1), {
      name: 'RangeError',
      message: /argument 'gid'/,
    });
    assert.throws(() => native.spawnProgram(['/bin/true'], ['tr\0ue'], ENV, null, -1, -1, -1), {
      name: 'RangeError',
      message: /NUL/,
    });
    assert.throws(() => native.waitChild(-2, false), {
      name: 'RangeError',
      message: /waitChild: argument 'pid'/,
    });
  });
});

describe('terminal process groups', () => {
  test('getpgrp matches /proc; tcgetpgrp on a non-terminal is ENOTTY', () => {
    assert.equal(native.getpgrp(), Number(statFields(process.pid)[2]));
    const pipe = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const native = await import(${JSON.stringify(NATIVE_MODULE_URL)});
         for (const call of [() => native.tcgetpgrp(0), () => native.tcsetpgrp(0, native.getpgrp())]) {
           try { call(); console.log('no error'); } catch (error) { console.log(error.code, error.syscall); }
         }`,
      ],
      { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] },
    );
    assert.deepEqual(pipe.stdout.trim().split('\n'), ['ENOTTY tcgetpgrp', 'ENOTTY tcsetpgrp']);
    assert.throws(
      () => {
        native.tcsetpgrp(0, 0);
      },
      {
        name: 'RangeError',
        message: /tcsetpgrp: argument 'pgrp'/,
      },
    );
  });
});

describe('mount, bindMount, sethostname (inside unshare --mount --uts only)', () => {
  test('tmpfs and a read-only bind mount work in a private mount namespace', () => {
    const target = join(scratch, 'mountpoint');
    const file = join(scratch, 'bind-target');
    const source = join(scratch, 'bind-source');
    mkdirSync(target);
    writeFileSync(file, 'original\n');
    writeFileSync(source, 'replacement\n');
    const result = runNode(
      `
      import { readFileSync, writeFileSync, readdirSync } from 'node:fs';
      const native = await import(${JSON.stringify(NATIVE_MODULE_URL)});
      const flags = native.MOUNT_FLAGS;
      native.mount('tmpfs', ${JSON.stringify(target)}, 'tmpfs', flags.MS_NOSUID | flags.MS_NODEV, 'size=64k');
      writeFileSync(${JSON.stringify(join(target, 'inside'))}, 'x');
      console.log(readdirSync(${JSON.stringify(target)}).join(','));
      native.bindMount(${JSON.stringify(source)}, ${JSON.stringify(file)}, true);
      console.log(readFileSync(${JSON.stringify(file)}, 'utf8').trim());
      try { writeFileSync(${JSON.stringify(file)}, 'changed'); console.log('writable'); } catch (e) { console.log(e.code); }
      try { native.mount(null, '/nonexistent/warren', 'tmpfs', 0, null); } catch (e) { console.log(e.code, e.syscall, e.message.includes('/nonexistent/warren')); }
      native.sethostname('warren-uts-test');
      console.log((await import('node:os')).hostname());
    `,
      ['--mount', '--uts', '--propagation', 'private'],
    );
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(result.stdout.trim().split('\n'), [
      'inside',
      'replacement',
      'EROFS',
      'ENOENT mount true',
      'warren-uts-test',
    ]);
    // Nothing leaked out of the child's namespaces.
    assert.equal(readFileSync(file, 'utf8'), 'original\n');
    assert.notEqual(hostname(), 'warren-uts-test');
    assert.equal(spawnSync('findmnt', ['-n', target]).status, 1, 'no mount on the host');
  });

  test('bad arguments name the argument', () => {
    assert.throws(
      () => {
        native.mount(null, 5 as unknown as string, null, 0, null);
      },
      {
        name: 'TypeError',
        message: /mount: argument 'target'/,
      },
    );
    assert.throws(
      () => {
        native.mount(null, '/x', null, -1, null);
      },
      {
        name: 'RangeError',
        message: /mount: argument 'flags'/,
      },
    );
    assert.throws(
      () => {
        native.bindMount('/a', '/b', 'yes' as unknown as boolean);
      },
      {
        name: 'TypeError',
        message: /bindMount: argument 'readOnly'/,
      },
    );
    assert.throws(
      () => {
        native.sethostname(7 as unknown as string);
      },
      {
        name: 'TypeError',
        message: /sethostname: argument 'name'/,
      },
    );
  });
});
