/**
 * The graph section of test/e2e/observability.test.ts: during demo traffic, `weft graph`
 * in every format shows demo/client → demo/frontend → demo/echo (the chain through the
 * waypoint) and demo/client → demo/echo, with request rates, success and mTLS from the
 * proxies' own metrics. The SVG is well-formed, kept in the artefacts with the other
 * formats, and rendered to a PNG by a real headless Chromium (the picture in
 * docs/observability.md comes from here).
 */
import type { Test } from 'tap';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ObservabilityLab } from '../helpers/observability-lab';
import { CHROMIUM, chromiumSkipReason } from '../helpers/chromium';
import { xmlProblems } from '../../helpers/xml-wellformed';
import type { ServiceGraph } from '../../../src/graph/model';

const CHAIN = ['demo/client -> demo/frontend', 'demo/frontend -> demo/echo', 'demo/client -> demo/echo'];

/** Chromium's one-shot screenshot of a file; resolves with the PNG's size in bytes. */
function screenshot(file: string, png: string): Promise<number> {
  const profile = mkdtempSync(join(tmpdir(), 'weft-graph-chromium-'));
  const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', `--user-data-dir=${profile}`, `--screenshot=${png}`, '--window-size=1200,800', `file://${file}`];
  return new Promise<number>((resolve, reject) => {
    execFile(CHROMIUM, args, { timeout: 60_000 }, (err, _out, stderr) => {
      rmSync(profile, { recursive: true, force: true });
      if (err) return reject(new Error(`chromium --screenshot failed: ${err.message}\n${stderr.slice(-2000)}`));
      resolve(statSync(png).size);
    });
  });
}

export async function section(t: Test, o: ObservabilityLab): Promise<void> {
  mkdirSync(o.artefactDir, { recursive: true });
  // Traffic for 8 s; the graphs read a 4 s window inside it, all formats at once.
  const traffic = o.traffic({ seconds: 8, rate: 20 });
  await new Promise((r) => setTimeout(r, 1500));
  const started = Date.now();
  const formats = ['json', 'text', 'dot', 'mermaid', 'svg'] as const;
  const runs = await Promise.all(formats.map((f) => o.lab.weft(['graph', '--window', '4s', '-o', f])));
  const took = Date.now() - started;
  const loads = await traffic;
  t.comment(`traffic: ${loads.map((l) => JSON.stringify(l).slice(0, 120)).join(' | ')}`);
  const out = Object.fromEntries(formats.map((f, i) => [f, runs[i]!]));
  for (const f of formats) {
    t.equal(out[f]!.code, 0, `weft graph -o ${f} exits 0 (${out[f]!.stderr.trim() || 'no warnings'})`);
    writeFileSync(join(o.artefactDir, `weft-graph.${f === 'text' ? 'txt' : f === 'mermaid' ? 'mmd' : f}`), out[f]!.stdout);
  }

  const g = JSON.parse(out.json!.stdout) as ServiceGraph;
  t.comment(`weft graph: 5 formats read in parallel in ${took} ms; ${g.edges.map((e) => `${e.id} ${e.rps?.toFixed(1) ?? '-'} rps ${e.successRate === null ? '' : `${(e.successRate * 100).toFixed(1)} %`} p99 ${e.p99Ms ?? '-'} ms${e.mtls ? ' mTLS' : ''}${e.l4Only ? ' L4' : ''}`).join('; ')}`);
  for (const id of CHAIN) {
    const e = g.edges.find((x) => x.id === id);
    t.ok(e, `json: edge ${id}`);
    if (!e) continue;
    t.ok((e.rps ?? 0) > 0 && !e.l4Only, `${id} has requests (${e.rps} rps)`);
    t.ok((e.successRate ?? 0) >= 0.99, `${id} succeeds (${e.successRate})`);
    t.ok(e.mtls, `${id} is mTLS`);
    t.ok(e.p99Ms !== null && e.p99Ms > 0, `${id} has a p99 (${e.p99Ms} ms)`);
  }
  t.same(g.nodes.find((n) => n.id === 'demo/frontend')?.roles, ['service', 'workload'], 'frontend is one node: called and calling');

  t.match(out.text!.stdout, /^demo\/client\n(?:.*\n)*[├└]─▶ demo\/frontend .*\n(?:[│ ] {3}).*─▶ demo\/echo /m, 'text: the chain as a tree');
  for (const id of CHAIN) {
    const [a, b] = id.split(' -> ');
    t.match(out.dot!.stdout, new RegExp(`"${a}" -> "${b}" \\[label="[\\d.]+ rps · `), `dot: ${id}`);
  }
  t.match(out.mermaid!.stdout, /^flowchart LR\n/);
  for (const n of ['demo/client', 'demo/frontend', 'demo/echo']) t.match(out.mermaid!.stdout, new RegExp(`n\\d+[(\\[]"${n}"[)\\]]`), `mermaid: ${n}`);
  t.equal((out.mermaid!.stdout.match(/ -->\|/g) ?? []).length >= 3, true, 'mermaid: the request edges');

  const svg = out.svg!.stdout;
  t.same(xmlProblems(svg).problems, [], 'svg: well-formed XML');
  for (const id of CHAIN) t.ok(svg.includes(`data-id="${id.replace('>', '&gt;')}"`), `svg: edge ${id}`);
  const skip = chromiumSkipReason();
  if (skip) {
    t.comment(`no PNG: ${skip}`);
    return;
  }
  const svgFile = join(o.artefactDir, 'weft-graph.svg');
  const png = join(o.artefactDir, 'weft-graph.png');
  const size = await screenshot(svgFile, png);
  t.ok(size > 5000, `chromium drew the SVG (${png}, ${size} B)`);
}
