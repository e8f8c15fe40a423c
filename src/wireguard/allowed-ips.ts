/**
 * Cryptokey routing table (whitepaper §2 "Cryptokey Routing"): maps IP prefixes
 * to the peer allowed to use them. Outgoing packets are routed to the peer owning
 * the longest prefix matching their destination; incoming packets are accepted
 * only if the longest prefix matching their source belongs to the peer that sent
 * them.
 *
 * The structure is a compressed binary (PATRICIA) trie, one per address family,
 * shaped like the Linux kernel's drivers/net/wireguard/allowedips.c and
 * wireguard-go device/allowedips.go: every node holds a masked prefix; nodes
 * without a value exist only where two branches split. Keys are kept as four
 * big-endian 32-bit words (IPv4 uses the first word only) so that lookups
 * compare whole words with `Math.clz32` instead of walking bytes, and never
 * allocate.
 */

const IPV4_LENGTH = 4;
const IPV6_LENGTH = 16;
const IPV4_BITS = 32;
const IPV6_BITS = 128;

class TrieNode<T> {
  /** Masked prefix, big-endian 32-bit words as int32. */
  w0: number;
  w1: number;
  w2: number;
  w3: number;
  readonly cidr: number;
  /** Address length in bytes: 4 (IPv4 trie) or 16 (IPv6 trie). */
  readonly length: number;
  /** undefined for the intermediate nodes that only join two branches. */
  value: T | undefined = undefined;
  zero: TrieNode<T> | null = null;
  one: TrieNode<T> | null = null;
  parent: TrieNode<T> | null = null;

  constructor(length: number, w0: number, w1: number, w2: number, w3: number, cidr: number) {
    this.length = length;
    this.w0 = w0;
    this.w1 = w1;
    this.w2 = w2;
    this.w3 = w3;
    this.cidr = cidr;
  }
}

/** An int32 with the top `bits` bits set (0 ≤ bits ≤ 32). */
function leadingMask(bits: number): number {
  return bits <= 0 ? 0 : bits >= 32 ? -1 : -1 << (32 - bits);
}

/** Mask for word `index` (0..3) of a prefix of length `cidr`. */
function wordMask(cidr: number, index: number): number {
  return leadingMask(cidr - index * 32);
}

/** Number of leading bits that `node`'s key shares with k0..k3 (0..128). */
function commonBits<T>(node: TrieNode<T>, k0: number, k1: number, k2: number, k3: number): number {
  let difference = node.w0 ^ k0;
  if (difference !== 0) return Math.clz32(difference);
  difference = node.w1 ^ k1;
  if (difference !== 0) return 32 + Math.clz32(difference);
  difference = node.w2 ^ k2;
  if (difference !== 0) return 64 + Math.clz32(difference);
  difference = node.w3 ^ k3;
  if (difference !== 0) return 96 + Math.clz32(difference);
  return 128;
}

/** Bit number `position` (0 = most significant) of the key k0..k3. */
function bitAt(position: number, k0: number, k1: number, k2: number, k3: number): number {
  const shift = 31 - (position & 31);
  switch (position >>> 5) {
    case 0:
      return (k0 >>> shift) & 1;
    case 1:
      return (k1 >>> shift) & 1;
    case 2:
      return (k2 >>> shift) & 1;
    default:
      return (k3 >>> shift) & 1;
  }
}

function readWord(bytes: Uint8Array, offset: number): number {
  return (
    (bytes[offset] << 24) | (bytes[offset + 1] << 16) | (bytes[offset + 2] << 8) | bytes[offset + 3]
  );
}

function checkAddress(address: Uint8Array, name: string): void {
  if (!(address instanceof Uint8Array)) {
    throw new TypeError(`${name} must be a Uint8Array`);
  }
  if (address.length !== IPV4_LENGTH && address.length !== IPV6_LENGTH) {
    throw new RangeError(`${name} must be 4 (IPv4) or 16 (IPv6) bytes, got ${address.length}`);
  }
}

function checkCidr(cidr: number, addressLength: number): void {
  const maximum = addressLength === IPV4_LENGTH ? IPV4_BITS : IPV6_BITS;
  if (!Number.isInteger(cidr) || cidr < 0 || cidr > maximum) {
    throw new RangeError(`cidr must be an integer from 0 to ${maximum}, got ${String(cidr)}`);
  }
}

export class AllowedIps<T> {
  private root4: TrieNode<T> | null = null;
  private root6: TrieNode<T> | null = null;
  /**
   * Per-value index of the nodes a value owns, so peer removal and `wg show`
   * cost O(prefixes of that peer), not O(table). A Set keeps insertion order,
   * which is the order the kernel and wireguard-go list a peer's allowed IPs in.
   */
  private readonly byValue = new Map<T, Set<TrieNode<T>>>();
  private count = 0;
  // Scratch key of the prefix being inserted/removed (masked), to avoid allocating.
  private k0 = 0;
  private k1 = 0;
  private k2 = 0;
  private k3 = 0;

  /** Number of prefixes that have an owner. */
  get size(): number {
    return this.count;
  }

  /**
   * Gives the prefix address/cidr to `value`, replacing any previous owner of that
   * exact prefix. Host bits beyond `cidr` are ignored (the prefix is stored masked).
   */
  insert(address: Uint8Array, cidr: number, value: T): void {
    checkAddress(address, 'address');
    checkCidr(cidr, address.length);
    if (value === undefined) throw new TypeError('value must not be undefined');
    this.loadKey(address, cidr);
    const k0 = this.k0;
    const k1 = this.k1;
    const k2 = this.k2;
    const k3 = this.k3;
    const isV4 = address.length === IPV4_LENGTH;
    const root = isV4 ? this.root4 : this.root6;

    if (root === null) {
      const node = new TrieNode<T>(address.length, k0, k1, k2, k3, cidr);
      this.own(node, value);
      this.setRoot(isV4, node);
      return;
    }

    // Walk down while the current node's prefix contains the new one
    // (kernel allowedips.c node_placement, wireguard-go nodePlacement).
    let parent: TrieNode<T> | null = null;
    let node: TrieNode<T> | null = root;
    while (node !== null && node.cidr <= cidr && commonBits(node, k0, k1, k2, k3) >= node.cidr) {
      parent = node;
      if (node.cidr === cidr) {
        this.own(node, value);
        return;
      }
      node = bitAt(node.cidr, k0, k1, k2, k3) === 0 ? node.zero : node.one;
    }

    const created = new TrieNode<T>(address.length, k0, k1, k2, k3, cidr);
    this.own(created, value);
    if (node === null) {
      // parent is non-null here: the root exists, so the loop ran at least once.
      if (parent !== null) this.attach(parent, created);
      return;
    }

    // `node` (the subtree we stopped at) and the new prefix diverge or nest: either
    // the new prefix becomes node's parent, or a valueless branch node joins them.
    const splitAt = Math.min(cidr, commonBits(node, k0, k1, k2, k3));
    let joint: TrieNode<T>;
    if (splitAt === cidr) {
      joint = created;
    } else {
      joint = new TrieNode<T>(
        address.length,
        k0 & wordMask(splitAt, 0),
        k1 & wordMask(splitAt, 1),
        k2 & wordMask(splitAt, 2),
        k3 & wordMask(splitAt, 3),
        splitAt,
      );
      this.attach(joint, created);
    }
    this.attach(joint, node);
    if (parent === null) {
      joint.parent = null;
      this.setRoot(isV4, joint);
    } else {
      this.attach(parent, joint);
    }
  }

  /**
   * Removes the exact prefix address/cidr if `value` owns it; returns whether it did.
   * Like wireguard-go's `allowed_ip=-…` handling, another peer's prefix is left alone.
   */
  remove(address: Uint8Array, cidr: number, value: T): boolean {
    checkAddress(address, 'address');
    checkCidr(cidr, address.length);
    this.loadKey(address, cidr);
    const k0 = this.k0;
    const k1 = this.k1;
    const k2 = this.k2;
    const k3 = this.k3;
    let node = address.length === IPV4_LENGTH ? this.root4 : this.root6;
    while (node !== null && node.cidr <= cidr && commonBits(node, k0, k1, k2, k3) >= node.cidr) {
      if (node.cidr === cidr) {
        if (node.value === undefined || node.value !== value) return false;
        this.release(node);
        return true;
      }
      node = bitAt(node.cidr, k0, k1, k2, k3) === 0 ? node.zero : node.one;
    }
    return false;
  }

  /** Removes every prefix owned by `value` (peer removal, `replace_allowed_ips`). */
  removeValue(value: T): void {
    const nodes = this.byValue.get(value);
    if (nodes === undefined) return;
    for (const node of [...nodes]) this.release(node);
  }

  /**
   * Longest-prefix match of the 4 (family 4) or 16 (family 6) address bytes at
   * packet[offset]. Called for every packet: reads in place, allocates nothing.
   */
  lookup(packet: Uint8Array, offset: number, family: 4 | 6): T | undefined {
    const familyNumber: number = family; // callers outside TypeScript may pass anything
    const length = familyNumber === 4 ? IPV4_LENGTH : familyNumber === 6 ? IPV6_LENGTH : 0;
    if (length === 0) throw new RangeError(`family must be 4 or 6, got ${String(family)}`);
    if (!Number.isInteger(offset) || offset < 0 || offset + length > packet.length) {
      throw new RangeError(
        `offset ${String(offset)} leaves no room for ${length} address bytes in a packet of ${packet.length}`,
      );
    }
    let found: T | undefined;
    if (family === 4) {
      const k0 = readWord(packet, offset);
      let node = this.root4;
      // clz32(0) is 32, so an exact match passes for every IPv4 cidr.
      while (node !== null && Math.clz32(node.w0 ^ k0) >= node.cidr) {
        if (node.value !== undefined) found = node.value;
        if (node.cidr === IPV4_BITS) break;
        node = ((k0 >>> (31 - node.cidr)) & 1) === 0 ? node.zero : node.one;
      }
      return found;
    }
    const k0 = readWord(packet, offset);
    const k1 = readWord(packet, offset + 4);
    const k2 = readWord(packet, offset + 8);
    const k3 = readWord(packet, offset + 12);
    let node = this.root6;
    while (node !== null && commonBits(node, k0, k1, k2, k3) >= node.cidr) {
      if (node.value !== undefined) found = node.value;
      if (node.cidr === IPV6_BITS) break;
      node = bitAt(node.cidr, k0, k1, k2, k3) === 0 ? node.zero : node.one;
    }
    return found;
  }

  /** The prefixes `value` owns, masked, in the order they were (last) inserted. */
  entries(value: T): { address: Uint8Array; cidr: number }[] {
    const nodes = this.byValue.get(value);
    if (nodes === undefined) return [];
    const result: { address: Uint8Array; cidr: number }[] = [];
    for (const node of nodes) result.push({ address: nodeAddress(node), cidr: node.cidr });
    return result;
  }

  clear(): void {
    this.root4 = null;
    this.root6 = null;
    this.byValue.clear();
    this.count = 0;
  }

  // ------------------------------------------------------------------ internals

  private loadKey(address: Uint8Array, cidr: number): void {
    if (address.length === IPV4_LENGTH) {
      this.k0 = readWord(address, 0) & leadingMask(cidr);
      this.k1 = 0;
      this.k2 = 0;
      this.k3 = 0;
    } else {
      this.k0 = readWord(address, 0) & wordMask(cidr, 0);
      this.k1 = readWord(address, 4) & wordMask(cidr, 1);
      this.k2 = readWord(address, 8) & wordMask(cidr, 2);
      this.k3 = readWord(address, 12) & wordMask(cidr, 3);
    }
  }

  private setRoot(isV4: boolean, node: TrieNode<T> | null): void {
    if (isV4) this.root4 = node;
    else this.root6 = node;
  }

  /** Hangs `child` below `parent` on the side chosen by child's bit at parent.cidr. */
  private attach(parent: TrieNode<T>, child: TrieNode<T>): void {
    child.parent = parent;
    if (bitAt(parent.cidr, child.w0, child.w1, child.w2, child.w3) === 0) parent.zero = child;
    else parent.one = child;
  }

  /** Gives `node` to `value`; moves it to the end of value's list like the kernel's list_move_tail. */
  private own(node: TrieNode<T>, value: T): void {
    if (node.value !== undefined) this.forget(node, node.value);
    else this.count++;
    node.value = value;
    let nodes = this.byValue.get(value);
    if (nodes === undefined) {
      nodes = new Set();
      this.byValue.set(value, nodes);
    }
    nodes.add(node);
  }

  private forget(node: TrieNode<T>, value: T): void {
    const nodes = this.byValue.get(value);
    if (nodes === undefined) return;
    nodes.delete(node);
    if (nodes.size === 0) this.byValue.delete(value);
  }

  /**
   * Drops node's value, then splices out every valueless node left with fewer
   * than two children, so the trie stays compressed (kernel allowedips.c
   * remove_node; at most the node and its valueless parent go).
   */
  private release(node: TrieNode<T>): void {
    if (node.value === undefined) return;
    this.forget(node, node.value);
    node.value = undefined;
    this.count--;
    let current: TrieNode<T> | null = node;
    while (
      current !== null &&
      current.value === undefined &&
      (current.zero === null || current.one === null)
    ) {
      const child: TrieNode<T> | null = current.zero ?? current.one;
      const parent: TrieNode<T> | null = current.parent;
      if (child !== null) child.parent = parent;
      if (parent === null) {
        if (this.root4 === current) this.root4 = child;
        else this.root6 = child;
      } else if (parent.zero === current) {
        parent.zero = child;
      } else {
        parent.one = child;
      }
      current.parent = null;
      current.zero = null;
      current.one = null;
      current = parent;
    }
  }
}

function nodeAddress<T>(node: TrieNode<T>): Uint8Array {
  const bytes = new Uint8Array(node.length);
  writeWord(bytes, 0, node.w0);
  if (node.length === IPV6_LENGTH) {
    writeWord(bytes, 4, node.w1);
    writeWord(bytes, 8, node.w2);
    writeWord(bytes, 12, node.w3);
  }
  return bytes;
}

function writeWord(bytes: Uint8Array, offset: number, word: number): void {
  bytes[offset] = word >>> 24;
  bytes[offset + 1] = (word >>> 16) & 0xff;
  bytes[offset + 2] = (word >>> 8) & 0xff;
  bytes[offset + 3] = word & 0xff;
}

// ---------------------------------------------------------------- text forms

function isDigit(code: number): boolean {
  return code >= 48 && code <= 57;
}

function hexValue(code: number): number {
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 97 && code <= 102) return code - 87;
  if (code >= 65 && code <= 70) return code - 55;
  return -1;
}

/**
 * Strict dotted-quad IPv4 in text[start, end) (four decimal octets, no leading
 * zeros — like Go's netip.ParseAddr, which wireguard-go uses, so "010.0.0.1" is
 * not read as octal by one side and decimal by the other). Writes out[offset..+4).
 */
function parseIpv4Into(
  text: string,
  start: number,
  end: number,
  out: Uint8Array,
  offset: number,
): boolean {
  let octet = 0;
  let digits = 0;
  let index = offset;
  for (let i = start; i <= end; i++) {
    const code = i < end ? text.charCodeAt(i) : 46; // a virtual '.' closes the last octet
    if (code === 46) {
      if (digits === 0 || index >= offset + 4) return false;
      out[index++] = octet;
      octet = 0;
      digits = 0;
    } else if (isDigit(code)) {
      if (digits > 0 && octet === 0) return false; // leading zero
      octet = octet * 10 + (code - 48);
      digits++;
      if (octet > 255) return false;
    } else {
      return false;
    }
  }
  return index === offset + 4;
}

/**
 * RFC 4291 §2.2 text form in one pass: hex groups of 1–4 digits, at most one
 * "::" (standing for at least one zero group), optionally ending in a dotted
 * quad. No zone. Returns null if malformed.
 */
function parseIpv6(text: string): Uint8Array | null {
  const out = new Uint8Array(IPV6_LENGTH);
  const length = text.length;
  let i = 0;
  let filled = 0; // bytes written
  let ellipsis = -1; // byte offset where "::" stands
  if (length >= 2 && text.charCodeAt(0) === 58 && text.charCodeAt(1) === 58) {
    ellipsis = 0;
    i = 2;
    if (i === length) return out;
  }
  while (filled < IPV6_LENGTH) {
    const groupStart = i;
    let value = 0;
    let digits = 0;
    for (; i < length; i++) {
      const digit = hexValue(text.charCodeAt(i));
      if (digit < 0) break;
      if (++digits > 4) return null;
      value = (value << 4) | digit;
    }
    if (digits === 0) return null;
    if (i < length && text.charCodeAt(i) === 46) {
      // A dotted quad: only as the last 32 bits, and it must end the text.
      if (filled + 4 > IPV6_LENGTH || (ellipsis === -1 && filled !== 12)) return null;
      if (!parseIpv4Into(text, groupStart, length, out, filled)) return null;
      filled += 4;
      i = length;
      break;
    }
    out[filled] = value >>> 8;
    out[filled + 1] = value & 0xff;
    filled += 2;
    if (i === length) break;
    if (text.charCodeAt(i) !== 58) return null;
    i++;
    if (i === length) return null; // a trailing single ':'
    if (text.charCodeAt(i) === 58) {
      if (ellipsis !== -1) return null;
      ellipsis = filled;
      i++;
      if (i === length) break;
    }
  }
  if (i !== length) return null;
  if (filled === IPV6_LENGTH) return ellipsis === -1 ? out : null;
  if (ellipsis === -1) return null;
  // Move the groups after "::" to the end and zero the gap.
  const tail = filled - ellipsis;
  for (let k = tail - 1; k >= 0; k--) out[IPV6_LENGTH - tail + k] = out[ellipsis + k];
  out.fill(0, ellipsis, IPV6_LENGTH - tail);
  return out;
}

/** 4 or 16 address bytes, or null if `text` is not a literal address. */
function parseAddressBytes(text: string): Uint8Array | null {
  if (text.includes(':')) return parseIpv6(text);
  const address = new Uint8Array(IPV4_LENGTH);
  return parseIpv4Into(text, 0, text.length, address, 0) ? address : null;
}

/**
 * Parses a literal IPv4 or IPv6 address (no zone, no brackets). Throws an Error
 * naming the text if it is not one.
 */
export function parseIpAddress(text: string): { family: 4 | 6; address: Uint8Array } {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  const address = parseAddressBytes(text);
  if (address === null) throw new Error(`invalid IP address ${JSON.stringify(text)}`);
  return { family: address.length === IPV4_LENGTH ? 4 : 6, address };
}

/**
 * Parses "10.0.0.0/8", "fd00::1/128", "::/0"; without "/N" the prefix is the
 * full address length. The address is returned as written (not masked).
 */
export function parseCidr(text: string): { family: 4 | 6; address: Uint8Array; cidr: number } {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  const slash = text.indexOf('/');
  const address = parseAddressBytes(slash === -1 ? text : text.slice(0, slash));
  if (address === null) throw new Error(`invalid CIDR ${JSON.stringify(text)}: bad address`);
  const family = address.length === IPV4_LENGTH ? 4 : 6;
  const maximum = family === 4 ? IPV4_BITS : IPV6_BITS;
  if (slash === -1) return { family, address, cidr: maximum };
  // Decimal, 1–3 digits, no leading zero (Go's netip.ParsePrefix).
  const digits = text.length - slash - 1;
  let cidr = 0;
  let valid = digits >= 1 && digits <= 3 && !(digits > 1 && text.charCodeAt(slash + 1) === 48);
  for (let i = slash + 1; valid && i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (isDigit(code)) cidr = cidr * 10 + (code - 48);
    else valid = false;
  }
  if (!valid || cidr > maximum) {
    throw new Error(`invalid CIDR ${JSON.stringify(text)}: prefix length must be 0 to ${maximum}`);
  }
  return { family, address, cidr };
}

/**
 * Formats an address: dotted quad for IPv4; for IPv6 the RFC 5952 canonical form
 * (lowercase, no leading zeros, the longest run of two or more zero groups — the
 * first one on a tie — as "::"), with IPv4-mapped addresses as "::ffff:a.b.c.d",
 * exactly as Go's netip (wireguard-go's `get` output) prints them.
 */
export function formatIpAddress(address: Uint8Array): string {
  checkAddress(address, 'address');
  if (address.length === IPV4_LENGTH) {
    return `${address[0]}.${address[1]}.${address[2]}.${address[3]}`;
  }
  let mapped = address[10] === 0xff && address[11] === 0xff;
  for (let i = 0; mapped && i < 10; i++) if (address[i] !== 0) mapped = false;
  if (mapped) return `::ffff:${address[12]}.${address[13]}.${address[14]}.${address[15]}`;

  const groups: number[] = [];
  for (let i = 0; i < IPV6_LENGTH; i += 2) groups.push((address[i] << 8) | address[i + 1]);
  let bestStart = -1;
  let bestLength = 1; // a single zero group is not compressed (RFC 5952 §4.2.2)
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let end = i;
    while (end < 8 && groups[end] === 0) end++;
    if (end - i > bestLength) {
      bestStart = i;
      bestLength = end - i;
    }
    i = end;
  }
  if (bestStart === -1) return groups.map((group) => group.toString(16)).join(':');
  const before = groups.slice(0, bestStart).map((group) => group.toString(16));
  const after = groups.slice(bestStart + bestLength).map((group) => group.toString(16));
  return `${before.join(':')}::${after.join(':')}`;
}

/** "address/cidr" with the address formatted by formatIpAddress (not masked). */
export function formatCidr(address: Uint8Array, cidr: number): string {
  checkAddress(address, 'address');
  checkCidr(cidr, address.length);
  return `${formatIpAddress(address)}/${cidr}`;
}
