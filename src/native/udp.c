/*
 * The UDP socket the WireGuard engine sends and receives on.
 *
 * Node's dgram cannot do what a WireGuard bind needs, so the addon owns it:
 *  - IP_PKTINFO / IPV6_RECVPKTINFO report the local address each datagram
 *    arrived on, and an IP_PKTINFO / IPV6_PKTINFO control message on send
 *    picks the source address, so replies leave from the address the peer
 *    wrote to ("sticky sockets", wireguard-go conn/sticky_linux.go; ip(7),
 *    ipv6(7), RFC 3542 section 6).
 *  - SO_MARK (socket(7)) keeps the engine's own packets out of the tunnel when
 *    wg-quick routes everything through it with `fwmark 51820`.
 *  - recvmmsg(2) / sendmmsg(2) move a batch per syscall.
 * One IPv4 and one IPv6 socket share a port, the IPv6 one IPV6_V6ONLY, as
 * wireguard-go's conn/bind_std.go does.
 */
#define _GNU_SOURCE
#include "warren.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef union {
  struct sockaddr any;
  struct sockaddr_in v4;
  struct sockaddr_in6 v6;
} socket_address;

/* Room for one pktinfo control message of either family. */
typedef union {
  char bytes[CMSG_SPACE(sizeof(struct in6_pktinfo))];
  struct cmsghdr align;
} pktinfo_control;

/* Receive side: room for a pktinfo plus a little slack for others. */
typedef union {
  char bytes[64];
  struct cmsghdr align;
} receive_control;

/* Send errors handed back as a negative errno instead of thrown: they concern
 * one packet or the current route, and the caller decides whether to drop the
 * packet or, for the "stale source" group, to clear the endpoint's sticky
 * source address and retry (wireguard-go's old conn/bind_linux.go retried
 * without the source on EINVAL). Exported to JS as softSendErrno. */
static const struct {
  const char *name;
  int value;
} soft_send_errors[] = {
    {"EAGAIN", EAGAIN},   /* socket buffer full: drop, like a NIC */
    {"ENOBUFS", ENOBUFS}, /* qdisc or device queue full */
    /* stale source: ip_route_output_key_hash_rcu (net/ipv4/route.c) gives
     * ENETUNREACH for a source address that is not local, ENODEV for a gone
     * ifindex; IPv6 and older kernels give EINVAL / EADDRNOTAVAIL. */
    {"EINVAL", EINVAL},
    {"EADDRNOTAVAIL", EADDRNOTAVAIL},
    {"ENETUNREACH", ENETUNREACH},
    {"ENODEV", ENODEV},
    {"EHOSTUNREACH", EHOSTUNREACH},
    {"ENETDOWN", ENETDOWN},
    {"EHOSTDOWN", EHOSTDOWN},
    {"ECONNREFUSED", ECONNREFUSED}, /* a queued ICMP error surfaced on this socket */
    {"EMSGSIZE", EMSGSIZE},         /* larger than the path MTU allows */
    {"EPERM", EPERM},               /* a firewall rule rejected the packet */
};

static bool is_soft_send_error(int err) {
  for (size_t i = 0; i < sizeof soft_send_errors / sizeof soft_send_errors[0]; i++) {
    if (soft_send_errors[i].value == err) return true;
  }
  return false;
}

static int family_to_domain(int32_t family) { return family == 4 ? AF_INET : AF_INET6; }

/* Sets an int socket option; returns 0 or errno. */
static int set_int_option(int fd, int level, int name, int value) {
  return setsockopt(fd, level, name, &value, sizeof value) == 0 ? 0 : errno;
}

/* ---- udpOpen(family, port) -> { fd, port } ---- */

static napi_value udp_open(napi_env env, napi_callback_info info) {
  static const char fn[] = "udpOpen";
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t family, port;
  if (!warren_arg_int32(env, argv[0], fn, "family", 4, 6, &family)) return NULL;
  if (family != 4 && family != 6) return warren_throw_range(env, fn, "family", "must be 4 or 6");
  if (!warren_arg_int32(env, argv[1], fn, "port", 0, 65535, &port)) return NULL;

  int domain = family_to_domain(family);
  int fd = socket(domain, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
  if (fd < 0) return warren_throw_errno(env, errno, "socket", NULL);

  int err;
  const char *failed_option = NULL;
  if (family == 6) {
    if ((err = set_int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, 1)) != 0) {
      failed_option = "IPV6_V6ONLY";
    } else if ((err = set_int_option(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)) != 0) {
      failed_option = "IPV6_RECVPKTINFO";
    }
  } else if ((err = set_int_option(fd, IPPROTO_IP, IP_PKTINFO, 1)) != 0) {
    failed_option = "IP_PKTINFO";
  }
  if (failed_option != NULL) {
    close(fd);
    return warren_throw_errno(env, err, "setsockopt", failed_option);
  }

  /* Large buffers absorb bursts between event-loop turns. The *FORCE variants
   * pass rmem_max/wmem_max but need CAP_NET_ADMIN; either failing only leaves
   * the default size, so failures are ignored (wireguard-go
   * conn/controlfns_linux.go does the same with 7 MiB). */
  const int buffer_size = 7 << 20;
  if (set_int_option(fd, SOL_SOCKET, SO_RCVBUFFORCE, buffer_size) != 0) {
    (void)set_int_option(fd, SOL_SOCKET, SO_RCVBUF, buffer_size);
  }
  if (set_int_option(fd, SOL_SOCKET, SO_SNDBUFFORCE, buffer_size) != 0) {
    (void)set_int_option(fd, SOL_SOCKET, SO_SNDBUF, buffer_size);
  }

  socket_address address;
  memset(&address, 0, sizeof address);
  socklen_t address_length;
  if (family == 4) {
    address.v4.sin_family = AF_INET;
    address.v4.sin_port = htons((uint16_t)port);
    address.v4.sin_addr.s_addr = htonl(INADDR_ANY);
    address_length = sizeof address.v4;
  } else {
    address.v6.sin6_family = AF_INET6;
    address.v6.sin6_port = htons((uint16_t)port);
    address.v6.sin6_addr = in6addr_any;
    address_length = sizeof address.v6;
  }
  if (bind(fd, &address.any, address_length) != 0) {
    err = errno;
    close(fd);
    return warren_throw_errno(env, err, "bind", NULL);
  }
  address_length = sizeof address;
  if (getsockname(fd, &address.any, &address_length) != 0) {
    err = errno;
    close(fd);
    return warren_throw_errno(env, err, "getsockname", NULL);
  }
  int bound_port = ntohs(family == 4 ? address.v4.sin_port : address.v6.sin6_port);

  napi_value result, fd_value, port_value;
  if (napi_create_object(env, &result) != napi_ok ||
      napi_create_int32(env, fd, &fd_value) != napi_ok ||
      napi_set_named_property(env, result, "fd", fd_value) != napi_ok ||
      napi_create_int32(env, bound_port, &port_value) != napi_ok ||
      napi_set_named_property(env, result, "port", port_value) != napi_ok) {
    close(fd);
    return warren_throw_napi_failure(env, "building udpOpen's result");
  }
  return result;
}

/* ---- udpSetMark(fd, mark) ---- */

static napi_value udp_set_mark(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  int64_t mark;
  if (!warren_arg_fd(env, argv[0], "udpSetMark", "fd", &fd) ||
      !warren_arg_int64(env, argv[1], "udpSetMark", "mark", 0, UINT32_MAX, &mark)) {
    return NULL;
  }
  uint32_t value = (uint32_t)mark;
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &value, sizeof value) != 0) {
    return warren_throw_errno(env, errno, "setsockopt", "SO_MARK");
  }
  return NULL;
}

/* ---- udpRecv(fd, buffer, slotSize, maxPackets, meta) -> count ---- */

/* Fills one metadata record (layout in warren.h) for a received datagram. */
static void fill_meta(int32_t *record, const struct mmsghdr *message,
                      const socket_address *peer) {
  memset(record, 0, WARREN_RECORD_STRIDE * sizeof *record);
  record[WARREN_REC_LENGTH_OR_FLAGS] = (message->msg_hdr.msg_flags & MSG_TRUNC)
                                           ? WARREN_META_TRUNCATED
                                           : (int32_t)message->msg_len;
  if (peer->any.sa_family == AF_INET) {
    record[WARREN_REC_FAMILY] = 4;
    record[WARREN_REC_PEER_PORT] = ntohs(peer->v4.sin_port);
    record[WARREN_REC_PEER_ADDR] = warren_be_word((const uint8_t *)&peer->v4.sin_addr);
  } else if (peer->any.sa_family == AF_INET6) {
    record[WARREN_REC_FAMILY] = 6;
    record[WARREN_REC_PEER_PORT] = ntohs(peer->v6.sin6_port);
    for (int w = 0; w < 4; w++) {
      record[WARREN_REC_PEER_ADDR + w] = warren_be_word(peer->v6.sin6_addr.s6_addr + 4 * w);
    }
  }
  for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&message->msg_hdr); cmsg != NULL;
       cmsg = CMSG_NXTHDR((struct msghdr *)&message->msg_hdr, cmsg)) {
    if (cmsg->cmsg_level == IPPROTO_IP && cmsg->cmsg_type == IP_PKTINFO &&
        cmsg->cmsg_len >= CMSG_LEN(sizeof(struct in_pktinfo))) {
      struct in_pktinfo pktinfo;
      memcpy(&pktinfo, CMSG_DATA(cmsg), sizeof pktinfo);
      record[WARREN_REC_LOCAL_IFINDEX] = pktinfo.ipi_ifindex;
      /* ipi_spec_dst is the local address to answer from (ip(7)); it equals
       * the header destination for unicast. wireguard-go uses it too. */
      record[WARREN_REC_LOCAL_ADDR] = warren_be_word((const uint8_t *)&pktinfo.ipi_spec_dst);
    } else if (cmsg->cmsg_level == IPPROTO_IPV6 && cmsg->cmsg_type == IPV6_PKTINFO &&
               cmsg->cmsg_len >= CMSG_LEN(sizeof(struct in6_pktinfo))) {
      struct in6_pktinfo pktinfo;
      memcpy(&pktinfo, CMSG_DATA(cmsg), sizeof pktinfo);
      record[WARREN_REC_LOCAL_IFINDEX] = (int32_t)pktinfo.ipi6_ifindex;
      for (int w = 0; w < 4; w++) {
        record[WARREN_REC_LOCAL_ADDR + w] = warren_be_word(pktinfo.ipi6_addr.s6_addr + 4 * w);
      }
    }
  }
}

static napi_value udp_recv(napi_env env, napi_callback_info info) {
  static const char fn[] = "udpRecv";
  size_t argc = 5;
  napi_value argv[5];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  uint8_t *buffer;
  size_t buffer_length, meta_length;
  int32_t slot_size, max_packets, *meta;
  if (!warren_arg_fd(env, argv[0], fn, "fd", &fd) ||
      !warren_arg_bytes(env, argv[1], fn, "buffer", &buffer, &buffer_length) ||
      !warren_arg_int32(env, argv[2], fn, "slotSize", 1, INT32_MAX, &slot_size) ||
      !warren_arg_int32(env, argv[3], fn, "maxPackets", 1, INT32_MAX, &max_packets) ||
      !warren_arg_int32_array(env, argv[4], fn, "meta", &meta, &meta_length)) {
    return NULL;
  }
  if ((uint64_t)slot_size * (uint64_t)max_packets > buffer_length) {
    return warren_throw_range(env, fn, "buffer", "is shorter than slotSize * maxPackets");
  }
  if (meta_length < (uint64_t)max_packets * WARREN_RECORD_STRIDE) {
    return warren_throw_range(env, fn, "meta", "has fewer than maxPackets * META_STRIDE elements");
  }

  struct mmsghdr messages[WARREN_MMSG_CHUNK];
  struct iovec vectors[WARREN_MMSG_CHUNK];
  socket_address peers[WARREN_MMSG_CHUNK];
  receive_control controls[WARREN_MMSG_CHUNK];

  int32_t total = 0;
  while (total < max_packets) {
    int32_t chunk = max_packets - total;
    if (chunk > WARREN_MMSG_CHUNK) chunk = WARREN_MMSG_CHUNK;
    for (int32_t i = 0; i < chunk; i++) {
      vectors[i].iov_base = buffer + (size_t)(total + i) * (size_t)slot_size;
      vectors[i].iov_len = (size_t)slot_size;
      memset(&messages[i], 0, sizeof messages[i]);
      messages[i].msg_hdr.msg_name = &peers[i];
      messages[i].msg_hdr.msg_namelen = sizeof peers[i];
      messages[i].msg_hdr.msg_iov = &vectors[i];
      messages[i].msg_hdr.msg_iovlen = 1;
      messages[i].msg_hdr.msg_control = controls[i].bytes;
      messages[i].msg_hdr.msg_controllen = sizeof controls[i].bytes;
    }
    int received = recvmmsg(fd, messages, (unsigned int)chunk, MSG_DONTWAIT, NULL);
    if (received < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      /* Return what we have; a persistent error is thrown by the next call. */
      if (total > 0) break;
      return warren_throw_errno(env, errno, "recvmmsg", NULL);
    }
    for (int i = 0; i < received; i++) {
      fill_meta(meta + (size_t)(total + i) * WARREN_RECORD_STRIDE, &messages[i], &peers[i]);
    }
    total += received;
    if (received < chunk) break; /* the queue is drained */
  }
  napi_value result;
  NAPI_CALL(env, napi_create_int32(env, total, &result));
  return result;
}

/* ---- sending ---- */

/*
 * Points `message` at a destination (and optionally a source) address.
 * `peer`/`local` are 4 (IPv4) or 16 (IPv6) address bytes; `local` may be NULL.
 * A link-local IPv6 peer is scoped to `ifindex` (RFC 4007 zones).
 */
static void address_message(struct msghdr *message, socket_address *name,
                            pktinfo_control *control, int32_t family, const uint8_t *peer,
                            int32_t port, const uint8_t *local, int32_t ifindex) {
  memset(name, 0, sizeof *name);
  message->msg_name = name;
  message->msg_control = NULL;
  message->msg_controllen = 0;
  if (family == 4) {
    name->v4.sin_family = AF_INET;
    name->v4.sin_port = htons((uint16_t)port);
    memcpy(&name->v4.sin_addr, peer, 4);
    message->msg_namelen = sizeof name->v4;
  } else {
    name->v6.sin6_family = AF_INET6;
    name->v6.sin6_port = htons((uint16_t)port);
    memcpy(&name->v6.sin6_addr, peer, 16);
    if (IN6_IS_ADDR_LINKLOCAL(&name->v6.sin6_addr)) name->v6.sin6_scope_id = (uint32_t)ifindex;
    message->msg_namelen = sizeof name->v6;
  }
  if (local == NULL) return;

  memset(control, 0, sizeof *control);
  message->msg_control = control->bytes;
  struct cmsghdr *cmsg;
  if (family == 4) {
    /* ip(7): ipi_spec_dst selects the source address, ipi_ifindex the device. */
    message->msg_controllen = CMSG_SPACE(sizeof(struct in_pktinfo));
    cmsg = CMSG_FIRSTHDR(message);
    cmsg->cmsg_level = IPPROTO_IP;
    cmsg->cmsg_type = IP_PKTINFO;
    cmsg->cmsg_len = CMSG_LEN(sizeof(struct in_pktinfo));
    struct in_pktinfo pktinfo;
    memset(&pktinfo, 0, sizeof pktinfo);
    pktinfo.ipi_ifindex = ifindex;
    memcpy(&pktinfo.ipi_spec_dst, local, 4);
    memcpy(CMSG_DATA(cmsg), &pktinfo, sizeof pktinfo);
  } else {
    /* RFC 3542 section 6.1: ipi6_addr is the source, ipi6_ifindex the device. */
    message->msg_controllen = CMSG_SPACE(sizeof(struct in6_pktinfo));
    cmsg = CMSG_FIRSTHDR(message);
    cmsg->cmsg_level = IPPROTO_IPV6;
    cmsg->cmsg_type = IPV6_PKTINFO;
    cmsg->cmsg_len = CMSG_LEN(sizeof(struct in6_pktinfo));
    struct in6_pktinfo pktinfo;
    memset(&pktinfo, 0, sizeof pktinfo);
    pktinfo.ipi6_ifindex = (unsigned int)ifindex;
    memcpy(&pktinfo.ipi6_addr, local, 16);
    memcpy(CMSG_DATA(cmsg), &pktinfo, sizeof pktinfo);
  }
}

/* Reads `family`'s address from a Uint8Array argument into `out`. */
static bool arg_address(napi_env env, napi_value value, const char *fn, const char *name,
                        int32_t family, uint8_t *out) {
  uint8_t *bytes;
  size_t length;
  if (!warren_arg_bytes(env, value, fn, name, &bytes, &length)) return false;
  size_t expected = family == 4 ? 4 : 16;
  if (length != expected) {
    warren_throw_range(env, fn, name,
                       family == 4 ? "must hold 4 bytes for family 4" : "must hold 16 bytes for family 6");
    return false;
  }
  memcpy(out, bytes, expected);
  return true;
}

/* udpSend(fd, buffer, offset, length, family, dstAddr, dstPort, srcAddr | null,
 *         srcIfindex) -> 0 | -errno */
static napi_value udp_send(napi_env env, napi_callback_info info) {
  static const char fn[] = "udpSend";
  size_t argc = 9;
  napi_value argv[9];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  uint8_t *buffer;
  size_t buffer_length;
  int32_t offset, length, family, port, ifindex;
  uint8_t peer[16], local[16];
  if (!warren_arg_fd(env, argv[0], fn, "fd", &fd) ||
      !warren_arg_bytes(env, argv[1], fn, "buffer", &buffer, &buffer_length) ||
      !warren_arg_int32(env, argv[2], fn, "offset", 0, INT32_MAX, &offset) ||
      !warren_arg_int32(env, argv[3], fn, "length", 0, INT32_MAX, &length) ||
      !warren_arg_int32(env, argv[4], fn, "family", 4, 6, &family)) {
    return NULL;
  }
  if (family != 4 && family != 6) return warren_throw_range(env, fn, "family", "must be 4 or 6");
  if ((uint64_t)offset + (uint64_t)length > buffer_length) {
    return warren_throw_range(env, fn, "length", "runs past the end of buffer");
  }
  if (!arg_address(env, argv[5], fn, "dstAddr", family, peer) ||
      !warren_arg_int32(env, argv[6], fn, "dstPort", 1, 65535, &port)) {
    return NULL;
  }
  bool has_local = !warren_is_nullish(env, argv[7]);
  if (has_local && !arg_address(env, argv[7], fn, "srcAddr", family, local)) return NULL;
  if (!warren_arg_int32(env, argv[8], fn, "srcIfindex", 0, INT32_MAX, &ifindex)) return NULL;

  struct iovec vector = {.iov_base = buffer + offset, .iov_len = (size_t)length};
  struct msghdr message;
  memset(&message, 0, sizeof message);
  message.msg_iov = &vector;
  message.msg_iovlen = 1;
  socket_address name;
  pktinfo_control control;
  address_message(&message, &name, &control, family, peer, port, has_local ? local : NULL,
                  ifindex);

  int status = 0;
  while (sendmsg(fd, &message, MSG_DONTWAIT) < 0) {
    if (errno == EINTR) continue;
    if (!is_soft_send_error(errno)) return warren_throw_errno(env, errno, "sendmsg", NULL);
    status = -errno;
    break;
  }
  napi_value result;
  NAPI_CALL(env, napi_create_int32(env, status, &result));
  return result;
}

/* udpSendBatch(fd, buffer, offsets, lengths, count, endpoints, endpointIndex | null)
 *   -> number of leading packets sent, or -errno if packet 0 failed softly */
static napi_value udp_send_batch(napi_env env, napi_callback_info info) {
  static const char fn[] = "udpSendBatch";
  size_t argc = 7;
  napi_value argv[7];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int fd;
  uint8_t *buffer;
  size_t buffer_length, offsets_length, lengths_length, endpoints_length, index_length = 0;
  int32_t *offsets, *lengths, *endpoints, *endpoint_index = NULL, count;
  if (!warren_arg_fd(env, argv[0], fn, "fd", &fd) ||
      !warren_arg_bytes(env, argv[1], fn, "buffer", &buffer, &buffer_length) ||
      !warren_arg_int32_array(env, argv[2], fn, "offsets", &offsets, &offsets_length) ||
      !warren_arg_int32_array(env, argv[3], fn, "lengths", &lengths, &lengths_length) ||
      !warren_arg_int32(env, argv[4], fn, "count", 0, INT32_MAX, &count) ||
      !warren_arg_int32_array(env, argv[5], fn, "endpoints", &endpoints, &endpoints_length)) {
    return NULL;
  }
  if (!warren_is_nullish(env, argv[6]) &&
      !warren_arg_int32_array(env, argv[6], fn, "endpointIndex", &endpoint_index, &index_length)) {
    return NULL;
  }
  if (offsets_length < (size_t)count) {
    return warren_throw_range(env, fn, "offsets", "has fewer than count elements");
  }
  if (lengths_length < (size_t)count) {
    return warren_throw_range(env, fn, "lengths", "has fewer than count elements");
  }
  if (endpoint_index != NULL && index_length < (size_t)count) {
    return warren_throw_range(env, fn, "endpointIndex", "has fewer than count elements");
  }
  size_t endpoint_count = endpoints_length / WARREN_RECORD_STRIDE;
  if (endpoint_count == 0) {
    return warren_throw_range(env, fn, "endpoints", "must hold at least one ENDPOINT_STRIDE record");
  }
  /* Validate everything first so a bad call sends nothing. */
  for (int32_t i = 0; i < count; i++) {
    if (offsets[i] < 0 || lengths[i] < 0 ||
        (uint64_t)offsets[i] + (uint64_t)lengths[i] > buffer_length) {
      return warren_throw_range(env, fn, "offsets/lengths",
                                "describe a packet outside buffer (or negative)");
    }
    if (endpoint_index != NULL &&
        (endpoint_index[i] < 0 || (size_t)endpoint_index[i] >= endpoint_count)) {
      return warren_throw_range(env, fn, "endpointIndex", "refers to a missing endpoint record");
    }
  }
  for (size_t e = 0; e < endpoint_count; e++) {
    const int32_t *record = endpoints + e * WARREN_RECORD_STRIDE;
    int32_t family = record[WARREN_REC_FAMILY];
    if ((family != 4 && family != 6) || record[WARREN_REC_PEER_PORT] < 1 ||
        record[WARREN_REC_PEER_PORT] > 65535 || record[WARREN_REC_LOCAL_IFINDEX] < 0) {
      return warren_throw_range(env, fn, "endpoints",
                                "holds a record with a bad family (4|6), port or ifindex");
    }
  }

  struct mmsghdr messages[WARREN_MMSG_CHUNK];
  struct iovec vectors[WARREN_MMSG_CHUNK];
  socket_address names[WARREN_MMSG_CHUNK];
  pktinfo_control controls[WARREN_MMSG_CHUNK];

  int32_t sent = 0;
  while (sent < count) {
    int32_t chunk = count - sent;
    if (chunk > WARREN_MMSG_CHUNK) chunk = WARREN_MMSG_CHUNK;
    for (int32_t i = 0; i < chunk; i++) {
      int32_t packet = sent + i;
      const int32_t *record =
          endpoints + (size_t)(endpoint_index != NULL ? endpoint_index[packet] : 0) *
                          WARREN_RECORD_STRIDE;
      uint8_t peer[16], local[16];
      for (int w = 0; w < 4; w++) {
        warren_word_to_bytes(record[WARREN_REC_PEER_ADDR + w], peer + 4 * w);
        warren_word_to_bytes(record[WARREN_REC_LOCAL_ADDR + w], local + 4 * w);
      }
      bool sticky = (record[WARREN_REC_LENGTH_OR_FLAGS] & WARREN_ENDPOINT_FLAG_STICKY_SOURCE) != 0;
      vectors[i].iov_base = buffer + offsets[packet];
      vectors[i].iov_len = (size_t)lengths[packet];
      memset(&messages[i], 0, sizeof messages[i]);
      messages[i].msg_hdr.msg_iov = &vectors[i];
      messages[i].msg_hdr.msg_iovlen = 1;
      address_message(&messages[i].msg_hdr, &names[i], &controls[i], record[WARREN_REC_FAMILY],
                      peer, record[WARREN_REC_PEER_PORT], sticky ? local : NULL,
                      record[WARREN_REC_LOCAL_IFINDEX]);
    }
    int done = sendmmsg(fd, messages, (unsigned int)chunk, MSG_DONTWAIT);
    if (done < 0) {
      if (errno == EINTR) continue;
      /* Report what went out; the caller retries from `sent` and then sees
       * the failing packet's error on its own. */
      if (sent > 0) break;
      if (!is_soft_send_error(errno)) return warren_throw_errno(env, errno, "sendmmsg", NULL);
      sent = -errno;
      break;
    }
    /* A short count means message `done` failed: the next sendmmsg starting
     * there reports its error (or sends it, if the condition passed). */
    sent += done;
  }
  napi_value result;
  NAPI_CALL(env, napi_create_int32(env, sent, &result));
  return result;
}

bool warren_init_udp(napi_env env, napi_value exports) {
  napi_value soft;
  if (napi_create_object(env, &soft) != napi_ok) return false;
  for (size_t i = 0; i < sizeof soft_send_errors / sizeof soft_send_errors[0]; i++) {
    if (!warren_export_int32(env, soft, soft_send_errors[i].name, -soft_send_errors[i].value)) {
      return false;
    }
  }
  return napi_object_freeze(env, soft) == napi_ok &&
         napi_set_named_property(env, exports, "softSendErrno", soft) == napi_ok &&
         warren_export_function(env, exports, "udpOpen", udp_open) &&
         warren_export_function(env, exports, "udpSetMark", udp_set_mark) &&
         warren_export_function(env, exports, "udpRecv", udp_recv) &&
         warren_export_function(env, exports, "udpSend", udp_send) &&
         warren_export_function(env, exports, "udpSendBatch", udp_send_batch);
}
