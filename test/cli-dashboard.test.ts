// `weft dashboard`'s real sources (src/cli/commands/dashboard.ts) against real HTTP
// servers on loopback standing in for the proxies' metrics ports (scrapes recorded from
// the lab, span rings, tap streams), and its listening: a non-loopback address is
// allowed with a warning, a port in use is a refusal that says what to do.
import t, { type Test } from 'tap';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { meshSources, startDashboard } from '../src/cli/commands/dashboard';
import type { ProxyTarget } from '../src/cli/proxy-targets';
import { DashboardServer } from '../src/dashboard/server';
import { createLogger, silentLogger } from '../src/lib/log';
import type { TapEvent } from '../src/telemetry/types';
import { fixtureSources, fixtureTraces, tapEvent } from './helpers/dashboard-fixtures';

const FIX = join(__dirname, 'fixtures', 'mesh-stats');

/** A proxy's metrics port: /metrics from recorded scrapes (first, then the later one), /debug/traces, /debug/tap. */
async function proxy(t: Test, name: string, opts: { spans?: unknown; tap?: TapEvent[] } = {}): Promise<{ baseUrl: string; tapOpen: () => number; scrapes: () => number }> {
  let scrapes = 0;
  let tapOpen = 0;
  const s = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(readFileSync(join(FIX, `${name}-${scrapes++ === 0 ? 'a' : 'c'}.prom`), 'utf8'));
    } else if (url.pathname === '/debug/traces') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(opts.spans ?? []));
    } else if (url.pathname === '/debug/tap') {
      tapOpen++;
      res.on('close', () => { tapOpen--; });
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      res.write(`${JSON.stringify({ connected: { proxy: name, filter: Object.fromEntries(url.searchParams) } })}\n\n`);
      for (const e of opts.tap ?? []) res.write(`${JSON.stringify(e)}\n`);
      res.write('not json\n{"half":');
      res.write('"a line that is not an event"}\n');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => { s.closeAllConnections(); s.close(); });
  return { baseUrl: `http://127.0.0.1:${(s.address() as AddressInfo).port}`, tapOpen: () => tapOpen, scrapes: () => scrapes };
}

t.test('stats, graph, traces and tap from the proxies', async (t) => {
  const [trace] = fixtureTraces();
  const spans = trace!.spans;
  const wp = await proxy(t, 'waypoint', { spans: [...spans, { broken: true }], tap: [tapEvent({ path: '/a' }), tapEvent({ path: '/b', verdict: 'denied' })] });
  const z1 = await proxy(t, 'ztunnel-node-1', { spans: spans.slice(0, 1) });
  const z2 = await proxy(t, 'ztunnel-node-2', { spans: 'not a list' });
  const targets: ProxyTarget[] = [
    { kind: 'ztunnel', proxy: 'ztunnel node-1', baseUrl: z1.baseUrl },
    { kind: 'ztunnel', proxy: 'ztunnel node-2', baseUrl: z2.baseUrl },
    { kind: 'waypoint', proxy: 'waypoint demo/waypoint', pod: 'waypoint', baseUrl: wp.baseUrl },
  ];
  const sources = meshSources({ targets: async () => targets, namespace: '', refreshMs: 1000, logger: silentLogger() });
  const started = Date.now();
  const [stats, svg] = await Promise.all([sources.stats(), sources.svg()]);
  t.comment(`first reading (two scrapes a refresh apart) in ${Date.now() - started} ms`);
  t.equal(stats.edges.length, 3, 'the recorded edges');
  t.same(stats.warnings, []);
  t.match(svg, /^<svg[^>]*xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  for (const e of stats.edges) t.match(svg, e.destination.name, `the graph shows ${e.destination.name}`);
  const again = await sources.stats();
  t.equal(again, stats, 'a reading younger than the refresh is shared, not taken again');

  const traces = await sources.traces();
  t.equal(traces.length, 1);
  t.equal(traces[0]!.spans.length, spans.length, 'a span two proxies both answered is kept once; a malformed one is dropped');

  const got: TapEvent[] = [];
  const stop = sources.tap((e) => got.push(e));
  for (let i = 0; i < 200 && got.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  t.same(got.map((e) => e.path), ['/a', '/b'], 'events from the waypoint\'s stream; other lines skipped');
  t.equal(wp.tapOpen() + z1.tapOpen() + z2.tapOpen(), 3, 'one stream per proxy');
  stop();
  for (let i = 0; i < 200 && wp.tapOpen() + z1.tapOpen() + z2.tapOpen() > 0; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(wp.tapOpen() + z1.tapOpen() + z2.tapOpen(), 0, 'stop closes every stream');
});

t.test('-n asks the taps for that namespace only', async (t) => {
  let asked = '';
  const s = http.createServer((req, res) => { asked = req.url ?? ''; res.writeHead(200); res.write('\n'); });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => { s.closeAllConnections(); s.close(); });
  const baseUrl = `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  const sources = meshSources({ targets: async () => [{ kind: 'ztunnel', proxy: 'ztunnel n', baseUrl }], namespace: 'demo', refreshMs: 1000, logger: silentLogger() });
  const stop = sources.tap(() => {});
  for (let i = 0; i < 200 && !asked; i++) await new Promise((r) => setTimeout(r, 10));
  stop();
  t.equal(asked, '/debug/tap?namespace=demo');
});

function capture(): { logger: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({ write(chunk, _enc, cb) { lines.push(JSON.parse(String(chunk))); cb(); } });
  return { logger: createLogger({ level: 'info', component: 'weft-dashboard', destination }), lines };
}

t.test('loopback listens quietly; another address is allowed with a warning', async (t) => {
  const quiet = capture();
  const a = new DashboardServer({ sources: fixtureSources(), logger: quiet.logger });
  const where = await startDashboard(a, '127.0.0.1', 0, quiet.logger);
  t.teardown(() => a.close());
  t.equal(where.address, '127.0.0.1');
  await new Promise((r) => setImmediate(r));
  t.same(quiet.lines, [], 'no warning on loopback');

  const loud = capture();
  const b = new DashboardServer({ sources: fixtureSources(), logger: loud.logger });
  await startDashboard(b, '0.0.0.0', 0, loud.logger);
  await b.close();
  for (let i = 0; i < 100 && loud.lines.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  t.match(loud.lines, [{ level: 'warn', address: '0.0.0.0', msg: /non-loopback address: anyone who can reach it sees who calls what/ }]);
});

t.test('a port in use is a refusal naming it and what to do', async (t) => {
  const first = new DashboardServer({ sources: fixtureSources(), logger: silentLogger() });
  const { port } = await first.listen('127.0.0.1', 0);
  t.teardown(() => first.close());
  const second = new DashboardServer({ sources: fixtureSources(), logger: silentLogger() });
  await t.rejects(startDashboard(second, '127.0.0.1', port, silentLogger()), {
    code: 'WEFT_CONFIG_INVALID', message: new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(EADDRINUSE\\); pick another --port`),
  });
});

t.test('--address is an IP address or localhost, never a name a resolver picks (the server accepts the bound name as Host)', async (t) => {
  const dashboard = (await import('../src/cli/commands/dashboard')).default;
  const io = { stdout: () => {}, stderr: () => {}, env: {}, tty: false, signal: new AbortController().signal };
  for (const bad of ['cafe', 'dead', 'beef', '1.2', '999.1.1.1', '::g']) {
    await t.rejects(async () => dashboard.runWith(['--address', bad], io), { message: /--address.*expected an IP address or localhost/ }, bad);
  }
});

t.test('after nobody looked for a while, the next reading starts a fresh window instead of averaging over the idle time', async (t) => {
  const wp = await proxy(t, 'waypoint');
  const targets: ProxyTarget[] = [{ kind: 'waypoint', proxy: 'waypoint demo/waypoint', pod: 'waypoint', baseUrl: wp.baseUrl }];
  const refreshMs = 40;
  const sources = meshSources({ targets: async () => targets, namespace: '', refreshMs, idleMs: 3 * refreshMs, logger: silentLogger() });
  const first = await sources.stats();
  t.equal(wp.scrapes(), 2, 'the first reading: two scrapes a refresh apart');
  // Idle: no tab asked for ten refreshes.
  await new Promise((r) => setTimeout(r, 10 * refreshMs));
  t.equal(await sources.stats(), first, 'the last reading is served at once');
  let next = first;
  for (let i = 0; i < 100 && next === first; i++) {
    await new Promise((r) => setTimeout(r, refreshMs / 4));
    next = await sources.stats();
  }
  t.equal(wp.scrapes(), 4, 'the idle scrape was not used: two fresh ones');
  t.ok(next.windowSeconds <= (3 * refreshMs) / 1000, `window ${next.windowSeconds} s, not the idle time`);
});
