/**
 * Tests of the prerequisite checks: each kernel knob that disables
 * namespaces is named, /dev/net/tun problems are told apart, tools are found.
 * The access check of an unreadable device runs as `nobody` (setpriv): root
 * may open anything.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { runtimeRoot } from '../../test/harness/runtime.js';
import {
  ToolMissingError,
  TunDeviceError,
  UserNamespacesDisabledError,
  isSandboxError,
} from './errors.js';
import {
  checkPrerequisites,
  checkTunAccess,
  findTool,
  userNamespaceBlocker,
} from './prerequisites.js';

const scratch = mkdtempSync('/tmp/warren-prerequisites-test-');
after(() => {
  rmSync(scratch, { recursive: true, force: true });
});

function settings(values: Record<string, string>): (path: string) => Promise<string | null> {
  return (path) => Promise.resolve(values[path] ?? null);
}

describe('userNamespaceBlocker', () => {
  test('nothing set: no blocker', async () => {
    assert.equal(await userNamespaceBlocker(settings({}), 1000), null);
    assert.equal(
      await userNamespaceBlocker(
        settings({
          '/proc/sys/kernel/unprivileged_userns_clone': '1',
          '/proc/sys/user/max_user_namespaces': '15000',
          '/proc/sys/kernel/apparmor_restrict_unprivileged_userns': '0',
        }),
        1000,
      ),
      null,
    );
  });

  test('each knob is named, with the setting that fixes it', async () => {
    const cases: [string, string, string, RegExp][] = [
      [
        '/proc/sys/kernel/unprivileged_userns_clone',
        '0',
        'kernel.unprivileged_userns_clone=0',
        /sysctl -w kernel\.unprivileged_userns_clone=1/,
      ],
      [
        '/proc/sys/kernel/apparmor_restrict_unprivileged_userns',
        '1',
        'kernel.apparmor_restrict_unprivileged_userns=1',
        /AppArmor/,
      ],
      [
        '/proc/sys/user/max_user_namespaces',
        '0',
        'user.max_user_namespaces=0',
        /user\.max_user_namespaces/,
      ],
      [
        '/proc/sys/user/max_net_namespaces',
        '0',
        'user.max_net_namespaces=0',
        /net namespaces are disabled/,
      ],
    ];
    for (const [path, value, knob, fix] of cases) {
      const blocker = await userNamespaceBlocker(settings({ [path]: value }), 1000);
      assert.ok(blocker instanceof UserNamespacesDisabledError, knob);
      assert.equal(blocker.code, 'ERR_SANDBOX_USERNS_DISABLED');
      assert.equal(blocker.knob, knob);
      assert.match(blocker.message, fix);
    }
  });

  test('root is exempt from the "unprivileged" knobs but not from max_user_namespaces', async () => {
    assert.equal(
      await userNamespaceBlocker(
        settings({
          '/proc/sys/kernel/unprivileged_userns_clone': '0',
          '/proc/sys/kernel/apparmor_restrict_unprivileged_userns': '1',
        }),
        0,
      ),
      null,
    );
    const blocker = await userNamespaceBlocker(
      settings({ '/proc/sys/user/max_user_namespaces': '0' }),
      0,
    );
    assert.equal(blocker?.knob, 'user.max_user_namespaces=0');
  });

  test('on this machine, nothing blocks', async () => {
    assert.equal(await userNamespaceBlocker(), null);
  });
});

describe('a real knob, in a throw-away user namespace', () => {
  test('user.max_user_namespaces=0 inside a user namespace is detected by checkPrerequisites', () => {
    // The limit is per user namespace: setting it in a child namespace leaves the host alone.
    const module = new URL('./prerequisites.js', import.meta.url).href;
    const source = `
      const { checkPrerequisites } = await import(${JSON.stringify(module)});
      try { await checkPrerequisites(); console.log('ok'); }
      catch (error) { console.log(JSON.stringify({ code: error.code, knob: error.knob })); }
    `;
    const script = `echo 0 > /proc/sys/user/max_user_namespaces && exec "$0" --input-type=module -e "$1"`;
    const result = spawnSync(
      'unshare',
      ['--user', '--map-root-user', '--', 'sh', '-c', script, process.execPath, source],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(result.status, 0, result.stderr);
    assert.deepEqual(JSON.parse(result.stdout), {
      code: 'ERR_SANDBOX_USERNS_DISABLED',
      knob: 'user.max_user_namespaces=0',
    });
    assert.notEqual(
      readFileSync('/proc/sys/user/max_user_namespaces', 'utf8').trim(),
      '0',
      'the host is untouched',
    );
  });
});

describe('tools and /dev/net/tun', () => {
  test('findTool finds system tools and reports a missing one as null', async () => {
    assert.match((await findTool('unshare')) ?? '', /\/unshare$/);
    assert.match((await findTool('ip')) ?? '', /\/ip$/);
    assert.equal(await findTool('warren-no-such-tool'), null);
    const error = new ToolMissingError('unshare', 'util-linux');
    assert.equal(error.code, 'ERR_SANDBOX_TOOL_MISSING');
    assert.match(error.message, /util-linux/);
  });

  test('a missing device is ERR_SANDBOX_TUN_MISSING', async () => {
    await assert.rejects(checkTunAccess(join(scratch, 'no-tun')), (error) => {
      assert.ok(error instanceof TunDeviceError);
      assert.equal(error.code, 'ERR_SANDBOX_TUN_MISSING');
      assert.equal(error.errno, 'ENOENT');
      assert.match(error.message, /modprobe tun/);
      return true;
    });
  });

  test('a device the user may not open is ERR_SANDBOX_TUN_ACCESS, naming its mode', () => {
    const device = join(scratch, 'tun-0600');
    writeFileSync(device, '');
    chmodSync(device, 0o600);
    chmodSync(scratch, 0o755);
    // Imported as nobody: from a copy nobody can read if this checkout is private.
    const module = pathToFileURL(
      join(runtimeRoot(), 'dist', 'src', 'sandbox', 'prerequisites.js'),
    ).href;
    const source = `
      const { checkTunAccess } = await import(${JSON.stringify(module)});
      try { await checkTunAccess(${JSON.stringify(device)}); console.log('ok'); }
      catch (error) { console.log(JSON.stringify({ code: error.code, errno: error.errno, message: error.message })); }
    `;
    const result = spawnSync(
      'setpriv',
      [
        '--reuid=65534',
        '--regid=65534',
        '--clear-groups',
        '--',
        process.execPath,
        '--input-type=module',
        '-e',
        source,
      ],
      { encoding: 'utf8' },
    );
    assert.equal(result.status, 0, result.stderr);
    const error = JSON.parse(result.stdout) as { code: string; errno: string; message: string };
    assert.equal(error.code, 'ERR_SANDBOX_TUN_ACCESS');
    assert.equal(error.errno, 'EACCES');
    assert.match(error.message, /mode 0600/);
    assert.match(error.message, /0666/);
    assert.match(error.message, /run warren as root/);
  });

  test('checkPrerequisites passes on this machine (as root)', async () => {
    await checkPrerequisites();
    assert.equal(isSandboxError(new Error('x')), false);
  });
});
