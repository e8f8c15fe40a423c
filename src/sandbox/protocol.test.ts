/**
 * Tests of the parent <-> init control channel over a real socketpair, in
 * one process, and of the typed errors.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, fstatSync, openSync, statSync } from 'node:fs';
import * as native from '../native/index.js';
import {
  CommandNotFoundError,
  SandboxError,
  SandboxOptionError,
  SandboxSetupError,
  TunDeviceError,
  UserNamespacesDisabledError,
  isSandboxError,
} from './errors.js';
import { ControlChannel, decodeMessage } from './protocol.js';
import type { InitMessage, ParentMessage, Received } from './protocol.js';

function pair(): { parent: ControlChannel<InitMessage>; init: ControlChannel<ParentMessage> } {
  const [parentEnd, initEnd] = native.socketpair();
  return {
    parent: new ControlChannel<InitMessage>(parentEnd, 'init'),
    init: new ControlChannel<ParentMessage>(initEnd, 'parent'),
  };
}

describe('decodeMessage', () => {
  test('accepts the known types from each side', () => {
    assert.deepEqual(decodeMessage(Buffer.from('{"type":"launch","terminalFd":-1}'), 'parent'), {
      type: 'launch',
      terminalFd: -1,
    });
    assert.deepEqual(decodeMessage(Buffer.from('{"type":"exit","code":7,"signal":null}'), 'init'), {
      type: 'exit',
      code: 7,
      signal: null,
    });
  });

  test('rejects non-JSON, non-objects, unknown types and types from the wrong side', () => {
    assert.throws(() => decodeMessage(Buffer.from('{nope'), 'init'), /not JSON/);
    assert.throws(() => decodeMessage(Buffer.from('42'), 'init'), /unknown message type/);
    assert.throws(
      () => decodeMessage(Buffer.from('{"type":"reboot"}'), 'parent'),
      /unknown message type reboot/,
    );
    assert.throws(
      () => decodeMessage(Buffer.from('{"type":"ready"}'), 'parent'),
      /from the parent/,
    );
    assert.throws(() => decodeMessage(Buffer.from('{"type":"launch"}'), 'init'), /from the init/);
  });
});

describe('ControlChannel', () => {
  test('messages arrive in order with their fds and the sender pid; closing is the end', async () => {
    const { parent, init } = pair();
    const received: Received<ParentMessage>[] = [];
    let ended: Error | null | undefined;
    const done = new Promise<void>((resolve) => {
      init.start(
        (message) => received.push(message),
        (error) => {
          ended = error;
          resolve();
        },
      );
    });
    const file = openSync('/dev/null', 'r');
    try {
      parent.send({ type: 'launch', terminalFd: 0 }, [file]);
      for (let i = 0; i < 40; i++)
        parent.send({ type: 'signal', signal: i % 2 === 0 ? 'SIGTERM' : 'SIGHUP' });
      parent.sendNow({ type: 'continue', terminalFd: -1 });
      // Give the retry timer time to flush anything the queue held back.
      await new Promise((resolve) => setTimeout(resolve, 100));
      parent.close();
      await done;
    } finally {
      closeSync(file);
    }
    assert.equal(ended, null);
    assert.equal(received.length, 42);
    const [first] = received;
    assert.deepEqual(first?.message, { type: 'launch', terminalFd: 0 });
    assert.equal(first.pid, process.pid);
    const [passed] = first.fds;
    assert.ok(passed !== undefined);
    assert.equal(fstatSync(passed).rdev, statSync('/dev/null').rdev);
    native.close(passed);
    assert.deepEqual(
      received
        .slice(1, 41)
        .map((entry) => (entry.message.type === 'signal' ? entry.message.signal : '?')),
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? 'SIGTERM' : 'SIGHUP')),
    );
    assert.deepEqual(received[41]?.message, { type: 'continue', terminalFd: -1 });
    init.close();
  });

  test('a garbled message ends the channel with an error', async () => {
    const [parentEnd, initEnd] = native.socketpair();
    const init = new ControlChannel<ParentMessage>(initEnd, 'parent');
    const ended = new Promise<Error | null>((resolve) => {
      init.start(
        () => undefined,
        (error) => {
          resolve(error);
        },
      );
    });
    native.sendFds(parentEnd, [], Buffer.from('garbage'));
    const error = await ended;
    assert.match(error?.message ?? '', /not JSON/);
    init.close();
    native.close(parentEnd);
  });

  test('sending after close throws; close is idempotent', () => {
    const { parent, init } = pair();
    parent.close();
    parent.close();
    assert.throws(() => {
      parent.send({ type: 'launch', terminalFd: -1 });
    }, /closed/);
    init.close();
  });
});

describe('errors', () => {
  test('every class carries its stable code and name', () => {
    const cases: [SandboxError, string, string][] = [
      [
        new SandboxOptionError('network.mtu', 'is bad'),
        'ERR_SANDBOX_INVALID_OPTION',
        'SandboxOptionError',
      ],
      [
        new UserNamespacesDisabledError('k=0', 'm'),
        'ERR_SANDBOX_USERNS_DISABLED',
        'UserNamespacesDisabledError',
      ],
      [
        new TunDeviceError('ERR_SANDBOX_TUN_CREATE', 'm', 'EPERM'),
        'ERR_SANDBOX_TUN_CREATE',
        'TunDeviceError',
      ],
      [
        new SandboxSetupError('ERR_SANDBOX_NETWORK_SETUP', 'm'),
        'ERR_SANDBOX_NETWORK_SETUP',
        'SandboxSetupError',
      ],
      [
        new CommandNotFoundError('x', 'ENOENT', 'gone'),
        'ERR_SANDBOX_COMMAND_NOT_FOUND',
        'CommandNotFoundError',
      ],
    ];
    for (const [error, code, name] of cases) {
      assert.equal(error.code, code);
      assert.equal(error.name, name);
      assert.ok(isSandboxError(error));
      assert.ok(error instanceof Error);
    }
    const option = new SandboxOptionError('network.mtu', 'is bad');
    assert.equal(option.option, 'network.mtu');
    assert.match(option.message, /option 'network\.mtu' is bad/);
  });
});
