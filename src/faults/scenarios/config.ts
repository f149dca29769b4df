/**
 * Bad configuration: a topology YAML with a wrong field, an AuthorizationPolicy with a
 * wrong field through the normal write path, and a malformed record written straight
 * into Redis over a good one (a buggy or older writer). Each must be refused or
 * skipped with an error naming the field, and what was good before must stay in force.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Redis from 'ioredis';
import { DIST } from '../../lab/paths';
import type { FaultLab } from '../lab';
import { flowsOf } from '../lab';
import { counterSum, scrapeZtunnel } from '../observe';
import { RegistryStore } from '../../registry/store';
import { DEFAULT_PREFIX, registryKeys } from '../../registry/layout';
import type { AuthorizationPolicyRecord } from '../../registry/types';
import { verdict, type Durations, type Row } from '../scenario';
import { until } from '../../lab/procs';

const POLICY = 'faults-deny';

/** True when every one of a few fresh requests from demo/client to echo-2 is refused. */
async function denied(lab: FaultLab): Promise<{ refused: number; of: number }> {
  const run = lab.flows('demo/client', `${lab.pod('demo/echo-2').ip}:8080`, 5, 1000);
  await run.done;
  const f = flowsOf(run);
  return { refused: f.filter((x) => !x.ok).length, of: f.length };
}

export async function badConfig(lab: FaultLab, _d: Durations): Promise<Row> {
  const row = { scenario: 'bad config (YAML, policy, registry record)', goal: 'clear error naming the field; last good config kept' };
  const parts: string[] = [];
  let ok = true;

  // 1. YAML: a topology naming an undeclared node, brought up in a scratch lab dir.
  const dir = mkdtempSync(join(tmpdir(), 'weft-faults-'));
  try {
    const bad = join(dir, 'topology.yaml');
    writeFileSync(bad, 'nodes:\n  - name: node-1\nnamespaces:\n  - name: demo\npods:\n  - name: a\n    namespace: demo\n    node: node-9\n');
    const r = spawnSync(process.execPath, [DIST.main, 'lab', 'up', '--topology', bad, '--lab-dir', join(dir, 'lab'), '--context', join(dir, 'ctx.json')], { encoding: 'utf8', timeout: 30_000 });
    const named = /pods\[0\]\.node/.test(r.stderr) && /WEFT_LAB_TOPOLOGY_INVALID/.test(r.stderr);
    // Why a node counts as disturbed goes into the row: a flake once said only DISTURBED.
    const disturbed = (await Promise.all(lab.ctx.nodes.map((n) => lab.ztunnelStatus(n.name).then(
      (s) => (s.ready ? undefined : `${n.name} not ready`),
      (err: unknown) => `${n.name} admin: ${err instanceof Error ? err.message : String(err)}`,
    )))).filter((x): x is string => x !== undefined);
    ok &&= r.status !== 0 && named && disturbed.length === 0;
    parts.push(`YAML: exit ${r.status}, ${named ? 'names pods[0].node' : `error does NOT name the field (${r.stderr.trim().split('\n')[0]})`}, running lab ${disturbed.length === 0 ? 'untouched' : `DISTURBED (${disturbed.join('; ')})`}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  const store = RegistryStore.connect(lab.ctx.redisUrl);
  const redis = new Redis(lab.ctx.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
  const key = `demo/${POLICY}`;
  try {
    const good: AuthorizationPolicyRecord = {
      name: POLICY, namespace: 'demo', scope: 'WORKLOAD_SELECTOR', selector: { app: 'echo' }, action: 'DENY',
      rules: [{ clauses: [{ matches: [{ principals: [`spiffe://${lab.ctx.trustDomain}/ns/demo/sa/client`] }] }] }],
    };
    const rev = await store.put('policy', good);
    await until(async () => (await Promise.all(lab.ctx.nodes.map((n) => lab.ztunnelStatus(n.name)))).every((s) => s.registryRevision >= rev), 10_000);
    const before = await denied(lab);

    // 2. A policy with a wrong field, through the write path the CLI and controller use.
    let err = '';
    try {
      await store.put('policy', { ...good, action: 'DENNY' } as unknown as AuthorizationPolicyRecord);
    } catch (e) { err = (e as Error).message; }
    const kept = (await store.snapshot()).records.policy.find((p) => p.name === POLICY)?.action === 'DENY';
    const namedAction = /action/.test(err);
    const still = await denied(lab);
    ok &&= namedAction && kept && before.refused === before.of && still.refused === still.of;
    parts.push(`policy: ${err ? `refused (${err.split('\n')[0].slice(0, 160)})` : 'ACCEPTED'}, stored version ${kept ? 'kept' : 'LOST'}, DENY enforced ${still.refused}/${still.of}`);

    // 3. The same bad record written straight into Redis over the good one.
    const invalidBefore = await Promise.all(lab.ctx.nodes.map(async (n) => counterSum(await scrapeZtunnel(n.address), 'weft_registry_invalid_records_total')));
    const keys = registryKeys(DEFAULT_PREFIX);
    const badRecord = { ...good, action: 'DENNY' };
    const logs = lab.ctx.nodes.map((n) => lab.ztunnelLog(n.name));
    await redis.connect();
    const epoch = await redis.get(keys.epoch);
    const raw = await redis.incr(keys.revision);
    await redis.hset(keys.kind('policy'), key, JSON.stringify(badRecord));
    await redis.xadd(keys.changes, '*', 'rev', String(raw), 'epoch', epoch ?? '', 'changes', JSON.stringify([{ op: 'put', kind: 'policy', key, record: badRecord }]));
    await until(async () => (await Promise.all(lab.ctx.nodes.map((n) => lab.ztunnelStatus(n.name)))).every((s) => s.registryRevision >= raw), 10_000);
    await sleep(200);
    const invalidAfter = await Promise.all(lab.ctx.nodes.map(async (n) => counterSum(await scrapeZtunnel(n.address), 'weft_registry_invalid_records_total')));
    const counted = invalidAfter.every((v, i) => v > invalidBefore[i]!);
    const logNamed = logs.every((l) => l.since().some((x) => /action/.test(JSON.stringify(x)) && ['warn', 'error', 'fatal'].includes(String(x.level))));
    const afterRaw = await denied(lab);
    const keptRaw = afterRaw.refused === afterRaw.of;
    ok &&= counted && logNamed && keptRaw;
    parts.push(`raw record: ${counted ? 'skipped and counted' : 'NOT counted'} by every ztunnel, log ${logNamed ? 'names action' : 'does NOT name the field'}, last good DENY ${keptRaw ? 'kept' : `LOST (${afterRaw.of - afterRaw.refused}/${afterRaw.of} requests got through)`}`);
  } finally {
    redis.disconnect();
    await store.delete('policy', key).catch(() => undefined);
    await store.close();
  }
  return { ...row, measured: parts.join('; '), ...verdict(ok) };
}
