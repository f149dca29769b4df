// The dashboard page in a real headless Chromium (test/e2e/helpers/chromium.ts), served
// by the real server with fixture sources: the page shows the service graph, a row per
// edge with its signals, the trace list and one trace's waterfall, and tap events as
// they are published, coloured by verdict; hostile workload names are shown as text and
// nothing in them (or in the SVG) runs. The lab run is test/e2e/observability/dashboard.ts.
import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DashboardServer } from '../src/dashboard/server';
import { silentLogger } from '../src/lib/log';
import { Chromium, chromiumSkipReason } from './e2e/helpers/chromium';
import { HOSTILE, fixtureSources, tapEvent } from './helpers/dashboard-fixtures';

const skip = chromiumSkipReason();
if (skip) t.plan(0, `browser test: ${skip}`);

async function open(t: Test, hostile: boolean) {
  const sources = fixtureSources({ hostile });
  const server = new DashboardServer({ sources, logger: silentLogger() });
  const { port } = await server.listen('127.0.0.1', 0);
  t.teardown(() => server.close());
  const started = Date.now();
  const browser = await Chromium.launch({ width: 1280, height: 900 });
  t.teardown(() => browser.close());
  await browser.navigate(`http://127.0.0.1:${port}/`);
  return { sources, browser, started };
}

const text = (sel: string) => `Array.from(document.querySelectorAll(${JSON.stringify(sel)})).map((e) => e.textContent)`;

if (!skip) {
  t.test('the page shows the graph, the edges, a trace and the live tap', async (t) => {
    const { sources, browser, started } = await open(t, false);
    await browser.waitFor(`document.querySelectorAll('#edges tbody tr').length >= 4`, 'the edges table');
    t.comment(`page showed the edges ${Date.now() - started} ms after chromium was started`);
    const edges = await browser.evaluate<string[]>(`${text('#edges tbody tr')}`);
    t.ok(edges.some((r) => r.startsWith('demo/frontend → demo/echo') && r.includes('95.0 %') && r.includes('12.5 ms')), 'frontend → echo with its success rate and p99');
    t.ok(edges.some((r) => r.startsWith('legacy/client → legacy/echo') && r.includes('tcp')), 'the L4 edge');
    t.same(await browser.evaluate(`${text('#proxies tbody tr td:first-child')}`), ['ztunnel node-1', 'waypoint demo/waypoint']);

    const nodes = await browser.waitFor<string[]>(`(function(){ var n = ${text('#graph svg text')}; return n.length ? n : null; })()`, 'the graph');
    t.same(nodes, ['demo/client', 'demo/frontend', 'demo/echo'], 'the graph\'s nodes');

    t.match(await browser.evaluate<string>(`document.querySelector('#traces li.selected').textContent`), /^GET frontend\.demo\.svc\.cluster\.local\/ · 9\.0 ms · 4 spans, 1 proxies/);
    const spans = await browser.evaluate<string[]>(`${text('#waterfall .span .label')}`);
    t.equal(spans.length, 4, 'the waterfall draws every span');
    t.match(spans[3], /attempt 1 198\.19\.2\.11:8080 \(3\.00 ms, UF\)/);
    t.equal(await browser.evaluate(`document.querySelectorAll('#waterfall .span.error').length`), 1, 'the failed span is marked');

    await browser.waitFor(`document.getElementById('tap-state').textContent === 'tap: live'`, 'the tap connected');
    sources.publish(tapEvent({ path: '/first' }));
    sources.publish(tapEvent({ verdict: 'denied', status: 403, path: '/admin', source: { namespace: 'legacy', workload: 'client' } }));
    sources.publish(tapEvent({ verdict: 'retried', attempts: 2, path: '/flaky' }));
    const rows = await browser.waitFor<string[]>(`(function(){ var r = ${text('#tap tbody tr')}; return r.length >= 3 ? r : null; })()`, 'three tap events');
    t.match(rows[0], /retried ×2/, 'newest first');
    t.match(rows[1], /denied.*legacy\/client.*demo\/echo.*GET echo\.demo\/admin.*403/);
    t.same(await browser.evaluate(`Array.from(document.querySelectorAll('#tap tbody tr')).map((r) => r.className)`), ['verdict-retried', 'verdict-denied', 'verdict-routed']);
    t.equal(await browser.evaluate(`getComputedStyle(document.querySelector('#tap tr.verdict-denied td:nth-child(2)')).color`), 'rgb(197, 48, 48)', 'denied is red');

    const dir = mkdtempSync(join(tmpdir(), 'weft-dashboard-shot-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const size = await browser.screenshot(join(dir, 'dashboard.png'));
    t.ok(size > 10_000, `a screenshot (${size} B)`);
  });

  t.test('hostile names are shown as text; nothing in them, or in the SVG, runs', async (t) => {
    const { sources, browser } = await open(t, true);
    await browser.waitFor(`document.querySelectorAll('#edges tbody tr').length >= 5 && document.querySelector('#graph svg')`, 'the edges and the graph');
    await browser.waitFor(`document.getElementById('tap-state').textContent === 'tap: live'`, 'the tap connected');
    sources.publish(tapEvent({ path: '/<script>window.__pwned=4</script>', source: { namespace: 'demo', workload: HOSTILE } }));
    await browser.waitFor(`document.querySelectorAll('#tap tbody tr').length >= 1`, 'the tap event');
    const edges = await browser.evaluate<string[]>(`${text('#edges tbody tr td:first-child')}`);
    t.ok(edges.includes(`demo/${HOSTILE} → demo/echo`), 'the name is shown as it is');
    t.ok((await browser.evaluate<string[]>(`${text('#warnings li')}`)).some((w) => w.includes(HOSTILE)), 'in the warnings too');
    t.ok((await browser.evaluate<string[]>(`${text('#graph svg text')}`)).includes(HOSTILE), 'and in the graph');
    t.match(await browser.evaluate<string>(`document.querySelector('#tap tbody tr').textContent`), '<script>window.__pwned=4</script>');
    t.equal(await browser.evaluate(`document.querySelectorAll('img, #graph script, #graph [onload], main script').length`), 0, 'no element made from the text');
    t.equal(await browser.evaluate(`typeof window.__pwned`), 'undefined', 'nothing ran');
  });
}
