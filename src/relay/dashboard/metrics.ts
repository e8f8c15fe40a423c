/**
 * The relay's Prometheus metrics and the dashboard's JSON status, both read
 * from Relay.stats(), sessionsInfo(), tunnelsInfo() and certificatesInfo() at
 * request time (no
 * work on the data path beyond the counters the relay keeps anyway).
 */
import { addTunnelCounts, tunnelTotalsKey } from '../relay.js';
import type { AcmeHostStatus } from '../acme/manager.js';
import type { Relay, RelayStats, TunnelInfo, TunnelTotals } from '../relay.js';
import { DURATION_BUCKETS_SECONDS, STATUS_CLASSES, emptyResponseCounts } from './http-counters.js';
import type { HttpResponseCounts } from './http-counters.js';
import { PrometheusWriter } from './prometheus.js';
import type { HistogramSample, Sample } from './prometheus.js';

/** One tunnel name's totals: the closed tunnels that held it plus the live one. */
type TunnelSeries = TunnelTotals;

function statusClass(status: number): string {
  return status === 0 ? 'closed' : `${Math.floor(status / 100)}xx`;
}

function tunnelSeries(
  closed: RelayStats['closedTunnels'],
  live: readonly TunnelInfo[],
): TunnelSeries[] {
  const series = new Map<string, TunnelSeries>();
  for (const [key, totals] of closed) series.set(key, { ...totals });
  for (const tunnel of live) {
    const key = tunnelTotalsKey(tunnel);
    series.set(key, addTunnelCounts(series.get(key), tunnel));
  }
  return [...series.values()];
}

/** Renders the relay's metrics in the Prometheus text format 0.0.4. */
export function relayMetrics(relay: Relay): string {
  if (typeof relay !== 'object' || typeof relay.stats !== 'function') {
    throw new TypeError('relay must be a Relay');
  }
  const stats = relay.stats();
  const sessions = relay.sessionsInfo();
  const tunnels = relay.tunnelsInfo();
  const series = tunnelSeries(stats.closedTunnels, tunnels);
  const byTunnel = (pick: (entry: TunnelSeries) => number, proto?: 'http' | 'tcp'): Sample[] =>
    series
      .filter((entry) => proto === undefined || entry.proto === proto)
      .map((entry) => ({ labels: { proto: entry.proto, tunnel: entry.name }, value: pick(entry) }));
  const byCode = (map: ReadonlyMap<string, number>): Sample[] =>
    [...map].map(([code, value]) => ({ labels: { reason: code }, value }));
  const httpSeries = series.filter((entry) => entry.proto === 'http');
  const responseSamples: Sample[] = [];
  const relayAnswers = (counts: HttpResponseCounts, tunnelLabel: Record<string, string>): void => {
    for (const [status, value] of Object.entries(counts.relay)) {
      responseSamples.push({
        labels: {
          ...tunnelLabel,
          source: 'relay',
          status_class: statusClass(Number(status)),
          status,
        },
        value,
      });
    }
  };
  const durationSamples: HistogramSample[] = [];
  for (const entry of httpSeries) {
    const counts = entry.responses ?? emptyResponseCounts();
    for (const name of STATUS_CLASSES) {
      responseSamples.push({
        labels: { tunnel: entry.name, source: 'app', status_class: name },
        value: counts.app[name],
      });
    }
    relayAnswers(counts, { tunnel: entry.name });
    durationSamples.push({
      labels: { tunnel: entry.name },
      counts: counts.duration.buckets,
      sum: counts.duration.sum,
    });
  }
  // Requests that reached no tunnel (unknown host, malformed head…): no tunnel label.
  relayAnswers(stats.unroutedResponses, {});

  const tunnelKinds = { http: 0, tcp: 0 };
  for (const tunnel of tunnels) tunnelKinds[tunnel.proto]++;

  const refusedByClass = new Map<string, Sample>();
  for (const refusal of stats.refusedTotal) {
    const labels = { listener: refusal.listener, status_class: statusClass(refusal.status) };
    const key = `${labels.listener} ${labels.status_class}`;
    refusedByClass.set(key, {
      labels,
      value: (refusedByClass.get(key)?.value ?? 0) + refusal.count,
    });
  }

  const writer = new PrometheusWriter()
    .family('warren_relay_agents_connected', 'gauge', 'Agents authenticated and connected now.', [
      { value: sessions.length },
    ])
    .family(
      'warren_relay_agents_connected_total',
      'counter',
      'Agent sessions that authenticated, since the relay started.',
      [{ value: stats.agentsConnectedTotal }],
    )
    .family(
      'warren_relay_agents_rejected_total',
      'counter',
      'Agent connections refused before or during authentication, by error code.',
      byCode(stats.agentsRejectedTotal),
    )
    .family('warren_relay_tunnels', 'gauge', 'Tunnels open now, by kind.', [
      { labels: { proto: 'http' }, value: tunnelKinds.http },
      { labels: { proto: 'tcp' }, value: tunnelKinds.tcp },
    ])
    .family(
      'warren_relay_public_connections_total',
      'counter',
      'Public connections admitted, by listener (a port shared with agents counts agents under https).',
      (['http', 'https', 'tcp'] as const).map((listener) => ({
        labels: { listener },
        value: stats.publicConnectionsTotal[listener],
      })),
    )
    .family(
      'warren_relay_tunnel_requests_total',
      'counter',
      'HTTP requests forwarded through a tunnel, by tunnel name.',
      byTunnel((entry) => entry.requests, 'http'),
    )
    .family(
      'warren_relay_http_responses_total',
      'counter',
      'HTTP responses public clients got, by tunnel, source and status class: source="app" counts every response head of the service behind the tunnel (interim 1xx included), source="relay" the answers the relay gave itself, by status (no tunnel label: the request reached no tunnel).',
      responseSamples,
    )
    .histogram(
      'warren_relay_http_request_duration_seconds',
      "Seconds from the relay admitting a request (head read and checked) to the end of the app's response to it (for a 101: its head), by tunnel; pipelined requests include their wait.",
      DURATION_BUCKETS_SECONDS,
      durationSamples,
    )
    .family(
      'warren_relay_tunnel_connections_total',
      'counter',
      'Public connections forwarded through a TCP tunnel, by port.',
      byTunnel((entry) => entry.connections, 'tcp'),
    )
    .family(
      'warren_relay_tunnel_received_bytes_total',
      'counter',
      'Bytes received from public clients, by tunnel.',
      byTunnel((entry) => entry.bytesIn),
    )
    .family(
      'warren_relay_tunnel_sent_bytes_total',
      'counter',
      'Bytes sent to public clients, by tunnel.',
      byTunnel((entry) => entry.bytesOut),
    )
    .family(
      'warren_relay_refused_total',
      'counter',
      'Public requests or connections the relay refused itself, by listener, reason (error code, or basic-auth / ip-allowlist) and status (0: closed without a response).',
      stats.refusedTotal.map((refusal) => ({
        labels: {
          listener: refusal.listener,
          reason: refusal.reason,
          status: String(refusal.status),
        },
        value: refusal.count,
      })),
    )
    .family(
      'warren_relay_refused_by_status_class_total',
      'counter',
      'Public requests or connections the relay refused itself, by listener and status class.',
      [...refusedByClass.values()],
    )
    .family(
      'warren_relay_handshake_failures_total',
      'counter',
      'Failed TLS handshakes, by listener (on a port shared by agents and HTTPS, all count under agent).',
      (['agent', 'https'] as const).map((listener) => ({
        labels: { listener },
        value: stats.handshakeFailuresTotal[listener],
      })),
    )
    .family(
      'warren_relay_token_rejections_total',
      'counter',
      'Agent tokens refused (invalid, expired, revoked), by error code.',
      byCode(stats.tokenRejectionsTotal),
    )
    .family(
      'warren_relay_yamux_sessions',
      'gauge',
      'yamux sessions open now (authenticated or not).',
      [{ value: stats.yamuxSessions }],
    )
    .family('warren_relay_yamux_streams', 'gauge', 'yamux streams open now over all sessions.', [
      { value: stats.yamuxStreams },
    ]);
  const certificates = relay.certificatesInfo();
  if (certificates !== undefined) {
    // For alerts such as "expires within 14 days" or "renewal keeps failing".
    writer
      .family(
        'warren_relay_certificate_expiry_timestamp_seconds',
        'gauge',
        'When the ACME certificate for a name expires (seconds since the epoch), for names that have one.',
        certificates.flatMap((certificate) =>
          certificate.notAfter === null
            ? []
            : [{ labels: { host: certificate.host }, value: certificate.notAfter / 1000 }],
        ),
      )
      .family(
        'warren_relay_certificate_order_failures',
        'gauge',
        'ACME orders for a name that failed in a row (0 once one succeeds).',
        certificates.map((certificate) => ({
          labels: { host: certificate.host },
          value: certificate.failures,
        })),
      );
  }
  return writer.toString();
}

export interface StatusAgent {
  readonly id: string;
  readonly name: string;
  readonly account: string;
  readonly remoteAddress: string;
  readonly connectedAt: number;
  readonly tunnels: readonly string[];
}

export interface StatusTunnel {
  readonly id: string;
  readonly proto: 'http' | 'tcp';
  readonly name: string;
  readonly url: string;
  readonly agentId: string;
  readonly agentName: string;
  readonly openedAt: number;
  readonly requests: number;
  readonly connections: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  /** HTTP tunnels: responses by source and status class, and request durations. */
  readonly responses?: HttpResponseCounts;
}

export interface RelayStatus {
  readonly domain: string;
  /** Milliseconds since the epoch when the snapshot was taken (rates are computed from two). */
  readonly now: number;
  readonly agents: readonly StatusAgent[];
  readonly tunnels: readonly StatusTunnel[];
  /** The relay's own answers to requests that reached no tunnel, by status. */
  readonly unroutedResponses: Readonly<Record<string, number>>;
  /** With --acme: every certificate name's state; absent otherwise. */
  readonly certificates?: readonly AcmeHostStatus[];
}

/** The dashboard's JSON snapshot: agents and tunnels with their counters. */
export function relayStatus(relay: Relay): RelayStatus {
  if (typeof relay !== 'object' || typeof relay.sessionsInfo !== 'function') {
    throw new TypeError('relay must be a Relay');
  }
  const certificates = relay.certificatesInfo();
  return {
    domain: relay.domain,
    now: Date.now(),
    agents: relay.sessionsInfo().map((session) => ({
      id: session.id,
      name: session.tokenName,
      account: session.account,
      remoteAddress: session.remoteAddress,
      connectedAt: session.connectedAt,
      tunnels: session.tunnels,
    })),
    tunnels: relay.tunnelsInfo().map((tunnel) => ({
      id: tunnel.id,
      proto: tunnel.proto,
      name: tunnel.name,
      url: tunnel.url,
      agentId: tunnel.sessionId,
      agentName: tunnel.tokenName,
      openedAt: tunnel.openedAt,
      requests: tunnel.requests,
      connections: tunnel.connections,
      bytesIn: tunnel.bytesIn,
      bytesOut: tunnel.bytesOut,
      ...(tunnel.responses === undefined ? {} : { responses: tunnel.responses }),
    })),
    unroutedResponses: relay.stats().unroutedResponses.relay,
    ...(certificates === undefined ? {} : { certificates }),
  };
}
