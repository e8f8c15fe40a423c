/*
 * A reference hop pair for bench/relay.ts: relay + agent's two hops in C with
 * TLS between them, to show what any relay that encrypts its middle hop can
 * reach on this machine (there is no kTLS here, so TLS runs in user space).
 *
 *   tls-pipe near LISTEN_PORT TARGET_PORT             plain in, TLS out
 *   tls-pipe far  LISTEN_PORT TARGET_PORT CERT KEY    TLS in, plain out
 *
 * Each accepted connection gets one thread that moves bytes both ways with
 * non-blocking sockets and poll(): OpenSSL's SSL objects must not be read and
 * written from two threads at once. TLS 1.3 with OpenSSL's default suite
 * (AES-256-GCM), as Node's TLS would negotiate; the near side does not verify
 * the certificate (a benchmark on loopback, like the Node TLS pipes). Built
 * and run only by the benchmark (needs libssl-dev); it binds to loopback only.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hop.h"

#define BUFFER_BYTES (256 * 1024)

static SSL_CTX *context;
static int is_far;

struct connection {
  int plain;
  int tls;
};

/* One direction's buffer: bytes [offset, length) still to be written. */
struct buffer {
  char data[BUFFER_BYTES];
  size_t offset;
  size_t length;
};

static void set_nonblocking(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static void *serve_connection(void *argument) {
  struct connection *connection = argument;
  int plain = connection->plain;
  int tls = connection->tls;
  free(connection);
  SSL *ssl = SSL_new(context);
  struct buffer *to_tls = calloc(1, sizeof *to_tls);
  struct buffer *to_plain = calloc(1, sizeof *to_plain);
  if (ssl == NULL || to_tls == NULL || to_plain == NULL) goto done;
  SSL_set_fd(ssl, tls);
  SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  /* The handshake on blocking sockets, then everything non-blocking. */
  if ((is_far ? SSL_accept(ssl) : SSL_connect(ssl)) != 1) goto done;
  set_nonblocking(plain);
  set_nonblocking(tls);
  int plain_ended = 0;
  int tls_ended = 0;
  for (;;) {
    short plain_events = 0;
    short tls_events = 0;
    int progress = 0;
    /* plain -> TLS */
    if (to_tls->length == 0 && !plain_ended) {
      ssize_t got = read(plain, to_tls->data, BUFFER_BYTES);
      if (got > 0) {
        to_tls->offset = 0;
        to_tls->length = (size_t)got;
        progress = 1;
      } else if (got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
        plain_ended = 1;
      } else {
        plain_events |= POLLIN;
      }
    }
    if (to_tls->offset < to_tls->length) {
      int wrote = SSL_write(ssl, to_tls->data + to_tls->offset,
                            (int)(to_tls->length - to_tls->offset));
      if (wrote > 0) {
        to_tls->offset += (size_t)wrote;
        if (to_tls->offset == to_tls->length) to_tls->length = to_tls->offset = 0;
        progress = 1;
      } else {
        int error = SSL_get_error(ssl, wrote);
        if (error == SSL_ERROR_WANT_WRITE) tls_events |= POLLOUT;
        else if (error == SSL_ERROR_WANT_READ) tls_events |= POLLIN;
        else break;
      }
    }
    /* TLS -> plain */
    if (to_plain->length == 0 && !tls_ended) {
      int got = SSL_read(ssl, to_plain->data, BUFFER_BYTES);
      if (got > 0) {
        to_plain->offset = 0;
        to_plain->length = (size_t)got;
        progress = 1;
      } else {
        int error = SSL_get_error(ssl, got);
        if (error == SSL_ERROR_WANT_READ) tls_events |= POLLIN;
        else if (error == SSL_ERROR_WANT_WRITE) tls_events |= POLLOUT;
        else tls_ended = 1;
      }
    }
    if (to_plain->offset < to_plain->length) {
      ssize_t wrote = write(plain, to_plain->data + to_plain->offset,
                            to_plain->length - to_plain->offset);
      if (wrote > 0) {
        to_plain->offset += (size_t)wrote;
        if (to_plain->offset == to_plain->length) to_plain->length = to_plain->offset = 0;
        progress = 1;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        plain_events |= POLLOUT;
      } else {
        break;
      }
    }
    /* Either side finished and everything it sent was passed on: done. */
    if ((plain_ended && to_tls->length == 0) || (tls_ended && to_plain->length == 0)) break;
    if (progress) continue;
    struct pollfd fds[2] = {{plain, plain_events, 0}, {tls, tls_events, 0}};
    if (poll(fds, 2, 1000) < 0 && errno != EINTR) break;
  }
done:
  if (ssl != NULL) {
    SSL_shutdown(ssl);
    SSL_free(ssl);
  }
  free(to_tls);
  free(to_plain);
  close(plain);
  close(tls);
  return NULL;
}

/* One thread per connection (see serve_connection). */
static void serve(int accepted, int upstream) {
  struct connection *connection = malloc(sizeof *connection);
  if (connection == NULL) {
    close(accepted);
    close(upstream);
    return;
  }
  /* The near side takes plain connections and speaks TLS upstream; the far side the reverse. */
  connection->plain = is_far ? upstream : accepted;
  connection->tls = is_far ? accepted : upstream;
  pthread_t thread;
  if (pthread_create(&thread, NULL, serve_connection, connection) == 0) {
    pthread_detach(thread);
  } else {
    close(accepted);
    close(upstream);
    free(connection);
  }
}

int main(int argc, char **argv) {
  is_far = argc == 6 && strcmp(argv[1], "far") == 0;
  if (!(argc == 4 && strcmp(argv[1], "near") == 0) && !is_far) {
    fprintf(stderr, "usage: tls-pipe near LISTEN_PORT TARGET_PORT\n"
                    "       tls-pipe far LISTEN_PORT TARGET_PORT CERT KEY\n");
    return 2;
  }
  context = SSL_CTX_new(is_far ? TLS_server_method() : TLS_client_method());
  if (context == NULL) return 1;
  SSL_CTX_set_min_proto_version(context, TLS1_3_VERSION);
  if (is_far && (SSL_CTX_use_certificate_chain_file(context, argv[4]) != 1 ||
                 SSL_CTX_use_PrivateKey_file(context, argv[5], SSL_FILETYPE_PEM) != 1)) {
    ERR_print_errors_fp(stderr);
    return 1;
  }
  return hop_listen_and_serve(argv[2], argv[3], serve);
}
