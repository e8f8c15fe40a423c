/*
 * ChaCha20-Poly1305 for WireGuard transport data (whitepaper §5.4.6), through
 * the OpenSSL that Node itself links and exports. node:crypto offers the same
 * AEAD, but building a Cipheriv per packet costs ~10 µs; here one EVP context
 * per direction is kept and only re-keyed, ~1 µs per 1420-byte packet.
 *
 *   chachaSeal(key, counter, src, srcOffset, srcLength, paddedLength, dst, dstOffset) -> bytes written
 *     Encrypts src[srcOffset, +srcLength) followed by (paddedLength - srcLength) zero bytes,
 *     writes ciphertext || 16-byte tag at dst[dstOffset]; returns paddedLength + 16.
 *   chachaOpen(key, counter, src, srcOffset, srcLength, dst, dstOffset) -> plaintext length or -1
 *     srcLength includes the tag; -1 when the tag does not verify (dst is then garbage).
 *
 * The nonce is 32 zero bits followed by the 64-bit little-endian counter (RFC 8439 §2.8 as
 * WireGuard uses it). The JS thread is the only caller, so static contexts are safe.
 */
#include <openssl/evp.h>
#include <string.h>

#include "warren.h"

#define KEY_SIZE 32
#define TAG_SIZE 16
#define MAX_SAFE_COUNTER 9007199254740991.0 /* 2^53 - 1: exact in a JS number */

static EVP_CIPHER_CTX *seal_ctx;
static EVP_CIPHER_CTX *open_ctx;
static const uint8_t zeros[16];

static void make_nonce(uint8_t nonce[12], uint64_t counter) {
  memset(nonce, 0, 4);
  for (int i = 0; i < 8; i++) nonce[4 + i] = (uint8_t)(counter >> (8 * i));
}

static bool arg_counter(napi_env env, napi_value value, const char *fn, uint64_t *out) {
  double counter;
  if (napi_get_value_double(env, value, &counter) != napi_ok || counter < 0 ||
      counter > MAX_SAFE_COUNTER || counter != (double)(uint64_t)counter) {
    warren_throw_range(env, fn, "counter", "must be an integer in [0, 2^53)");
    return false;
  }
  *out = (uint64_t)counter;
  return true;
}

static bool arg_key(napi_env env, napi_value value, const char *fn, uint8_t **key) {
  size_t length;
  if (!warren_arg_bytes(env, value, fn, "key", key, &length)) return false;
  if (length != KEY_SIZE) {
    warren_throw_range(env, fn, "key", "must be 32 bytes");
    return false;
  }
  return true;
}

static napi_value crypto_failure(napi_env env, const char *fn) {
  napi_throw_error(env, "ERR_WARREN_CRYPTO", fn);
  return NULL;
}

static napi_value chacha_seal(napi_env env, napi_callback_info info) {
  static const char fn[] = "chachaSeal";
  size_t argc = 8;
  napi_value argv[8];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *key, *src, *dst;
  size_t src_size, dst_size;
  uint64_t counter;
  int32_t src_offset, src_length, padded_length, dst_offset;
  if (argc < 8 || !arg_key(env, argv[0], fn, &key) || !arg_counter(env, argv[1], fn, &counter) ||
      !warren_arg_bytes(env, argv[2], fn, "src", &src, &src_size) ||
      !warren_arg_int32(env, argv[3], fn, "srcOffset", 0, INT32_MAX, &src_offset) ||
      !warren_arg_int32(env, argv[4], fn, "srcLength", 0, INT32_MAX, &src_length) ||
      !warren_arg_int32(env, argv[5], fn, "paddedLength", 0, INT32_MAX, &padded_length) ||
      !warren_arg_bytes(env, argv[6], fn, "dst", &dst, &dst_size) ||
      !warren_arg_int32(env, argv[7], fn, "dstOffset", 0, INT32_MAX, &dst_offset)) {
    return NULL;
  }
  if ((uint64_t)src_offset + (uint64_t)src_length > src_size) {
    return warren_throw_range(env, fn, "srcLength", "runs past the end of src");
  }
  if (padded_length < src_length) {
    return warren_throw_range(env, fn, "paddedLength", "is shorter than srcLength");
  }
  if ((uint64_t)dst_offset + (uint64_t)padded_length + TAG_SIZE > dst_size) {
    return warren_throw_range(env, fn, "dst", "is too small for the sealed message");
  }
  uint8_t nonce[12];
  make_nonce(nonce, counter);
  uint8_t *out = dst + dst_offset;
  int written = 0, more = 0;
  if (EVP_EncryptInit_ex(seal_ctx, NULL, NULL, key, nonce) != 1 ||
      EVP_EncryptUpdate(seal_ctx, out, &written, src + src_offset, src_length) != 1) {
    return crypto_failure(env, "chachaSeal: EVP_EncryptUpdate failed");
  }
  for (int32_t pad = padded_length - src_length; pad > 0;) {
    int chunk = pad > (int32_t)sizeof zeros ? (int)sizeof zeros : pad;
    if (EVP_EncryptUpdate(seal_ctx, out + written, &more, zeros, chunk) != 1) {
      return crypto_failure(env, "chachaSeal: EVP_EncryptUpdate failed");
    }
    written += more;
    pad -= chunk;
  }
  if (EVP_EncryptFinal_ex(seal_ctx, out + written, &more) != 1 ||
      EVP_CIPHER_CTX_ctrl(seal_ctx, EVP_CTRL_AEAD_GET_TAG, TAG_SIZE, out + padded_length) != 1) {
    return crypto_failure(env, "chachaSeal: EVP_EncryptFinal_ex failed");
  }
  napi_value result;
  NAPI_CALL(env, napi_create_int32(env, padded_length + TAG_SIZE, &result));
  return result;
}

static napi_value chacha_open(napi_env env, napi_callback_info info) {
  static const char fn[] = "chachaOpen";
  size_t argc = 7;
  napi_value argv[7];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint8_t *key, *src, *dst;
  size_t src_size, dst_size;
  uint64_t counter;
  int32_t src_offset, src_length, dst_offset;
  if (argc < 7 || !arg_key(env, argv[0], fn, &key) || !arg_counter(env, argv[1], fn, &counter) ||
      !warren_arg_bytes(env, argv[2], fn, "src", &src, &src_size) ||
      !warren_arg_int32(env, argv[3], fn, "srcOffset", 0, INT32_MAX, &src_offset) ||
      !warren_arg_int32(env, argv[4], fn, "srcLength", TAG_SIZE, INT32_MAX, &src_length) ||
      !warren_arg_bytes(env, argv[5], fn, "dst", &dst, &dst_size) ||
      !warren_arg_int32(env, argv[6], fn, "dstOffset", 0, INT32_MAX, &dst_offset)) {
    return NULL;
  }
  if ((uint64_t)src_offset + (uint64_t)src_length > src_size) {
    return warren_throw_range(env, fn, "srcLength", "runs past the end of src");
  }
  int32_t plain_length = src_length - TAG_SIZE;
  if ((uint64_t)dst_offset + (uint64_t)plain_length > dst_size) {
    return warren_throw_range(env, fn, "dst", "is too small for the plaintext");
  }
  uint8_t nonce[12];
  make_nonce(nonce, counter);
  /* The tag is copied first: src and dst may be the same buffer (in-place decryption). */
  uint8_t tag[TAG_SIZE];
  memcpy(tag, src + src_offset + plain_length, TAG_SIZE);
  int written = 0, more = 0;
  if (EVP_DecryptInit_ex(open_ctx, NULL, NULL, key, nonce) != 1 ||
      EVP_DecryptUpdate(open_ctx, dst + dst_offset, &written, src + src_offset, plain_length) != 1 ||
      EVP_CIPHER_CTX_ctrl(open_ctx, EVP_CTRL_AEAD_SET_TAG, TAG_SIZE, tag) != 1) {
    return crypto_failure(env, "chachaOpen: EVP_DecryptUpdate failed");
  }
  int ok = EVP_DecryptFinal_ex(open_ctx, dst + dst_offset + written, &more);
  napi_value result;
  NAPI_CALL(env, napi_create_int32(env, ok == 1 ? plain_length : -1, &result));
  return result;
}

bool warren_init_aead(napi_env env, napi_value exports) {
  if (seal_ctx == NULL) {
    seal_ctx = EVP_CIPHER_CTX_new();
    open_ctx = EVP_CIPHER_CTX_new();
    if (seal_ctx == NULL || open_ctx == NULL ||
        EVP_EncryptInit_ex(seal_ctx, EVP_chacha20_poly1305(), NULL, NULL, NULL) != 1 ||
        EVP_DecryptInit_ex(open_ctx, EVP_chacha20_poly1305(), NULL, NULL, NULL) != 1) {
      napi_throw_error(env, "ERR_WARREN_CRYPTO", "cannot create the ChaCha20-Poly1305 context");
      return false;
    }
  }
  return warren_export_function(env, exports, "chachaSeal", chacha_seal) &&
         warren_export_function(env, exports, "chachaOpen", chacha_open);
}
