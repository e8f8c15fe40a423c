/**
 * The TUN side of a device: packets are read in batches when the addon's poll
 * watcher says the fd is readable, and written back one at a time.
 */
import * as native from '../native/index.js';

/** Slots hold the largest IP packet (64 KiB), so any MTU up to the TUN maximum works. */
const SLOT_SIZE = 65536;
const BATCH = 64;

export class TunDevice {
  private readonly buffer = Buffer.allocUnsafe(SLOT_SIZE * BATCH);
  private readonly lengths = new Int32Array(BATCH);
  private watcher: native.Watcher | null = null;
  private closed = false;
  private cachedMtu: number;

  private constructor(
    readonly fd: number,
    readonly name: string,
    mtu: number,
  ) {
    this.cachedMtu = mtu;
  }

  /** Create the TUN interface `name` with the given MTU (in the current network namespace). */
  static create(name: string, mtu: number): TunDevice {
    const opened = native.tunOpen(name);
    try {
      native.tunSetMtu(opened.name, mtu);
    } catch (error) {
      native.close(opened.fd);
      throw error;
    }
    return new TunDevice(opened.fd, opened.name, mtu);
  }

  /**
   * Adopt a TUN file descriptor opened elsewhere (e.g. inside a sandbox's network
   * namespace and passed over SCM_RIGHTS). The fd is owned from now on.
   */
  static fromFd(fd: number, name: string, mtu: number): TunDevice {
    return new TunDevice(fd, name, mtu);
  }

  /**
   * The interface MTU. The kernel keeps it; `ip link set mtu` may change it at any
   * time, and once the interface moves to another namespace we can no longer ask
   * by name, so the last value read is kept.
   */
  get mtu(): number {
    try {
      this.cachedMtu = native.tunGetMtu(this.name);
    } catch {
      // The interface lives in another network namespace now.
    }
    return this.cachedMtu;
  }

  start(
    onPacket: (packet: Buffer) => void,
    afterBatch: () => void,
    onError: (error: Error) => void,
  ): void {
    this.watcher = native.watch(this.fd, (status) => {
      if (this.closed) return;
      if (status !== 0) {
        onError(new Error(`TUN ${this.name} is gone (poll status ${status})`));
        return;
      }
      let count: number;
      try {
        count = native.tunRead(this.fd, this.buffer, SLOT_SIZE, BATCH, this.lengths);
      } catch (error) {
        onError(error instanceof Error ? error : new Error(String(error)));
        return;
      }
      for (let i = 0; i < count; i++) {
        const start = i * SLOT_SIZE;
        onPacket(this.buffer.subarray(start, start + (this.lengths[i] ?? 0)));
      }
      afterBatch();
    });
  }

  write(packet: Uint8Array): void {
    if (this.closed) return;
    native.tunWrite(this.fd, packet, 0, packet.length);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.watcher?.close();
    native.close(this.fd);
  }
}
