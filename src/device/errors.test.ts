import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UapiError, type UapiErrorCode } from './errors.js';

void describe('UapiError', () => {
  void it('carries a stable code and the Linux errno wireguard-go answers with', () => {
    // Linux asm-generic/errno-base.h and errno.h; ENOANO is wireguard-go's IpcErrorUnknown.
    const expected: [UapiErrorCode, number][] = [
      ['ERR_UAPI_INVALID', 22], // EINVAL
      ['ERR_UAPI_PROTOCOL', 71], // EPROTO
      ['ERR_UAPI_PORT_IN_USE', 98], // EADDRINUSE
      ['ERR_UAPI_IO', 5], // EIO
      ['ERR_UAPI_TOO_LARGE', 90], // EMSGSIZE
      ['ERR_UAPI_UNKNOWN', 55], // ENOANO
      ['ERR_UAPI_SOCKET_IN_USE', 98], // EADDRINUSE
    ];
    for (const [code, errno] of expected) {
      const error = new UapiError(code, `failed: ${code}`);
      assert.ok(error instanceof Error);
      assert.equal(error.name, 'UapiError');
      assert.equal(error.code, code);
      assert.equal(error.errno, errno);
      assert.equal(error.message, `failed: ${code}`);
    }
  });

  void it('keeps the cause and refuses unknown codes', () => {
    const cause = new Error('bind failed');
    assert.equal(new UapiError('ERR_UAPI_IO', 'x', { cause }).cause, cause);
    assert.throws(
      () => new UapiError('ERR_NOPE' as UapiErrorCode, 'x'),
      /unknown UAPI error code ERR_NOPE/,
    );
  });
});
