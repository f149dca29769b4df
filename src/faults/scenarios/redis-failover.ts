/**
 * The registry's primary killed under traffic, on a lab with Sentinels (`lab up
 * --redis-sentinel`; docs/registry.md, "High availability"). The Sentinels promote a
 * replica; flows to known workloads must all succeed meanwhile (the ztunnels serve
 * from memory), a write must get through to the new primary, and every ztunnel must
 * resync from its stream position: reconnected and resumed, no snapshot reload.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { askRedis } from '../../lab/redis';
import type { FaultLab } from '../lab';
import { flowsOf } from '../lab';
import { RegistryStore } from '../../registry/store';
import type { RedisConnection } from '../../lib/common-options';
import { parseSentinelAddresses } from '../../lib/common-options';
import { secs, summarize, verdict, type Durations, type Row } from '../scenario';
import { until } from '../../lab/procs';

const RESUMED = 'registry follower resumed from its stream position; no reload needed';
const LOADED = 'registry snapshot loaded';

/** The primary's port as the first answering Sentinel names it. */
async function primaryPort(conn: RedisConnection): Promise<number | undefined> {
  for (const a of conn.sentinel!.addresses) {
    const port = await askRedis(a.host, a.port, async (c) =>
      Number(((await c.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', conn.sentinel!.masterName)) as [string, string])[1]));
    if (port !== undefined) return port;
  }
  return undefined;
}

/** WAIT on the primary (port `port`) until every connected replica acknowledged the writes so far, at most 5 s. */
async function replicated(conn: RedisConnection, port: number | undefined): Promise<void> {
  if (port === undefined) return;
  // The lab's primary, replicas and Sentinels all listen on the lab gateway's address.
  // Unanswered, the kill goes ahead; the row then says what was lost.
  await askRedis(conn.sentinel!.addresses[0]!.host, port, async (c) => {
    const replicas = Number(/^connected_slaves:(\d+)/m.exec(await c.info('replication'))?.[1] ?? 0);
    if (replicas > 0) await c.call('WAIT', replicas, 5000);
  });
}

export async function redisFailover(lab: FaultLab, d: Durations): Promise<Row> {
  const row = { scenario: 'Redis primary killed under traffic (Sentinel failover)', goal: '0 failed flows to known workloads; writes resume on the new primary; ztunnels resync without a reload' };
  const { redisSentinels, redisMasterName } = lab.ctx;
  if (!redisSentinels || !redisMasterName) {
    return { ...row, measured: 'not run: the lab runs one Redis (start it with `scripts/lab up --redis-sentinel`)', verdict: 'n/a', functional: true };
  }
  const conn: RedisConnection = { url: lab.ctx.redisUrl, sentinel: { addresses: parseSentinelAddresses(redisSentinels), masterName: redisMasterName } };
  const client = lab.pod('demo/client');
  const vip = lab.ctx.services.find((s) => s.namespace === 'demo' && s.name === 'echo')!;
  const nodes = lab.ctx.nodes.map((n) => n.name);
  const logs = nodes.map((n) => lab.ztunnelLog(n));
  const before = await primaryPort(conn);
  const totalMs = d.warmMs + 10_000;
  const runs = [
    lab.flows('demo/client', `${lab.pod('demo/echo-2').ip}:8080`, d.rate, totalMs),
    lab.flows('demo/client', `${vip.vip}:80`, d.rate, totalMs),
  ];
  await sleep(d.warmMs);
  // What this scenario shows is a failover of a replicated registry: every write made
  // so far has reached the replicas (Redis replicates asynchronously; a primary killed
  // before that loses the tail, and the ztunnels then rightly reload).
  await replicated(conn, before);
  const t0 = Date.now();
  lab.signal('redis', 'SIGKILL');
  let promotedMs = NaN;
  if (await until(async () => { const p = await primaryPort(conn); return p !== undefined && p !== before; }, 30_000, 50)) promotedMs = Date.now() - t0;

  // A writer: the first write the new primary takes, then every ztunnel sees it.
  const store = RegistryStore.connect(conn);
  let writeMs = NaN;
  let followMs = NaN;
  try {
    let rev = 0;
    await until(async () => { rev = await store.setNamespaceLabel('demo', 'weft-faults/failover', String(t0)); return true; }, 30_000, 100);
    if (rev > 0) {
      writeMs = Date.now() - t0;
      if (await until(async () => (await Promise.all(nodes.map((n) => lab.ztunnelStatus(n)))).every((s) => s.registryRevision >= rev), 15_000)) {
        followMs = Date.now() - t0;
      }
      await store.setNamespaceLabel('demo', 'weft-faults/failover', undefined).catch(() => undefined);
    }
  } finally {
    await store.close();
  }
  await Promise.all(runs.map((r) => r.done));
  const all = runs.flatMap(flowsOf);
  const after = summarize(all, client.ip, t0);
  const total = summarize(all, client.ip);
  const resumed = logs.map((l) => l.since().filter((x) => x.msg === RESUMED).length);
  const reloads = logs.map((l) => l.since().filter((x) => x.msg === LOADED).length);
  const measured = [
    `${total.total} flows, ${total.failed} failed (${after.total} after the kill, ${after.failed} failed${after.errors.length ? `: ${after.errors.join(', ')}` : ''})`,
    `new primary after ${Number.isFinite(promotedMs) ? secs(promotedMs) : 'never'}`,
    `first write ${Number.isFinite(writeMs) ? secs(writeMs) : 'never'} after the kill, seen by all ztunnels at ${Number.isFinite(followMs) ? secs(followMs) : 'never'}`,
    `ztunnels resumed ${resumed.join(' / ')} time(s), reloaded ${reloads.join(' / ')}`,
  ].join('; ');
  const functional = total.failed === 0 && total.plaintext === 0 && Number.isFinite(followMs)
    && resumed.every((n) => n >= 1) && reloads.every((n) => n === 0);
  return { ...row, measured, ...verdict(functional) };
}
