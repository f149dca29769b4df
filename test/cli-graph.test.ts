// `weft graph` (src/cli/commands/graph.ts) in-process: a real registry (redis-server),
// the context's two nodes on loopback addresses whose metrics port (15020) is served by
// HTTP servers replaying scrapes recorded from the lab, so the command reads what a
// ztunnel serves. Every -o format, -n, and the exit code when no proxy answers.
import t, { type Test } from 'tap';
import * as http from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { captureIo, startDemoRegistry, writeContextFile } from './helpers/cli';
import graph from '../src/cli/commands/graph';
import { METRICS_PORT } from '../src/mesh/ports';
import { xmlProblems } from './helpers/xml-wellformed';

const FIX = join(__dirname, 'fixtures', 'mesh-stats');

/** Serves the node's first recorded scrape, then its second; reset() starts over. */
async function ztunnelStub(t: Test, address: string, node: string): Promise<{ reset(): void }> {
  let n = 0;
  const s = http.createServer((req, res) => {
    if (req.url !== '/metrics') { res.writeHead(404); return void res.end(); }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(readFileSync(join(FIX, `ztunnel-${node}-${n++ === 0 ? 'a' : 'c'}.prom`), 'utf8'));
  });
  await new Promise<void>((resolve, reject) => s.once('error', reject).listen(METRICS_PORT, address, () => resolve()));
  t.teardown(() => new Promise<void>((r) => s.close(() => r())));
  return { reset: () => { n = 0; } };
}

t.test('weft graph on recorded scrapes', async (t) => {
  const { dir, contextFile } = await startDemoRegistry(t);
  const ctx = JSON.parse(readFileSync(contextFile, 'utf8')) as Record<string, unknown>;
  writeContextFile(contextFile, { ...ctx, nodes: [{ name: 'node-1', address: '127.0.0.151' }, { name: 'node-2', address: '127.0.0.152' }] });
  const stubs = [await ztunnelStub(t, '127.0.0.151', 'node-1'), await ztunnelStub(t, '127.0.0.152', 'node-2')];
  const run = async (argv: string[]) => {
    for (const s of stubs) s.reset();
    const cap = captureIo({ HOME: dir, WEFT_CONTEXT: contextFile });
    const code = await graph.runWith(['--window', '100ms', ...argv], cap.io);
    return { code, out: cap.stdout(), err: cap.stderr() };
  };

  const json = await run(['-o', 'json']);
  t.equal(json.code, 0, json.err);
  const g = JSON.parse(json.out) as { nodes: { id: string }[]; edges: { id: string; l4Only: boolean; mtls: boolean }[] };
  t.ok(g.edges.length > 0, 'edges from the ztunnels\' TCP metrics');
  t.ok(g.edges.every((e) => e.l4Only && e.mtls), 'L4 only (no waypoint answered), all mTLS');
  t.ok(g.nodes.some((n) => n.id === 'demo/client'));
  t.comment(`edges: ${g.edges.map((e) => e.id).join(', ')}`);

  const text = await run([]);
  t.match(text.out, /^weft graph: \d+ nodes, \d+ edges?, window [\d.]+ s/, 'the window as measured (0.1 s asked; more on a loaded machine)');
  t.match(text.out, /demo\/client\n[└├]┄▶ /);
  const dot = await run(['-o', 'dot']);
  t.match(dot.out, /^digraph weft \{\n/);
  t.match(dot.out, /"demo\/client" -> "[^"]+" \[label="[\d.]+ conn\/s · /);
  t.match((await run(['-o', 'mermaid'])).out, /^flowchart LR\n/);
  const svg = await run(['-o', 'svg']);
  t.same(xmlProblems(svg.out).problems, []);
  t.match(svg.out, /demo\/client/);
  const other = JSON.parse((await run(['-n', 'legacy', '-o', 'json'])).out) as { edges: unknown[] };
  t.ok(other.edges.length < g.edges.length, '-n keeps the namespace\'s edges only');

  const bad = await (async () => graph.runWith(['-o', 'png'], captureIo({ HOME: dir, WEFT_CONTEXT: contextFile }).io))().catch((e: Error) => e);
  t.match(String((bad as Error).message), /--output="png": expected one of text, dot, mermaid, svg, json/);

  writeContextFile(contextFile, { ...ctx, nodes: [{ name: 'node-9', address: '127.0.0.153' }] });
  const none = await run([]);
  t.equal(none.code, 1, 'exit 1 when no proxy answers');
  t.match(none.err, /^warning: .*node-9/m);
  t.match(none.out, /No calls seen in the window/);
});
