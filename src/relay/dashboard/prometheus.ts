/**
 * A tiny writer for the Prometheus text exposition format, version 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/): one
 * `# HELP` and one `# TYPE` line per metric family, then its samples
 * `name{label="value",…} number`. Small enough that a client library
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

  /** The exposition text; it ends with a line feed, as the format requires. */
  toString(): string {
    return this.lines.length === 0 ? '' : `${this.lines.join('\n')}\n`;
  }
}
