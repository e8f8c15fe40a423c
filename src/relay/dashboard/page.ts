/**
 * The dashboard page: one self-contained HTML document (no framework, no
 * external assets). It lists agents and tunnels with their traffic, the
 * responses the apps gave by status class, the answers the relay gave itself
 * and the mean request time. Its script fetches /api/status every 2 s and
 * renders with textContent only, so names and addresses that come from tokens
 * and clients cannot inject markup. The Content-Security-Policy allows exactly this
 * inline script and style (by SHA-256 hash, CSP Level 2 §4.2.4) and
 * connections to the page's own origin.
 */
import { createHash } from 'node:crypto';

const STYLE = `
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .2em; }
h2 { font-size: 1.1em; margin: 1.4em 0 .4em; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .25em .6em; border-bottom: 1px solid #ddd; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
#state { color: #666; }
#state.error { color: #b00; }
#auth { display: none; margin: 1em 0; }
.empty { color: #888; font-style: italic; }
`;

const SCRIPT = `
'use strict';
const TOKEN_KEY = 'warren-relay-admin-token';
const previous = new Map();
let previousAt = 0;

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (className !== undefined) node.className = className;
  return node;
}
function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = n, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return (unit === 0 ? value : value.toFixed(1)) + ' ' + units[unit];
}
function since(ms) {
  const seconds = Math.max(0, Math.round((Date.now() - ms) / 1000));
  if (seconds < 120) return seconds + ' s';
  if (seconds < 7200) return Math.round(seconds / 60) + ' min';
  return Math.round(seconds / 3600) + ' h';
}
function counts(record, format) {
  return Object.entries(record || {}).filter(([, n]) => n > 0).map(format).join(', ');
}
function responseCells(tunnel) {
  const responses = tunnel.responses;
  if (!responses) return [{ text: '' }, { text: '' }, { text: '', numeric: true }];
  const duration = responses.duration;
  return [
    { text: counts(responses.app, ([name, n]) => name + ' ' + n) },
    { text: counts(responses.relay, ([status, n]) => status + ' \u00d7' + n) },
    { text: duration.count > 0 ? (duration.sum / duration.count * 1000).toFixed(1) + ' ms' : '', numeric: true },
  ];
}
function fill(tbody, rows, columns) {
  tbody.replaceChildren();
  if (rows.length === 0) {
    const tr = el('tr');
    const td = el('td', 'none', 'empty');
    td.colSpan = columns;
    tr.append(td);
    tbody.append(tr);
    return;
  }
  for (const cells of rows) {
    const tr = el('tr');
    for (const cell of cells) tr.append(el('td', cell.text, cell.numeric ? 'n' : undefined));
    tbody.append(tr);
  }
}
function render(status) {
  document.getElementById('domain').textContent = status.domain;
  const agents = status.agents.map((agent) => [
    { text: agent.name }, { text: agent.account }, { text: agent.remoteAddress },
    { text: new Date(agent.connectedAt).toISOString() + ' (' + since(agent.connectedAt) + ')' },
    { text: agent.tunnels.length, numeric: true },
  ]);
  fill(document.getElementById('agents'), agents, 5);
  const seconds = previousAt === 0 ? 0 : (status.now - previousAt) / 1000;
  const tunnels = status.tunnels.map((tunnel) => {
    const before = previous.get(tunnel.id);
    const rate = (now, then) => before === undefined || seconds <= 0 ? '' : (now - then) / seconds;
    const count = (t) => (t.proto === 'http' ? t.requests : t.connections);
    const requestRate = rate(count(tunnel), before ? count(before) : 0);
    const inRate = rate(tunnel.bytesIn, before ? before.bytesIn : 0);
    const outRate = rate(tunnel.bytesOut, before ? before.bytesOut : 0);
    return [
      { text: tunnel.url }, { text: tunnel.proto }, { text: tunnel.agentName },
      { text: count(tunnel), numeric: true },
      { text: requestRate === '' ? '' : requestRate.toFixed(1) + '/s', numeric: true },
      { text: bytes(tunnel.bytesIn), numeric: true },
      { text: bytes(tunnel.bytesOut), numeric: true },
      { text: inRate === '' ? '' : bytes(inRate) + '/s in, ' + bytes(outRate) + '/s out', numeric: true },
      ...responseCells(tunnel),
    ];
  });
  fill(document.getElementById('tunnels'), tunnels, 11);
  const unrouted = counts(status.unroutedResponses, ([code, n]) => code + ' \u00d7' + n);
  document.getElementById('unrouted').textContent =
    'Answered by the relay for no tunnel (unknown host, malformed request): ' + (unrouted || 'none');
  const section = document.getElementById('certificates-section');
  section.style.display = status.certificates === undefined ? 'none' : 'block';
  if (status.certificates !== undefined) {
    const when = (ms) => (ms === null ? '' : new Date(ms).toISOString());
    const certificates = status.certificates.map((certificate) => [
      { text: certificate.host },
      { text: when(certificate.notAfter) },
      { text: when(certificate.renewAt) },
      {
        text: certificate.ordering
          ? 'ordering'
          : certificate.failures > 0
            ? certificate.failures + ' failed: ' + (certificate.lastError || '') +
              (certificate.retryAt === null ? '' : ' (retry ' + when(certificate.retryAt) + ')')
            : 'ok',
      },
    ]);
    fill(document.getElementById('certificates'), certificates, 4);
  }
  previous.clear();
  for (const tunnel of status.tunnels) previous.set(tunnel.id, tunnel);
  previousAt = status.now;
}
async function refresh() {
  const state = document.getElementById('state');
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = 'Bearer ' + token;
  try {
    const response = await fetch('/api/status', { headers, cache: 'no-store' });
    if (response.status === 401) {
      document.getElementById('auth').style.display = 'block';
      state.textContent = 'an admin token is required';
      state.className = 'error';
      return;
    }
    if (!response.ok) throw new Error('HTTP ' + response.status);
    render(await response.json());
    document.getElementById('auth').style.display = 'none';
    state.textContent = 'updated ' + new Date().toLocaleTimeString();
    state.className = '';
  } catch (error) {
    state.textContent = 'cannot reach the relay: ' + error.message;
    state.className = 'error';
  }
}
document.getElementById('auth').addEventListener('submit', (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, document.getElementById('token').value.trim());
  document.getElementById('token').value = '';
  void refresh();
});
void refresh();
setInterval(refresh, 2000);
`;

function sha256(text: string): string {
  return `'sha256-${createHash('sha256').update(text).digest('base64')}'`;
}

/** The page's Content-Security-Policy: its own inline script and style, fetches to itself, nothing else. */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The dashboard document (static: the data comes from /api/status). */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>warren relay</title>
<style>${STYLE}</style>
</head>
<body>
<h1>warren relay <span id="domain"></span></h1>
<div id="state">loading…</div>
<form id="auth">
<label>Admin token <input id="token" type="password" autocomplete="off"></label>
<button type="submit">Use</button>
</form>
<h2>Agents</h2>
<table>
<thead><tr><th>Name (token)</th><th>Account</th><th>Remote address</th><th>Connected since</th><th>Tunnels</th></tr></thead>
<tbody id="agents"></tbody>
</table>
<h2>Tunnels</h2>
<table>
<thead><tr><th>URL</th><th>Kind</th><th>Agent</th><th>Requests / connections</th><th>Rate</th><th>Bytes in</th><th>Bytes out</th><th>Traffic</th><th>App responses</th><th>Relay answers</th><th>Mean time</th></tr></thead>
<tbody id="tunnels"></tbody>
</table>
<p id="unrouted"></p>
<div id="certificates-section" style="display:none">
<h2>Certificates (ACME)</h2>
<table>
<thead><tr><th>Name</th><th>Valid until</th><th>Renews</th><th>State</th></tr></thead>
<tbody id="certificates"></tbody>
</table>
</div>
<script>${SCRIPT}</script>
</body>
</html>
`;
