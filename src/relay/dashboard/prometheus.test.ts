import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PrometheusWriter, escapeHelp, escapeLabelValue, formatValue } from './prometheus.js';

describe('Prometheus text exposition 0.0.4', () => {
  it('escapes backslash, double quote and line feed in label values, nothing else', () => {
    assert.equal(escapeLabelValue('a\\b'), 'a\\\\b');
    assert.equal(escapeLabelValue('say "hi"'), 'say \\"hi\\"');
    assert.equal(escapeLabelValue('two\nlines'), 'two\\nlines');
    assert.equal(escapeLabelValue('\\"\n'), '\\\\\\"\\n');
    assert.equal(escapeLabelValue("tab\there 'single' {}=,"), "tab\there 'single' {}=,");
    assert.equal(escapeLabelValue('ünïcödé'), 'ünïcödé');
  });

  it('escapes backslash and line feed in HELP, but not quotes', () => {
    assert.equal(escapeHelp('a "quoted" \\ path\nnext'), 'a "quoted" \\\\ path\\nnext');
  });

  it('spells out NaN and infinities, and integers plainly', () => {
    assert.equal(formatValue(NaN), 'NaN');
    assert.equal(formatValue(Infinity), '+Inf');
    assert.equal(formatValue(-Infinity), '-Inf');
    assert.equal(formatValue(42), '42');
    assert.equal(formatValue(0.5), '0.5');
    assert.equal(formatValue(2 ** 53), '9007199254740992');
  });

  it('writes HELP and TYPE before the samples, labels in order, and a final line feed', () => {
    const text = new PrometheusWriter()
      .family('demo_requests_total', 'counter', 'Requests.\nSecond line', [
        { labels: { tunnel: 'a"b', path: 'c:\\d\ne' }, value: 3 },
        { value: 1 },
      ])
      .family('demo_up', 'gauge', 'Up.', [])
      .toString();
    assert.equal(
      text,
      '# HELP demo_requests_total Requests.\\nSecond line\n' +
        '# TYPE demo_requests_total counter\n' +
        'demo_requests_total{tunnel="a\\"b",path="c:\\\\d\\ne"} 3\n' +
        'demo_requests_total 1\n' +
        '# HELP demo_up Up.\n' +
        '# TYPE demo_up gauge\n',
    );
    assert.equal(new PrometheusWriter().toString(), '');
  });

  it('refuses invalid metric and label names, unknown types and a family written twice', () => {
    const writer = new PrometheusWriter();
    assert.throws(() => writer.family('1bad', 'gauge', 'h', []), /name '1bad'/);
    assert.throws(() => writer.family('bad-name', 'gauge', 'h', []), /name 'bad-name'/);
    assert.throws(() => writer.family('ok', 'histogram' as 'gauge', 'h', []), /type 'histogram'/);
    assert.throws(
      () => writer.family('ok_a', 'gauge', 'h', [{ labels: { 'bad-label': 'x' }, value: 1 }]),
      /label name 'bad-label'/,
    );
    assert.throws(
      () => writer.family('ok_b', 'gauge', 'h', [{ labels: { __reserved: 'x' }, value: 1 }]),
      /label name '__reserved'/,
    );
    writer.family('once', 'gauge', 'h', []);
    assert.throws(() => writer.family('once', 'gauge', 'h', []), /already written/);
  });

  it('writes a histogram as cumulative buckets with le, then _sum and _count', () => {
    const text = new PrometheusWriter()
      .histogram(
        'demo_duration_seconds',
        'Durations.',
        [0.1, 1],
        [
          { labels: { tunnel: 'a' }, counts: [2, 1, 3], sum: 12.5 },
          { counts: [0, 0, 0], sum: 0 },
        ],
      )
      .toString();
    assert.equal(
      text,
      '# HELP demo_duration_seconds Durations.\n' +
        '# TYPE demo_duration_seconds histogram\n' +
        'demo_duration_seconds_bucket{tunnel="a",le="0.1"} 2\n' +
        'demo_duration_seconds_bucket{tunnel="a",le="1"} 3\n' +
        'demo_duration_seconds_bucket{tunnel="a",le="+Inf"} 6\n' +
        'demo_duration_seconds_sum{tunnel="a"} 12.5\n' +
        'demo_duration_seconds_count{tunnel="a"} 6\n' +
        'demo_duration_seconds_bucket{le="0.1"} 0\n' +
        'demo_duration_seconds_bucket{le="1"} 0\n' +
        'demo_duration_seconds_bucket{le="+Inf"} 0\n' +
        'demo_duration_seconds_sum 0\n' +
        'demo_duration_seconds_count 0\n',
    );
  });

  it('refuses histograms with bad bounds, counts, an le label or a taken name', () => {
    const writer = new PrometheusWriter();
    assert.throws(() => writer.histogram('h_a', 'h', [1, 1], []), /ascending/);
    assert.throws(() => writer.histogram('h_b', 'h', [Infinity], []), /ascending/);
    assert.throws(
      () => writer.histogram('h_c', 'h', [1], [{ counts: [1], sum: 1 }]),
      /2 bucket counts/,
    );
    assert.throws(
      () => writer.histogram('h_d', 'h', [1], [{ labels: { le: '1' }, counts: [1, 0], sum: 1 }]),
      /'le' is reserved/,
    );
    assert.throws(() => writer.histogram('bad-name', 'h', [1], []), /name 'bad-name'/);
    writer.family('taken_count', 'gauge', 'h', []);
    assert.throws(() => writer.histogram('taken', 'h', [1], []), /'taken_count' was already/);
    writer.histogram('fine', 'h', [1], []);
    assert.throws(() => writer.family('fine_bucket', 'gauge', 'h', []), /already written/);
  });
});
