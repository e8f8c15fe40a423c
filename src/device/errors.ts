/**
 * Typed errors of the device layer.
 */
import { constants } from 'node:os';

/**
 * Why a UAPI operation failed. Each maps to the errno wireguard-go answers with
 * (wireguard-go ipc/uapi_unix.go: IpcErrorIO, IpcErrorProtocol, IpcErrorInvalid,
 * IpcErrorPortInUse, IpcErrorUnknown):
 * - ERR_UAPI_INVALID: a key or value the protocol does not accept (EINVAL);
 * - ERR_UAPI_PROTOCOL: a line that is not key=value, an unknown operation (EPROTO);
 * - ERR_UAPI_PORT_IN_USE: listen_port could not be bound, fwmark could not be set (EADDRINUSE);
 * - ERR_UAPI_IO: reading or writing the request failed (EIO);
 * - ERR_UAPI_TOO_LARGE: a line or request above the server's limits (EMSGSIZE);
 * - ERR_UAPI_UNKNOWN: an unexpected failure inside the handler (ENOANO, 55, as wireguard-go);
 * - ERR_UAPI_SOCKET_IN_USE: another daemon already answers on the UAPI socket (EADDRINUSE).
 */
export type UapiErrorCode =
  | 'ERR_UAPI_INVALID'
  | 'ERR_UAPI_PROTOCOL'
  | 'ERR_UAPI_PORT_IN_USE'
  | 'ERR_UAPI_IO'
  | 'ERR_UAPI_TOO_LARGE'
  | 'ERR_UAPI_UNKNOWN'
  | 'ERR_UAPI_SOCKET_IN_USE';

/** ENOANO is not in node's os.constants; 55 on Linux (asm-generic/errno.h). */
const ENOANO = 55;

const ERRNO_BY_CODE: Readonly<Record<UapiErrorCode, number>> = {
  ERR_UAPI_INVALID: constants.errno.EINVAL,
  ERR_UAPI_PROTOCOL: constants.errno.EPROTO,
  ERR_UAPI_PORT_IN_USE: constants.errno.EADDRINUSE,
  ERR_UAPI_IO: constants.errno.EIO,
  ERR_UAPI_TOO_LARGE: constants.errno.EMSGSIZE,
  ERR_UAPI_UNKNOWN: ENOANO,
  ERR_UAPI_SOCKET_IN_USE: constants.errno.EADDRINUSE,
};

/**
 * A failed UAPI operation. `errno` is the positive POSIX number; on the socket it
 * is sent negated, "errno=-22" — wireguard-go's sign, which is what `wg` expects
 * (wireguard-tools ipc-uapi.h reads it with fscanf("errno=%d") and sets errno = -ret).
 */
export class UapiError extends Error {
  readonly code: UapiErrorCode;
  readonly errno: number;

  constructor(code: UapiErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    if (!(code in ERRNO_BY_CODE)) throw new TypeError(`unknown UAPI error code ${code}`);
    this.name = 'UapiError';
    this.code = code;
    this.errno = ERRNO_BY_CODE[code];
  }
}
