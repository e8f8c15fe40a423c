import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  DURATION_BUCKETS_SECONDS,
  HttpResponseCounters,
  RequestStartTimes,
  addResponseCounts,
  emptyResponseCounts,
} from './http-counters.js';

describe('HttpResponseCounters', () => {
  it('counts app responses by status class and the relay’s own answers by status', () => {
    const counters = new HttpResponseCounters();
    for (const status of [100, 101, 200, 204, 299, 301, 404, 404, 503, 599]) {
      counters.countApp(status);
    }
    // Outside the classes RFC 9110 defines: not counted anywhere.
    counters.countApp(600);
    counters.countApp(99);
    counters.countRelay(429);
    counters.countRelay(404);
    counters.countRelay(429);
    const snapshot = counters.snapshot();
    assert.deepEqual(snapshot.app, { '1xx': 2, '2xx': 3, '3xx': 1, '4xx': 2, '5xx': 2 });
    assert.deepEqual(snapshot.relay, { '404': 1, '429': 2 });
    assert.deepEqual(Object.keys(snapshot.relay), ['404', '429'], 'sorted by status');
    assert.throws(() => {
      counters.countRelay(0);
    }, /status must be an HTTP status/);
    assert.throws(() => {
      counters.countRelay(42.5);
    }, /status must be an HTTP status/);
  });

  it('puts durations in the first bucket whose bound is >= the value (Prometheus le)', () => {
    const counters = new HttpResponseCounters();
    counters.observeDuration(1000, 1000); // 0 s
    counters.observeDuration(1000, 1005); // exactly 0.005 s: the first bucket
    counters.observeDuration(1000, 1006); // 0.006 s: the second
    counters.observeDuration(0, 10_000); // 10 s: the last finite bucket
    counters.observeDuration(0, 60_000); // 60 s: +Inf
    counters.observeDuration(NaN, 5); // no start time: ignored
    counters.observeDuration(10, 5); // the clock went back: ignored
    const duration = counters.snapshot().duration;
    assert.equal(duration.buckets.length, DURATION_BUCKETS_SECONDS.length + 1);
    const expected = new Array<number>(DURATION_BUCKETS_SECONDS.length + 1).fill(0);
    expected[0] = 2;
    expected[1] = 1;
    expected[DURATION_BUCKETS_SECONDS.length - 1] = 1;
    expected[DURATION_BUCKETS_SECONDS.length] = 1;
    assert.deepEqual(duration.buckets, expected);
    assert.equal(duration.count, 5);
    assert.ok(Math.abs(duration.sum - (0.005 + 0.006 + 10 + 60)) < 1e-9);
  });

  it('adds snapshots field by field', () => {
    const left = new HttpResponseCounters();
    left.countApp(200);
    left.countRelay(502);
    left.observeDuration(0, 20);
    const right = new HttpResponseCounters();
    right.countApp(200);
    right.countApp(500);
    right.countRelay(429);
    right.countRelay(502);
    right.observeDuration(0, 3000);
    const sum = addResponseCounts(left.snapshot(), right.snapshot());
    assert.deepEqual(sum.app, { '1xx': 0, '2xx': 2, '3xx': 0, '4xx': 0, '5xx': 1 });
    assert.deepEqual(sum.relay, { '429': 1, '502': 2 });
    assert.equal(sum.duration.count, 2);
    assert.ok(Math.abs(sum.duration.sum - 3.02) < 1e-9);
    assert.equal(
      sum.duration.buckets.reduce((a, b) => a + b, 0),
      2,
    );
    assert.deepEqual(addResponseCounts(emptyResponseCounts(), sum), sum);
    assert.throws(
      () => addResponseCounts(null as unknown as typeof sum, sum),
      /left and right must be/,
    );
  });
});

describe('RequestStartTimes', () => {
  it('gives start times back in order, growing past its first size', () => {
    const times = new RequestStartTimes();
    assert.ok(Number.isNaN(times.shift()), 'empty: NaN');
    times.push(1);
    times.push(2);
    assert.equal(times.shift(), 1);
    for (let i = 3; i <= 12; i++) times.push(i);
    assert.equal(times.size, 11);
    const seen = Array.from({ length: times.size }, () => times.shift());
    assert.equal(times.size, 0);
    assert.deepEqual(seen, [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
  });

  it('fuzz: behaves as a FIFO queue under any push/shift sequence', () => {
    fc.assert(
      fc.property(fc.array(fc.option(fc.double({ noNaN: true }), { nil: null })), (operations) => {
        const times = new RequestStartTimes();
        const model: number[] = [];
        for (const operation of operations) {
          if (operation === null) {
            const expected = model.shift();
            const got = times.shift();
            if (expected === undefined) assert.ok(Number.isNaN(got));
            else assert.equal(got, expected);
          } else {
            times.push(operation);
            model.push(operation);
          }
          assert.equal(times.size, model.length);
        }
      }),
      { numRuns: 300 },
    );
  });
});
