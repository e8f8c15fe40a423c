import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { COUNTER_WINDOW_SIZE, REJECT_AFTER_MESSAGES } from './constants.js';
import { ReplayFilter } from './replay.js';

const W = COUNTER_WINDOW_SIZE;

/**
 * The reference: remember every counter ever accepted. A counter is accepted if
 * it is below the limit, not seen before, and at most COUNTER_WINDOW_SIZE behind
 * the greatest accepted counter (kernel receive.c counter_validate).
 */
class NaiveReplayModel {
  private readonly seen = new Set<bigint>();
  private greatest: bigint | null = null;

  validate(counter: bigint, limit: bigint): boolean {
    if (counter >= limit) return false;
    if (this.greatest !== null && this.greatest >= limit) return false;
    if (this.greatest !== null && counter + BigInt(COUNTER_WINDOW_SIZE) < this.greatest)
      return false;
    if (this.seen.has(counter)) return false;
    this.seen.add(counter);
    if (this.greatest === null || counter > this.greatest) this.greatest = counter;
    return true;
  }
}

void describe('ReplayFilter: Linux kernel self-test', () => {
  // Vectors transcribed from the Linux kernel, drivers/net/wireguard/selftest/counter.c
  // (wg_packet_counter_selftest), which runs them against counter_validate.
  const T_LIM = BigInt(COUNTER_WINDOW_SIZE + 1);
  const REJECT = REJECT_AFTER_MESSAGES;

  void it('the 34 numbered checks', () => {
    const filter = new ReplayFilter();
    const vectors: [bigint, boolean][] = [
      /*  1 */ [0n, true],
      /*  2 */ [1n, true],
      /*  3 */ [1n, false],
      /*  4 */ [9n, true],
      /*  5 */ [8n, true],
      /*  6 */ [7n, true],
      /*  7 */ [7n, false],
      /*  8 */ [T_LIM, true],
      /*  9 */ [T_LIM - 1n, true],
      /* 10 */ [T_LIM - 1n, false],
      /* 11 */ [T_LIM - 2n, true],
      /* 12 */ [2n, true],
      /* 13 */ [2n, false],
      /* 14 */ [T_LIM + 16n, true],
      /* 15 */ [3n, false],
      /* 16 */ [T_LIM + 16n, false],
      /* 17 */ [T_LIM * 4n, true],
      /* 18 */ [T_LIM * 4n - (T_LIM - 1n), true],
      /* 19 */ [10n, false],
      /* 20 */ [T_LIM * 4n - T_LIM, false],
      /* 21 */ [T_LIM * 4n - (T_LIM + 1n), false],
      /* 22 */ [T_LIM * 4n - (T_LIM - 2n), true],
      /* 23 */ [T_LIM * 4n + 1n - T_LIM, false],
      /* 24 */ [0n, false],
      /* 25 */ [REJECT, false],
      /* 26 */ [REJECT - 1n, true],
      /* 27 */ [REJECT, false],
      /* 28 */ [REJECT - 1n, false],
      /* 29 */ [REJECT - 2n, true],
      /* 30 */ [REJECT + 1n, false],
      /* 31 */ [REJECT + 2n, false],
      /* 32 */ [REJECT - 2n, false],
      /* 33 */ [REJECT - 3n, true],
      /* 34 */ [0n, false],
    ];
    vectors.forEach(([counter, expected], index) => {
      assert.equal(
        filter.validate(counter, REJECT),
        expected,
        `self-test ${index + 1} (counter ${counter})`,
      );
    });
  });

  void it('a full window in order, then 0', () => {
    const filter = new ReplayFilter();
    for (let i = 1; i <= W; i++) assert.equal(filter.validate(i, REJECT), true, `counter ${i}`);
    assert.equal(filter.validate(0, REJECT), true);
    assert.equal(filter.validate(0, REJECT), false);
  });

  void it('a full window from 2, then 1 and 0', () => {
    const filter = new ReplayFilter();
    for (let i = 2; i <= W + 1; i++) assert.equal(filter.validate(i, REJECT), true, `counter ${i}`);
    assert.equal(filter.validate(1, REJECT), true);
    assert.equal(filter.validate(0, REJECT), false);
  });

  void it('a full window in reverse', () => {
    const filter = new ReplayFilter();
    for (let i = W + 1; i-- > 0;) assert.equal(filter.validate(i, REJECT), true, `counter ${i}`);
  });

  void it('a window in reverse from W + 1, then 0', () => {
    const filter = new ReplayFilter();
    for (let i = W + 2; i-- > 1;) assert.equal(filter.validate(i, REJECT), true, `counter ${i}`);
    assert.equal(filter.validate(0, REJECT), false);
  });

  void it('reverse from W, then W + 1, then 0', () => {
    const filter = new ReplayFilter();
    for (let i = W + 1; i-- > 1;) assert.equal(filter.validate(i, REJECT), true, `counter ${i}`);
    assert.equal(filter.validate(W + 1, REJECT), true);
    assert.equal(filter.validate(0, REJECT), false);
  });

  void it('reverse from W, then 0, then W + 1', () => {
    const filter = new ReplayFilter();
    for (let i = W + 1; i-- > 1;) assert.equal(filter.validate(i, REJECT), true, `counter ${i}`);
    assert.equal(filter.validate(0, REJECT), true);
    assert.equal(filter.validate(W + 1, REJECT), true);
  });
});

void describe('ReplayFilter against a Set-based model', () => {
  /** Counters wandering around a base: in-window reorderings, replays, jumps. */
  function counterSequence(base: bigint): fc.Arbitrary<bigint[]> {
    const step = fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: -40, max: 40 }) },
      { weight: 3, arbitrary: fc.integer({ min: -W - 70, max: -W + 70 }) }, // window edge
      { weight: 2, arbitrary: fc.integer({ min: 1, max: 3 * 8192 }) }, // forward jumps, ring wrap
      { weight: 1, arbitrary: fc.integer({ min: -20_000, max: 20_000 }) },
    );
    return fc.array(step, { minLength: 1, maxLength: 300 }).map((steps) => {
      const counters: bigint[] = [];
      let position = base;
      for (const delta of steps) {
        position += BigInt(delta);
        if (position < 0n) position = 0n;
        counters.push(position);
      }
      return counters;
    });
  }

  function agree(counters: bigint[], limit: bigint, asNumbers: boolean): void {
    const filter = new ReplayFilter();
    const model = new NaiveReplayModel();
    for (const counter of counters) {
      const input =
        asNumbers && counter <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(counter) : counter;
      assert.equal(
        filter.validate(input, limit),
        model.validate(counter, limit),
        `counter ${counter}`,
      );
    }
  }

  void it('small counters as numbers', () => {
    fc.assert(
      fc.property(counterSequence(0n), (counters) => {
        agree(counters, REJECT_AFTER_MESSAGES, true);
      }),
      { numRuns: 300 },
    );
  });

  void it('small counters as bigints', () => {
    fc.assert(
      fc.property(counterSequence(20_000n), (counters) => {
        agree(counters, REJECT_AFTER_MESSAGES, false);
      }),
      { numRuns: 200 },
    );
  });

  void it('across 2^53, where the filter switches to BigInt', () => {
    fc.assert(
      fc.property(counterSequence(2n ** 53n - 10_000n), (counters) => {
        agree(counters, REJECT_AFTER_MESSAGES, true);
      }),
      { numRuns: 200 },
    );
  });

  void it('near REJECT_AFTER_MESSAGES', () => {
    fc.assert(
      fc.property(counterSequence(REJECT_AFTER_MESSAGES - 5_000n), (counters) => {
        agree(counters, REJECT_AFTER_MESSAGES, false);
      }),
      { numRuns: 200 },
    );
  });

  void it('with a small limit', () => {
    fc.assert(
      fc.property(
        counterSequence(9_000n),
        fc.bigInt({ min: 1n, max: 30_000n }),
        (counters, limit) => {
          agree(counters, limit, true);
        },
      ),
      { numRuns: 200 },
    );
  });
});

void describe('ReplayFilter edges', () => {
  void it('reset forgets everything', () => {
    const filter = new ReplayFilter();
    assert.equal(filter.validate(5, REJECT_AFTER_MESSAGES), true);
    assert.equal(filter.validate(2n ** 60n, REJECT_AFTER_MESSAGES), true);
    assert.equal(filter.validate(5, REJECT_AFTER_MESSAGES), false);
    filter.reset();
    assert.equal(filter.validate(5, REJECT_AFTER_MESSAGES), true);
    assert.equal(filter.validate(5, REJECT_AFTER_MESSAGES), false);
  });

  void it('the exact window boundary', () => {
    const filter = new ReplayFilter();
    assert.equal(filter.validate(100_000, REJECT_AFTER_MESSAGES), true);
    assert.equal(filter.validate(100_000 - W - 1, REJECT_AFTER_MESSAGES), false);
    assert.equal(filter.validate(100_000 - W, REJECT_AFTER_MESSAGES), true);
    assert.equal(filter.validate(100_000 - W, REJECT_AFTER_MESSAGES), false);
  });

  void it('numbers above 2^53 − 1 cannot be exact and are rejected; bigints are exact', () => {
    const filter = new ReplayFilter();
    assert.equal(filter.validate(2 ** 53 + 2, REJECT_AFTER_MESSAGES), false);
    assert.equal(filter.validate(Number.MAX_SAFE_INTEGER, REJECT_AFTER_MESSAGES), true);
    assert.equal(filter.validate(2n ** 53n + 1n, REJECT_AFTER_MESSAGES), true);
    assert.equal(filter.validate(2n ** 53n + 1n, REJECT_AFTER_MESSAGES), false);
    assert.equal(filter.validate(Number.MAX_SAFE_INTEGER, REJECT_AFTER_MESSAGES), false);
  });

  void it('rejects bad arguments by name', () => {
    const filter = new ReplayFilter();
    assert.throws(() => filter.validate(-1, REJECT_AFTER_MESSAGES), /counter/);
    assert.throws(() => filter.validate(1.5, REJECT_AFTER_MESSAGES), /counter/);
    assert.throws(() => filter.validate(Number.NaN, REJECT_AFTER_MESSAGES), /counter/);
    assert.throws(() => filter.validate(-1n, REJECT_AFTER_MESSAGES), /counter/);
    assert.throws(() => filter.validate(1, 5 as unknown as bigint), /limit/);
  });

  void it('per-packet cost stays in numbers (timing printed, not asserted)', () => {
    const filter = new ReplayFilter();
    const packets = 2_000_000;
    const started = performance.now();
    let accepted = 0;
    for (let i = 0; i < packets; i++) {
      // Mild reordering: pairs swapped.
      if (filter.validate(i ^ 1, REJECT_AFTER_MESSAGES)) accepted++;
    }
    const elapsed = performance.now() - started;
    assert.equal(accepted, packets);
    console.log(`ReplayFilter: ${((elapsed * 1e6) / packets).toFixed(1)} ns per counter`);
  });
});
