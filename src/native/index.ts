/**
 * The one typed door to warren's native addon (src/native/*.c, built by
 * `npm install` / `node-gyp rebuild` into build/Release/warren_native.node).
 *
 * The addon does only what Node cannot: TUN ioctls, readiness watching of raw
 * fds on Node's event loop (uv_poll), batched TUN reads/writes, and a UDP
 * socket with IP_PKTINFO / SO_MARK / recvmmsg / sendmmsg (shared/DESIGN.md).
 *
 * Errors. A failing syscall throws an Error shaped like Node's own system
 * errors (see {@link NativeError}): `code` is the errno name ('EPERM'),
 * `errno` the NEGATIVE errno (Node's and libuv's convention: -1 for EPERM),
 * `syscall` the syscall ('ioctl', 'bind', ...). A bad argument throws a
 * TypeError (code 'ERR_INVALID_ARG_TYPE') or RangeError ('ERR_OUT_OF_RANGE')
 * naming the function and the argument. Functions on the data path that
 * routinely hit per-packet conditions return them instead of throwing:
 * tunWrite returns false when the device queue is full, udpSend returns a
 * negative errno (see {@link SOFT_SEND_ERRNO}).
 *
 * Threading: every function is synchronous and non-blocking (all fds are
 * O_NONBLOCK), meant to be called from a {@link watch} callback.
 */
import { createRequire } from 'node:module';

/** Address family of a UDP socket or endpoint. */
export type IpFamily = 4 | 6;

/** A TUN device opened by {@link tunOpen}. */
export interface TunDevice {
  /** Non-blocking, close-on-exec fd of /dev/net/tun bound to the interface. */
  readonly fd: number;
  /** The interface's real name (the kernel picks one when asked for ''). */
  readonly name: string;
}

/** A UDP socket opened by {@link udpOpen}. */
export interface UdpSocket {
  /** Non-blocking, close-on-exec socket fd. */
  readonly fd: number;
  /** The bound port (the kernel's pick when 0 was asked for). */
  readonly port: number;
}

/**
 * Called by a {@link Watcher} when its fd is readable (`status` 0), or once
 * with a negative errno when polling failed. libuv reports any EPOLLERR as
 * -EBADF (-9) and stops polling: for a TUN fd that means the interface was
 * deleted (`ip link del`), and tunRead then throws EBADFD. An exception thrown
 * by the callback is reported as an uncaught exception, like any Node callback.
 */
export type WatchCallback = (status: number) => void;

/** Level-triggered readiness watcher over a raw fd (libuv uv_poll_t). */
export interface Watcher {
  /** Stops watching and releases the handle; idempotent. Close the watcher
   * BEFORE closing its fd (libuv requirement). */
  close(): void;
  /** Makes the watcher keep the event loop alive (the default). */
  ref(): void;
  /** Lets the process exit even while this watcher is active. */
  unref(): void;
  /** Whether the watcher currently keeps the event loop alive. */
  hasRef(): boolean;
  /** Stops callbacks without closing (backpressure); resume() restarts. */
  pause(): void;
  /** Restarts callbacks after pause() or after an error stopped polling. */
  resume(): void;
}

/** A system error thrown by the addon (or by Node itself). */
export interface NativeError extends NodeJS.ErrnoException {
  /** errno name, e.g. 'EPERM', 'EBADFD'. */
  code: string;
  /** NEGATIVE errno, e.g. -1 for EPERM (Node's convention). */
  errno: number;
  /** The syscall that failed, e.g. 'ioctl', 'recvmmsg'. */
  syscall: string;
}

/** True for system errors (a string `code`, numeric `errno`, string `syscall`). */
export function isErrnoError(error: unknown): error is NativeError {
  if (!(error instanceof Error)) return false;
  const fields = error as Partial<Record<'code' | 'errno' | 'syscall', unknown>>;
  return (
    typeof fields.code === 'string' &&
    typeof fields.errno === 'number' &&
    typeof fields.syscall === 'string'
  );
}

// ---- record layouts (must match src/native/warren.h; checked at load) ----

/**
 * Int32 words per datagram in udpRecv's `meta` array. Record i starts at
 * i * META_STRIDE:
 *
 * | word  | meaning                                                       |
 * |-------|---------------------------------------------------------------|
 * | 0     | length in bytes, or META_TRUNCATED (-1): larger than slotSize |
 * | 1     | family: 4 or 6                                                |
 * | 2     | peer (source) port                                            |
 * | 3     | ifindex the datagram arrived on (from PKTINFO)               |
 * | 4..7  | peer (source) address words                                   |
 * | 8..11 | local (destination) address words: reply from this address   |
 *
 * Address words are the address bytes read as big-endian u32s, stored as
 * int32 (`>>> 0` for the unsigned value): IPv4 a.b.c.d is word 0 =
 * (a<<24)|(b<<16)|(c<<8)|d with words 1..3 zero; IPv6 uses all four.
 * Comparing two addresses is comparing 4 words; {@link decodeAddressWords} turns
 * them back into bytes, {@link formatAddress} into text.
 */
export const META_STRIDE = 12;
/** Alias of {@link META_STRIDE}. */
export const UDP_META_STRIDE = META_STRIDE;
export const META_LENGTH = 0;
export const META_FAMILY = 1;
export const META_PEER_PORT = 2;
export const META_LOCAL_IFINDEX = 3;
export const META_PEER_ADDR = 4;
export const META_LOCAL_ADDR = 8;
/** META_LENGTH value of a datagram that did not fit its slot: drop it. */
export const META_TRUNCATED = -1;

/**
 * Int32 words per destination in udpSendBatch's `endpoints` table. Words
 * 1..11 mean the same as in a meta record, so copying a received datagram's
 * record and setting word 0 to ENDPOINT_FLAG_STICKY_SOURCE gives the endpoint
 * that answers it from the address it came to ({@link endpointFromMeta}).
 *
 * | word  | meaning                                                        |
 * |-------|----------------------------------------------------------------|
 * | 0     | flags: ENDPOINT_FLAG_STICKY_SOURCE = send from words 3 and 8..11 |
 * | 1     | family: 4 or 6 (must match the socket's)                       |
 * | 2     | peer (destination) port                                        |
 * | 3     | ifindex to send from (0 = any; also the zone of a link-local peer) |
 * | 4..7  | peer (destination) address words                               |
 * | 8..11 | local (source) address words, used with the sticky flag        |
 */
export const ENDPOINT_STRIDE = 12;
export const ENDPOINT_FLAGS = 0;
export const ENDPOINT_FAMILY = 1;
export const ENDPOINT_PEER_PORT = 2;
export const ENDPOINT_LOCAL_IFINDEX = 3;
export const ENDPOINT_PEER_ADDR = 4;
export const ENDPOINT_LOCAL_ADDR = 8;
export const ENDPOINT_FLAG_STICKY_SOURCE = 1;

/** Datagrams per recvmmsg/sendmmsg syscall (larger batches loop); also a good
 * batch size for callers (wireguard-go conn.IdealBatchSize). */
export const MMSG_CHUNK = 128;

/** Layout version of the C side; a mismatch means build/ is stale. */
const ABI_VERSION = 3;

/** Errno names udpSend / udpSendBatch return (negated) instead of throwing. */
export type SoftSendErrnoName =
  | 'EAGAIN'
  | 'ENOBUFS'
  | 'EINVAL'
  | 'EADDRNOTAVAIL'
  | 'ENETUNREACH'
  | 'ENODEV'
  | 'EHOSTUNREACH'
  | 'ENETDOWN'
  | 'EHOSTDOWN'
  | 'ECONNREFUSED'
  | 'EMSGSIZE'
  | 'EPERM';

// ---- the binding ----

interface NativeBinding {
  readonly abiVersion: number;
  readonly RECORD_STRIDE: number;
  readonly MMSG_CHUNK: number;
  readonly softSendErrno: Readonly<Record<SoftSendErrnoName, number>>;
  readonly close: (fd: number) => void;
  readonly errnoName: (errno: number) => string;
  readonly tunOpen: (name: string) => TunDevice;
  readonly tunSetMtu: (name: string, mtu: number) => void;
  readonly tunGetMtu: (name: string) => number;
  readonly tunSetUp: (name: string) => void;
  readonly tunRead: (
    fd: number,
    buffer: Uint8Array,
    slotSize: number,
    maxPackets: number,
    lengths: Int32Array,
  ) => number;
  readonly tunWrite: (fd: number, buffer: Uint8Array, offset: number, length: number) => boolean;
  readonly tunWriteBatch: (
    fd: number,
    buffer: Uint8Array,
    offsets: Int32Array,
    lengths: Int32Array,
    count: number,
  ) => number;
  readonly udpOpen: (family: IpFamily, port: number) => UdpSocket;
  readonly udpSetMark: (fd: number, mark: number) => void;
  readonly udpRecv: (
    fd: number,
    buffer: Uint8Array,
    slotSize: number,
    maxPackets: number,
    meta: Int32Array,
  ) => number;
  readonly udpSend: (
    fd: number,
    buffer: Uint8Array,
    offset: number,
    length: number,
    family: IpFamily,
    dstAddr: Uint8Array,
    dstPort: number,
    srcAddr: Uint8Array | null,
    srcIfindex: number,
  ) => number;
  readonly udpSendBatch: (
    fd: number,
    buffer: Uint8Array,
    offsets: Int32Array,
    lengths: Int32Array,
    count: number,
    endpoints: Int32Array,
    endpointIndex: Int32Array | null,
  ) => number;
  readonly watch: (fd: number, callback: WatchCallback) => Watcher;
  readonly chachaSeal: (
    key: Uint8Array,
    counter: number,
    src: Uint8Array,
    srcOffset: number,
    srcLength: number,
    paddedLength: number,
    dst: Uint8Array,
    dstOffset: number,
  ) => number;
  readonly chachaOpen: (
    key: Uint8Array,
    counter: number,
    src: Uint8Array,
    srcOffset: number,
    srcLength: number,
    dst: Uint8Array,
    dstOffset: number,
  ) => number;
}

// This file compiles to dist/src/native/index.js: three levels below the
// package root, where node-gyp puts build/.
const ADDON_PATH = '../../../build/Release/warren_native.node';

function loadBinding(): NativeBinding {
  const require = createRequire(import.meta.url);
  let binding: NativeBinding;
  try {
    binding = require(ADDON_PATH) as NativeBinding;
  } catch (error) {
    throw new Error(
      `warren: cannot load the native addon (${ADDON_PATH}); build it with \`npm run install\` (node-gyp rebuild)`,
      { cause: error },
    );
  }
  if (
    binding.abiVersion !== ABI_VERSION ||
    binding.RECORD_STRIDE !== META_STRIDE ||
    binding.MMSG_CHUNK !== MMSG_CHUNK
  ) {
    throw new Error(
      `warren: the native addon is stale (abi ${binding.abiVersion}, want ${ABI_VERSION}); rebuild it with \`npm run install\``,
    );
  }
  return binding;
}

const binding = loadBinding();

/**
 * Errors udpSend / udpSendBatch return as a negative errno instead of
 * throwing, e.g. `SOFT_SEND_ERRNO.EAGAIN === -11`. They concern one packet or
 * the current route: the caller drops the packet, or, when
 * {@link isStaleSourceError} says so, clears the endpoint's sticky source
 * address and retries, as wireguard-go does.
 */
export const SOFT_SEND_ERRNO = binding.softSendErrno;

/**
 * True when a udpSend / udpSendBatch result means the endpoint's sticky source
 * address (or interface) is no longer usable: retry without it. Linux reports
 * a non-local IPv4 source as ENETUNREACH and a vanished ifindex as ENODEV
 * (net/ipv4/route.c ip_route_output_key_hash_rcu); IPv6 and older kernels say
 * EINVAL or EADDRNOTAVAIL.
 */
export function isStaleSourceError(status: number): boolean {
  return (
    status === SOFT_SEND_ERRNO.EINVAL ||
    status === SOFT_SEND_ERRNO.EADDRNOTAVAIL ||
    status === SOFT_SEND_ERRNO.ENETUNREACH ||
    status === SOFT_SEND_ERRNO.ENODEV
  );
}

/** The errno name of a negative (or positive) errno: -11 -> 'EAGAIN'. */
export const errnoName = binding.errnoName;

// ---- fds ----

/** Closes any fd (TUN or UDP). Close its Watcher first. */
export const close = binding.close;
/** Closes a socket from {@link udpOpen} (same as {@link close}). */
export const udpClose = binding.close;

// ---- TUN ----

/**
 * Opens /dev/net/tun and attaches it to interface `name` (created if absent)
 * with IFF_TUN | IFF_NO_PI: one raw IP packet per read/write. `name` may be ''
 * to let the kernel pick "tunN", and is at most 15 bytes. The fd is
 * non-blocking and close-on-exec. Moving the interface to another netns
 * (`ip link set NAME netns NS`) keeps the fd working.
 */
export const tunOpen = binding.tunOpen;
/** Sets an interface's MTU (SIOCSIFMTU) in the CURRENT network namespace. */
export const tunSetMtu = binding.tunSetMtu;
/** Reads an interface's MTU (SIOCGIFMTU) in the CURRENT network namespace. */
export const tunGetMtu = binding.tunGetMtu;
/** Sets IFF_UP on an interface (SIOCSIFFLAGS) in the CURRENT network namespace. */
export const tunSetUp = binding.tunSetUp;
/**
 * Reads up to `maxPackets` packets: packet i lands at `buffer[i * slotSize]`
 * with its length in `lengths[i]`. Stops when the device is drained; returns
 * how many were read (0 if none). Throws on errors other than EAGAIN/EINTR
 * (EBADFD once the interface was deleted), but if packets were already read
 * it returns them and the next call throws. `slotSize` must be at least the
 * interface MTU.
 */
export const tunRead = binding.tunRead;
/**
 * Writes one packet `buffer[offset, offset + length)`. Returns false when
 * the device queue is full (EAGAIN/ENOBUFS): the packet is dropped, as on a
 * NIC. Other errors throw.
 */
export const tunWrite = binding.tunWrite;
/**
 * Writes packets i < count, each `buffer[offsets[i], offsets[i] + lengths[i])`.
 * Returns how many were written; packets hitting a full queue are dropped and
 * not counted. All slices are validated before anything is written.
 */
export const tunWriteBatch = binding.tunWriteBatch;

// ---- UDP ----

/**
 * Opens a non-blocking UDP socket bound to the wildcard address and `port`
 * (0 = ephemeral), with PKTINFO reception on, 7 MiB buffers when allowed, and
 * IPV6_V6ONLY for family 6 so a v4 and a v6 socket can share the port.
 */
export const udpOpen = binding.udpOpen;
/** Sets SO_MARK (needs CAP_NET_ADMIN); wg-quick's fwmark for the engine's own traffic. */
export const udpSetMark = binding.udpSetMark;
/**
 * Receives up to `maxPackets` datagrams with recvmmsg: datagram i lands at
 * `buffer[i * slotSize]`, its metadata at `meta[i * META_STRIDE]` (layout at
 * {@link META_STRIDE}). Returns the count, 0 when nothing is queued.
 */
export const udpRecv = binding.udpRecv;
/**
 * Sends `buffer[offset, offset + length)` to dstAddr (4 or 16 bytes) :
 * dstPort. With `srcAddr` (same family) the packet leaves from that local
 * address and `srcIfindex` (0 = any) via a PKTINFO control message. Returns 0,
 * or a negative errno from {@link SOFT_SEND_ERRNO}; other errors throw.
 */
export const udpSend = binding.udpSend;
/**
 * Sends packets i < count (`buffer[offsets[i], offsets[i] + lengths[i])`)
 * with sendmmsg, packet i to `endpoints` record `endpointIndex[i]` (record 0
 * for all when `endpointIndex` is null; layout at {@link ENDPOINT_STRIDE}).
 * Returns how many leading packets were sent. If fewer than `count`, packet
 * `result` failed: call again for the rest (e.g. with `subarray(result)`) to
 * get its error. Returns a negative errno (SOFT_SEND_ERRNO) when packet 0
 * fails softly; other errors throw.
 */
export const udpSendBatch = binding.udpSendBatch;

// ---- readiness ----

/**
 * Watches `fd` for readability on Node's event loop (see {@link WatchCallback}
 * and {@link Watcher}). Drain the fd (tunRead/udpRecv until 0) in the
 * callback: the watch is level-triggered and fires again while data remains.
 */
export const watch = binding.watch;

/**
 * ChaCha20-Poly1305 (WireGuard's transport AEAD: nonce = 4 zero bytes || counter LE64)
 * through Node's own OpenSSL with a reused context — node:crypto builds a cipher object
 * per call, which costs ~10x more per packet. Encrypts `srcLength` bytes of `src` plus
 * zero padding up to `paddedLength`; writes ciphertext || tag at `dst[dstOffset]` and
 * returns its length (paddedLength + 16).
 */
export const chachaSeal = binding.chachaSeal;
/**
 * Decrypts `srcLength` bytes (ciphertext || tag) of `src` into `dst[dstOffset]`; returns
 * the plaintext length, or -1 if the tag does not verify. `dst` may be `src` (in place).
 */
export const chachaOpen = binding.chachaOpen;

// ---- small helpers for records ----

function addressLength(family: IpFamily): number {
  return family === 4 ? 4 : 16;
}

/**
 * Copies the address stored as words at `words[offset]` into `out`, whose
 * length picks the family: 4 bytes (IPv4, word 0) or 16 (IPv6, 4 words).
 * Returns `out`. No allocation.
 */
export function decodeAddressWords(words: Int32Array, offset: number, out: Uint8Array): Uint8Array {
  if (out.length !== 4 && out.length !== 16) {
    throw new RangeError(`decodeAddressWords: argument 'out' must hold 4 or 16 bytes`);
  }
  const wordCount = out.length / 4;
  if (!Number.isInteger(offset) || offset < 0 || offset + wordCount > words.length) {
    throw new RangeError(`decodeAddressWords: argument 'offset' ${offset} is outside 'words'`);
  }
  for (let word = 0; word < wordCount; word++) {
    const value = words[offset + word] ?? 0;
    out[word * 4] = value >>> 24;
    out[word * 4 + 1] = (value >>> 16) & 0xff;
    out[word * 4 + 2] = (value >>> 8) & 0xff;
    out[word * 4 + 3] = value & 0xff;
  }
  return out;
}

/**
 * Stores `address` (4 or 16 bytes) as 4 words at `words[offset]`, zeroing
 * the unused words of an IPv4 address. No allocation.
 */
export function encodeAddressWords(words: Int32Array, offset: number, address: Uint8Array): void {
  if (address.length !== 4 && address.length !== 16) {
    throw new RangeError(`encodeAddressWords: argument 'address' must hold 4 or 16 bytes`);
  }
  if (!Number.isInteger(offset) || offset < 0 || offset + 4 > words.length) {
    throw new RangeError(`encodeAddressWords: argument 'offset' ${offset} is outside 'words'`);
  }
  for (let word = 0; word < 4; word++) {
    const at = word * 4;
    words[offset + word] =
      at < address.length
        ? ((address[at] ?? 0) << 24) |
          ((address[at + 1] ?? 0) << 16) |
          ((address[at + 2] ?? 0) << 8) |
          (address[at + 3] ?? 0)
        : 0;
  }
}

/**
 * Formats the address stored as words at `words[offset]`: dotted quad, or
 * RFC 5952 IPv6 text (lower case, longest run of two or more zero groups as
 * '::'). For logs and the UAPI; allocates.
 */
export function formatAddress(words: Int32Array, offset: number, family: IpFamily): string {
  const bytes = decodeAddressWords(words, offset, new Uint8Array(addressLength(family)));
  if (family === 4) return bytes.join('.');
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0));
  let bestStart = -1;
  let bestLength = 1; // RFC 5952 4.2.2: a single zero group is not compressed
  for (let start = 0; start < 8;) {
    if (groups[start] !== 0) {
      start++;
      continue;
    }
    let end = start;
    while (end < 8 && groups[end] === 0) end++;
    if (end - start > bestLength) {
      bestStart = start;
      bestLength = end - start;
    }
    start = end;
  }
  const hex = (list: number[]): string => list.map((group) => group.toString(16)).join(':');
  if (bestStart < 0) return hex(groups);
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLength))}`;
}

/** Fields of one endpoint record, for {@link setEndpoint}. */
export interface EndpointFields {
  readonly family: IpFamily;
  /** Destination address, 4 or 16 bytes matching `family`. */
  readonly peerAddress: Uint8Array;
  readonly peerPort: number;
  /** Source address to send from, or null to let routing choose. */
  readonly localAddress: Uint8Array | null;
  /** Interface to send from (0 = any); the zone of a link-local peer. */
  readonly localIfindex: number;
}

/** Fills record `index` of an endpoints table for {@link udpSendBatch}. */
export function setEndpoint(endpoints: Int32Array, index: number, fields: EndpointFields): void {
  const base = index * ENDPOINT_STRIDE;
  if (!Number.isInteger(index) || index < 0 || base + ENDPOINT_STRIDE > endpoints.length) {
    throw new RangeError(`setEndpoint: argument 'index' ${index} is outside 'endpoints'`);
  }
  const length = addressLength(fields.family);
  if (fields.peerAddress.length !== length) {
    throw new RangeError(
      `setEndpoint: 'peerAddress' must hold ${length} bytes for family ${fields.family}`,
    );
  }
  if (fields.localAddress !== null && fields.localAddress.length !== length) {
    throw new RangeError(
      `setEndpoint: 'localAddress' must hold ${length} bytes for family ${fields.family}`,
    );
  }
  endpoints[base + ENDPOINT_FLAGS] = fields.localAddress === null ? 0 : ENDPOINT_FLAG_STICKY_SOURCE;
  endpoints[base + ENDPOINT_FAMILY] = fields.family;
  endpoints[base + ENDPOINT_PEER_PORT] = fields.peerPort;
  endpoints[base + ENDPOINT_LOCAL_IFINDEX] = fields.localIfindex;
  encodeAddressWords(endpoints, base + ENDPOINT_PEER_ADDR, fields.peerAddress);
  if (fields.localAddress === null) {
    endpoints.fill(0, base + ENDPOINT_LOCAL_ADDR, base + ENDPOINT_STRIDE);
  } else {
    encodeAddressWords(endpoints, base + ENDPOINT_LOCAL_ADDR, fields.localAddress);
  }
}

/**
 * Makes endpoint record `endpointIndex` the reply address of received
 * datagram `packetIndex`: back to its source, from the local address and
 * interface it arrived on. No allocation.
 */
export function endpointFromMeta(
  meta: Int32Array,
  packetIndex: number,
  endpoints: Int32Array,
  endpointIndex: number,
): void {
  const from = packetIndex * META_STRIDE;
  const to = endpointIndex * ENDPOINT_STRIDE;
  if (from < 0 || from + META_STRIDE > meta.length) {
    throw new RangeError(
      `endpointFromMeta: argument 'packetIndex' ${packetIndex} is outside 'meta'`,
    );
  }
  if (to < 0 || to + ENDPOINT_STRIDE > endpoints.length) {
    throw new RangeError(
      `endpointFromMeta: argument 'endpointIndex' ${endpointIndex} is outside 'endpoints'`,
    );
  }
  endpoints[to + ENDPOINT_FLAGS] = ENDPOINT_FLAG_STICKY_SOURCE;
  for (let word = 1; word < ENDPOINT_STRIDE; word++) {
    endpoints[to + word] = meta[from + word] ?? 0;
  }
}

// ---- fd passing (fdpass.c) ----

/** One message from {@link recvFds}: the peer closed its end, or a payload with fds. */
export type FdMessage =
  | { readonly eof: true }
  | {
      readonly eof: false;
      /** The bytes given to {@link sendFds} (never empty). */
      readonly payload: Buffer;
      /** The received descriptors, close-on-exec, now owned by the caller. */
      readonly fds: number[];
      /** The sender's pid in OUR pid namespace (SCM_CREDENTIALS), -1 if not visible. */
      readonly pid: number;
    };

interface NativeBinding {
  readonly socketpair: () => [number, number];
  readonly sendFds: (sock: number, fds: readonly number[], payload: Uint8Array) => boolean;
  readonly recvFds: (sock: number) => FdMessage | null;
}

/**
 * A connected AF_UNIX SOCK_SEQPACKET pair, both ends non-blocking and
 * close-on-exec with SO_PASSCRED on. Give one end to a child (spawn stdio
 * entry: the copy it gets is not close-on-exec) and close it in the parent.
 */
export const socketpair = binding.socketpair;
/**
 * Sends one message: `payload` (1 byte or more) plus up to 16 fds
 * (SCM_RIGHTS; the caller keeps its own copies). Returns false when the
 * peer's queue is full (EAGAIN): retry later. Throws EPIPE once the peer closed.
 */
export const sendFds = binding.sendFds;
/**
 * Receives one message without blocking: null when none is queued,
 * `{ eof: true }` once the peer closed its end. Drain it from a
 * {@link watch} callback. Throws EMSGSIZE (after closing any fds received)
 * for a message with more than 16 fds.
 */
export const recvFds = binding.recvFds;

// ---- sandbox process helpers (sandbox.c) ----

/** A child's state change, from {@link waitChild}. */
export interface ChildStatus {
  readonly pid: number;
  /** Exit code, or -1 when it did not exit normally. */
  readonly exitCode: number;
  /** Terminating (or, when `stopped`, stopping) signal number; 0 if none. */
  readonly signal: number;
  /** True when the child was stopped (only with `untraced`). */
  readonly stopped: boolean;
}

/** mount(2) flags for {@link mount}, from <sys/mount.h>. */
export interface MountFlags {
  readonly MS_RDONLY: number;
  readonly MS_NOSUID: number;
  readonly MS_NODEV: number;
  readonly MS_NOEXEC: number;
  readonly MS_REMOUNT: number;
  readonly MS_BIND: number;
  readonly MS_REC: number;
  readonly MS_PRIVATE: number;
}

interface NativeBinding extends MountFlags {
  readonly mount: (
    source: string | null,
    target: string,
    fstype: string | null,
    flags: number,
    data: string | null,
  ) => void;
  readonly bindMount: (source: string, target: string, readOnly: boolean) => void;
  readonly sethostname: (name: string) => void;
  readonly getpgrp: () => number;
  readonly tcgetpgrp: (fd: number) => number;
  readonly tcsetpgrp: (fd: number, pgrp: number) => void;
  readonly waitChild: (pid: number, untraced: boolean) => ChildStatus | null;
  readonly spawnProgram: (
    paths: readonly string[],
    argv: readonly string[],
    envp: readonly string[],
    cwd: string | null,
    uid: number,
    gid: number,
    terminalFd: number,
  ) => number;
}

/** The mount(2) flag values {@link mount} takes. */
export const MOUNT_FLAGS: MountFlags = {
  MS_RDONLY: binding.MS_RDONLY,
  MS_NOSUID: binding.MS_NOSUID,
  MS_NODEV: binding.MS_NODEV,
  MS_NOEXEC: binding.MS_NOEXEC,
  MS_REMOUNT: binding.MS_REMOUNT,
  MS_BIND: binding.MS_BIND,
  MS_REC: binding.MS_REC,
  MS_PRIVATE: binding.MS_PRIVATE,
};
/** mount(2); null for an unused source, fstype or data. Errors name the target. */
export const mount = binding.mount;
/**
 * Bind-mounts `source` over `target` (following a symlink at `target`), then,
 * if `readOnly`, remounts it read-only keeping the flags the kernel locks in a
 * user namespace (nosuid, nodev, noexec, atime).
 */
export const bindMount = binding.bindMount;
/** sethostname(2) in the current UTS namespace. */
export const sethostname = binding.sethostname;
/** The calling process's process group (0 when its leader is outside our pid namespace). */
export const getpgrp = binding.getpgrp;
/** The foreground process group of the terminal at `fd`; throws ENOTTY if it is not our controlling terminal. */
export const tcgetpgrp = binding.tcgetpgrp;
/** Makes `pgrp` the foreground process group of the terminal at `fd` (SIGTTOU blocked around the call). */
export const tcsetpgrp = binding.tcsetpgrp;
/**
 * waitpid(pid, WNOHANG [| WUNTRACED]): null when no child changed state;
 * `pid` -1 waits for any child. Throws ECHILD when there is no child to
 * wait for. Only for children libuv does not own (from {@link spawnProgram}),
 * or reaping steals child_process's exits.
 */
export const waitChild = binding.waitChild;
/**
 * Starts a program: fork; in the child setpgid(0, 0), tcsetpgrp(terminalFd)
 * unless it is -1, then unless uid is -1 a nested user namespace mapping
 * `uid`/`gid` onto the current uid/gid 0 (so the program runs as that user
 * with no capabilities), chdir(cwd) unless null, every fd above 2 made
 * close-on-exec, default signal dispositions, and execve of the first of
 * `paths` that exists (execvpe's search order, with `argv` and `envp`
 * "NAME=value" strings). Returns the pid once the program executes; throws a
 * system error whose `syscall` names the step that failed ('execve', 'chdir',
 * 'unshare', ...). Reap it with {@link waitChild}.
 */
export const spawnProgram = binding.spawnProgram;
