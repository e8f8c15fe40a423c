import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  AllowedIps,
  formatCidr,
  formatIpAddress,
  parseCidr,
  parseIpAddress,
} from './allowed-ips.js';

/** The obviously-correct reference: a list scanned linearly. */
class NaiveTable<T> {
  private list: { address: Uint8Array; cidr: number; value: T }[] = [];

  insert(address: Uint8Array, cidr: number, value: T): void {
    const masked = mask(address, cidr);
    this.list = this.list.filter((e) => !samePrefix(e.address, e.cidr, masked, cidr));
    this.list.push({ address: masked, cidr, value }); // re-inserting moves to the end
  }

  remove(address: Uint8Array, cidr: number, value: T): boolean {
    const masked = mask(address, cidr);
    const before = this.list.length;
    this.list = this.list.filter(
      (e) => !(samePrefix(e.address, e.cidr, masked, cidr) && e.value === value),
    );
    return this.list.length !== before;
  }

  removeValue(value: T): void {
    this.list = this.list.filter((e) => e.value !== value);
  }

  lookup(address: Uint8Array): T | undefined {
    let best: { cidr: number; value: T } | undefined;
    for (const e of this.list) {
      if (e.address.length !== address.length) continue;
      if (!samePrefix(e.address, e.cidr, mask(address, e.cidr), e.cidr)) continue;
      if (best === undefined || e.cidr > best.cidr) best = e;
    }
    return best?.value;
  }

  entries(value: T): { address: Uint8Array; cidr: number }[] {
    return this.list
      .filter((e) => e.value === value)
      .map((e) => ({ address: e.address, cidr: e.cidr }));
  }

  get size(): number {
    return this.list.length;
  }
}

function mask(address: Uint8Array, cidr: number): Uint8Array {
  const out = Uint8Array.from(address);
  for (let i = 0; i < out.length; i++) {
    const bits = Math.max(0, Math.min(8, cidr - 8 * i));
    out[i] &= (0xff00 >> bits) & 0xff;
  }
  return out;
}

function samePrefix(a: Uint8Array, aCidr: number, b: Uint8Array, bCidr: number): boolean {
  return aCidr === bCidr && a.length === b.length && a.every((byte, i) => byte === b[i]);
}

function bytes(text: string): Uint8Array {
  return parseIpAddress(text).address;
}

function prefix(text: string): { address: Uint8Array; cidr: number } {
  const parsed = parseCidr(text);
  return { address: parsed.address, cidr: parsed.cidr };
}

function lookupText<T>(table: AllowedIps<T>, text: string): T | undefined {
  const parsed = parseIpAddress(text);
  return table.lookup(parsed.address, 0, parsed.family);
}

// ------------------------------------------------------------ random model tests

type Operation =
  | { kind: 'insert'; address: Uint8Array; cidr: number; value: number }
  | { kind: 'remove'; address: Uint8Array; cidr: number; value: number }
  | { kind: 'removeValue'; value: number }
  | { kind: 'lookup'; address: Uint8Array };

/**
 * Addresses drawn near a few shared bases so prefixes nest, collide and split
 * often, plus fully random ones.
 */
function addressArbitrary(length: 4 | 16): fc.Arbitrary<Uint8Array> {
  const bases =
    length === 4
      ? [bytes('10.0.0.0'), bytes('10.128.0.0'), bytes('192.0.2.0'), bytes('0.0.0.0')]
      : [bytes('fd00::'), bytes('fd00:0:0:1::'), bytes('2001:db8::'), bytes('::')];
  const near = fc
    .tuple(
      fc.constantFrom(...bases),
      fc.uint8Array({ minLength: length, maxLength: length }),
      fc.nat(length * 8),
    )
    .map(([base, noise, keep]) => {
      // Keep the base's first `keep` bits, then random bits.
      const out = Uint8Array.from(base);
      for (let bit = keep; bit < length * 8; bit++) {
        const byte = bit >> 3;
        const shift = 7 - (bit & 7);
        out[byte] = (out[byte] & ~(1 << shift)) | (((noise[byte] >> shift) & 1) << shift);
      }
      return out;
    });
  const random = fc.uint8Array({ minLength: length, maxLength: length });
  return fc.oneof({ weight: 4, arbitrary: near }, { weight: 1, arbitrary: random });
}

function operationsArbitrary(length: 4 | 16): fc.Arbitrary<Operation[]> {
  const bits = length * 8;
  const address = addressArbitrary(length);
  const value = fc.integer({ min: 1, max: 4 });
  const cidr = fc.oneof(
    fc.integer({ min: 0, max: bits }),
    fc.constantFrom(0, bits, bits - 1, 8, 16),
  );
  const operation: fc.Arbitrary<Operation> = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({ kind: fc.constant('insert' as const), address, cidr, value }),
    },
    {
      weight: 2,
      arbitrary: fc.record({ kind: fc.constant('remove' as const), address, cidr, value }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('removeValue' as const), value }) },
    { weight: 4, arbitrary: fc.record({ kind: fc.constant('lookup' as const), address }) },
  );
  return fc.array(operation, { maxLength: 120 });
}

function checkAgainstModel(operations: Operation[], family: 4 | 6): void {
  const table = new AllowedIps<number>();
  const model = new NaiveTable<number>();
  const packet = new Uint8Array(64);
  const offset = family === 4 ? 16 : 24; // where IP headers keep the destination
  for (const operation of operations) {
    switch (operation.kind) {
      case 'insert':
        table.insert(operation.address, operation.cidr, operation.value);
        model.insert(operation.address, operation.cidr, operation.value);
        break;
      case 'remove':
        assert.equal(
          table.remove(operation.address, operation.cidr, operation.value),
          model.remove(operation.address, operation.cidr, operation.value),
        );
        break;
      case 'removeValue':
        table.removeValue(operation.value);
        model.removeValue(operation.value);
        break;
      case 'lookup':
        packet.set(operation.address, offset);
        assert.equal(table.lookup(packet, offset, family), model.lookup(operation.address));
        break;
    }
    assert.equal(table.size, model.size);
  }
  // Every inserted prefix's own address, and every value's listing, agree too.
  for (let value = 1; value <= 4; value++) {
    assert.deepEqual(table.entries(value), model.entries(value));
    for (const entry of model.entries(value)) {
      assert.equal(table.lookup(entry.address, 0, family), model.lookup(entry.address));
    }
  }
}

void describe('AllowedIps against a linear-scan model', () => {
  void it('IPv4: random inserts, removals and lookups agree', () => {
    fc.assert(
      fc.property(operationsArbitrary(4), (operations) => {
        checkAgainstModel(operations, 4);
      }),
      { numRuns: 400 },
    );
  });

  void it('IPv6: random inserts, removals and lookups agree', () => {
    fc.assert(
      fc.property(operationsArbitrary(16), (operations) => {
        checkAgainstModel(operations, 6);
      }),
      { numRuns: 400 },
    );
  });

  void it('mixed families never see each other', () => {
    const table = new AllowedIps<string>();
    table.insert(bytes('0.0.0.0'), 0, 'v4-default');
    assert.equal(lookupText(table, '::'), undefined);
    assert.equal(lookupText(table, '2001:db8::1'), undefined);
    table.insert(bytes('::'), 0, 'v6-default');
    assert.equal(lookupText(table, '192.0.2.1'), 'v4-default');
    assert.equal(lookupText(table, '::ffff:192.0.2.1'), 'v6-default');
  });
});

void describe('AllowedIps behaviour', () => {
  void it('longest prefix wins, independent of insertion order', () => {
    const prefixes: [string, string][] = [
      ['0.0.0.0/0', 'default'],
      ['10.0.0.0/8', 'ten'],
      ['10.1.0.0/16', 'ten-one'],
      ['10.1.2.3/32', 'host'],
      ['192.0.2.128/25', 'upper-half'],
    ];
    for (const order of [prefixes, [...prefixes].reverse()]) {
      const table = new AllowedIps<string>();
      for (const [text, value] of order) {
        const { address, cidr } = prefix(text);
        table.insert(address, cidr, value);
      }
      assert.equal(lookupText(table, '10.1.2.3'), 'host');
      assert.equal(lookupText(table, '10.1.2.4'), 'ten-one');
      assert.equal(lookupText(table, '10.200.0.1'), 'ten');
      assert.equal(lookupText(table, '192.0.2.200'), 'upper-half');
      assert.equal(lookupText(table, '192.0.2.100'), 'default');
      assert.equal(table.size, 5);
    }
  });

  void it('masks host bits and lists prefixes in canonical form', () => {
    const table = new AllowedIps<string>();
    table.insert(bytes('10.1.2.3'), 8, 'a');
    table.insert(bytes('fd00::1:2:3'), 64, 'a');
    const listed = table.entries('a').map((e) => formatCidr(e.address, e.cidr));
    assert.deepEqual(listed, ['10.0.0.0/8', 'fd00::/64']);
    // The same prefix written with other host bits is the same entry.
    table.insert(bytes('10.255.255.255'), 8, 'b');
    assert.equal(table.size, 2);
    assert.deepEqual(
      table.entries('a').map((e) => formatCidr(e.address, e.cidr)),
      ['fd00::/64'],
    );
    assert.deepEqual(
      table.entries('b').map((e) => formatCidr(e.address, e.cidr)),
      ['10.0.0.0/8'],
    );
  });

  void it('replacing the owner moves the prefix to the new owner, at the end of its list', () => {
    const table = new AllowedIps<string>();
    const p1 = prefix('192.0.2.0/24');
    const p2 = prefix('198.51.100.0/24');
    const p3 = prefix('203.0.113.0/24');
    table.insert(p1.address, p1.cidr, 'a');
    table.insert(p2.address, p2.cidr, 'b');
    table.insert(p3.address, p3.cidr, 'b');
    table.insert(p2.address, p2.cidr, 'a');
    assert.deepEqual(
      table.entries('a').map((e) => formatCidr(e.address, e.cidr)),
      ['192.0.2.0/24', '198.51.100.0/24'],
    );
    assert.deepEqual(
      table.entries('b').map((e) => formatCidr(e.address, e.cidr)),
      ['203.0.113.0/24'],
    );
    assert.equal(lookupText(table, '198.51.100.7'), 'a');
    // Re-inserting for the same owner moves it to the end (kernel list_move_tail).
    table.insert(p1.address, p1.cidr, 'a');
    assert.deepEqual(
      table.entries('a').map((e) => formatCidr(e.address, e.cidr)),
      ['198.51.100.0/24', '192.0.2.0/24'],
    );
    assert.equal(table.size, 3);
  });

  void it('remove only takes a prefix from its owner, and only the exact prefix', () => {
    const table = new AllowedIps<string>();
    const wide = prefix('10.0.0.0/8');
    const narrow = prefix('10.1.0.0/16');
    table.insert(wide.address, wide.cidr, 'a');
    table.insert(narrow.address, narrow.cidr, 'b');
    assert.equal(table.remove(narrow.address, narrow.cidr, 'a'), false);
    assert.equal(table.remove(bytes('10.1.0.0'), 17, 'b'), false);
    assert.equal(table.remove(bytes('10.0.0.0'), 9, 'a'), false);
    assert.equal(lookupText(table, '10.1.0.1'), 'b');
    assert.equal(table.remove(bytes('10.1.99.99'), 16, 'b'), true); // host bits masked
    assert.equal(lookupText(table, '10.1.0.1'), 'a');
    assert.equal(table.remove(narrow.address, narrow.cidr, 'b'), false);
    assert.equal(table.size, 1);
    assert.equal(table.remove(wide.address, wide.cidr, 'a'), true);
    assert.equal(lookupText(table, '10.1.0.1'), undefined);
    assert.equal(table.size, 0);
  });

  void it('removeValue drops every prefix of one owner and leaves the others', () => {
    const table = new AllowedIps<object>();
    const alice = {};
    const bob = {};
    for (let i = 0; i < 256; i++) {
      table.insert(new Uint8Array([10, 0, i, 0]), 24, i % 2 === 0 ? alice : bob);
      table.insert(new Uint8Array([0xfd, 0, 0, i, ...new Array<number>(12).fill(0)]), 32, alice);
    }
    table.insert(bytes('10.0.0.0'), 8, bob);
    assert.equal(table.size, 513);
    table.removeValue(alice);
    assert.equal(table.size, 129);
    assert.deepEqual(table.entries(alice), []);
    assert.equal(lookupText(table, '10.0.2.1'), bob); // falls back to bob's /8
    assert.equal(lookupText(table, '10.0.3.1'), bob);
    assert.equal(lookupText(table, 'fd00:5::1'), undefined);
    table.removeValue(alice); // no-op
    table.clear();
    assert.equal(table.size, 0);
    assert.equal(lookupText(table, '10.0.3.1'), undefined);
  });

  void it('looks up in place at an offset of a packet', () => {
    const table = new AllowedIps<string>();
    table.insert(bytes('192.0.2.0'), 24, 'doc');
    table.insert(bytes('2001:db8::'), 32, 'doc6');
    const ipv4Header = new Uint8Array(20);
    ipv4Header.set(bytes('203.0.113.9'), 12);
    ipv4Header.set(bytes('192.0.2.77'), 16);
    assert.equal(table.lookup(ipv4Header, 16, 4), 'doc');
    assert.equal(table.lookup(ipv4Header, 12, 4), undefined);
    const ipv6Header = new Uint8Array(40);
    ipv6Header.set(bytes('2001:db8:1::5'), 24);
    assert.equal(table.lookup(ipv6Header, 24, 6), 'doc6');
    assert.equal(table.lookup(ipv6Header, 8, 6), undefined);
  });

  void it('checks its arguments and names them', () => {
    const table = new AllowedIps<string>();
    assert.throws(() => {
      table.insert(new Uint8Array(5), 8, 'x');
    }, /address must be 4 \(IPv4\) or 16 \(IPv6\) bytes/);
    assert.throws(() => {
      table.insert(new Uint8Array(4), 33, 'x');
    }, /cidr must be an integer from 0 to 32/);
    assert.throws(() => {
      table.insert(new Uint8Array(16), 1.5, 'x');
    }, /cidr must be an integer from 0 to 128/);
    assert.throws(() => {
      table.lookup(new Uint8Array(20), 17, 4);
    }, /offset 17/);
    assert.throws(() => {
      table.lookup(new Uint8Array(40), 0, 5 as 4);
    }, /family must be 4 or 6/);
  });
});

void describe('AllowedIps scale', () => {
  void it('one peer with 130,000 prefixes: insert, list, look up, remove', () => {
    const table = new AllowedIps<string>();
    const started = performance.now();
    for (let i = 0; i < 130_000; i++) {
      if (i % 2 === 0) {
        table.insert(new Uint8Array([10, (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff]), 32, 'big');
      } else {
        const v6 = new Uint8Array(16);
        v6[0] = 0xfd;
        v6[13] = (i >> 16) & 0xff;
        v6[14] = (i >> 8) & 0xff;
        v6[15] = i & 0xff;
        table.insert(v6, 128, 'big');
      }
    }
    const inserted = performance.now();
    const listed = table.entries('big');
    const listedAt = performance.now();
    assert.equal(listed.length, 130_000);
    assert.equal(table.size, 130_000);
    assert.equal(formatCidr(listed[0].address, listed[0].cidr), '10.0.0.0/32');
    assert.equal(formatCidr(listed[1].address, listed[1].cidr), 'fd00::1/128');
    const packet = new Uint8Array([10, 1, 0xfb, 0xce]); // i = 129,998: even, so an IPv4 /32
    assert.equal(table.lookup(packet, 0, 4), 'big');
    let hits = 0;
    const lookups = 1_000_000;
    const lookupStarted = performance.now();
    for (let i = 0; i < lookups; i++) {
      packet[3] = i & 0xff;
      if (table.lookup(packet, 0, 4) !== undefined) hits++;
    }
    const lookupEnded = performance.now();
    assert.ok(hits > 0);
    table.removeValue('big');
    const removed = performance.now();
    assert.equal(table.size, 0);
    console.log(
      `130k prefixes: insert ${(inserted - started).toFixed(1)} ms, entries ${(listedAt - inserted).toFixed(1)} ms, ` +
        `removeValue ${(removed - lookupEnded).toFixed(1)} ms, ` +
        `${((lookupEnded - lookupStarted) * 1e6) / lookups} ns per IPv4 lookup`,
    );
  });

  void it('40 peers with 52 prefixes each', () => {
    const table = new AllowedIps<number>();
    const started = performance.now();
    for (let peer = 0; peer < 40; peer++) {
      for (let i = 0; i < 52; i++) table.insert(new Uint8Array([10, peer, i, 0]), 24, peer);
    }
    for (let peer = 0; peer < 40; peer++) assert.equal(table.entries(peer).length, 52);
    assert.equal(table.lookup(new Uint8Array([10, 39, 51, 200]), 0, 4), 39);
    console.log(`40 × 52 prefixes: ${(performance.now() - started).toFixed(2)} ms`);
  });
});

void describe('parseCidr / formatCidr', () => {
  void it('parses IPv4 and IPv6 prefixes, defaulting to the full length', () => {
    assert.deepEqual(parseCidr('10.0.0.0/8'), { family: 4, address: bytes('10.0.0.0'), cidr: 8 });
    assert.deepEqual(parseCidr('192.0.2.1'), { family: 4, address: bytes('192.0.2.1'), cidr: 32 });
    assert.deepEqual(parseCidr('fd00::1/128'), { family: 6, address: bytes('fd00::1'), cidr: 128 });
    assert.deepEqual(parseCidr('::/0'), { family: 6, address: new Uint8Array(16), cidr: 0 });
    assert.deepEqual(parseCidr('2001:DB8::'), {
      family: 6,
      address: bytes('2001:db8::'),
      cidr: 128,
    });
    assert.deepEqual(parseCidr('::ffff:192.0.2.1/96').address, bytes('::ffff:c000:201'));
    assert.deepEqual(
      [...bytes('1:2:3:4:5:6:7:8')],
      [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8],
    );
    assert.deepEqual(
      [...bytes('1:2:3:4:5:6:7::')],
      [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 0],
    );
    assert.deepEqual(
      [...bytes('1:2:3:4:5:6:1.2.3.4')],
      [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 1, 2, 3, 4],
    );
  });

  void it('rejects malformed text and names it', () => {
    const bad = [
      '',
      '/8',
      '10.0.0.0/',
      '10.0.0.0/33',
      '10.0.0.0/08',
      '10.0.0.0/+8',
      '10.0.0/8',
      '10.0.0.0.0',
      '256.0.0.0',
      '010.0.0.1',
      '1.2.3.4 ',
      ' 1.2.3.4',
      '::/129',
      ':::',
      '1:::2',
      '1::2::3',
      ':1::',
      '1::2:',
      '12345::',
      'g::',
      '1:2:3:4:5:6:7:8:9',
      '1:2:3:4:5:6:7:8::',
      '1:2:3:4:5:6:7',
      '1.2.3.4::',
      '::1.2.3.4:5',
      '::ffff:01.2.3.4',
      'fe80::1%eth0',
      '10.0.0.0/8/8',
    ];
    for (const text of bad) {
      assert.throws(
        () => parseCidr(text),
        (error: Error) => error.message.includes(JSON.stringify(text)),
        `should reject ${JSON.stringify(text)}`,
      );
    }
  });

  void it('formats IPv6 canonically (RFC 5952 §4, Go netip)', () => {
    const vectors: [string, string][] = [
      ['0:0:0:0:0:0:0:0', '::'],
      ['0:0:0:0:0:0:0:1', '::1'],
      ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // tie: the first run
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // a lone zero group stays
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // the longest run
      ['2001:DB8::AB:CD', '2001:db8::ab:cd'],
      ['fd00::', 'fd00::'],
      ['::ffff:c000:0201', '::ffff:192.0.2.1'], // IPv4-mapped
      ['::c000:201', '::c000:201'], // IPv4-compatible: plain hex, as Go
      ['1:0:0:0:0:0:0:0', '1::'],
      ['0:1:0:0:0:0:0:0', '0:1::'],
    ];
    for (const [input, expected] of vectors)
      assert.equal(formatIpAddress(bytes(input)), expected, input);
    assert.equal(formatCidr(bytes('192.0.2.0'), 24), '192.0.2.0/24');
    assert.equal(formatCidr(bytes('fd00::'), 8), 'fd00::/8');
    assert.throws(() => formatCidr(new Uint8Array(4), 40), /cidr/);
  });

  void it('formatting then parsing returns the same bytes (fuzz)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ minLength: 4, maxLength: 4 }),
          fc.uint8Array({ minLength: 16, maxLength: 16 }),
          // Many zero groups exercise the "::" choice.
          fc
            .array(fc.constantFrom(0, 0, 0, 1, 0xff), { minLength: 16, maxLength: 16 })
            .map((a) => Uint8Array.from(a)),
        ),
        fc.nat(128),
        (address, bits) => {
          const cidr = Math.min(bits, address.length * 8);
          const text = formatCidr(address, cidr);
          assert.equal(text, text.toLowerCase());
          assert.ok(!text.includes(':::'));
          const parsed = parseCidr(text);
          assert.deepEqual(parsed.address, address);
          assert.equal(parsed.cidr, cidr);
          assert.equal(parsed.family, address.length === 4 ? 4 : 6);
        },
      ),
      { numRuns: 2000 },
    );
  });

  void it('arbitrary text either parses or throws an Error (fuzz)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.stringMatching(/^[0-9a-fA-F:./%]{0,45}$/)), (text) => {
        try {
          const parsed = parseCidr(text);
          assert.ok(parsed.address.length === 4 || parsed.address.length === 16);
        } catch (error) {
          assert.ok(error instanceof Error);
          assert.ok(error.message.includes(JSON.stringify(text)));
        }
      }),
      { numRuns: 5000 },
    );
  });
});
