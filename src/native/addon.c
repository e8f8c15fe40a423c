/*
 * warren native addon: module entry, error construction, argument parsing and
 * the generic close(fd).
 */
#define _GNU_SOURCE
#include "warren.h"

#include <errno.h>
#include <math.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* ---- errors ---- */

/* The errno's name ("EBADFD"), or "E<number>" in `fallback` if unnamed.
 * strerrorname_np (glibc >= 2.32) knows every errno, including ones libuv's
 * uv_err_name does not (EBADFD, which a read on a deleted TUN returns). */
static const char *errno_name_of(int err, char fallback[static 16]) {
  const char *name = strerrorname_np(err);
  if (name != NULL) return name;
  snprintf(fallback, 16, "E%d", err);
  return fallback;
}

napi_value warren_throw_errno(napi_env env, int err, const char *syscall, const char *detail) {
  char fallback_name[16];
  const char *name = errno_name_of(err, fallback_name);
  char description[128];
  const char *text = strerror_r(err, description, sizeof description);

  /* Node's format: "ENOENT: no such file or directory, open '/x'". */
  char message[512];
  if (detail != NULL && detail[0] != '\0') {
    snprintf(message, sizeof message, "%s: %s, %s '%s'", name, text, syscall, detail);
  } else {
    snprintf(message, sizeof message, "%s: %s, %s", name, text, syscall);
  }

  napi_value code_value, message_value, error, errno_value, syscall_value;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code_value) != napi_ok ||
      napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &message_value) != napi_ok ||
      napi_create_error(env, code_value, message_value, &error) != napi_ok ||
      napi_create_int32(env, -err, &errno_value) != napi_ok ||
      napi_set_named_property(env, error, "errno", errno_value) != napi_ok ||
      napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value) != napi_ok ||
      napi_set_named_property(env, error, "syscall", syscall_value) != napi_ok) {
    return warren_throw_napi_failure(env, "creating a system error");
  }
  napi_throw(env, error);
  return NULL;
}

napi_value warren_throw_type(napi_env env, const char *fn, const char *name, const char *expected) {
  char message[256];
  snprintf(message, sizeof message, "%s: argument '%s' must be %s", fn, name, expected);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
  return NULL;
}

napi_value warren_throw_range(napi_env env, const char *fn, const char *name, const char *problem) {
  char message[256];
  snprintf(message, sizeof message, "%s: argument '%s' %s", fn, name, problem);
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
  return NULL;
}

napi_value warren_throw_napi_failure(napi_env env, const char *what) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending) return NULL;
  const napi_extended_error_info *info = NULL;
  char message[512];
  if (napi_get_last_error_info(env, &info) == napi_ok && info != NULL &&
      info->error_message != NULL) {
    snprintf(message, sizeof message, "warren native: %s failed: %s", what, info->error_message);
  } else {
    snprintf(message, sizeof message, "warren native: %s failed", what);
  }
  napi_throw_error(env, "ERR_WARREN_NAPI", message);
  return NULL;
}

/* ---- arguments ---- */

bool warren_arg_int64(napi_env env, napi_value value, const char *fn, const char *name, int64_t min,
                      int64_t max, int64_t *out) {
  double number;
  if (napi_get_value_double(env, value, &number) != napi_ok) {
    warren_throw_type(env, fn, name, "a number");
    return false;
  }
  if (!(number >= (double)min && number <= (double)max) || trunc(number) != number) {
    char problem[128];
    snprintf(problem, sizeof problem, "must be an integer in [%lld, %lld], got %g", (long long)min,
             (long long)max, number);
    warren_throw_range(env, fn, name, problem);
    return false;
  }
  *out = (int64_t)number;
  return true;
}

bool warren_arg_int32(napi_env env, napi_value value, const char *fn, const char *name, int32_t min,
                      int32_t max, int32_t *out) {
  int64_t wide;
  if (!warren_arg_int64(env, value, fn, name, min, max, &wide)) return false;
  *out = (int32_t)wide;
  return true;
}

bool warren_arg_fd(napi_env env, napi_value value, const char *fn, const char *name, int *out) {
  int32_t fd;
  if (!warren_arg_int32(env, value, fn, name, 0, INT32_MAX, &fd)) return false;
  *out = fd;
  return true;
}

bool warren_arg_bytes(napi_env env, napi_value value, const char *fn, const char *name,
                      uint8_t **data, size_t *length) {
  bool is_typed_array = false;
  napi_typedarray_type type;
  void *pointer = NULL;
  if (napi_is_typedarray(env, value, &is_typed_array) != napi_ok || !is_typed_array ||
      napi_get_typedarray_info(env, value, &type, length, &pointer, NULL, NULL) != napi_ok ||
      type != napi_uint8_array) {
    warren_throw_type(env, fn, name, "a Uint8Array or Buffer");
    return false;
  }
  /* N-API already offsets `pointer` by the view's byteOffset. */
  *data = pointer;
  return true;
}

bool warren_arg_int32_array(napi_env env, napi_value value, const char *fn, const char *name,
                            int32_t **data, size_t *length) {
  bool is_typed_array = false;
  napi_typedarray_type type;
  void *pointer = NULL;
  if (napi_is_typedarray(env, value, &is_typed_array) != napi_ok || !is_typed_array ||
      napi_get_typedarray_info(env, value, &type, length, &pointer, NULL, NULL) != napi_ok ||
      type != napi_int32_array) {
    warren_throw_type(env, fn, name, "an Int32Array");
    return false;
  }
  *data = pointer;
  return true;
}

bool warren_arg_function(napi_env env, napi_value value, const char *fn, const char *name) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_function) {
    warren_throw_type(env, fn, name, "a function");
    return false;
  }
  return true;
}

bool warren_arg_ifname(napi_env env, napi_value value, const char *fn, const char *name,
                       bool allow_empty, char *out) {
  size_t length = 0;
  if (napi_get_value_string_utf8(env, value, NULL, 0, &length) != napi_ok) {
    warren_throw_type(env, fn, name, "a string");
    return false;
  }
  if (length > IFNAMSIZ - 1) {
    warren_throw_range(env, fn, name, "must be at most 15 bytes (IFNAMSIZ - 1)");
    return false;
  }
  if (napi_get_value_string_utf8(env, value, out, IFNAMSIZ, &length) != napi_ok) {
    warren_throw_napi_failure(env, "reading an interface name");
    return false;
  }
  if (strlen(out) != length) {
    warren_throw_range(env, fn, name, "must not contain NUL characters");
    return false;
  }
  if (length == 0 && !allow_empty) {
    warren_throw_range(env, fn, name, "must not be empty");
    return false;
  }
  return true;
}

bool warren_is_nullish(napi_env env, napi_value value) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok) return false;
  return type == napi_null || type == napi_undefined;
}

bool warren_export_function(napi_env env, napi_value exports, const char *name, napi_callback fn) {
  napi_value function;
  return napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &function) == napi_ok &&
         napi_set_named_property(env, exports, name, function) == napi_ok;
}

bool warren_export_int32(napi_env env, napi_value exports, const char *name, int32_t value) {
  napi_value number;
  return napi_create_int32(env, value, &number) == napi_ok &&
         napi_set_named_property(env, exports, name, number) == napi_ok;
}

/* ---- close(fd) ---- */

static napi_value close_fd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  if (!warren_arg_fd(env, argv[0], "close", "fd", &fd)) return NULL;
  /* On Linux the descriptor is released even when close() reports EINTR, so
   * retrying could close an unrelated, newly opened fd: treat EINTR as done. */
  if (close(fd) != 0 && errno != EINTR) return warren_throw_errno(env, errno, "close", NULL);
  return NULL;
}

/* ---- errnoName(errno) ---- */

static napi_value errno_name(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t value;
  if (!warren_arg_int32(env, argv[0], "errnoName", "errno", -4095, 4095, &value)) return NULL;
  char fallback[16];
  const char *name = errno_name_of(value < 0 ? -value : value, fallback);
  napi_value result;
  NAPI_CALL(env, napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &result));
  return result;
}

NAPI_MODULE_INIT() {
  if (!warren_export_int32(env, exports, "abiVersion", WARREN_ABI_VERSION) ||
      !warren_export_int32(env, exports, "RECORD_STRIDE", WARREN_RECORD_STRIDE) ||
      !warren_export_int32(env, exports, "MMSG_CHUNK", WARREN_MMSG_CHUNK) ||
      !warren_export_function(env, exports, "close", close_fd) ||
      !warren_export_function(env, exports, "errnoName", errno_name) || !warren_init_tun(env, exports) ||
      !warren_init_udp(env, exports) || !warren_init_poll(env, exports) ||
      !warren_init_aead(env, exports) || !warren_init_fdpass(env, exports) ||
      !warren_init_sandbox(env, exports)) {
    warren_throw_napi_failure(env, "module initialisation");
    return NULL;
  }
  return exports;
}
