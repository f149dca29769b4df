/**
 * `weft stat` and `weft top` on the observability lab, during demo traffic at a known
 * rate: the chain through the waypoint shows as the edges demo/client → demo/frontend
 * and demo/frontend → demo/echo (and the direct demo/client → demo/echo) with a rate
 * near the offered one, every request a success, p99 and mTLS; `weft top --iterations 2`
 * prints two readings. legacy/client → echo.legacy is not in the mesh: no ztunnel
 * captures it, so it is no edge at all (asserted, so a change there is noticed).
 * Prints the figures and keeps the tables in the artefacts (docs/observability.md).
 */
import type { Test } from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ObservabilityLab } from '../helpers/observability-lab';
import type { StatReading } from '../../../src/cli/golden-tables';
import type { EdgeStats } from '../../../src/telemetry/types';

const RATE = 20;

export async function section(t: Test, o: ObservabilityLab): Promise<void> {
  mkdirSync(o.artefactDir, { recursive: true });
  const name = (e: EdgeStats) => `${e.source.namespace}/${e.source.name} → ${e.destination.namespace}/${e.destination.name}`;
  // The reading's window lies inside the traffic: it starts 1 s in and lasts 3 s.
  const traffic = o.traffic({ seconds: 5, rate: RATE });
  await new Promise((r) => setTimeout(r, 1000));
  const [json, table] = await Promise.all([
    o.lab.weft(['stat', '-o', 'json', '--window', '3s']),
    o.lab.weft(['stat', '-n', 'demo', '--window', '3s']),
  ]);
  const loads = await traffic;
  t.comment(`offered: ${loads.map((l) => `${l.requests} requests in ${l.elapsedMs} ms`).join(', ')}`);
  t.equal(json.code, 0, `weft stat -o json: ${json.stderr}`);
  const r = JSON.parse(json.stdout) as StatReading;
  t.same(r.warnings, [], 'every proxy answered');
  for (const e of r.edges) t.comment(`${name(e)} ${e.protocol}: ${e.rps?.toFixed(1) ?? '-'} rps, success ${e.successRate}, p50/p95/p99 ${e.p50Ms}/${e.p95Ms}/${e.p99Ms} ms, mTLS ${e.mtls}, ${e.connectionsPerSecond.toFixed(1)} conn/s, ${Math.round(e.bytesPerSecond)} B/s, by ${e.reporters.join(', ')}`);
  for (const want of ['demo/client → demo/frontend', 'demo/frontend → demo/echo', 'demo/client → demo/echo']) {
    const e = r.edges.find((x) => name(x) === want);
    t.ok(e, `edge ${want}`);
    if (!e) continue;
    t.equal(e.protocol, 'http');
    t.ok(e.rps! > RATE / 3 && e.rps! < RATE * 3, `${want}: ${e.rps?.toFixed(1)} rps near the offered ${RATE}`);
    t.equal(e.successRate, 1, `${want}: every request succeeded`);
    t.ok(e.p99Ms !== null && e.p99Ms > 0, `${want}: p99 ${e.p99Ms} ms`);
    t.equal(e.mtls, true, `${want}: mTLS`);
  }
  t.notOk(r.edges.some((e) => e.source.namespace === 'legacy' || e.destination.namespace === 'legacy'),
    'legacy/client → echo.legacy is outside the mesh: no ztunnel reports it');
  t.notOk(r.edges.some((e) => e.source.name === 'waypoint'), 'the waypoint\'s hops to the pods are the L7 edges\' traffic, not edges of their own');
  t.same(r.services.map((s) => `${s.destination.namespace}/${s.destination.name}`).sort(), ['demo/echo', 'demo/frontend']);
  const wp = r.proxies.find((p) => p.kind === 'waypoint');
  t.ok(wp && wp.connections !== null && wp.inflightRequests !== null && wp.eventLoopLagP99Ms !== null, 'the waypoint\'s saturation gauges answer');
  t.ok(r.proxies.filter((p) => p.kind === 'ztunnel').every((p) => p.connections !== null), 'the ztunnels\' connection gauges answer');
  for (const p of r.proxies) t.comment(`${p.proxy}: lag p99 ${p.eventLoopLagP99Ms} ms, ${p.residentMemoryBytes} B, ${p.connections} connections, ${p.inflightRequests} in flight, ${p.pendingRequests} pending`);

  t.equal(table.code, 0, `weft stat: ${table.stderr}`);
  t.match(table.stdout, /SERVICES\n/);
  t.match(table.stdout, /demo\/frontend +demo\/echo +http /);
  writeFileSync(join(o.artefactDir, 'weft-stat.txt'), table.stdout);
  t.comment(`weft stat -n demo:\n${table.stdout}`);

  const traffic2 = o.traffic({ seconds: 3, rate: RATE });
  const top = await o.lab.weft(['top', '--iterations', '2', '--interval', '1s']);
  await traffic2;
  t.equal(top.code, 0, `weft top: ${top.stderr}`);
  t.equal(top.stdout.match(/^weft top: every 1 s/gm)?.length, 2, 'two readings');
  t.notOk(top.stdout.includes('\x1b['), 'no escape codes when stdout is not a terminal');
  t.match(top.stdout, /PROXIES\n/);
  writeFileSync(join(o.artefactDir, 'weft-top.txt'), top.stdout);
  t.comment(`weft top --iterations 2:\n${top.stdout}`);
}
