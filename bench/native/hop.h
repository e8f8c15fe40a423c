/*
 * What the two reference hops (pipe.c, tls-pipe.c) share: listen on
 * 127.0.0.1:LISTEN_PORT, print {"port":LISTEN_PORT} when ready, and for each
 * connection connect to 127.0.0.1:TARGET_PORT and hand both sockets (with
 * TCP_NODELAY, as the relay sets) to `serve`, which owns them from then on.
 * Loopback only: the benchmark never sends elsewhere.
 */
#ifndef WARREN_BENCH_HOP_H
#define WARREN_BENCH_HOP_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in hop_loopback(int port) {
  struct sockaddr_in address = {0};
  address.sin_family = AF_INET;
  address.sin_port = htons((unsigned short)port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

/* Runs forever; returns 1 only when it cannot listen. */
static int hop_listen_and_serve(const char *listen_port, const char *target_port,
                                void (*serve)(int accepted, int upstream)) {
  signal(SIGPIPE, SIG_IGN);
  struct sockaddr_in listen_address = hop_loopback(atoi(listen_port));
  struct sockaddr_in target = hop_loopback(atoi(target_port));
  int one = 1;
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(listener, (struct sockaddr *)&listen_address, sizeof listen_address) != 0 ||
      listen(listener, 64) != 0) {
    perror("listen");
    return 1;
  }
  printf("{\"port\":%s}\n", listen_port);
  fflush(stdout);
  for (;;) {
    int accepted = accept(listener, NULL, NULL);
    if (accepted < 0) continue;
    int upstream = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(upstream, (struct sockaddr *)&target, sizeof target) != 0) {
      close(accepted);
      close(upstream);
      continue;
    }
    setsockopt(accepted, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(upstream, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    serve(accepted, upstream);
  }
}

#endif
