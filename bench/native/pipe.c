/*
 * A reference hop for bench/relay.ts: the cheapest relay hop there is on this
 * machine, to show what the kernel leaves for any user-space relay.
 *
 *   pipe LISTEN_PORT TARGET_PORT
 *
 * Listens on 127.0.0.1:LISTEN_PORT and, for each connection, connects to
 * 127.0.0.1:TARGET_PORT and copies bytes both ways with read()/write() on a
 * 256 KiB buffer, one thread per direction: no TLS, no framing, no event loop.
 * Two of them in a row are the same two hops as relay + agent. Built and run
 * only by the benchmark; it binds to loopback and nothing else.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* One connection: both sockets are closed when both directions are done. */
struct connection {
  int client;
  int upstream;
  int directions_left;
  pthread_mutex_t lock;
};

struct direction {
  struct connection *connection;
  int from;
  int to;
};

static void direction_done(struct connection *connection) {
  pthread_mutex_lock(&connection->lock);
  int left = --connection->directions_left;
  pthread_mutex_unlock(&connection->lock);
  if (left > 0) return;
  close(connection->client);
  close(connection->upstream);
  pthread_mutex_destroy(&connection->lock);
  free(connection);
}

static void *copy(void *argument) {
  struct direction *direction = argument;
  static __thread char buffer[256 * 1024];
  for (;;) {
    ssize_t got = read(direction->from, buffer, sizeof buffer);
    if (got <= 0) break;
    for (ssize_t sent = 0; sent < got;) {
      ssize_t wrote = write(direction->to, buffer + sent, (size_t)(got - sent));
      if (wrote <= 0) goto done;
      sent += wrote;
    }
  }
done:
  shutdown(direction->to, SHUT_WR);
  direction_done(direction->connection);
  free(direction);
  return NULL;
}

static void start(struct connection *connection, int from, int to) {
  struct direction *direction = malloc(sizeof *direction);
  pthread_t thread;
  if (direction != NULL) {
    direction->connection = connection;
    direction->from = from;
    direction->to = to;
    if (pthread_create(&thread, NULL, copy, direction) == 0) {
      pthread_detach(thread);
      return;
    }
    free(direction);
  }
  shutdown(to, SHUT_WR);
  direction_done(connection);
}

static struct sockaddr_in loopback(int port) {
  struct sockaddr_in address = {0};
  address.sin_family = AF_INET;
  address.sin_port = htons((unsigned short)port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: pipe LISTEN_PORT TARGET_PORT\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct sockaddr_in listen_address = loopback(atoi(argv[1]));
  struct sockaddr_in target = loopback(atoi(argv[2]));
  int one = 1;
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(listener, (struct sockaddr *)&listen_address, sizeof listen_address) != 0 ||
      listen(listener, 64) != 0) {
    perror("pipe: listen");
    return 1;
  }
  printf("{\"port\":%s}\n", argv[1]);
  fflush(stdout);
  for (;;) {
    int client = accept(listener, NULL, NULL);
    if (client < 0) continue;
    int upstream = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(upstream, (struct sockaddr *)&target, sizeof target) != 0) {
      close(client);
      close(upstream);
      continue;
    }
    setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct connection *connection = malloc(sizeof *connection);
    if (connection == NULL) {
      close(client);
      close(upstream);
      continue;
    }
    connection->client = client;
    connection->upstream = upstream;
    connection->directions_left = 2;
    pthread_mutex_init(&connection->lock, NULL);
    start(connection, client, upstream);
    start(connection, upstream, client);
  }
}
