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
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hop.h"

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

/* Both directions of one connection, each on its own thread. */
static void serve(int client, int upstream) {
  struct connection *connection = malloc(sizeof *connection);
  if (connection == NULL) {
    close(client);
    close(upstream);
    return;
  }
  connection->client = client;
  connection->upstream = upstream;
  connection->directions_left = 2;
  pthread_mutex_init(&connection->lock, NULL);
  start(connection, client, upstream);
  start(connection, upstream, client);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: pipe LISTEN_PORT TARGET_PORT\n");
    return 2;
  }
  return hop_listen_and_serve(argv[1], argv[2], serve);
}
