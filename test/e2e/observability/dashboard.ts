/**
 * The dashboard section of test/e2e/observability.test.ts: `weft dashboard` (the built
 * CLI, on a free loopback port, pointed at the lab by lab.env) read by a real headless
 * Chromium (helpers/chromium.ts) while the demo traffic runs. The page must show the
 * demo edges with their signals (demo/frontend → demo/echo, demo/client → demo/echo at
 * L7 through the waypoint), the graph's nodes, a trace that crossed the waypoint with
 * its waterfall, and live tap events; the screenshot goes to the test artefacts
 * (dashboard.png).
 */
import type { Test } from 'tap';
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DIST } from '../../../src/lab/paths';
import { Chromium, chromiumSkipReason } from '../helpers/chromium';
import type { ObservabilityLab } from '../helpers/observability-lab';

const text = (sel: string) => `Array.from(document.querySelectorAll(${JSON.stringify(sel)})).map((e) => e.textContent)`;

/** Starts `weft dashboard`; resolves with its URL once it printed it. Stopped (by its PID) at teardown. */
async function startDashboard(t: Test, o: ObservabilityLab): Promise<string> {
  const child = spawn(process.execPath, [DIST.main, 'dashboard', '--port', '0', '--refresh', '2s'], { env: o.lab.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (c: string) => { stderr = (stderr + c).slice(-8000); });
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGINT');
    const code = await exited;
    if (code !== 0) t.comment(`weft dashboard exited ${code}; its stderr ends:\n${stderr}`);
  });
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (c: string) => {
      out += c;
      const m = /weft dashboard: (http:\/\/127\.0\.0\.1:\d+\/)/.exec(out);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`weft dashboard exited ${code} before it listened:\n${stderr}`)));
  });
}

export async function section(t: Test, o: ObservabilityLab): Promise<void> {
  const skip = chromiumSkipReason();
  if (skip) {
    await t.test('dashboard in Chromium', { skip: `dashboard in Chromium: ${skip}` }, async () => {});
    return;
  }
  const url = await startDashboard(t, o);
  // Traffic for the whole section: the page's readings and its tap need requests while it
  // looks (at most 12 s); stopped once the page has shown everything.
  const traffic = o.backgroundTraffic({ seconds: 12, rate: 20 });
  try {
    const started = Date.now();
    const browser = await Chromium.launch({ width: 1280, height: 900 });
    t.teardown(() => browser.close());
    await browser.navigate(url);

    const edgeRows = await browser.waitFor<string[]>(
      `(function(){ var rows = Array.from(document.querySelectorAll('#edges tbody tr'));
        // All three loads' edges: each load starts in its own pod a moment apart, so the
        // first reading can cover one and not yet another.
        var ok = ['demo/frontend → demo/echo', 'demo/client → demo/echo', 'demo/client → demo/frontend'].every(function (name) {
          return rows.some(function (r) { return r.cells[0].textContent === name && Number(r.cells[2].textContent) > 0; });
        });
        return ok ? rows.map(function (r) { return r.textContent; }) : null; })()`,
      'the three demo edges, each with a request rate', { timeoutMs: 45_000 });
    t.comment(`edges shown ${Date.now() - started} ms after the browser started:\n${edgeRows.join('\n')}`);
    const cells = await browser.evaluate<string[][]>(`Array.from(document.querySelectorAll('#edges tbody tr')).map((r) => Array.from(r.cells).map((c) => c.textContent))`);
    const row = (name: string) => cells.find((c) => c[0] === name);
    for (const name of ['demo/frontend → demo/echo', 'demo/client → demo/echo', 'demo/client → demo/frontend']) {
      const r = row(name);
      t.ok(r, `the edges table has ${name}`);
      if (!r) continue;
      t.ok(Number(r[2]) > 0, `${name}: ${r[2]} rps`);
      t.match(r[3], /^\d+\.\d %$/, `${name}: success ${r[3]}`);
      t.match(r[6], /ms$/, `${name}: p99 ${r[6]}`);
      t.equal(r[8], 'yes', `${name}: mTLS`);
    }

    const nodes = await browser.waitFor<string[]>(`(function(){ var n = ${text('#graph svg text')}.join('\\n'); return /demo\\/frontend/.test(n) && /demo\\/echo/.test(n) ? n.split('\\n') : null; })()`, 'the graph with demo/frontend and demo/echo');
    t.ok(nodes.length > 0, `the graph's texts: ${nodes.filter((n) => n.startsWith('demo/')).join(', ')}`);

    const trace = await browser.waitFor<string>(`(function(){ var s = document.querySelector('#traces li.selected'); return s && document.querySelectorAll('#waterfall .span').length >= 2 ? s.textContent : null; })()`, 'a trace with its waterfall', { timeoutMs: 45_000 });
    const spans = await browser.evaluate<string[]>(`${text('#waterfall .span .label')}`);
    t.ok(spans.some((s) => s.startsWith('waypoint demo/waypoint: ')), `the waterfall has the waypoint's spans (${trace}):\n${spans.join('\n')}`);

    const tap = await browser.waitFor<string[]>(`(function(){ var r = ${text('#tap tbody tr')}; return r.length >= 3 ? r : null; })()`, 'live tap events', { timeoutMs: 45_000 });
    t.ok(tap.some((r) => r.includes('demo/echo')), `tap events name demo/echo:\n${tap.slice(0, 3).join('\n')}`);
    t.ok(await browser.evaluate<number>(`document.querySelectorAll('#tap tbody tr.verdict-routed').length`), 'routed events are shown (green)');

    mkdirSync(o.artefactDir, { recursive: true });
    const shot = join(o.artefactDir, 'dashboard.png');
    const size = await browser.screenshot(shot);
    t.comment(`screenshot ${shot} (${size} B); whole section ${Date.now() - started} ms`);
  } finally {
    await traffic.stop();
  }
}
