/**
 * The standard two-host topology of the interop tests and the benchmark:
 *
 *   namespace I (initiator)                      namespace R (responder)
 *   veth 192.0.2.1/24, 2001:db8:1::1/64  <--->   veth 192.0.2.2/24, 2001:db8:1::2/64   (outer / underlay)
 *   wg   198.51.100.1/24, 2001:db8:2::1/64       wg   198.51.100.2/24, 2001:db8:2::2/64 (tunnel)
 *
 * The initiator has the responder's endpoint; the responder has no endpoint for
 * the initiator and must learn it from the first authenticated packet
 * (whitepaper §2.1 "Cryptokey Routing", roaming).
 */
import { generatePresharedKeyFile, startWireGuard } from './wireguard.js';
import type { WireGuardImpl, WireGuardInterface } from './wireguard.js';
import type { NetnsHarness } from './netns.js';

export type OuterFamily = 'ipv4' | 'ipv6';

export interface HostAddresses {
  readonly outerV4: string;
  readonly outerV6: string;
  readonly tunnelV4: string;
  readonly tunnelV6: string;
}

export const OUTER_PREFIX_V4 = 24;
export const OUTER_PREFIX_V6 = 64;
export const TUNNEL_PREFIX_V4 = 24;
export const TUNNEL_PREFIX_V6 = 64;

export const INITIATOR_ADDRESSES: HostAddresses = {
  outerV4: '192.0.2.1',
  outerV6: '2001:db8:1::1',
  tunnelV4: '198.51.100.1',
  tunnelV6: '2001:db8:2::1',
};
export const RESPONDER_ADDRESSES: HostAddresses = {
  outerV4: '192.0.2.2',
  outerV6: '2001:db8:1::2',
  tunnelV4: '198.51.100.2',
  tunnelV6: '2001:db8:2::2',
};
export const INITIATOR_PORT = 51820;
export const RESPONDER_PORT = 51821;
/** wg-quick's default MTU for a 1500-byte underlay (1500 − 80 bytes of IPv6+UDP+WireGuard overhead). */
export const DEFAULT_TUNNEL_MTU = 1420;

/** "addr:port", or "[addr]:port" for IPv6, as `wg` prints and accepts endpoints. */
export function formatEndpoint(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

export interface TunnelSide {
  readonly ns: string;
  /** The veth end in this side's namespace. */
  readonly outerDev: string;
  readonly addresses: HostAddresses;
  readonly wg: WireGuardInterface;
  /** The address this side's peer sees as its source, for the given family. */
  outerAddress(family: OuterFamily): string;
  /** This side's WireGuard endpoint as seen from the other side. */
  endpoint(family: OuterFamily): string;
}

export interface TunnelPair {
  readonly harness: NetnsHarness;
  readonly initiator: TunnelSide;
  readonly responder: TunnelSide;
  readonly outerFamily: OuterFamily;
  /** Set when the pair was created with a preshared key. */
  readonly presharedKeyFile: string | undefined;
}

export interface TunnelPairOptions {
  readonly initiatorImpl: WireGuardImpl;
  readonly responderImpl: WireGuardImpl;
  /** Which outer address the initiator uses as the responder's endpoint. Default ipv4. */
  readonly outerFamily?: OuterFamily;
  /** MTU of both WireGuard interfaces. Default 1420. */
  readonly mtu?: number;
  /** Use a preshared key on both sides (whitepaper §5.2, "psk"). */
  readonly presharedKey?: boolean;
  readonly logLevel?: 'verbose' | 'debug' | 'error' | 'silent';
}

function makeSide(
  ns: string,
  outerDev: string,
  addresses: HostAddresses,
  wg: WireGuardInterface,
): TunnelSide {
  const outerAddress = (family: OuterFamily) =>
    family === 'ipv4' ? addresses.outerV4 : addresses.outerV6;
  return {
    ns,
    outerDev,
    addresses,
    wg,
    outerAddress,
    endpoint: (family) => formatEndpoint(outerAddress(family), wg.listenPort),
  };
}

/** Allowed IPs that route exactly the given host's tunnel addresses. */
export function hostRoutes(addresses: HostAddresses): string[] {
  return [`${addresses.tunnelV4}/32`, `${addresses.tunnelV6}/128`];
}

/** Builds both namespaces, the veth between them, and a configured WireGuard pair. */
export async function createTunnelPair(
  harness: NetnsHarness,
  options: TunnelPairOptions,
): Promise<TunnelPair> {
  const outerFamily = options.outerFamily ?? 'ipv4';
  const mtu = options.mtu ?? DEFAULT_TUNNEL_MTU;
  const nsI = await harness.addNamespace('i');
  const nsR = await harness.addNamespace('r');
  const veth = await harness.addVeth(nsI, nsR, { devA: 'to-r', devB: 'to-i' });
  await harness.addAddress(nsI, veth.devA, `${INITIATOR_ADDRESSES.outerV4}/${OUTER_PREFIX_V4}`);
  await harness.addAddress(nsI, veth.devA, `${INITIATOR_ADDRESSES.outerV6}/${OUTER_PREFIX_V6}`);
  await harness.addAddress(nsR, veth.devB, `${RESPONDER_ADDRESSES.outerV4}/${OUTER_PREFIX_V4}`);
  await harness.addAddress(nsR, veth.devB, `${RESPONDER_ADDRESSES.outerV6}/${OUTER_PREFIX_V6}`);

  const common = options.logLevel === undefined ? { mtu } : { mtu, logLevel: options.logLevel };
  const [wgI, wgR] = await Promise.all([
    startWireGuard(harness, options.initiatorImpl, nsI, {
      ...common,
      listenPort: INITIATOR_PORT,
      addresses: [
        `${INITIATOR_ADDRESSES.tunnelV4}/${TUNNEL_PREFIX_V4}`,
        `${INITIATOR_ADDRESSES.tunnelV6}/${TUNNEL_PREFIX_V6}`,
      ],
    }),
    startWireGuard(harness, options.responderImpl, nsR, {
      ...common,
      listenPort: RESPONDER_PORT,
      addresses: [
        `${RESPONDER_ADDRESSES.tunnelV4}/${TUNNEL_PREFIX_V4}`,
        `${RESPONDER_ADDRESSES.tunnelV6}/${TUNNEL_PREFIX_V6}`,
      ],
    }),
  ]);
  const initiator = makeSide(nsI, veth.devA, INITIATOR_ADDRESSES, wgI);
  const responder = makeSide(nsR, veth.devB, RESPONDER_ADDRESSES, wgR);
  const presharedKeyFile =
    options.presharedKey === true
      ? await generatePresharedKeyFile(await harness.makeTempDir())
      : undefined;
  const psk = presharedKeyFile === undefined ? {} : { presharedKeyFile };
  await wgI.setPeer({
    publicKey: wgR.publicKey,
    allowedIps: hostRoutes(RESPONDER_ADDRESSES),
    endpoint: responder.endpoint(outerFamily),
    ...psk,
  });
  // No endpoint: the responder learns it from the initiator's first packet.
  await wgR.setPeer({
    publicKey: wgI.publicKey,
    allowedIps: hostRoutes(INITIATOR_ADDRESSES),
    ...psk,
  });
  return { harness, initiator, responder, outerFamily, presharedKeyFile };
}
