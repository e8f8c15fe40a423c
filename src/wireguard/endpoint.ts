/** A peer's outer address, and the local address its packets arrived on. */
export interface Endpoint {
  family: 4 | 6;
  /** 4 or 16 bytes. */
  address: Uint8Array;
  port: number;
  /**
   * Local address the peer's last packet arrived on, so replies leave from the
   * same address on multi-address hosts ("sticky source", wireguard-go conn.StdNetEndpoint).
   * Null lets the kernel choose.
   */
  localAddress: Uint8Array | null;
  localIfindex: number;
}

export function sameRemote(a: Endpoint, b: Endpoint): boolean {
  return a.family === b.family && a.port === b.port && bytesEqual(a.address, b.address);
}

export function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  if (!sameRemote(a, b) || a.localIfindex !== b.localIfindex) return false;
  if (a.localAddress === null || b.localAddress === null) return a.localAddress === b.localAddress;
  return bytesEqual(a.localAddress, b.localAddress);
}

export function copyEndpoint(e: Endpoint): Endpoint {
  return {
    family: e.family,
    address: Uint8Array.from(e.address),
    port: e.port,
    localAddress: e.localAddress === null ? null : Uint8Array.from(e.localAddress),
    localIfindex: e.localIfindex,
  };
}

/** The bytes the cookie MAC and rate limiter key on: address || port (whitepaper §5.4.7). */
export function endpointSourceBytes(e: Endpoint): Uint8Array {
  const out = new Uint8Array(e.address.length + 2);
  out.set(e.address, 0);
  out[e.address.length] = e.port >>> 8;
  out[e.address.length + 1] = e.port & 0xff;
  return out;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function formatEndpoint(e: Pick<Endpoint, 'family' | 'address' | 'port'>): string {
  if (e.family === 4) return `${e.address.join('.')}:${e.port}`;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2)
    groups.push(((e.address[i] << 8) | e.address[i + 1]).toString(16));
  return `[${groups.join(':')}]:${e.port}`;
}
