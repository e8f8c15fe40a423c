/*
 * TUN devices: open/configure (ioctl) and batched packet I/O.
 *
 * Linux TUN API: Documentation/networking/tuntap.rst. With IFF_NO_PI each
 * read() returns exactly one IP packet and each write() injects one, with no
 * 4-byte packet-information header (as wireguard-go's tun/tun_linux.go when
 * offloads are off).
 */
#define _GNU_SOURCE
#include "warren.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

/* Throws an ioctl error whose message names the request and interface. */
static napi_value throw_ioctl_errno(napi_env env, int err, const char *request, const char *ifname) {
  char detail[64];
  snprintf(detail, sizeof detail, "%s %s", request, ifname);
  return warren_throw_errno(env, err, "ioctl", detail);
}

/* ---- tunOpen(name) -> { fd, name } ---- */

static napi_value tun_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[IFNAMSIZ] = {0};
  if (!warren_arg_ifname(env, argv[0], "tunOpen", "name", true, name)) return NULL;

  /* Non-blocking (uv_poll drives reads) and close-on-exec (children such as
   * wg-quick's hooks must not inherit the device) set atomically at open. */
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return warren_throw_errno(env, errno, "open", "/dev/net/tun");

  struct ifreq request;
  memset(&request, 0, sizeof request);
  request.ifr_flags = IFF_TUN | IFF_NO_PI;
  memcpy(request.ifr_name, name, IFNAMSIZ);
  if (ioctl(fd, TUNSETIFF, &request) != 0) {
    int err = errno;
    close(fd);
    return throw_ioctl_errno(env, err, "TUNSETIFF", name);
  }
  /* The kernel writes back the real name (it fills a "tun%d" pattern). */
  request.ifr_name[IFNAMSIZ - 1] = '\0';

  napi_value result, fd_value, name_value;
  if (napi_create_object(env, &result) != napi_ok ||
      napi_create_int32(env, fd, &fd_value) != napi_ok ||
      napi_set_named_property(env, result, "fd", fd_value) != napi_ok ||
      napi_create_string_utf8(env, request.ifr_name, NAPI_AUTO_LENGTH, &name_value) != napi_ok ||
      napi_set_named_property(env, result, "name", name_value) != napi_ok) {
    close(fd);
    return warren_throw_napi_failure(env, "building tunOpen's result");
  }
  return result;
}

/* ---- interface ioctls on an AF_INET datagram socket (current netns) ---- */

/* Runs one SIOC* ioctl on `request` (name already filled). Returns 0 or errno. */
static int interface_ioctl(unsigned long command, struct ifreq *request) {
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return errno;
  int err = ioctl(sock, command, request) == 0 ? 0 : errno;
  close(sock);
  return err;
}

static napi_value tun_set_mtu(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct ifreq request;
  memset(&request, 0, sizeof request);
  int32_t mtu;
  if (!warren_arg_ifname(env, argv[0], "tunSetMtu", "name", false, request.ifr_name) ||
      !warren_arg_int32(env, argv[1], "tunSetMtu", "mtu", 1, 65535, &mtu)) {
    return NULL;
  }
  request.ifr_mtu = mtu;
  int err = interface_ioctl(SIOCSIFMTU, &request);
  if (err != 0) return throw_ioctl_errno(env, err, "SIOCSIFMTU", request.ifr_name);
  return NULL;
}

static napi_value tun_get_mtu(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct ifreq request;
  memset(&request, 0, sizeof request);
  if (!warren_arg_ifname(env, argv[0], "tunGetMtu", "name", false, request.ifr_name)) return NULL;
  int err = interface_ioctl(SIOCGIFMTU, &request);
  if (err != 0) return throw_ioctl_errno(env, err, "SIOCGIFMTU", request.ifr_name);
  napi_value result;
  NAPI_CALL(env, napi_create_int32(env, request.ifr_mtu, &result));
  return result;
}

static napi_value tun_set_up(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct ifreq request;
  memset(&request, 0, sizeof request);
  if (!warren_arg_ifname(env, argv[0], "tunSetUp", "name", false, request.ifr_name)) return NULL;
  /* Read-modify-write so the other flags are kept. */
  int err = interface_ioctl(SIOCGIFFLAGS, &request);
  if (err != 0) return throw_ioctl_errno(env, err, "SIOCGIFFLAGS", request.ifr_name);
  request.ifr_flags |= IFF_UP;
  err = interface_ioctl(SIOCSIFFLAGS, &request);
  if (err != 0) return throw_ioctl_errno(env, err, "SIOCSIFFLAGS", request.ifr_name);
  return NULL;
}

/* ---- tunRead(fd, buffer, slotSize, maxPackets, lengths) -> count ---- */

static napi_value tun_read(napi_env env, napi_callback_info info) {
  static const char fn[] = "tunRead";
  size_t argc = 5;
  napi_value argv[5];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  uint8_t *buffer;
  size_t buffer_length, lengths_length;
  int32_t slot_size, max_packets, *lengths;
  if (!warren_arg_fd(env, argv[0], fn, "fd", &fd) ||
      !warren_arg_bytes(env, argv[1], fn, "buffer", &buffer, &buffer_length) ||
      !warren_arg_int32(env, argv[2], fn, "slotSize", 1, INT32_MAX, &slot_size) ||
      !warren_arg_int32(env, argv[3], fn, "maxPackets", 1, INT32_MAX, &max_packets) ||
      !warren_arg_int32_array(env, argv[4], fn, "lengths", &lengths, &lengths_length)) {
    return NULL;
  }
  if ((uint64_t)slot_size * (uint64_t)max_packets > buffer_length) {
    return warren_throw_range(env, fn, "buffer", "is shorter than slotSize * maxPackets");
  }
  if (lengths_length < (size_t)max_packets) {
    return warren_throw_range(env, fn, "lengths", "has fewer than maxPackets elements");
  }

  int32_t count = 0;
  while (count < max_packets) {
    ssize_t n = read(fd, buffer + (size_t)count * (size_t)slot_size, (size_t)slot_size);
    if (n >= 0) {
      lengths[count++] = (int32_t)n;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) break;
    /* Hand back what was read; the error (e.g. EBADFD once the interface is
     * deleted) repeats on the next call and is thrown then. */
    if (count > 0) break;
    return warren_throw_errno(env, errno, "read", NULL);
  }
  napi_value result;
  NAPI_CALL(env, napi_create_int32(env, count, &result));
  return result;
}

/* Writes one packet. Returns 1 written, 0 dropped (queue full), -errno hard. */
static int write_packet(int fd, const uint8_t *packet, size_t length) {
  for (;;) {
    if (write(fd, packet, length) >= 0) return 1;
    if (errno == EINTR) continue;
    /* A full device queue drops the packet, as a NIC would (wireguard-go only
     * logs TUN write errors, device/receive.go). */
    if (errno == EAGAIN || errno == ENOBUFS) return 0;
    return -errno;
  }
}

/* ---- tunWrite(fd, buffer, offset, length) -> boolean (false = dropped) ---- */

static napi_value tun_write(napi_env env, napi_callback_info info) {
  static const char fn[] = "tunWrite";
  size_t argc = 4;
  napi_value argv[4];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  uint8_t *buffer;
  size_t buffer_length;
  int32_t offset, length;
  if (!warren_arg_fd(env, argv[0], fn, "fd", &fd) ||
      !warren_arg_bytes(env, argv[1], fn, "buffer", &buffer, &buffer_length) ||
      !warren_arg_int32(env, argv[2], fn, "offset", 0, INT32_MAX, &offset) ||
      !warren_arg_int32(env, argv[3], fn, "length", 0, INT32_MAX, &length)) {
    return NULL;
  }
  if ((uint64_t)offset + (uint64_t)length > buffer_length) {
    return warren_throw_range(env, fn, "length", "runs past the end of buffer");
  }
  int outcome = write_packet(fd, buffer + offset, (size_t)length);
  if (outcome < 0) return warren_throw_errno(env, -outcome, "write", NULL);
  napi_value result;
  NAPI_CALL(env, napi_get_boolean(env, outcome == 1, &result));
  return result;
}

/* ---- tunWriteBatch(fd, buffer, offsets, lengths, count) -> written ---- */

static napi_value tun_write_batch(napi_env env, napi_callback_info info) {
  static const char fn[] = "tunWriteBatch";
  size_t argc = 5;
  napi_value argv[5];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  uint8_t *buffer;
  size_t buffer_length, offsets_length, lengths_length;
  int32_t *offsets, *lengths, count;
  if (!warren_arg_fd(env, argv[0], fn, "fd", &fd) ||
      !warren_arg_bytes(env, argv[1], fn, "buffer", &buffer, &buffer_length) ||
      !warren_arg_int32_array(env, argv[2], fn, "offsets", &offsets, &offsets_length) ||
      !warren_arg_int32_array(env, argv[3], fn, "lengths", &lengths, &lengths_length) ||
      !warren_arg_int32(env, argv[4], fn, "count", 0, INT32_MAX, &count)) {
    return NULL;
  }
  if (offsets_length < (size_t)count) {
    return warren_throw_range(env, fn, "offsets", "has fewer than count elements");
  }
  if (lengths_length < (size_t)count) {
    return warren_throw_range(env, fn, "lengths", "has fewer than count elements");
  }
  /* Validate every slice before writing any, so a bad call writes nothing. */
  for (int32_t i = 0; i < count; i++) {
    if (offsets[i] < 0 || lengths[i] < 0 ||
        (uint64_t)offsets[i] + (uint64_t)lengths[i] > buffer_length) {
      return warren_throw_range(env, fn, "offsets/lengths",
                                "describe a packet outside buffer (or negative)");
    }
  }
  int32_t written = 0;
  for (int32_t i = 0; i < count; i++) {
    int outcome = write_packet(fd, buffer + offsets[i], (size_t)lengths[i]);
    if (outcome < 0) return warren_throw_errno(env, -outcome, "write", NULL);
    written += outcome;
  }
  napi_value result;
  NAPI_CALL(env, napi_create_int32(env, written, &result));
  return result;
}

bool warren_init_tun(napi_env env, napi_value exports) {
  return warren_export_function(env, exports, "tunOpen", tun_open) &&
         warren_export_function(env, exports, "tunSetMtu", tun_set_mtu) &&
         warren_export_function(env, exports, "tunGetMtu", tun_get_mtu) &&
         warren_export_function(env, exports, "tunSetUp", tun_set_up) &&
         warren_export_function(env, exports, "tunRead", tun_read) &&
         warren_export_function(env, exports, "tunWrite", tun_write) &&
         warren_export_function(env, exports, "tunWriteBatch", tun_write_batch);
}
