/**
 * The UDP side of a device: one IPv4 and one IPv6 socket on the same port, owned
 * by the addon because dgram has neither IP_PKTINFO (to answer from the address
 * a packet came to) nor SO_MARK (wg-quick's fwmark for default-route configs).
 */
import type { Endpoint } from '../wireguard/endpoint.js';
import * as native from '../native/index.js';

const SLOT_SIZE = 65536;
const BATCH = 64;
/** How often a random port is retried when the IPv6 socket cannot take the port IPv4 got. */
const BIND_ATTEMPTS = 100;

type Receiver = (message: Buffer, source: Endpoint) => void;

/** Datagrams per sendmmsg() and the bytes they may take together. */
const SEND_BATCH = 128;
const SEND_BUFFER_BYTES = 512 * 1024;

class SendQueue {
  readonly buffer = Buffer.allocUnsafe(SEND_BUFFER_BYTES);
  readonly offsets = new Int32Array(SEND_BATCH);
  readonly lengths = new Int32Array(SEND_BATCH);
  readonly endpoints = new Int32Array(SEND_BATCH * native.ENDPOINT_STRIDE);
  /** Datagram i goes to endpoint record i. */
  readonly identity = Int32Array.from({ length: SEND_BATCH }, (_, i) => i);
  readonly targets: (Endpoint | undefined)[] = new Array<Endpoint | undefined>(SEND_BATCH);
  count = 0;
  bytes = 0;
  constructor(readonly family: 4 | 6) {}
}

interface Socket {
  fd: number;
  family: 4 | 6;
  watcher: native.Watcher;
}

function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** An IPv4 socket on `port` and, where the host has IPv6, an IPv6 one on the same port. */
function openPair(port: number): { fd: number; family: 4 | 6; port: number }[] {
  const v4 = native.udpOpen(4, port);
  const opened: { fd: number; family: 4 | 6; port: number }[] = [
    { fd: v4.fd, family: 4, port: v4.port },
  ];
  try {
    const v6 = native.udpOpen(6, v4.port);
    opened.push({ fd: v6.fd, family: 6, port: v6.port });
  } catch (error) {
    const code = errnoCode(error);
    // A host without IPv6 still works over IPv4.
    if (code !== 'EAFNOSUPPORT' && code !== 'EADDRNOTAVAIL') {
      native.close(v4.fd);
      throw error;
    }
  }
  return opened;
}

export class UdpBind {
  private sockets: Socket[] = [];
  private readonly buffer = Buffer.allocUnsafe(SLOT_SIZE * BATCH);
  private readonly meta = new Int32Array(BATCH * native.UDP_META_STRIDE);
  /** Reused for every received packet; the engine copies what it keeps. */
  private readonly source: Endpoint = {
    family: 4,
    address: new Uint8Array(16),
    port: 0,
    localAddress: new Uint8Array(16),
    localIfindex: 0,
  };
  private readonly source4 = new Uint8Array(4);
  private readonly local4 = new Uint8Array(4);
  private readonly source6 = new Uint8Array(16);
  private readonly local6 = new Uint8Array(16);

  private readonly queue4 = new SendQueue(4);
  private readonly queue6 = new SendQueue(6);

  constructor(
    private readonly receive: Receiver,
    /** Called after each received batch has been handled, so replies can be flushed together. */
    private readonly afterBatch: () => void,
    private readonly onSendError: (error: unknown) => void = () => undefined,
  ) {}

  /** (Re)open both sockets on `port` (0: any free port); returns the bound port. */
  open(port: number, mark: number): number {
    for (let attempt = 1; ; attempt++) {
      let opened: { fd: number; family: 4 | 6; port: number }[];
      try {
        opened = openPair(port);
      } catch (error) {
        // With a random port, IPv6 may find the port IPv4 got already taken: try another.
        if (port === 0 && attempt < BIND_ATTEMPTS && errnoCode(error) === 'EADDRINUSE') continue;
        throw error;
      }
      try {
        if (mark !== 0) for (const s of opened) native.udpSetMark(s.fd, mark);
      } catch (error) {
        for (const s of opened) native.close(s.fd);
        throw error;
      }
      this.closeSockets();
      this.sockets = opened.map((s) => ({
        fd: s.fd,
        family: s.family,
        watcher: this.watch(s.fd, s.family),
      }));
      return opened[0]?.port ?? port;
    }
  }

  setMark(mark: number): void {
    for (const s of this.sockets) native.udpSetMark(s.fd, mark);
  }

  private watch(fd: number, family: 4 | 6): native.Watcher {
    return native.watch(fd, (status) => {
      if (status !== 0) return;
      const count = native.udpRecv(fd, this.buffer, SLOT_SIZE, BATCH, this.meta);
      for (let i = 0; i < count; i++) this.dispatch(i, family);
      this.afterBatch();
    });
  }

  private dispatch(i: number, family: 4 | 6): void {
    const m = this.meta;
    const base = i * native.UDP_META_STRIDE;
    const length = m[base] ?? 0;
    if (length <= 0) return; // META_TRUNCATED: larger than a slot
    const source = this.source;
    source.family = family;
    source.port = m[base + 2] ?? 0;
    source.localIfindex = m[base + 3] ?? 0;
    if (family === 4) {
      source.address = this.source4;
      source.localAddress = this.local4;
      native.decodeAddressWords(m, base + 4, this.source4);
      native.decodeAddressWords(m, base + 8, this.local4);
    } else {
      source.address = this.source6;
      source.localAddress = this.local6;
      native.decodeAddressWords(m, base + 4, this.source6);
      native.decodeAddressWords(m, base + 8, this.local6);
    }
    const start = i * SLOT_SIZE;
    this.receive(this.buffer.subarray(start, start + length), source);
  }

  /**
   * Queue a datagram; queued datagrams leave in one sendmmsg() per socket at the
   * next flush(), which the device calls after each batch of work.
   */
  send(endpoint: Endpoint, message: Uint8Array): void {
    const queue = endpoint.family === 4 ? this.queue4 : this.queue6;
    if (queue.count === SEND_BATCH || queue.bytes + message.length > SEND_BUFFER_BYTES) {
      this.flushQueue(queue);
    }
    const i = queue.count++;
    queue.offsets[i] = queue.bytes;
    queue.lengths[i] = message.length;
    queue.buffer.set(message, queue.bytes);
    queue.bytes += message.length;
    queue.targets[i] = endpoint;
    native.setEndpoint(queue.endpoints, i, {
      family: endpoint.family,
      peerAddress: endpoint.address,
      peerPort: endpoint.port,
      localAddress: endpoint.localAddress,
      localIfindex: endpoint.localIfindex,
    });
  }

  flush(): void {
    if (this.queue4.count > 0) this.flushQueue(this.queue4);
    if (this.queue6.count > 0) this.flushQueue(this.queue6);
  }

  private flushQueue(queue: SendQueue): void {
    const socket = this.sockets.find((s) => s.family === queue.family);
    const count = queue.count;
    queue.count = 0;
    queue.bytes = 0;
    if (socket === undefined) return;
    let next = 0;
    while (next < count) {
      let sent: number;
      try {
        sent = native.udpSendBatch(
          socket.fd,
          queue.buffer,
          queue.offsets.subarray(next, count),
          queue.lengths.subarray(next, count),
          count - next,
          queue.endpoints.subarray(0, count * native.ENDPOINT_STRIDE),
          queue.identity.subarray(next, count),
        );
      } catch (error) {
        // A hard error on the socket (not one of the per-packet ones udpSendBatch
        // returns): the datagrams are lost, as on a NIC, but the interface lives on.
        this.onSendError(error);
        break;
      }
      if (sent > 0) {
        next += sent;
        continue;
      }
      // Datagram `next` failed. If its sticky source address went away, forget it and let
      // the kernel choose (wireguard-go clears the source the same way); otherwise drop it.
      const target = queue.targets[next];
      if (target !== undefined && native.isStaleSourceError(sent) && target.localAddress !== null) {
        target.localAddress = null;
        target.localIfindex = 0;
        const offset = queue.offsets[next] ?? 0;
        const length = queue.lengths[next] ?? 0;
        native.udpSend(
          socket.fd,
          queue.buffer,
          offset,
          length,
          target.family,
          target.address,
          target.port,
          null,
          0,
        );
      }
      next++;
    }
    queue.targets.fill(undefined);
  }

  private closeSockets(): void {
    for (const s of this.sockets) {
      s.watcher.close();
      native.close(s.fd);
    }
    this.sockets = [];
  }

  close(): void {
    this.closeSockets();
  }
}
