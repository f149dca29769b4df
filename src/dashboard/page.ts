/**
 * The dashboard page: HTML, CSS and the browser's script as strings served by
 * server.ts. Plain JavaScript, no build step, no library. The script polls the JSON
 * endpoints every few seconds and listens to the tap stream; every value that comes
 * from the mesh (workload, Service and path names) is written with textContent, never
 * as HTML, and the service graph's SVG is parsed as XML and stripped of anything
 * active (script, foreignObject, event attributes, outside links) before it is shown.
 *
 * Elements carry ids and classes the browser test reads (test/e2e/helpers/chromium.ts):
 * #graph svg, #edges tbody tr, #proxies tbody tr, #traces li, #waterfall .span,
 * #tap tbody tr.verdict-<verdict>, #updated, #warnings.
 */

export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Weft dashboard</title>
<link rel="stylesheet" href="/app.css">
<script src="/app.js" defer></script>
</head>
<body>
<header>
  <h1>Weft dashboard</h1>
  <span id="updated">waiting for the first reading…</span>
  <span id="tap-state" class="muted">tap: connecting</span>
</header>
<ul id="warnings"></ul>
<main>
  <section id="graph-section" class="wide">
    <h2>Service graph</h2>
    <div id="graph" class="empty">no reading yet</div>
  </section>
  <section id="edges-section" class="wide">
    <h2>Golden signals per edge <span id="window" class="muted"></span></h2>
    <table id="edges">
      <thead><tr><th>source → destination</th><th>protocol</th><th>rps</th><th>success</th><th>p50</th><th>p95</th><th>p99</th><th>conn/s</th><th>mTLS</th><th>reported by</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section id="proxies-section">
    <h2>Proxies</h2>
    <table id="proxies">
      <thead><tr><th>proxy</th><th>loop lag p99</th><th>memory</th><th>conns</th><th>in flight</th><th>pending</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
  <section id="traces-section">
    <h2>Recent traces</h2>
    <ol id="traces"></ol>
    <div id="waterfall"></div>
  </section>
  <section id="tap-section" class="wide">
    <h2>Live tap <span class="muted">(newest first)</span></h2>
    <table id="tap">
      <thead><tr><th>time</th><th>verdict</th><th>proxy</th><th>source</th><th>destination</th><th>request</th><th>status</th><th>ms</th><th>mTLS</th></tr></thead>
      <tbody></tbody>
    </table>
  </section>
</main>
</body>
</html>
`;

export const APP_CSS = `
:root { --fg: #1d2433; --muted: #6b7385; --line: #dde1ea; --bg: #f6f7fa; --ok: #1f8a4c; --warn: #b7791f; --bad: #c53030; --info: #2b6cb0; }
* { box-sizing: border-box; }
body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; gap: 16px; align-items: baseline; padding: 10px 16px; background: #1d2433; color: #fff; }
header h1 { font-size: 16px; margin: 0; }
header .muted, header #updated { color: #c3c8d4; }
main { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; padding: 12px 16px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px; min-width: 0; overflow-x: auto; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 13px; margin: 0 0 6px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); }
.muted { color: var(--muted); font-weight: normal; text-transform: none; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 3px 8px 3px 0; border-bottom: 1px solid var(--line); white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 320px; }
th { color: var(--muted); font-weight: 600; }
#graph { overflow: auto; max-height: 420px; }
#graph svg { max-width: 100%; height: auto; }
.empty { color: var(--muted); }
#warnings { margin: 0; padding: 0 16px; list-style: none; color: var(--warn); }
#warnings li { padding: 4px 0; }
.good { color: var(--ok); } .poor { color: var(--warn); } .bad { color: var(--bad); }
#traces { margin: 0 0 8px; padding-left: 20px; max-height: 180px; overflow: auto; }
#traces li { cursor: pointer; padding: 1px 0; }
#traces li.selected { font-weight: 600; }
#traces li.error { color: var(--bad); }
#waterfall .span { display: grid; grid-template-columns: 50% 50%; align-items: center; height: 20px; }
#waterfall .label { white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
#waterfall .track { position: relative; height: 12px; background: var(--bg); }
#waterfall .bar { position: absolute; top: 0; height: 12px; min-width: 2px; background: var(--info); border-radius: 2px; }
#waterfall .span.error .bar { background: var(--bad); }
#waterfall .span.kind-client .bar { background: #805ad5; }
#tap tbody tr td:nth-child(2) { font-weight: 600; }
tr.verdict-routed td:nth-child(2) { color: var(--ok); }
tr.verdict-retried td:nth-child(2) { color: var(--warn); }
tr.verdict-denied td:nth-child(2), tr.verdict-failed td:nth-child(2), tr.verdict-ejected td:nth-child(2), tr.verdict-no_route td:nth-child(2) { color: var(--bad); }
tr.verdict-shed td:nth-child(2), tr.verdict-limited td:nth-child(2), tr.verdict-overflow td:nth-child(2), tr.verdict-faulted td:nth-child(2) { color: #c05621; }
tr.verdict-cancelled td:nth-child(2) { color: var(--muted); }
`;

// The browser's script. Kept to what every current browser runs without a build step
// (ES2017); no template literals, so this TypeScript string needs no escaping.
export const APP_JS = String.raw`'use strict';
(function () {
  var POLL_MS = 5000;
  var TAP_ROWS = 100;
  var selectedTrace = null;
  var tracesCache = [];

  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function row(cells, cls) {
    var tr = el('tr', null, cls);
    cells.forEach(function (c) {
      if (c instanceof Node) { var td = el('td'); td.appendChild(c); tr.appendChild(td); }
      else tr.appendChild(el('td', c));
    });
    return tr;
  }
  function fill(tbody, rows, empty, span) {
    tbody.replaceChildren.apply(tbody, rows.length ? rows : [row([empty])]);
    if (!rows.length) { tbody.firstChild.firstChild.colSpan = span; tbody.firstChild.className = 'empty'; }
  }
  function num(v, digits) { return v === null || v === undefined ? '-' : Number(v).toFixed(digits); }
  function ms(v) { return v === null || v === undefined ? '-' : (v < 10 ? v.toFixed(2) : v.toFixed(1)) + ' ms'; }
  function bytes(v) {
    if (v === null || v === undefined) return '-';
    var u = ['B', 'KiB', 'MiB', 'GiB']; var i = 0;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return v.toFixed(i ? 1 : 0) + ' ' + u[i];
  }
  function end(e) { return e.namespace + '/' + e.name; }
  function successCell(rate) {
    if (rate === null || rate === undefined) return el('span', '-');
    var cls = rate >= 0.99 ? 'good' : rate >= 0.9 ? 'poor' : 'bad';
    return el('span', (rate * 100).toFixed(1) + ' %', cls);
  }
  function getJson(path) {
    return fetch(path, { cache: 'no-store' }).then(function (r) {
      if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
      return r.json();
    });
  }

  function showStats(s) {
    $('updated').textContent = 'updated ' + new Date(s.at).toLocaleTimeString();
    $('window').textContent = '(over ' + s.windowSeconds + ' s)';
    var edges = s.edges.slice().sort(function (a, b) { return (end(a.source) + end(a.destination)).localeCompare(end(b.source) + end(b.destination)); });
    fill($('edges').tBodies[0], edges.map(function (e) {
      return row([end(e.source) + ' → ' + end(e.destination), e.protocol, num(e.rps, 1), successCell(e.successRate),
        ms(e.p50Ms), ms(e.p95Ms), ms(e.p99Ms), num(e.connectionsPerSecond, 1), e.mtls ? 'yes' : 'no', e.reporters.join(', ')]);
    }), 'no traffic seen in this window', 10);
    fill($('proxies').tBodies[0], s.proxies.map(function (p) {
      return row([p.proxy, ms(p.eventLoopLagP99Ms), bytes(p.residentMemoryBytes), num(p.connections, 0), num(p.inflightRequests, 0), num(p.pendingRequests, 0)]);
    }), 'no proxy answered', 6);
    showWarnings(s.warnings);
  }
  function showWarnings(list) {
    $('warnings').replaceChildren.apply($('warnings'), list.map(function (w) { return el('li', w); }));
  }

  // The SVG is drawn by Weft, but it names workloads: parse it as XML (never as HTML),
  // then keep only inert drawing (the CSP forbids inline script in any case).
  function inert(root) {
    var bad = root.querySelectorAll('script, foreignObject, iframe, object, embed, animate, set');
    for (var i = 0; i < bad.length; i++) bad[i].remove();
    var all = root.querySelectorAll('*');
    var nodes = [root];
    for (var j = 0; j < all.length; j++) nodes.push(all[j]);
    nodes.forEach(function (n) {
      Array.prototype.slice.call(n.attributes).forEach(function (a) {
        var name = a.name.toLowerCase();
        if (name.indexOf('on') === 0) n.removeAttribute(a.name);
        else if ((name === 'href' || name === 'xlink:href') && a.value.charAt(0) !== '#') n.removeAttribute(a.name);
      });
    });
    return root;
  }
  function showGraph(text) {
    var doc = new DOMParser().parseFromString(text, 'image/svg+xml');
    var svg = doc.documentElement;
    var box = $('graph');
    if (!svg || svg.nodeName !== 'svg' || doc.getElementsByTagName('parsererror').length) {
      box.className = 'empty'; box.textContent = 'the graph could not be drawn'; return;
    }
    box.className = '';
    box.replaceChildren(document.importNode(inert(svg), true));
  }

  function traceSummary(t) {
    var start = Infinity, stop = -Infinity, root = null, proxies = {}, error = false;
    var ids = {};
    t.spans.forEach(function (s) { ids[s.spanId] = true; });
    t.spans.forEach(function (s) {
      start = Math.min(start, s.startMs); stop = Math.max(stop, s.endMs);
      proxies[s.proxy] = true;
      if (s.error) error = true;
      if (!root && (!s.parentSpanId || !ids[s.parentSpanId])) root = s;
    });
    return { start: start, duration: stop - start, root: root || t.spans[0], proxies: Object.keys(proxies).length, error: error };
  }
  function showTraces(list) {
    tracesCache = list;
    if (!list.some(function (t) { return t.traceId === selectedTrace; })) selectedTrace = list.length ? list[0].traceId : null;
    var items = list.map(function (t) {
      var s = traceSummary(t);
      var li = el('li', s.root.name + ' · ' + s.duration.toFixed(1) + ' ms · ' + t.spans.length + ' spans, ' + s.proxies + ' proxies',
        (s.error ? 'error ' : '') + (t.traceId === selectedTrace ? 'selected' : ''));
      li.title = 'trace ' + t.traceId;
      li.dataset.traceId = t.traceId;
      li.addEventListener('click', function () { selectedTrace = t.traceId; showTraces(tracesCache); });
      return li;
    });
    if (!items.length) items = [el('li', 'no sampled traces yet', 'empty')];
    $('traces').replaceChildren.apply($('traces'), items);
    var chosen = list.filter(function (t) { return t.traceId === selectedTrace; })[0];
    showWaterfall(chosen);
  }
  function showWaterfall(t) {
    var box = $('waterfall');
    if (!t) { box.replaceChildren(); return; }
    var s = traceSummary(t);
    var total = Math.max(s.duration, 0.001);
    var children = {};
    var ids = {};
    t.spans.forEach(function (x) { ids[x.spanId] = true; });
    t.spans.forEach(function (x) {
      var p = x.parentSpanId && ids[x.parentSpanId] ? x.parentSpanId : '';
      (children[p] = children[p] || []).push(x);
    });
    var rows = [el('div', 'trace ' + t.traceId, 'muted')];
    function walk(parent, depth) {
      (children[parent] || []).sort(function (a, b) { return a.startMs - b.startMs; }).forEach(function (x) {
        var line = el('div', null, 'span kind-' + x.kind + (x.error ? ' error' : ''));
        var label = el('div', x.proxy + ': ' + x.name + ' (' + (x.endMs - x.startMs).toFixed(2) + ' ms' + (x.error ? ', ' + x.error : '') + ')', 'label');
        label.style.paddingLeft = (depth * 12) + 'px';
        label.title = label.textContent;
        var track = el('div', null, 'track');
        var bar = el('div', null, 'bar');
        bar.style.left = ((x.startMs - s.start) / total * 100).toFixed(2) + '%';
        bar.style.width = ((x.endMs - x.startMs) / total * 100).toFixed(2) + '%';
        track.appendChild(bar);
        line.appendChild(label); line.appendChild(track);
        rows.push(line);
        if (depth < 32) walk(x.spanId, depth + 1);
      });
    }
    walk('', 0);
    box.replaceChildren.apply(box, rows);
  }

  function tapRow(e) {
    var what = e.kind === 'request'
      ? (e.method || '') + ' ' + (e.authority || '') + (e.path || '')
      : (e.direction || 'connection') + ' ' + (e.bytesSent || 0) + '/' + (e.bytesReceived || 0) + ' B';
    var src = e.source.namespace && e.source.workload ? e.source.namespace + '/' + e.source.workload : (e.source.address || '-');
    var dst = e.destination.service || (e.destination.namespace && e.destination.workload ? e.destination.namespace + '/' + e.destination.workload : (e.destination.address || '-'));
    var status = e.status !== undefined ? String(e.status) : (e.grpcStatus || '-');
    if (e.responseFlag && e.responseFlag !== '-') status += ' ' + e.responseFlag;
    return row([new Date(e.time).toLocaleTimeString(), e.verdict + (e.attempts > 1 ? ' ×' + e.attempts : ''), e.proxy, src, dst, what, status, num(e.durationMs, 1), e.mtls ? 'yes' : 'no'], 'verdict-' + String(e.verdict).replace(/[^a-z_]/g, ''));
  }
  function startTap() {
    var body = $('tap').tBodies[0];
    var state = $('tap-state');
    var source = new EventSource('/api/tap');
    source.onopen = function () { state.textContent = 'tap: live'; };
    source.onerror = function () { state.textContent = 'tap: reconnecting'; };
    source.addEventListener('tap', function (m) {
      var e;
      try { e = JSON.parse(m.data); } catch (err) { return; }
      body.insertBefore(tapRow(e), body.firstChild);
      while (body.rows.length > TAP_ROWS) body.deleteRow(-1);
    });
  }

  function poll(path, show, asText) {
    function once() {
      var p = asText ? fetch(path, { cache: 'no-store' }).then(function (r) { if (!r.ok) throw new Error(path + ': HTTP ' + r.status); return r.text(); }) : getJson(path);
      p.then(show, function (err) { showWarnings([String(err.message || err)]); })
        .then(function () { setTimeout(once, POLL_MS); });
    }
    once();
  }

  poll('/api/stats', showStats);
  poll('/api/graph.svg', showGraph, true);
  poll('/api/traces', showTraces);
  startTap();
})();
`;
