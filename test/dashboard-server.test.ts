// The dashboard's web server over real HTTP on loopback, with fixture sources: its
// routes and headers, read-only answers, the Host check, the tap as Server-Sent Events
// (backlog, subscription only while someone listens, bounded viewers) and a viewer that
// stops reading being dropped once its unread bytes pass the bound, not buffered.
import t, { type Test } from 'tap';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { DashboardServer, isLoopback } from '../src/dashboard/server';
import { APP_JS, PAGE_HTML } from '../src/dashboard/page';
import { latest } from '../src/dashboard/api';
import { silentLogger } from '../src/lib/log';
import { ManualClock } from './helpers/clock';
import { HOSTILE, fixtureSources, fixtureStats, fixtureTraces, tapEvent } from './helpers/dashboard-fixtures';

interface Answer { status: number; headers: Record<string, string | string[] | undefined>; body: string }

function get(port: number, path: string, opts: { method?: string; host?: string; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers = { ...(opts.host ? { host: opts.host } : {}), ...opts.headers };
    const req = request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

async function start(t: Test, opts: Partial<ConstructorParameters<typeof DashboardServer>[0]> = {}, hostile = false) {
  const sources = fixtureSources({ hostile });
  const server = new DashboardServer({ sources, logger: silentLogger(), ...opts });
  const { port } = await server.listen('127.0.0.1', 0);
  t.teardown(() => server.close());
  return { server, sources, port };
}

t.test('routes: the page, its script and style, and the JSON/SVG endpoints', async (t) => {
  const { port } = await start(t);
  const page = await get(port, '/');
  t.equal(page.status, 200);
  t.match(page.headers['content-type'], /^text\/html/);
  t.match(page.headers['content-security-policy'], /script-src 'self'/, 'only our own script may run');
  t.equal(page.headers['x-content-type-options'], 'nosniff');
  t.equal(page.body, PAGE_HTML);
  t.match((await get(port, '/app.js')).headers['content-type'], /^text\/javascript/);
  t.match((await get(port, '/app.css')).headers['content-type'], /^text\/css/);
  const stats = await get(port, '/api/stats');
  t.equal(stats.headers['content-type'], 'application/json');
  t.same(JSON.parse(stats.body), fixtureStats());
  const svg = await get(port, '/api/graph.svg');
  t.equal(svg.headers['content-type'], 'image/svg+xml');
  t.match(svg.body, /^<svg /);
  t.same(JSON.parse((await get(port, '/api/traces')).body), fixtureTraces());
  const missing = await get(port, '/nope');
  t.equal(missing.status, 404);
  t.ok(JSON.parse(missing.body).pages.includes('/api/stats'), 'the 404 lists the pages');
  const head = await get(port, '/api/stats', { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(head.body, '');
});

t.test('read-only: anything but GET/HEAD is refused with 405', async (t) => {
  const { port } = await start(t);
  for (const method of ['POST', 'PUT', 'DELETE']) {
    const r = await get(port, '/api/stats', { method });
    t.equal(r.status, 405, method);
    t.equal(r.headers.allow, 'GET, HEAD');
  }
});

t.test('Host must be an address literal or localhost (no DNS rebinding)', async (t) => {
  const { port } = await start(t);
  t.equal((await get(port, '/api/stats', { host: `evil.example:${port}` })).status, 421);
  t.equal((await get(port, '/api/stats', { host: `localhost:${port}` })).status, 200);
  t.equal((await get(port, '/api/stats', { host: `[::1]:${port}` })).status, 200);
});

t.test('a page of another site cannot use the API (Origin, Sec-Fetch-Site): no tap slots held, no proxy read on its behalf', async (t) => {
  const { port, sources } = await start(t);
  let tapped = 0;
  const tap = sources.tap.bind(sources);
  sources.tap = (s) => { tapped++; return tap(s); };
  for (const path of ['/api/stats', '/api/graph.svg', '/api/traces', '/api/tap']) {
    t.equal((await get(port, path, { headers: { 'sec-fetch-site': 'cross-site', 'sec-fetch-mode': 'no-cors' } })).status, 403, `${path} from another site`);
    t.equal((await get(port, path, { headers: { origin: 'http://evil.example' } })).status, 403, `${path} with a foreign Origin`);
  }
  t.equal(tapped, 0, 'the proxies were not tapped');
  t.equal((await get(port, '/api/stats', { headers: { 'sec-fetch-site': 'same-origin', origin: `http://127.0.0.1:${port}` } })).status, 200, 'the page itself');
  t.equal((await get(port, '/', { headers: { 'sec-fetch-site': 'cross-site' } })).status, 200, 'a link to the page still opens it');
});

t.test('a source that fails is a 502 that does not say why (the log does)', async (t) => {
  const sources = fixtureSources();
  sources.stats = async () => { throw new Error('redis down at redis://:secret@x'); };
  const server = new DashboardServer({ sources, logger: silentLogger() });
  const { port } = await server.listen('127.0.0.1', 0);
  t.teardown(() => server.close());
  const r = await get(port, '/api/stats');
  t.equal(r.status, 502);
  t.notMatch(r.body, /secret/);
});

t.test('hostile names travel as JSON data, and the script writes no HTML', async (t) => {
  const { port } = await start(t, {}, true);
  const r = await get(port, '/api/stats');
  t.equal(r.headers['content-type'], 'application/json');
  t.ok(JSON.parse(r.body).edges.some((e: { source: { name: string } }) => e.source.name === HOSTILE));
  t.notMatch(PAGE_HTML, HOSTILE);
  t.notMatch(APP_JS, /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/, 'mesh text is only ever set as textContent');
});

/** An SSE client that collects `event: tap` payloads. */
function sse(port: number): Promise<{ events: unknown[]; status: number; close(): void; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/api/tap' }, (res) => {
      const events: unknown[] = [];
      let buf = '';
      res.setEncoding('utf8');
      const closed = new Promise<void>((r) => res.on('close', () => r()));
      res.on('data', (c: string) => {
        buf += c;
        let i: number;
        while ((i = buf.indexOf('\n\n')) !== -1) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const m = /^event: tap\ndata: (.*)$/m.exec(frame);
          if (m) events.push(JSON.parse(m[1]!));
        }
      });
      resolve({ events, status: res.statusCode!, close: () => req.destroy(), closed });
    });
    req.on('error', reject);
    req.end();
  });
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setImmediate(r));
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

t.test('tap: SSE with a backlog; the source is subscribed only while someone listens', async (t) => {
  const { server, sources, port } = await start(t, { backlog: 2 });
  t.equal(sources.subscribed(), 0, 'nobody listens: the proxies\' taps stay off');
  const a = await sse(port);
  t.equal(a.status, 200);
  await until(() => sources.subscribed() === 1, 'the subscription');
  for (const path of ['/a', '/b', '/c']) sources.publish(tapEvent({ path }));
  await until(() => a.events.length === 3, 'three events');
  t.same(a.events.map((e) => (e as { path: string }).path), ['/a', '/b', '/c']);
  const b = await sse(port);
  await until(() => b.events.length === 2, 'the backlog');
  t.same(b.events.map((e) => (e as { path: string }).path), ['/b', '/c'], 'a new viewer gets the last `backlog` events');
  t.equal(sources.subscribed(), 1, 'one subscription for every viewer');
  a.close();
  b.close();
  await until(() => server.tapClients === 0 && sources.subscribed() === 0, 'the unsubscription');
  t.pass('the last viewer gone, the tap is unsubscribed');
});

t.test('tap: at most maxTapClients viewers; more get 503', async (t) => {
  const { port } = await start(t, { maxTapClients: 2 });
  const a = await sse(port);
  const b = await sse(port);
  const c = await get(port, '/api/tap');
  t.equal(c.status, 503);
  t.equal(c.headers['retry-after'], '10');
  a.close();
  b.close();
});

t.test('tap: a viewer that stops reading is dropped once its unread bytes pass the bound', async (t) => {
  const max = 64 * 1024;
  const { server, sources, port } = await start(t, { maxBufferedBytes: max });
  // A raw socket that asks for the stream and then never reads: the kernel's buffers
  // fill, then what the server has not sent piles up in the response.
  const slow = connect(port, '127.0.0.1');
  slow.write(`GET /api/tap HTTP/1.1\r\nhost: 127.0.0.1:${port}\r\n\r\n`);
  slow.pause();
  const gone = new Promise<void>((r) => slow.on('close', () => r()));
  const fast = await sse(port);
  await until(() => server.tapClients === 2, 'two viewers');
  const big = tapEvent({ path: '/' + 'x'.repeat(4000) });
  let published = 0;
  let maxUnread = 0;
  const res = () => [...(server as unknown as { clients: Set<{ res: { writableLength: number } }> }).clients].map((c) => c.res.writableLength);
  while (server.droppedClients === 0 && published < 100_000) {
    sources.publish(big);
    published++;
    maxUnread = Math.max(maxUnread, ...res());
    if (published % 5 === 0) await new Promise((r) => setTimeout(r, 1));
  }
  t.equal(server.droppedClients, 1, 'the slow viewer was dropped');
  t.ok(maxUnread <= max, `unread bytes stayed within the bound (max seen ${maxUnread} of ${max})`);
  slow.resume();
  await gone;
  await until(() => fast.events.length === published, 'the fast viewer to get every event');
  t.equal(server.tapClients, 1, 'the viewer that reads stays');
  t.comment(`slow viewer dropped after ${published} events of ${big.path!.length} B; max unread ${maxUnread} B (bound ${max})`);
  fast.close();
});

t.test('isLoopback', async (t) => {
  for (const a of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) t.ok(isLoopback(a), a);
  for (const a of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.5', 'example.com', '::ffff:10.0.0.1']) t.notOk(isLoopback(a), a);
});

t.test('latest: one read shared, stale value served while one refresh runs', async (t) => {
  const clock = new ManualClock(1000);
  let reads = 0;
  let release: (() => void) | undefined;
  const read = () => new Promise<number>((r) => { reads++; const n = reads; release = () => r(n); });
  const get1 = latest(read, 5000, clock);
  const a = get1();
  const b = get1();
  release!();
  t.same([await a, await b], [1, 1], 'the first callers share one read');
  clock.advance(4999);
  t.equal(await get1(), 1);
  t.equal(reads, 1, 'young enough: no read');
  clock.advance(1);
  t.equal(await get1(), 1, 'stale value served at once');
  t.equal(await get1(), 1);
  t.equal(reads, 2, 'one refresh behind it, however many callers');
  release!();
  await new Promise((r) => setImmediate(r));
  t.equal(await get1(), 2);
});

t.test('close() ends open keep-alive connections and tap streams instead of waiting for them', async (t) => {
  const sources = fixtureSources();
  const server = new DashboardServer({ sources, logger: silentLogger() });
  const { port } = await server.listen('127.0.0.1', 0);
  const agent = new Agent({ keepAlive: true });
  t.teardown(() => agent.destroy());
  await new Promise<void>((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/api/stats', agent }, (res) => { res.resume(); res.on('end', () => resolve()); }).on('error', reject).end();
  });
  const viewer = await sse(port);
  await until(() => server.tapClients === 1, 'the viewer');
  await server.close();
  await viewer.closed;
  t.equal(sources.subscribed(), 0, 'closed, with the tap unsubscribed');
});
