/**
 * Tests of fd passing (fdpass.c): the socketpair, SCM_RIGHTS messages, the
 * sender's pid from SCM_CREDENTIALS, end of file, and errors. Only local
 * sockets and files; no network.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import {
  closeSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import * as native from './index.js';

const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const NATIVE_MODULE_URL = new URL('./index.js', import.meta.url).href;

const scratch = mkdtempSync('/tmp/warren-fdpass-test-');
const opened: number[] = [];

function track(fd: number): number;
function track<T extends number[]>(fds: T): T;
function track(fds: number | number[]): number | number[] {
  if (typeof fds === 'number') opened.push(fds);
  else opened.push(...fds);
  return fds;
}

function fdFlags(fd: number): number {
  const line = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith('flags:'));
  return parseInt((line ?? 'flags: 0').split(/\s+/)[1] ?? '0', 8);
}

function receive(fd: number): Exclude<native.FdMessage, { eof: true }> {
  const message = native.recvFds(fd);
  assert.ok(message !== null, 'a message is queued');
  assert.equal(message.eof, false);
  return message;
}

function assertSystemError(error: unknown, code: string, syscall: string): true {
  assert.ok(native.isErrnoError(error), `expected a system error, got ${String(error)}`);
  assert.equal(error.code, code);
  assert.equal(error.syscall, syscall);
  assert.ok(error.errno < 0);
  return true;
}

after(() => {
  for (const fd of opened) {
    try {
      native.close(fd);
    } catch {
      // closed by the test
    }
  }
  rmSync(scratch, { recursive: true, force: true });
});

describe('socketpair', () => {
  test('returns two non-blocking, close-on-exec ends', () => {
    const [a, b] = track(native.socketpair());
    assert.ok(a >= 0 && b >= 0 && a !== b);
    for (const fd of [a, b]) {
      assert.equal(fdFlags(fd) & O_NONBLOCK, O_NONBLOCK);
      assert.equal(fdFlags(fd) & O_CLOEXEC, O_CLOEXEC);
    }
  });
});

describe('sendFds / recvFds', () => {
  test('a payload and an fd arrive together; the fd is a close-on-exec copy', () => {
    const [a, b] = track(native.socketpair());
    const file = join(scratch, 'shared');
    writeFileSync(file, 'contents');
    const original = openSync(file, 'r');
    try {
      assert.equal(native.sendFds(a, [original], Buffer.from('take this')), true);
      const message = receive(b);
      assert.equal(message.payload.toString(), 'take this');
      assert.equal(message.fds.length, 1);
      const [copy] = message.fds;
      assert.ok(copy !== undefined && copy !== original);
      track(copy);
      assert.equal(fstatSync(copy).ino, fstatSync(original).ino);
      assert.equal(fdFlags(copy) & O_CLOEXEC, O_CLOEXEC);
      assert.equal(message.pid, process.pid, 'SCM_CREDENTIALS names the sender');
    } finally {
      closeSync(original);
    }
  });

  test('several fds in one message, and message boundaries are kept', () => {
    const [a, b] = track(native.socketpair());
    const files = [0, 1, 2].map((i) => {
      const path = join(scratch, `f${i}`);
      writeFileSync(path, String(i));
      return openSync(path, 'r');
    });
    try {
      native.sendFds(a, files, Buffer.from('three'));
      native.sendFds(a, [], Buffer.from('x'));
      native.sendFds(a, [], Buffer.from('yy'));
      const first = receive(b);
      track(first.fds);
      assert.equal(first.payload.toString(), 'three');
      assert.deepEqual(
        first.fds.map((fd) => fstatSync(fd).ino),
        files.map((fd) => fstatSync(fd).ino),
      );
      assert.equal(receive(b).payload.toString(), 'x');
      assert.equal(receive(b).payload.toString(), 'yy');
      assert.equal(native.recvFds(b), null, 'nothing more queued');
    } finally {
      for (const fd of files) closeSync(fd);
    }
  });

  test('a large payload arrives whole', () => {
    const [a, b] = track(native.socketpair());
    const payload = Buffer.alloc(100_000, 0x5a);
    payload.writeUInt32BE(0xdeadbeef, 50_000);
    assert.equal(native.sendFds(a, [], payload), true);
    assert.deepEqual(receive(b).payload, payload);
  });

  test('an empty queue is null; the peer closing is { eof: true }', () => {
    const [a, b] = native.socketpair();
    track(b);
    assert.equal(native.recvFds(b), null);
    native.close(a);
    assert.deepEqual(native.recvFds(b), { eof: true });
  });

  test('sending to a closed peer throws EPIPE (no SIGPIPE)', () => {
    const [a, b] = native.socketpair();
    track(a);
    native.close(b);
    assert.throws(
      () => native.sendFds(a, [], Buffer.from('x')),
      (error) => assertSystemError(error, 'EPIPE', 'sendmsg'),
    );
  });

  test('a full queue returns false, and sending works again once drained', () => {
    const [a, b] = track(native.socketpair());
    let sent = 0;
    while (native.sendFds(a, [], Buffer.from('fill'))) {
      sent++;
      assert.ok(sent < 100_000, 'the queue never filled');
    }
    assert.ok(sent > 0);
    receive(b);
    assert.equal(native.sendFds(a, [], Buffer.from('again')), true);
  });

  test('watch() reports a queued message', async () => {
    const [a, b] = track(native.socketpair());
    let resolveMessage: (text: string) => void = () => undefined;
    const arrived = new Promise<string>((resolve) => {
      resolveMessage = resolve;
    });
    const watcher = native.watch(b, () => {
      const message = native.recvFds(b);
      if (message !== null && !message.eof) resolveMessage(message.payload.toString());
    });
    try {
      setTimeout(() => native.sendFds(a, [], Buffer.from('ping')), 10);
      assert.equal(await arrived, 'ping');
    } finally {
      watcher.close();
    }
  });

  test("across processes: a child's fd arrives with the child's pid", async () => {
    const [parentEnd, childEnd] = track(native.socketpair());
    const file = join(scratch, 'from-child');
    writeFileSync(file, 'child file');
    const source = `
      import { openSync } from 'node:fs';
      const native = await import(${JSON.stringify(NATIVE_MODULE_URL)});
      const fd = openSync(${JSON.stringify(file)}, 'r');
      native.sendFds(3, [fd], Buffer.from('hello from ' + process.pid));
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', source], {
      stdio: ['ignore', 'inherit', 'inherit', childEnd],
    });
    const [code] = (await once(child, 'exit')) as [number | null];
    assert.equal(code, 0);
    const message = receive(parentEnd);
    track(message.fds);
    assert.equal(message.payload.toString(), `hello from ${child.pid}`);
    assert.equal(message.pid, child.pid);
    const [received] = message.fds;
    assert.ok(received !== undefined);
    assert.equal(readFileSync(`/proc/self/fd/${received}`, 'utf8'), 'child file');
  });
});

describe('argument and fd errors', () => {
  test('bad arguments name the function and argument', () => {
    const [a] = track(native.socketpair());
    assert.throws(() => native.sendFds(a, [], Buffer.alloc(0)), {
      name: 'RangeError',
      code: 'ERR_OUT_OF_RANGE',
      message: /sendFds: argument 'payload'/,
    });
    assert.throws(() => native.sendFds(a, new Array<number>(17).fill(0), Buffer.from('x')), {
      name: 'RangeError',
      message: /sendFds: argument 'fds' must hold at most 16/,
    });
    assert.throws(() => native.sendFds(a, 'no' as unknown as number[], Buffer.from('x')), {
      name: 'TypeError',
      code: 'ERR_INVALID_ARG_TYPE',
      message: /sendFds: argument 'fds'/,
    });
    assert.throws(() => native.sendFds(-1, [], Buffer.from('x')), {
      name: 'RangeError',
      message: /sendFds: argument 'sock'/,
    });
    assert.throws(() => native.recvFds('3' as unknown as number), {
      name: 'TypeError',
      message: /recvFds: argument 'sock'/,
    });
  });

  test('a descriptor that is not a socket is ENOTSOCK', () => {
    const file = openSync(join(scratch, 'plain'), 'w');
    try {
      assert.throws(
        () => native.recvFds(file),
        (error) => assertSystemError(error, 'ENOTSOCK', 'recvmsg'),
      );
      assert.throws(
        () => native.sendFds(file, [], Buffer.from('x')),
        (error) => assertSystemError(error, 'ENOTSOCK', 'sendmsg'),
      );
    } finally {
      closeSync(file);
    }
  });

  test('sending a closed fd is EBADF', () => {
    const [a] = track(native.socketpair());
    const file = openSync(join(scratch, 'gone'), 'w');
    closeSync(file);
    assert.throws(
      () => native.sendFds(a, [file], Buffer.from('x')),
      (error) => assertSystemError(error, 'EBADF', 'sendmsg'),
    );
  });
});
