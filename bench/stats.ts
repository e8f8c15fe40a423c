/** Helpers every benchmark shares: option parsing and the median of repeated runs. */

/** The median of `values` (the mean of the middle two for an even count); NaN for none. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const upper = sorted[middle] ?? Number.NaN;
  if (sorted.length % 2 === 1) return upper;
  return ((sorted[middle - 1] ?? Number.NaN) + upper) / 2;
}

/** A `--name` option's text as an integer in [min, max]; a RangeError naming the option otherwise. */
export function integerOption(text: string, name: string, min: number, max: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(
      `--${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(text)}`,
    );
  }
  return value;
}
