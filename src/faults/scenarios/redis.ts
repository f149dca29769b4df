/**
 * Redis down under traffic. "Down" is frozen (SIGSTOP), the harder case: nothing
 * refuses, every call just hangs, as in a network partition, so the followers learn of
 * it only from their own timeouts. Redis keeps its data (the lab runs it without
 * persistence, so a killed one would come back empty: another scenario).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { FaultLab } from '../lab';
import { flowsOf } from '../lab';
import { RegistryStore } from '../../registry/store';
import { secs, summarize, verdict, type Durations, type Row } from '../scenario';
import { until } from '../../lab/procs';

const STALE = 'registry unreachable; serving the last known state until it is back';
const BACK = 'registry reachable again; view is current';

export async function redisDown(lab: FaultLab, d: Durations): Promise<Row> {
  const row = { scenario: `Redis down ${secs(d.redisDownMs)} under traffic (frozen, SIGSTOP)`, goal: '0 failed flows to known workloads; resync within 2 s of its return' };
  const client = lab.pod('demo/client');
  const vip = lab.ctx.services.find((s) => s.namespace === 'demo' && s.name === 'echo')!;
  const nodes = lab.ctx.nodes.map((n) => n.name);
  const logs = nodes.map((n) => lab.ztunnelLog(n));
  const totalMs = d.warmMs + d.redisDownMs + 4000;
  const runs = [
    lab.flows('demo/client', `${lab.pod('demo/echo-2').ip}:8080`, d.rate, totalMs),
    lab.flows('demo/client', `${vip.vip}:80`, d.rate, totalMs),
  ];
  await sleep(d.warmMs);
  const redis = lab.signal('redis', 'SIGSTOP');
  const t0 = Date.now();
  let t1 = 0;
  try {
    await sleep(d.redisDownMs);
  } finally {
    process.kill(redis.pid!, 'SIGCONT');
    t1 = Date.now();
  }
  const staleAfter = logs.map((l) => { const line = l.find(STALE)[0]; return line ? Date.parse(String(line.time)) - t0 : NaN; });
  await until(() => logs.every((l) => l.find(BACK).length > 0), 30_000, 50);
  const resync = logs.map((l) => { const line = l.find(BACK)[0]; return line ? Math.max(0, Date.parse(String(line.time)) - t1) : NaN; });
  // The view moves again: a write made now reaches every ztunnel.
  const store = RegistryStore.connect(lab.ctx.redisUrl);
  let followMs = NaN;
  try {
    const w = Date.now();
    const rev = await store.setNamespaceLabel('demo', 'weft-faults/redis', String(t1));
    if (await until(async () => (await Promise.all(nodes.map((n) => lab.ztunnelStatus(n)))).every((s) => s.registryRevision >= rev), 15_000)) followMs = Date.now() - w;
    await store.setNamespaceLabel('demo', 'weft-faults/redis', undefined);
  } finally {
    await store.close();
  }
  await Promise.all(runs.map((r) => r.done));
  const all = runs.flatMap(flowsOf);
  const during = summarize(all, client.ip, t0, t1);
  const total = summarize(all, client.ip);
  const noticed = staleAfter.every((x) => Number.isFinite(x));
  const worstResync = Math.max(...resync);
  const measured = [
    `${total.total} flows, ${total.failed} failed (${during.total} while frozen, ${during.failed} failed${during.errors.length ? `: ${during.errors.join(', ')}` : ''})`,
    noticed ? `stale noticed after ${staleAfter.map((x) => secs(x)).join(' / ')}` : `stale NOT noticed on ${nodes.filter((_, i) => !Number.isFinite(staleAfter[i])).join(', ')}`,
    `resynced ${resync.map((x) => (Number.isFinite(x) ? `${x} ms` : 'never')).join(' / ')} after its return`,
    `next write seen by all in ${Number.isFinite(followMs) ? `${followMs} ms` : 'never'}`,
  ].join('; ');
  return { ...row, measured, ...verdict(total.failed === 0 && noticed && Number.isFinite(worstResync) && Number.isFinite(followMs), worstResync <= 2000) };
}
