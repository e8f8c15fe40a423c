/**
 * Per-tunnel counts of the HTTP responses public clients got, and how long
 * requests took, for /metrics and /api/status (./metrics.ts).
 *
 * They are kept on the relay's data path (../public-http.ts), so counting is
 * cheap by construction: a response is one increment in a typed array
 * allocated with the tunnel, a duration one short scan over the bucket bounds;
 * the start times of a connection's requests in flight sit in a small ring of
 * doubles (RequestStartTimes), not in an object per request. Readers take a
 * plain snapshot (HttpResponseCounts) at scrape time.
 */

/** The status classes of RFC 9110 §15 (1xx informational … 5xx server error). */
export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
export type StatusClass = (typeof STATUS_CLASSES)[number];

/**
 * Upper bounds, in seconds, of the request-duration histogram's buckets
 * (the +Inf bucket comes on top): a few, from a fast local answer to a slow one.
 */
export const DURATION_BUCKETS_SECONDS: readonly number[] = [
  0.005, 0.025, 0.1, 0.25, 0.5, 1, 2.5, 10,
];

/** A duration histogram: observations per bucket (not cumulative; the last is +Inf). */
export interface DurationCounts {
  /** One per bound of DURATION_BUCKETS_SECONDS, then the +Inf bucket. */
  readonly buckets: readonly number[];
  /** Sum of the observed durations, in seconds. */
  readonly sum: number;
  readonly count: number;
}

/** A snapshot of HttpResponseCounters (plain data, JSON-ready). */
export interface HttpResponseCounts {
  /** Responses the app behind the tunnel gave, interim (1xx) ones included, by status class. */
  readonly app: Readonly<Record<StatusClass, number>>;
  /** Responses the relay answered itself, by status code. */
  readonly relay: Readonly<Record<string, number>>;
  /** From admitting a request (its head read and checked) to the end of the app's response to it. */
  readonly duration: DurationCounts;
}

/** The status class index (0 for 1xx … 4 for 5xx) of a status, or -1 outside 100-599. */
function classIndex(status: number): number {
  const index = Math.floor(status / 100) - 1;
  return index >= 0 && index < STATUS_CLASSES.length ? index : -1;
}

/** Mutable counters of one tunnel (or of the relay's answers to requests that matched none). */
export class HttpResponseCounters {
  /** App responses by status class: index 0 is 1xx. */
  private readonly app = new Float64Array(STATUS_CLASSES.length);
  /** The relay's own answers by status: few statuses, and not on the forwarding path. */
  private readonly relay = new Map<number, number>();
  /** Per bucket (the last is +Inf), then the sum of seconds, then the count. */
  private readonly durations = new Float64Array(DURATION_BUCKETS_SECONDS.length + 3);

  /** One response head from the app (interim ones too). Statuses outside 100-599 are not counted. */
  countApp(status: number): void {
    const index = classIndex(status);
    if (index >= 0) this.app[index] = (this.app[index] ?? 0) + 1;
  }

  /** One response the relay sent itself instead of the app. */
  countRelay(status: number): void {
    if (!Number.isInteger(status) || status < 100 || status > 599) {
      throw new RangeError(`status must be an HTTP status 100-599, got ${String(status)}`);
    }
    this.relay.set(status, (this.relay.get(status) ?? 0) + 1);
  }

  /** One request's duration, from `startedAt` to `now` (performance.now() milliseconds). */
  observeDuration(startedAt: number, now: number): void {
    // A start time lost (NaN) or a clock that went back is not an observation.
    if (!(now >= startedAt)) return;
    const seconds = (now - startedAt) / 1000;
    const bounds = DURATION_BUCKETS_SECONDS;
    let bucket = 0;
    while (bucket < bounds.length && seconds > (bounds[bucket] ?? Infinity)) bucket++;
    const durations = this.durations;
    durations[bucket] = (durations[bucket] ?? 0) + 1;
    const sumAt = bounds.length + 1;
    durations[sumAt] = (durations[sumAt] ?? 0) + seconds;
    durations[sumAt + 1] = (durations[sumAt + 1] ?? 0) + 1;
  }

  snapshot(): HttpResponseCounts {
    const app = {} as Record<StatusClass, number>;
    STATUS_CLASSES.forEach((name, index) => {
      app[name] = this.app[index] ?? 0;
    });
    const relay: Record<string, number> = {};
    for (const [status, count] of [...this.relay].sort(([a], [b]) => a - b)) {
      relay[String(status)] = count;
    }
    const bucketCount = DURATION_BUCKETS_SECONDS.length + 1;
    return {
      app,
      relay,
      duration: {
        buckets: [...this.durations.subarray(0, bucketCount)],
        sum: this.durations[bucketCount] ?? 0,
        count: this.durations[bucketCount + 1] ?? 0,
      },
    };
  }
}

/** Counts with nothing counted. */
export function emptyResponseCounts(): HttpResponseCounts {
  return new HttpResponseCounters().snapshot();
}

/** The sum of two snapshots (a tunnel name's closed tunnels plus its live one). */
export function addResponseCounts(
  left: HttpResponseCounts,
  right: HttpResponseCounts,
): HttpResponseCounts {
  const checked: unknown[] = [left, right];
  if (checked.some((counts) => typeof counts !== 'object' || counts === null)) {
    throw new TypeError('left and right must be HttpResponseCounts');
  }
  const app = { ...left.app };
  for (const name of STATUS_CLASSES) app[name] += right.app[name];
  const relay: Record<string, number> = { ...left.relay };
  for (const [status, count] of Object.entries(right.relay)) {
    relay[status] = (relay[status] ?? 0) + count;
  }
  const sorted: Record<string, number> = {};
  for (const status of Object.keys(relay).sort((a, b) => Number(a) - Number(b))) {
    sorted[status] = relay[status] ?? 0;
  }
  return {
    app,
    relay: sorted,
    duration: {
      buckets: left.duration.buckets.map(
        (count, index) => count + (right.duration.buckets[index] ?? 0),
      ),
      sum: left.duration.sum + right.duration.sum,
      count: left.duration.count + right.duration.count,
    },
  };
}

/**
 * Start times (performance.now()) of the requests in flight on one
 * connection, oldest first: responses come back in request order
 * (RFC 9112 §9.3.2), so a ring of doubles is enough. It starts small and
 * doubles when a client pipelines more.
 */
export class RequestStartTimes {
  private times = new Float64Array(4);
  private first = 0;
  private count = 0;

  get size(): number {
    return this.count;
  }

  push(startedAt: number): void {
    if (this.count === this.times.length) {
      const grown = new Float64Array(this.times.length * 2);
      for (let i = 0; i < this.count; i++) {
        grown[i] = this.times[(this.first + i) % this.times.length] ?? 0;
      }
      this.times = grown;
      this.first = 0;
    }
    this.times[(this.first + this.count) % this.times.length] = startedAt;
    this.count++;
  }

  /** The oldest start time, removed; NaN when there is none. */
  shift(): number {
    if (this.count === 0) return NaN;
    const startedAt = this.times[this.first] ?? NaN;
    this.first = (this.first + 1) % this.times.length;
    this.count--;
    return startedAt;
  }
}
