/*
 * File-descriptor passing between processes: an AF_UNIX SOCK_SEQPACKET
 * socketpair and SCM_RIGHTS messages (unix(7), cmsg(3)).
 *
 * Node has no way to send an arbitrary fd (its IPC channel passes only
 * sockets and servers), but the sandbox (src/sandbox/) opens its TUN device
 * inside the new network namespace and hands the fd to the engine outside.
 *
 * SOCK_SEQPACKET keeps message boundaries (one sendFds = one recvFds) and
 * reports the peer's close as a zero-length read; sendFds therefore refuses
 * empty payloads, so a zero-length read always means end of file.
 *
 * Both ends have SO_PASSCRED on: the kernel attaches the sender's credentials
 * to every message and translates the pid into the receiver's pid namespace
 * (net/core/scm.c, scm_recv), which tells the engine the host pid of a
 * sandbox's init without asking it (inside its own pid namespace it is 1).
 */
#define _GNU_SOURCE
#include "warren.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* At most this many fds per message (the kernel allows SCM_MAX_FD = 253). */
#define FDPASS_MAX_FDS 16

typedef union {
  char bytes[CMSG_SPACE(sizeof(int) * FDPASS_MAX_FDS) + CMSG_SPACE(sizeof(struct ucred))];
  struct cmsghdr align;
} fd_control;

/* ---- socketpair() -> [fd0, fd1] ---- */

static napi_value fd_socketpair(napi_env env, napi_callback_info info) {
  (void)info;
  int fds[2];
  /* Non-blocking (read through watch() on the event loop) and close-on-exec
   * (only the child it is meant for gets its end, via spawn's stdio, which
   * dup2()s it and so clears the flag on the copy). */
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
    return warren_throw_errno(env, errno, "socketpair", NULL);
  }
  const int on = 1;
  for (int i = 0; i < 2; i++) {
    if (setsockopt(fds[i], SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) {
      int err = errno;
      close(fds[0]);
      close(fds[1]);
      return warren_throw_errno(env, err, "setsockopt", "SO_PASSCRED");
    }
  }
  napi_value result, value;
  if (napi_create_array_with_length(env, 2, &result) != napi_ok ||
      napi_create_int32(env, fds[0], &value) != napi_ok ||
      napi_set_element(env, result, 0, value) != napi_ok ||
      napi_create_int32(env, fds[1], &value) != napi_ok ||
      napi_set_element(env, result, 1, value) != napi_ok) {
    close(fds[0]);
    close(fds[1]);
    return warren_throw_napi_failure(env, "building socketpair's result");
  }
  return result;
}

/* ---- sendFds(sock, fds, payload) -> boolean (false: queue full, retry) ---- */

static napi_value send_fds(napi_env env, napi_callback_info info) {
  static const char fn[] = "sendFds";
  size_t argc = 3;
  napi_value argv[3];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int sock;
  uint8_t *payload;
  size_t payload_length;
  if (!warren_arg_fd(env, argv[0], fn, "sock", &sock)) return NULL;
  bool is_array = false;
  if (napi_is_array(env, argv[1], &is_array) != napi_ok || !is_array) {
    return warren_throw_type(env, fn, "fds", "an array of file descriptors");
  }
  if (!warren_arg_bytes(env, argv[2], fn, "payload", &payload, &payload_length)) return NULL;
  if (payload_length == 0) {
    return warren_throw_range(env, fn, "payload",
                              "must not be empty (a zero-length message reads as end of file)");
  }
  uint32_t fd_count;
  NAPI_CALL(env, napi_get_array_length(env, argv[1], &fd_count));
  if (fd_count > FDPASS_MAX_FDS) {
    return warren_throw_range(env, fn, "fds", "must hold at most 16 descriptors");
  }
  int fds[FDPASS_MAX_FDS];
  for (uint32_t i = 0; i < fd_count; i++) {
    napi_value element;
    NAPI_CALL(env, napi_get_element(env, argv[1], i, &element));
    if (!warren_arg_fd(env, element, fn, "fds[i]", &fds[i])) return NULL;
  }

  struct iovec vector = {.iov_base = payload, .iov_len = payload_length};
  fd_control control;
  memset(&control, 0, sizeof control);
  struct msghdr message = {.msg_iov = &vector, .msg_iovlen = 1};
  if (fd_count > 0) {
    message.msg_control = control.bytes;
    message.msg_controllen = CMSG_SPACE(sizeof(int) * fd_count);
    struct cmsghdr *header = CMSG_FIRSTHDR(&message);
    header->cmsg_level = SOL_SOCKET;
    header->cmsg_type = SCM_RIGHTS;
    header->cmsg_len = CMSG_LEN(sizeof(int) * fd_count);
    memcpy(CMSG_DATA(header), fds, sizeof(int) * fd_count);
  }
  for (;;) {
    /* MSG_NOSIGNAL: a closed peer is an EPIPE error, not a process-killing
     * SIGPIPE (Node ignores SIGPIPE anyway, a sandbox init may not). */
    ssize_t sent = sendmsg(sock, &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent >= 0) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      napi_value result;
      NAPI_CALL(env, napi_get_boolean(env, false, &result));
      return result;
    }
    return warren_throw_errno(env, errno, "sendmsg", NULL);
  }
  napi_value result;
  NAPI_CALL(env, napi_get_boolean(env, true, &result));
  return result;
}

/* ---- recvFds(sock) -> null | { eof: true } | { eof: false, payload, fds, pid } ---- */

static void close_all(const int *fds, size_t count) {
  for (size_t i = 0; i < count; i++) close(fds[i]);
}

static napi_value recv_fds(napi_env env, napi_callback_info info) {
  static const char fn[] = "recvFds";
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int sock;
  if (!warren_arg_fd(env, argv[0], fn, "sock", &sock)) return NULL;

  /* Learn the message's size first (MSG_PEEK | MSG_TRUNC returns the real
   * length of a seqpacket message), so any size is received straight into a
   * Buffer of the right length. */
  ssize_t size;
  char probe;
  struct iovec probe_vector = {.iov_base = &probe, .iov_len = 1};
  struct msghdr probe_message = {.msg_iov = &probe_vector, .msg_iovlen = 1};
  for (;;) {
    size = recvmsg(sock, &probe_message, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
    if (size >= 0) break;
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      napi_value null_value;
      NAPI_CALL(env, napi_get_null(env, &null_value));
      return null_value;
    }
    return warren_throw_errno(env, errno, "recvmsg", NULL);
  }

  napi_value result, value;
  NAPI_CALL(env, napi_create_object(env, &result));
  if (size == 0) {
    /* sendFds never sends an empty message: this is the peer's close. */
    NAPI_CALL(env, napi_get_boolean(env, true, &value));
    NAPI_CALL(env, napi_set_named_property(env, result, "eof", value));
    return result;
  }

  void *data = NULL;
  napi_value payload;
  NAPI_CALL(env, napi_create_buffer(env, (size_t)size, &data, &payload));
  struct iovec vector = {.iov_base = data, .iov_len = (size_t)size};
  fd_control control;
  memset(&control, 0, sizeof control);
  struct msghdr message = {.msg_iov = &vector,
                           .msg_iovlen = 1,
                           .msg_control = control.bytes,
                           .msg_controllen = sizeof control.bytes};
  ssize_t received;
  for (;;) {
    /* MSG_CMSG_CLOEXEC: received fds are close-on-exec, like every fd the
     * addon creates. */
    received = recvmsg(sock, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (received >= 0) break;
    if (errno == EINTR) continue;
    return warren_throw_errno(env, errno, "recvmsg", NULL);
  }

  int fds[FDPASS_MAX_FDS];
  size_t fd_count = 0;
  int32_t sender_pid = -1;
  for (struct cmsghdr *header = CMSG_FIRSTHDR(&message); header != NULL;
       header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET) continue;
    if (header->cmsg_type == SCM_RIGHTS) {
      size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; i++) {
        int fd;
        memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof fd);
        if (fd_count < FDPASS_MAX_FDS) {
          fds[fd_count++] = fd;
        } else {
          close(fd);
        }
      }
    } else if (header->cmsg_type == SCM_CREDENTIALS &&
               header->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
      struct ucred credentials;
      memcpy(&credentials, CMSG_DATA(header), sizeof credentials);
      /* 0 when the sender's pid is not visible in our pid namespace. */
      sender_pid = credentials.pid > 0 ? credentials.pid : -1;
    }
  }
  if ((message.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 || received != size) {
    /* More fds than FDPASS_MAX_FDS, or a message that changed under us:
     * never hand out a partial message. */
    close_all(fds, fd_count);
    return warren_throw_errno(env, EMSGSIZE, "recvmsg",
                              (message.msg_flags & MSG_CTRUNC) != 0
                                  ? "more than 16 file descriptors in one message"
                                  : "message truncated");
  }

  napi_value fd_array;
  bool ok = napi_create_array_with_length(env, fd_count, &fd_array) == napi_ok;
  for (size_t i = 0; ok && i < fd_count; i++) {
    ok = napi_create_int32(env, fds[i], &value) == napi_ok &&
         napi_set_element(env, fd_array, (uint32_t)i, value) == napi_ok;
  }
  ok = ok && napi_set_named_property(env, result, "fds", fd_array) == napi_ok &&
       napi_set_named_property(env, result, "payload", payload) == napi_ok &&
       napi_create_int32(env, sender_pid, &value) == napi_ok &&
       napi_set_named_property(env, result, "pid", value) == napi_ok &&
       napi_get_boolean(env, false, &value) == napi_ok &&
       napi_set_named_property(env, result, "eof", value) == napi_ok;
  if (!ok) {
    close_all(fds, fd_count);
    return warren_throw_napi_failure(env, "building recvFds's result");
  }
  return result;
}

bool warren_init_fdpass(napi_env env, napi_value exports) {
  return warren_export_function(env, exports, "socketpair", fd_socketpair) &&
         warren_export_function(env, exports, "sendFds", send_fds) &&
         warren_export_function(env, exports, "recvFds", recv_fds);
}
