/*
 * warren native addon: shared declarations.
 *
 * The addon holds only what Node cannot do itself (see shared/DESIGN.md):
 * TUN ioctls, readiness watching of raw fds with uv_poll, batched TUN I/O,
 * and a UDP socket with IP_PKTINFO / SO_MARK / recvmmsg / sendmmsg.
 *
 * Conventions shared by every file:
 *  - A failing syscall throws a JS Error shaped like Node's own system errors:
 *    `code` = errno name ('ENOENT'), `errno` = NEGATIVE errno (as Node and
 *    libuv report it), `syscall` = the syscall's name.
 *  - A bad argument throws TypeError (code ERR_INVALID_ARG_TYPE) or RangeError
 *    (code ERR_OUT_OF_RANGE) naming the function and the argument.
 *  - Functions return NULL after throwing, as N-API expects.
 */
#ifndef WARREN_NATIVE_H
#define WARREN_NATIVE_H

#include <node_api.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bumped whenever the JS-visible API or a record layout changes; index.ts
 * refuses to load a build whose version differs (a stale build/ directory). */
#define WARREN_ABI_VERSION 3

/*
 * Per-datagram metadata written by udpRecv, and per-destination endpoint
 * records read by udpSendBatch: both are Int32Array records of 12 words, and
 * deliberately share words 1..11 so a received datagram's record, with word 0
 * replaced by flags, is the endpoint to reply to.
 *
 *   word  meta (udpRecv)            endpoint (udpSendBatch)
 *   0     length (-1 = truncated)   flags (ENDPOINT_FLAG_STICKY_SOURCE)
 *   1     family (4 | 6)            family (4 | 6)
 *   2     peer (source) port        peer (destination) port
 *   3     local ifindex (pktinfo)   local ifindex to send from
 *   4..7  peer address words        peer address words
 *   8..11 local address words       local (source) address words
 *
 * Address words: the address bytes read as big-endian u32s (4 words for IPv6,
 * IPv4 uses word 0 and leaves 1..3 zero).
 */
#define WARREN_RECORD_STRIDE 12
#define WARREN_REC_LENGTH_OR_FLAGS 0
#define WARREN_REC_FAMILY 1
#define WARREN_REC_PEER_PORT 2
#define WARREN_REC_LOCAL_IFINDEX 3
#define WARREN_REC_PEER_ADDR 4
#define WARREN_REC_LOCAL_ADDR 8
#define WARREN_META_TRUNCATED (-1)
#define WARREN_ENDPOINT_FLAG_STICKY_SOURCE 1

/* Messages handled per recvmmsg/sendmmsg call; larger batches loop. Matches
 * wireguard-go's conn.IdealBatchSize (conn/conn.go). */
#define WARREN_MMSG_CHUNK 128

/* ---- errors (addon.c) ---- */

/* Throws a system error for errno value `err` (positive). `detail` (may be
 * NULL) is appended to the message, e.g. the ioctl request or interface. */
napi_value warren_throw_errno(napi_env env, int err, const char *syscall, const char *detail);
/* Throws TypeError "fn: argument 'name' must be <expected>". */
napi_value warren_throw_type(napi_env env, const char *fn, const char *name, const char *expected);
/* Throws RangeError "fn: argument 'name' <problem>". */
napi_value warren_throw_range(napi_env env, const char *fn, const char *name, const char *problem);
/* Throws a generic Error for a failed N-API call unless one is pending. */
napi_value warren_throw_napi_failure(napi_env env, const char *what);

#define NAPI_CALL(env, call)                                                                       \
  do {                                                                                             \
    if ((call) != napi_ok) return warren_throw_napi_failure((env), #call);                         \
  } while (0)

/* ---- argument parsing (addon.c). Each returns false after throwing. ---- */

/* An integer-valued number within [min, max]. */
bool warren_arg_int64(napi_env env, napi_value value, const char *fn, const char *name, int64_t min,
                      int64_t max, int64_t *out);
bool warren_arg_int32(napi_env env, napi_value value, const char *fn, const char *name, int32_t min,
                      int32_t max, int32_t *out);
/* A file descriptor: integer in [0, INT32_MAX]. */
bool warren_arg_fd(napi_env env, napi_value value, const char *fn, const char *name, int *out);
/* A Uint8Array (Buffer included). */
bool warren_arg_bytes(napi_env env, napi_value value, const char *fn, const char *name,
                      uint8_t **data, size_t *length);
/* An Int32Array. */
bool warren_arg_int32_array(napi_env env, napi_value value, const char *fn, const char *name,
                            int32_t **data, size_t *length);
/* A function. */
bool warren_arg_function(napi_env env, napi_value value, const char *fn, const char *name);
/* An interface name: a string of at most IFNAMSIZ-1 bytes without NUL, empty
 * allowed only if allow_empty. `out` must hold IFNAMSIZ bytes. */
bool warren_arg_ifname(napi_env env, napi_value value, const char *fn, const char *name,
                       bool allow_empty, char *out);
/* True if value is null or undefined. */
bool warren_is_nullish(napi_env env, napi_value value);

/* Defines `fn` as property `name` on `exports`. */
bool warren_export_function(napi_env env, napi_value exports, const char *name, napi_callback fn);
bool warren_export_int32(napi_env env, napi_value exports, const char *name, int32_t value);

/* ---- per-concern registration ---- */
bool warren_init_tun(napi_env env, napi_value exports);
bool warren_init_udp(napi_env env, napi_value exports);
bool warren_init_poll(napi_env env, napi_value exports);
bool warren_init_aead(napi_env env, napi_value exports);
bool warren_init_fdpass(napi_env env, napi_value exports);
bool warren_init_sandbox(napi_env env, napi_value exports);

/* Address bytes <-> big-endian words (udp.c, shared with nobody else yet). */
static inline int32_t warren_be_word(const uint8_t *bytes) {
  return (int32_t)(((uint32_t)bytes[0] << 24) | ((uint32_t)bytes[1] << 16) |
                   ((uint32_t)bytes[2] << 8) | (uint32_t)bytes[3]);
}
static inline void warren_word_to_bytes(int32_t word, uint8_t *bytes) {
  uint32_t w = (uint32_t)word;
  bytes[0] = (uint8_t)(w >> 24);
  bytes[1] = (uint8_t)(w >> 16);
  bytes[2] = (uint8_t)(w >> 8);
  bytes[3] = (uint8_t)w;
}

#endif
