import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { acmeStatusFixture } from '../../../test/relay/acme-status-fixture.js';
import type { AcmeHostStatus } from '../acme/manager.js';
import type { Relay, RelayStats, TunnelInfo, TunnelTotals } from '../relay.js';
import { DURATION_BUCKETS_SECONDS, HttpResponseCounters } from './http-counters.js';
import { relayMetrics, relayStatus } from './metrics.js';

/** The parts of a Relay that /metrics and /api/status read, with fixed numbers. */
function fakeRelay(certificates?: AcmeHostStatus[]): Relay {
  const closed = new HttpResponseCounters();
  closed.countApp(200);
  closed.countRelay(429);
  closed.observeDuration(0, 2); // 2 ms
  const live = new HttpResponseCounters();
  live.countApp(200);
  live.countApp(200);
  live.countApp(503);
  live.countRelay(429);
  live.countRelay(502);
  live.observeDuration(0, 300); // 0.3 s
  const unrouted = new HttpResponseCounters();
  unrouted.countRelay(404);
  const totals = (proto: 'http' | 'tcp', name: string): TunnelTotals => ({
    proto,
    name,
    requests: 1,
    connections: 0,
    bytesIn: 0,
    bytesOut: 0,
  });
  const stats: RelayStats = {
    agentsConnectedTotal: 0,
    agentsRejectedTotal: new Map(),
    handshakeFailuresTotal: { agent: 0, https: 0 },
    tokenRejectionsTotal: new Map(),
    publicConnectionsTotal: { http: 0, https: 0, tcp: 0 },
    refusedTotal: [],
    yamuxSessions: 0,
    yamuxStreams: 0,
    closedTunnels: new Map([
      ['http:app', { ...totals('http', 'app'), responses: closed.snapshot() }],
      // Closed before it answered anything: still a series, all zero.
      ['http:quiet', totals('http', 'quiet')],
      ['tcp:42000', totals('tcp', '42000')],
    ]),
    unroutedResponses: unrouted.snapshot(),
  };
  const tunnel = (proto: 'http' | 'tcp', name: string): TunnelInfo => ({
    id: `id-${name}`,
    proto,
    name,
    url: `https://${name}.tunnel.test`,
    sessionId: 's1',
    tokenName: 'laptop',
    openedAt: 0,
    requests: 3,
    connections: 0,
    bytesIn: 0,
    bytesOut: 0,
  });
  const fake = {
    domain: 'tunnel.test',
    stats: () => stats,
    sessionsInfo: () => [],
    certificatesInfo: () => certificates,
    tunnelsInfo: (): TunnelInfo[] => [
      { ...tunnel('http', 'app'), responses: live.snapshot() },
      tunnel('tcp', '42001'),
    ],
  };
  return fake as unknown as Relay;
}

function samplesOf(text: string, name: string): string[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `));
}

describe('relayMetrics: responses and durations', () => {
  it('sums closed and live tunnels of a name, by source and class, and leaves TCP out', () => {
    const text = relayMetrics(fakeRelay());
    assert.match(text, /^# TYPE warren_relay_http_responses_total counter$/m);
    assert.deepEqual(samplesOf(text, 'warren_relay_http_responses_total'), [
      'warren_relay_http_responses_total{tunnel="app",source="app",status_class="1xx"} 0',
      'warren_relay_http_responses_total{tunnel="app",source="app",status_class="2xx"} 3',
      'warren_relay_http_responses_total{tunnel="app",source="app",status_class="3xx"} 0',
      'warren_relay_http_responses_total{tunnel="app",source="app",status_class="4xx"} 0',
      'warren_relay_http_responses_total{tunnel="app",source="app",status_class="5xx"} 1',
      'warren_relay_http_responses_total{tunnel="app",source="relay",status_class="4xx",status="429"} 2',
      'warren_relay_http_responses_total{tunnel="app",source="relay",status_class="5xx",status="502"} 1',
      'warren_relay_http_responses_total{tunnel="quiet",source="app",status_class="1xx"} 0',
      'warren_relay_http_responses_total{tunnel="quiet",source="app",status_class="2xx"} 0',
      'warren_relay_http_responses_total{tunnel="quiet",source="app",status_class="3xx"} 0',
      'warren_relay_http_responses_total{tunnel="quiet",source="app",status_class="4xx"} 0',
      'warren_relay_http_responses_total{tunnel="quiet",source="app",status_class="5xx"} 0',
      'warren_relay_http_responses_total{source="relay",status_class="4xx",status="404"} 1',
    ]);
  });

  it('writes one duration histogram per HTTP tunnel name', () => {
    const text = relayMetrics(fakeRelay());
    const name = 'warren_relay_http_request_duration_seconds';
    assert.match(text, new RegExp(`^# TYPE ${name} histogram$`, 'm'));
    const app = text
      .split('\n')
      .filter((line) => line.startsWith(`${name}_`) && line.includes('tunnel="app"'));
    assert.equal(app.length, DURATION_BUCKETS_SECONDS.length + 3);
    assert.ok(app.includes(`${name}_bucket{tunnel="app",le="0.005"} 1`));
    assert.ok(app.includes(`${name}_bucket{tunnel="app",le="0.25"} 1`));
    assert.ok(app.includes(`${name}_bucket{tunnel="app",le="0.5"} 2`));
    assert.ok(app.includes(`${name}_bucket{tunnel="app",le="+Inf"} 2`));
    assert.ok(app.includes(`${name}_count{tunnel="app"} 2`));
    assert.ok(app.includes(`${name}_sum{tunnel="app"} 0.302`));
    assert.ok(text.includes(`${name}_count{tunnel="quiet"} 0`));
    // TCP tunnels have no HTTP responses: no series of these families names them.
    for (const line of text.split('\n').filter((each) => each.startsWith('warren_relay_http_'))) {
      assert.doesNotMatch(line, /tunnel="4200[01]"/);
    }
  });

  it('puts the live tunnels’ counts and the unrouted answers in /api/status', () => {
    const status = relayStatus(fakeRelay());
    const app = status.tunnels.find((tunnel) => tunnel.name === 'app');
    assert.deepEqual(app?.responses?.app, { '1xx': 0, '2xx': 2, '3xx': 0, '4xx': 0, '5xx': 1 });
    assert.deepEqual(app.responses.relay, { '429': 1, '502': 1 });
    assert.equal(app.responses.duration.count, 1);
    const tcp = status.tunnels.find((tunnel) => tunnel.proto === 'tcp');
    assert.ok(tcp !== undefined && !('responses' in tcp));
    assert.deepEqual(status.unroutedResponses, { '404': 1 });
    assert.deepEqual(JSON.parse(JSON.stringify(status)), status, 'plain JSON data');
  });
});

describe('relayMetrics and relayStatus: ACME certificates', () => {
  const certificates = acmeStatusFixture(
    'the CA could not reach http://new.tunnel.test/.well-known/acme-challenge/',
  );

  it("exports each name's expiry and failures in a row", () => {
    const text = relayMetrics(fakeRelay(certificates));
    assert.deepEqual(samplesOf(text, 'warren_relay_certificate_expiry_timestamp_seconds'), [
      `warren_relay_certificate_expiry_timestamp_seconds{host="app.tunnel.test"} ${Date.UTC(2027, 0, 1) / 1000}`,
    ]);
    assert.deepEqual(samplesOf(text, 'warren_relay_certificate_order_failures'), [
      'warren_relay_certificate_order_failures{host="app.tunnel.test"} 0',
      'warren_relay_certificate_order_failures{host="new.tunnel.test"} 2',
      'warren_relay_certificate_order_failures{host="next.tunnel.test"} 0',
    ]);
  });

  it('puts them in /api/status; without --acme neither appears', () => {
    assert.deepEqual(relayStatus(fakeRelay(certificates)).certificates, certificates);
    const withoutAcme = fakeRelay();
    assert.equal('certificates' in relayStatus(withoutAcme), false);
    assert.doesNotMatch(relayMetrics(withoutAcme), /warren_relay_certificate_/);
  });
});
