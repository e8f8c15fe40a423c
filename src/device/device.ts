/**
 * One WireGuard interface: the protocol engine wired to a TUN device, the UDP
 * sockets and the UAPI handler. All I/O is here; the protocol is in ../wireguard.
 */
import { performance } from 'node:perf_hooks';
import { diagnostics, Engine, type DropEvent, type EngineOutput } from '../wireguard/engine.js';
import type { Endpoint } from '../wireguard/endpoint.js';
import { isZeroKey } from '../wireguard/keys.js';
import type { Peer } from '../wireguard/peer.js';
import { UdpBind } from './bind.js';
import { UapiError } from './errors.js';
import { nativeAead } from './native-aead.js';
import { TunDevice } from './tun.js';
import type {
  UapiDeviceStatus,
  UapiPeerConfig,
  UapiPeerStatus,
  UapiSetRequest,
} from './uapi-protocol.js';
import type { UapiHandler } from './uapi-server.js';

/** Timer resolution: deadlines are seconds long, so a 100 ms tick is plenty. */
const TICK_INTERVAL_MS = 100;

export interface DeviceOptions {
  /** Interface name to create; '' lets the kernel choose. */
  name: string;
  mtu?: number;
  /** Called once when the device stops by itself (TUN removed, fatal I/O error). */
  onFatal?: (error: Error) => void;
}

export class Device implements UapiHandler {
  readonly engine: Engine;
  readonly tun: TunDevice;
  private readonly bind: UdpBind;
  private listenPort = 0;
  private fwmark = 0;
  private ticker: NodeJS.Timeout | null = null;
  private closed = false;

  private constructor(tun: TunDevice, onFatal: (error: Error) => void) {
    this.tun = tun;
    const output: EngineOutput = {
      sendUdp: (endpoint, message) => {
        this.bind.send(endpoint, message);
      },
      writeTun: (packet) => {
        this.tun.write(packet);
      },
    };
    this.engine = new Engine(output, { aead: nativeAead });
    this.engine.mtu = tun.mtu;
    this.bind = new UdpBind(
      (message, source) => {
        this.engine.handleUdpPacket(message, source, performance.now());
      },
      () => {
        this.bind.flush();
      },
      (error) => {
        // The datagrams are lost, as on a NIC; say so on the drop channel (logged at verbose).
        if (diagnostics.drop.hasSubscribers) {
          diagnostics.drop.publish({
            peer: null,
            reason: `UDP send failed: ${error instanceof Error ? error.message : String(error)}`,
          } satisfies DropEvent);
        }
      },
    );
    tun.start(
      (packet) => {
        this.engine.handleTunPacket(packet, performance.now());
      },
      () => {
        this.bind.flush();
      },
      (error) => {
        if (!this.closed) {
          this.close();
          onFatal(error);
        }
      },
    );
  }

  static open(options: DeviceOptions): Device {
    return Device.fromTun(TunDevice.create(options.name, options.mtu ?? 1420), options.onFatal);
  }

  /** A device around an existing TUN (one opened in another namespace, for `warren run`). */
  static fromTun(tun: TunDevice, onFatal: (error: Error) => void = () => undefined): Device {
    const device = new Device(tun, onFatal);
    try {
      device.listenPort = device.bind.open(0, 0);
    } catch (error) {
      device.close();
      throw error;
    }
    device.ticker = setInterval(() => {
      device.engine.mtu = device.tun.mtu;
      device.engine.tick(performance.now());
      device.bind.flush();
    }, TICK_INTERVAL_MS);
    return device;
  }

  get name(): string {
    return this.tun.name;
  }

  /** Start a handshake with every peer that has an endpoint, without waiting for traffic. */
  connect(): void {
    this.engine.initiateHandshakes(performance.now());
    this.bind.flush();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.ticker !== null) clearInterval(this.ticker);
    this.engine.removeAllPeers();
    this.engine.setPrivateKey(null);
    this.bind.close();
    this.tun.close();
  }

  // ---------------------------------------------------------------- UAPI

  get(): UapiDeviceStatus {
    // Handshake times are kept on the monotonic clock; convert to wall time for `wg`.
    const wallOffset = Date.now() - performance.now();
    const peers: UapiPeerStatus[] = [];
    for (const peer of this.engine.peers()) peers.push(peerStatus(this.engine, peer, wallOffset));
    return {
      privateKey: this.engine.privateKey,
      listenPort: this.listenPort,
      fwmark: this.fwmark,
      peers,
    };
  }

  set(request: UapiSetRequest): void {
    const now = performance.now();
    if (request.privateKey !== undefined) {
      this.engine.setPrivateKey(isZeroKey(request.privateKey) ? null : request.privateKey);
    }
    if (request.listenPort !== undefined && request.listenPort !== this.listenPort) {
      this.listenPort = this.rebind(request.listenPort, this.fwmark);
    }
    if (request.fwmark !== undefined && request.fwmark !== this.fwmark) {
      try {
        this.bind.setMark(request.fwmark);
      } catch (error) {
        throw new UapiError('ERR_UAPI_IO', `failed to set fwmark: ${String(error)}`);
      }
      this.fwmark = request.fwmark;
    }
    if (request.replacePeers) this.engine.removeAllPeers();
    for (const change of request.peers) this.applyPeer(change, now);
    this.bind.flush();
  }

  private rebind(port: number, mark: number): number {
    try {
      return this.bind.open(port, mark);
    } catch (error) {
      if (error instanceof Error && (error as NodeJS.ErrnoException).code === 'EADDRINUSE') {
        throw new UapiError('ERR_UAPI_PORT_IN_USE', `listen port ${port} is in use`);
      }
      throw new UapiError('ERR_UAPI_IO', `failed to bind port ${port}: ${String(error)}`);
    }
  }

  private applyPeer(change: UapiPeerConfig, now: number): void {
    let peer = this.engine.findPeer(change.publicKey);
    if (change.remove) {
      if (peer !== undefined) this.engine.removePeer(peer);
      return;
    }
    if (peer === undefined) {
      if (change.updateOnly) return;
      // A peer with our own public key is ignored, as wireguard-go does.
      const added = this.engine.addPeer(change.publicKey);
      if (added === null) return;
      peer = added;
    }
    if (change.presharedKey !== undefined) this.engine.setPresharedKey(peer, change.presharedKey);
    if (change.endpoint !== undefined) {
      const endpoint: Endpoint = { ...change.endpoint, localAddress: null, localIfindex: 0 };
      this.engine.setEndpoint(peer, endpoint);
    }
    if (change.replaceAllowedIps) this.engine.allowedIps.removeValue(peer);
    for (const entry of change.allowedIps) {
      if (entry.remove) this.engine.allowedIps.remove(entry.address, entry.cidr, peer);
      else this.engine.allowedIps.insert(entry.address, entry.cidr, peer);
    }
    if (change.persistentKeepaliveInterval !== undefined) {
      this.engine.setPersistentKeepalive(peer, change.persistentKeepaliveInterval, now);
    }
  }
}

function peerStatus(engine: Engine, peer: Peer, wallOffset: number): UapiPeerStatus {
  let sec = 0;
  let nsec = 0;
  if (peer.lastHandshake !== null) {
    const wall = wallOffset + peer.lastHandshake;
    sec = Math.floor(wall / 1000);
    nsec = Math.floor((wall - sec * 1000) * 1e6);
  }
  const endpoint = peer.endpoint;
  return {
    publicKey: peer.publicKey,
    presharedKey: isZeroKey(peer.presharedKey) ? null : peer.presharedKey,
    endpoint:
      endpoint === null
        ? null
        : { family: endpoint.family, address: endpoint.address, port: endpoint.port },
    persistentKeepaliveInterval: peer.persistentKeepaliveInterval,
    lastHandshakeTimeSec: sec,
    lastHandshakeTimeNsec: nsec,
    rxBytes: BigInt(peer.rxBytes),
    txBytes: BigInt(peer.txBytes),
    allowedIps: engine.allowedIps.entries(peer),
  };
}
