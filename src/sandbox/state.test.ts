/**
 * Tests of the per-sandbox state directory and orphan cleanup. Processes
 * standing in for a sandbox's parent and init are `sleep`s this test starts
 * (and kills) itself.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { isSandboxError } from './errors.js';
import {
  StateDirectory,
  cleanupOrphans,
  ensureStateRoot,
  isSameProcess,
  processStartTime,
  stateRoot,
} from './state.js';
import type { SandboxState } from './state.js';

const scratch = mkdtempSync('/tmp/warren-state-test-');
const children: ChildProcess[] = [];

after(() => {
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  rmSync(scratch, { recursive: true, force: true });
});

function sleeper(): ChildProcess & { pid: number } {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  children.push(child);
  if (child.pid === undefined) throw new Error('sleep did not start');
  return child as ChildProcess & { pid: number };
}

/** A pid that surely belonged to a process that has exited. */
async function deadPid(): Promise<{ pid: number; startTime: string }> {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  const exited = once(child, 'exit');
  const pid = child.pid ?? -1;
  const startTime = processStartTime(pid) ?? '0';
  child.kill('SIGKILL');
  await exited;
  return { pid, startTime };
}

function writeState(root: string, name: string, state: Partial<SandboxState>): string {
  const directory = join(root, name);
  mkdirSync(join(directory, 'etc'), { recursive: true });
  const full: SandboxState = {
    version: 1,
    parentPid: 1,
    parentStartTime: '0',
    unsharePid: null,
    unshareStartTime: null,
    initPid: null,
    initStartTime: null,
    createdAt: new Date().toISOString(),
    ...state,
  };
  writeFileSync(join(directory, 'state.json'), JSON.stringify(full));
  return directory;
}

describe('process identity', () => {
  test('processStartTime reads field 22 of /proc/PID/stat; isSameProcess needs pid AND start time', () => {
    const own = processStartTime(process.pid);
    assert.match(own ?? '', /^\d+$/);
    assert.equal(isSameProcess(process.pid, own), true);
    assert.equal(
      isSameProcess(process.pid, `${own ?? ''}1`),
      false,
      'a recycled pid has another start time',
    );
    assert.equal(isSameProcess(null, own), false);
    assert.equal(processStartTime(0x7ffffff0), null);
  });

  test('a command name with spaces and parentheses does not shift the fields', async () => {
    const script = join(scratch, 'odd) name (x');
    writeFileSync(script, '#!/bin/sh\nsleep 60\n', { mode: 0o755 });
    const child = spawn(script, { stdio: 'ignore' });
    children.push(child);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const pid = child.pid ?? -1;
    assert.match(readFileSync(`/proc/${pid}/stat`, 'utf8'), /\(odd\) name \(x\)/);
    const fromStat = processStartTime(pid);
    // Start time is in clock ticks since boot: no later than ours plus a few seconds.
    assert.match(fromStat ?? '', /^\d+$/);
    assert.ok(Number(fromStat) >= Number(processStartTime(process.pid)));
    child.kill('SIGKILL');
  });
});

describe('state root', () => {
  test('stateRoot: $XDG_RUNTIME_DIR/warren, else /tmp/warren-UID', () => {
    assert.equal(stateRoot({ XDG_RUNTIME_DIR: '/run/user/1000' }), '/run/user/1000/warren');
    assert.equal(stateRoot({}), `/tmp/warren-${process.getuid?.() ?? 0}`);
    assert.equal(
      stateRoot({ XDG_RUNTIME_DIR: 'relative' }),
      `/tmp/warren-${process.getuid?.() ?? 0}`,
    );
  });

  test('ensureStateRoot creates it 0700 and refuses a loose mode, a symlink or a foreign owner', async () => {
    const root = join(scratch, 'root-ok');
    await ensureStateRoot(root);
    assert.equal(existsSync(root), true);
    const loose = join(scratch, 'root-loose');
    mkdirSync(loose, { mode: 0o755 });
    chmodSync(loose, 0o755);
    await assert.rejects(
      ensureStateRoot(loose),
      (error) =>
        isSandboxError(error) &&
        error.code === 'ERR_SANDBOX_STATE_DIR' &&
        error.message.includes('mode 755'),
    );
    const link = join(scratch, 'root-link');
    symlinkSync(root, link);
    await assert.rejects(ensureStateRoot(link), /not a directory/);
    const foreign = join(scratch, 'root-foreign');
    mkdirSync(foreign, { mode: 0o700 });
    const { chownSync } = await import('node:fs');
    chownSync(foreign, 65534, 65534);
    await assert.rejects(ensureStateRoot(foreign), /owned by uid 65534/);
  });
});

describe('StateDirectory', () => {
  test('create, update and remove', async () => {
    const root = join(scratch, 'root-lifecycle');
    const directory = await StateDirectory.create(root);
    assert.ok(directory.path.startsWith(join(root, `sandbox-${process.pid}-`)));
    assert.equal(existsSync(directory.etcDir), true);
    const sleeping = sleeper();
    directory.update({ unsharePid: sleeping.pid });
    const saved = JSON.parse(
      readFileSync(join(directory.path, 'state.json'), 'utf8'),
    ) as SandboxState;
    assert.equal(saved.parentPid, process.pid);
    assert.equal(saved.parentStartTime, processStartTime(process.pid));
    assert.equal(saved.unsharePid, sleeping.pid);
    assert.equal(saved.unshareStartTime, processStartTime(sleeping.pid));
    assert.equal(saved.initPid, null);
    directory.remove();
    directory.remove();
    assert.equal(existsSync(directory.path), false);
    sleeping.kill('SIGKILL');
  });
});

describe('cleanupOrphans', () => {
  test('kills the processes of a sandbox whose parent is dead and removes its state', async () => {
    const root = join(scratch, 'root-orphan');
    await ensureStateRoot(root);
    const parent = await deadPid();
    const init = sleeper();
    const unshare = sleeper();
    const directory = writeState(root, 'sandbox-1-orphan', {
      parentPid: parent.pid,
      parentStartTime: parent.startTime,
      initPid: init.pid,
      initStartTime: processStartTime(init.pid),
      unsharePid: unshare.pid,
      unshareStartTime: processStartTime(unshare.pid),
    });
    const initExit = once(init, 'exit') as Promise<[number | null, string | null]>;
    const unshareExit = once(unshare, 'exit') as Promise<[number | null, string | null]>;
    assert.equal(await cleanupOrphans(root), 1);
    assert.equal(existsSync(directory), false);
    assert.equal((await initExit)[1], 'SIGKILL');
    assert.equal((await unshareExit)[1], 'SIGKILL');
  });

  test('never kills a recycled pid (same pid, another start time)', async () => {
    const root = join(scratch, 'root-recycled');
    await ensureStateRoot(root);
    const parent = await deadPid();
    const bystander = sleeper();
    writeState(root, 'sandbox-2-recycled', {
      parentPid: parent.pid,
      parentStartTime: parent.startTime,
      initPid: bystander.pid,
      initStartTime: '1', // not the bystander's
    });
    assert.equal(await cleanupOrphans(root), 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(bystander.exitCode, null);
    assert.equal(bystander.signalCode, null, 'the bystander lives');
    bystander.kill('SIGKILL');
  });

  test('leaves sandboxes of live parents, fresh unfinished ones, and foreign entries alone', async () => {
    const root = join(scratch, 'root-live');
    await ensureStateRoot(root);
    const live = writeState(root, 'sandbox-3-live', {
      parentPid: process.pid,
      parentStartTime: processStartTime(process.pid) ?? '',
    });
    const unfinished = join(root, 'sandbox-4-unfinished');
    mkdirSync(unfinished);
    const foreign = join(root, 'something-else');
    mkdirSync(foreign);
    assert.equal(await cleanupOrphans(root), 0);
    for (const path of [live, unfinished, foreign]) assert.equal(existsSync(path), true, path);

    // An unfinished directory older than the grace period is a crash leftover.
    const old = new Date(Date.now() - 120_000);
    utimesSync(unfinished, old, old);
    assert.equal(await cleanupOrphans(root), 1);
    assert.equal(existsSync(unfinished), false);
    assert.equal(existsSync(live), true);
  });

  test('a missing root is nothing to clean', async () => {
    assert.equal(await cleanupOrphans(join(scratch, 'never-created')), 0);
  });
});
