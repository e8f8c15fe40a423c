/**
 * The inspector's single page: no framework, no external assets. It holds no
 * recorded data: the script fetches it as JSON and renders it with
 * textContent only, so recorded headers and bodies (attacker-controlled: anyone
 * can send requests to a public URL) are never parsed as HTML. The inline style
 * and script are allowed by their SHA-256 in the Content-Security-Policy.
 */
import { createHash } from 'node:crypto';

const STYLE = `
body{font:13px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{padding:8px 12px;background:#234;color:#fff;display:flex;gap:12px;align-items:center}
header h1{font-size:15px;margin:0}
#status{font-size:12px;opacity:.8}
main{display:flex;height:calc(100vh - 40px)}
#list{width:45%;overflow:auto;border-right:1px solid #ccc;margin:0;padding:0;list-style:none}
#list li{padding:4px 8px;border-bottom:1px solid #eee;cursor:pointer;display:flex;gap:8px;white-space:nowrap}
#list li:hover{background:#eef}
#list li.selected{background:#dde}
#list .method{font-weight:bold;width:56px}
#list .path{flex:1;overflow:hidden;text-overflow:ellipsis}
#list .status{width:48px}
.bad{color:#b00}
#detail{flex:1;overflow:auto;padding:8px 12px}
#detail pre{background:#fff;border:1px solid #ddd;padding:6px;white-space:pre-wrap;word-break:break-all;max-height:40vh;overflow:auto}
#detail table{border-collapse:collapse}
#detail td{border-bottom:1px solid #eee;padding:1px 6px;vertical-align:top;word-break:break-all}
#detail td:first-child{font-weight:bold;white-space:nowrap}
button{font:inherit}
`;

const SCRIPT = `
'use strict';
const list = document.getElementById('list');
const detail = document.getElementById('detail');
const statusLine = document.getElementById('status');
const rows = new Map();
let selected = null;

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (className !== undefined) node.className = className;
  return node;
}

function label(summary) {
  if (summary.state === 'unparseable') return 'ERR';
  if (summary.status !== null) return String(summary.status);
  return summary.state === 'pending' ? '…' : '-';
}

function renderRow(summary) {
  let row = rows.get(summary.id);
  if (row === undefined) {
    row = el('li');
    row.addEventListener('click', () => { show(summary.id); });
    rows.set(summary.id, row);
    list.insertBefore(row, list.firstChild);
    while (rows.size > 1000) {
      const oldest = rows.keys().next().value;
      rows.get(oldest).remove();
      rows.delete(oldest);
    }
  }
  row.replaceChildren(
    el('span', summary.method ?? '?', 'method'),
    el('span', (summary.replayOf !== null ? '↻ ' : '') + (summary.target ?? summary.error ?? ''), 'path'),
    el('span', label(summary), 'status' + (summary.state === 'unparseable' || (summary.status ?? 0) >= 500 ? ' bad' : '')),
    el('span', summary.durationMs === null ? '' : Math.round(summary.durationMs) + ' ms'),
  );
  row.classList.toggle('selected', selected === summary.id);
}

function headersTable(headers) {
  const table = el('table');
  for (const [name, value] of headers) {
    const tr = el('tr');
    tr.append(el('td', name), el('td', value));
    table.append(tr);
  }
  return table;
}

function bodyBlock(body) {
  const box = el('div');
  let note = body.size + ' bytes';
  if (body.truncated) note += ' (truncated to ' + body.capturedSize + ')';
  if (body.encoding === 'base64') note += ', binary (base64)';
  box.append(el('div', note), el('pre', body.data));
  return box;
}

async function show(id) {
  selected = id;
  for (const [rowId, row] of rows) row.classList.toggle('selected', rowId === id);
  const response = await fetch('/api/requests/' + encodeURIComponent(id));
  if (!response.ok) { detail.replaceChildren(el('p', 'not found (dropped from the ring?)')); return; }
  const exchange = await response.json();
  const parts = [];
  const title = el('h2', (exchange.request?.method ?? '?') + ' ' + (exchange.request?.target ?? ''));
  parts.push(title);
  const meta = [exchange.state, exchange.tunnel ?? '', new Date(exchange.startedAt).toISOString()];
  if (exchange.durationMs !== null) meta.push(Math.round(exchange.durationMs) + ' ms');
  if (exchange.replayOf !== null) meta.push('replay of #' + exchange.replayOf);
  if (exchange.upgrade) meta.push('protocol upgrade');
  parts.push(el('p', meta.join(' · ')));
  if (exchange.error !== null) parts.push(el('p', exchange.error, 'bad'));
  if (exchange.request !== null) {
    const replay = el('button', 'Replay');
    replay.addEventListener('click', async () => {
      replay.disabled = true;
      const answer = await fetch('/api/requests/' + encodeURIComponent(id) + '/replay', {
        method: 'POST', headers: { 'X-Warren-Inspector': 'replay' },
      });
      replay.disabled = false;
      if (answer.ok) { const replayed = await answer.json(); show(replayed.id); }
      else { parts.push(el('p', 'replay failed: ' + (await answer.text()), 'bad')); detail.replaceChildren(...parts); }
    });
    parts.push(replay, el('h3', 'Request'), headersTable(exchange.request.headers), bodyBlock(exchange.request.body));
  }
  if (exchange.response !== null) {
    parts.push(el('h3', 'Response ' + exchange.response.status + ' ' + exchange.response.reason));
    parts.push(headersTable(exchange.response.headers), bodyBlock(exchange.response.body));
  }
  if (exchange.rawSample !== null) parts.push(el('h3', 'Raw bytes'), bodyBlock(exchange.rawSample));
  detail.replaceChildren(...parts);
}

async function load() {
  const response = await fetch('/api/requests');
  const summaries = await response.json();
  for (const summary of summaries) renderRow(summary);
}

const events = new EventSource('/api/events');
events.addEventListener('open', () => { statusLine.textContent = 'live'; });
events.addEventListener('error', () => { statusLine.textContent = 'disconnected, retrying…'; });
events.addEventListener('exchange', (event) => { renderRow(JSON.parse(event.data)); });
load();
`;

function sha256(text: string): string {
  return `'sha256-${createHash('sha256').update(text).digest('base64')}'`;
}

export const INSPECTOR_PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>warren inspector</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>${STYLE}</style></head>
<body><header><h1>warren inspector</h1><span id="status">connecting…</span></header>
<main><ul id="list"></ul><section id="detail"><p>Requests through your tunnels appear here.</p></section></main>
<script>${SCRIPT}</script></body></html>
`;

/** Only the page's own inline style and script, and fetches to its own origin. */
export const INSPECTOR_CSP = [
  "default-src 'none'",
  `script-src ${sha256(SCRIPT)}`,
  `style-src ${sha256(STYLE)}`,
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');
