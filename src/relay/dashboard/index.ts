/** The relay's admin listener: Prometheus /metrics, /api/status and the dashboard page. */
export { AdminServer, MIN_ADMIN_TOKEN_LENGTH, isLoopbackHost, parseHostHeader } from './server.js';
export type { AdminServerOptions } from './server.js';
export { relayMetrics, relayStatus } from './metrics.js';
export type { RelayStatus, StatusAgent, StatusTunnel } from './metrics.js';
export {
  PROMETHEUS_CONTENT_TYPE,
  PrometheusWriter,
  escapeHelp,
  escapeLabelValue,
  formatValue,
} from './prometheus.js';
export type { HistogramSample, Labels, MetricType, Sample } from './prometheus.js';
export {
  DURATION_BUCKETS_SECONDS,
  HttpResponseCounters,
  RequestStartTimes,
  STATUS_CLASSES,
  addResponseCounts,
  emptyResponseCounts,
} from './http-counters.js';
export type { DurationCounts, HttpResponseCounts, StatusClass } from './http-counters.js';
export { DASHBOARD_CSP, DASHBOARD_HTML } from './page.js';
