// collectMeshStats (src/cli/mesh-stats.ts): scrapes real HTTP servers on loopback
// standing in for the proxies' metrics ports, twice, and computes the golden signals;
// a proxy that refuses, answers 500 or answers something else than Prometheus text is
// a warning while the others are read.
import t, { type Test } from 'tap';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { collectMeshStats, readProxy, waypointWorkloads } from '../src/cli/mesh-stats';
import type { ProxyTarget } from '../src/cli/proxy-targets';

const FIX = join(__dirname, 'fixtures', 'mesh-stats');

async function server(t: Test, answer: (n: number) => { status: number; body: string }): Promise<string> {
  let n = 0;
  const s = http.createServer((req, res) => {
    const a = req.url === '/metrics' ? answer(n++) : { status: 404, body: 'no' };
    res.writeHead(a.status, { 'content-type': 'text/plain' });
    res.end(a.body);
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => s.close());
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

t.test('two scrapes windowMs apart give the edges; silent and broken proxies are warnings', async (t) => {
  const fixtures = (name: string) => (n: number) => ({ status: 200, body: readFileSync(join(FIX, `${name}-${n === 0 ? 'a' : 'c'}.prom`), 'utf8') });
  const targets: ProxyTarget[] = [
    { kind: 'ztunnel', proxy: 'ztunnel node-1', baseUrl: await server(t, fixtures('ztunnel-node-1')) },
    { kind: 'ztunnel', proxy: 'ztunnel node-2', baseUrl: await server(t, fixtures('ztunnel-node-2')) },
    { kind: 'waypoint', proxy: 'waypoint demo/waypoint', pod: 'waypoint', baseUrl: await server(t, fixtures('waypoint')) },
    { kind: 'waypoint', proxy: 'waypoint demo/waypoint', pod: 'waypoint-2', baseUrl: await server(t, () => ({ status: 200, body: '<html>hello</html>' })) },
    { kind: 'ztunnel', proxy: 'ztunnel node-3', baseUrl: await server(t, () => ({ status: 500, body: 'oops' })) },
    { kind: 'ztunnel', proxy: 'ztunnel node-4', baseUrl: 'http://127.0.0.1:1' },
  ];
  const m = await collectMeshStats(targets, { windowMs: 50, timeoutMs: 1000 });
  t.equal(m.edges.length, 3);
  t.ok(m.edges.every((e) => e.rps! > 0 && e.successRate === 1 && e.mtls));
  t.comment(`window ${m.windowSeconds} s; ${m.edges.map((e) => `${e.source.name}→${e.destination.name} ${e.rps?.toFixed(0)} rps`).join(', ')}`);
  t.equal(m.warnings.length, 3);
  t.match(m.warnings.join('\n'), /waypoint demo\/waypoint pod waypoint-2: not answering .*line 1 of the metrics text/);
  t.match(m.warnings.join('\n'), /ztunnel node-3: not answering .*HTTP 500/);
  t.match(m.warnings.join('\n'), /ztunnel node-4: not answering .*ECONNREFUSED/);
  t.equal(m.proxies.length, 3);
});

t.test('a proxy that does not answer in time is a reading with an error', async (t) => {
  const s = http.createServer(() => {});
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => { s.closeAllConnections(); s.close(); });
  const r = await readProxy({ kind: 'ztunnel', proxy: 'ztunnel slow', baseUrl: `http://127.0.0.1:${(s.address() as AddressInfo).port}` }, 100);
  t.match(r.error, /no answer from .* within 100 ms/);
});

t.test('no proxies at all is said; waypoint pods are named namespace/pod', async (t) => {
  const m = await collectMeshStats([], { windowMs: 1 });
  t.match(m.warnings[0], /no proxies to read/);
  t.same([...waypointWorkloads([{ kind: 'waypoint', proxy: 'waypoint demo/wp', pod: 'wp-7d9', baseUrl: '' }, { kind: 'ztunnel', proxy: 'ztunnel n', baseUrl: '' }])], ['demo/wp-7d9']);
});
