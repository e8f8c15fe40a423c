/**
 * A tiny writer for the Prometheus text exposition format, version 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/): one
 * `# HELP` and one `# TYPE` line per metric family, then its samples
 * `name{label="value",…} number` (histograms: `_bucket`, `_sum`, `_count`). Small enough that a client library
 * (prom-client) is not worth the dependency.
 */

/** The Content-Type a scraper expects for this format. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export type MetricType = 'counter' | 'gauge';

export type Labels = Readonly<Record<string, string>>;

export interface Sample {
  readonly labels?: Labels;
  readonly value: number;
}

/** One labelled histogram: observations per bucket, as counted (not cumulative). */
export interface HistogramSample {
  readonly labels?: Labels;
  /** Observations per bucket: one per bound, then the +Inf bucket. */
  readonly counts: readonly number[];
  /** The sum of the observed values. */
  readonly sum: number;
}

/** Metric names: [a-zA-Z_:][a-zA-Z0-9_:]* (the data model's rule). */
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
/** Label names: [a-zA-Z_][a-zA-Z0-9_]*, and `__` is reserved for Prometheus itself. */
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Label values escape backslash, double quote and line feed (exposition format, "Text format details"). */
export function escapeLabelValue(value: string): string {
  if (typeof value !== 'string') throw new TypeError('value must be a string');
  return value.replace(/[\\"\n]/g, (char) =>
    char === '\\' ? '\\\\' : char === '"' ? '\\"' : '\\n',
  );
}

/** HELP text escapes only backslash and line feed. */
export function escapeHelp(text: string): string {
  if (typeof text !== 'string') throw new TypeError('text must be a string');
  return text.replace(/[\\\n]/g, (char) => (char === '\\' ? '\\\\' : '\\n'));
}

/** Sample values are Go floats: NaN, +Inf and -Inf are spelled out. */
export function formatValue(value: number): string {
  if (typeof value !== 'number') throw new TypeError('value must be a number');
  if (Number.isNaN(value)) return 'NaN';
  if (value === Infinity) return '+Inf';
  if (value === -Infinity) return '-Inf';
  return String(value);
}

function formatLabels(labels: Labels | undefined): string {
  if (labels === undefined) return '';
  const parts: string[] = [];
  for (const [name, value] of Object.entries(labels)) {
    if (!LABEL_NAME.test(name) || name.startsWith('__')) {
      throw new RangeError(`label name '${name}' is not valid`);
    }
    parts.push(`${name}="${escapeLabelValue(value)}"`);
  }
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

/** Collects metric families and renders them in the text format. */
export class PrometheusWriter {
  private readonly lines: string[] = [];
  private readonly names = new Set<string>();

  /**
   * Adds a metric family. Counters should be named `…_total`; a family may
   * have no samples (its HELP/TYPE still tell scrapers it exists).
   */
  family(name: string, type: MetricType, help: string, samples: readonly Sample[]): this {
    const checkedType: unknown = type;
    const checkedName: unknown = name;
    const checkedSamples: unknown = samples;
    if (typeof checkedName !== 'string' || !METRIC_NAME.test(checkedName)) {
      throw new RangeError(`name '${String(checkedName)}' is not a metric name`);
    }
    if (checkedType !== 'counter' && checkedType !== 'gauge') {
      throw new RangeError(`type '${String(checkedType)}' is not counter or gauge`);
    }
    // The format requires all lines of one family together, once.
    if (this.names.has(name)) throw new RangeError(`name '${name}' was already written`);
    if (!Array.isArray(checkedSamples)) throw new TypeError('samples must be an array');
    this.names.add(name);
    this.lines.push(`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} ${type}`);
    for (const sample of samples) {
      this.lines.push(`${name}${formatLabels(sample.labels)} ${formatValue(sample.value)}`);
    }
    return this;
  }

  /**
   * Adds a histogram family: per sample, cumulative `NAME_bucket{le="…"}`
   * lines for `bounds` and +Inf, then `NAME_sum` and `NAME_count` (the
   * format's "Histograms and summaries"). `bounds` ascend; each sample has
   * one count per bound plus one for +Inf.
   */
  histogram(
    name: string,
    help: string,
    bounds: readonly number[],
    samples: readonly HistogramSample[],
  ): this {
    const checkedName: unknown = name;
    const checkedBounds: unknown = bounds;
    const checkedSamples: unknown = samples;
    if (typeof checkedName !== 'string' || !METRIC_NAME.test(checkedName)) {
      throw new RangeError(`name '${String(checkedName)}' is not a metric name`);
    }
    if (
      !Array.isArray(checkedBounds) ||
      !bounds.every(
        (bound, i) => Number.isFinite(bound) && (i === 0 || bound > (bounds[i - 1] ?? 0)),
      )
    ) {
      throw new RangeError('bounds must be finite numbers in ascending order');
    }
    if (!Array.isArray(checkedSamples)) throw new TypeError('samples must be an array');
    const names = [name, `${name}_bucket`, `${name}_sum`, `${name}_count`];
    const taken = names.find((each) => this.names.has(each));
    if (taken !== undefined) throw new RangeError(`name '${taken}' was already written`);
    const lines: string[] = [`# HELP ${name} ${escapeHelp(help)}`, `# TYPE ${name} histogram`];
    for (const sample of samples) {
      if (sample.counts.length !== bounds.length + 1) {
        throw new RangeError(`samples need ${bounds.length + 1} bucket counts each`);
      }
      if (sample.labels !== undefined && 'le' in sample.labels) {
        throw new RangeError("label name 'le' is reserved for histogram buckets");
      }
      let cumulative = 0;
      sample.counts.forEach((count, index) => {
        cumulative += count;
        const le = index < bounds.length ? formatValue(bounds[index] ?? 0) : '+Inf';
        lines.push(
          `${name}_bucket${formatLabels({ ...sample.labels, le })} ${formatValue(cumulative)}`,
        );
      });
      lines.push(
        `${name}_sum${formatLabels(sample.labels)} ${formatValue(sample.sum)}`,
        `${name}_count${formatLabels(sample.labels)} ${formatValue(cumulative)}`,
      );
    }
    for (const each of names) this.names.add(each);
    this.lines.push(...lines);
    return this;
  }

  /** The exposition text; it ends with a line feed, as the format requires. */
  toString(): string {
    return this.lines.length === 0 ? '' : `${this.lines.join('\n')}\n`;
  }
}
