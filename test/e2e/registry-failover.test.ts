// The highly available registry on the lab (`lab up --redis-sentinel`: a primary, two
// replicas and three Sentinels as processes): the primary is killed under steady mesh
// traffic (src/faults/scenarios/redis-failover.ts). No flow may fail, a write must get
// through to the new primary and reach every ztunnel, and every ztunnel must resync
// from its stream position without a snapshot reload. The times are printed, never
// asserted; docs/registry.md has them.
import t from 'tap';
import { FaultLab } from '../../src/faults/lab';
import { SHORT } from '../../src/faults/scenario';
import { redisFailover } from '../../src/faults/scenarios/redis-failover';
import { labSkipReason, startLab } from './helpers/lab';

const skip = labSkipReason();

t.test('Sentinel failover under mesh traffic: no flow fails, ztunnels resync without a reload', { skip }, async (t) => {
  const handle = await startLab(t, { env: { ...SHORT.labEnv, WEFT_LAB_REDIS_SENTINEL: '1' } });
  t.ok(handle.context.redisSentinels, 'the context names the Sentinels');
  // Every process (replicas, Sentinels, and every component given their flags) alive and ready.
  const status = await handle.weft(['lab', 'status']);
  t.equal(status.code, 0, `lab status healthy before the failover:\n${status.stdout}`);
  const lab = new FaultLab(handle.labDir, handle.context, handle.env);
  t.teardown(() => lab.stopTraffic());
  const row = await redisFailover(lab, SHORT);
  t.comment(`${row.scenario}: ${row.verdict} (${row.measured})`);
  t.ok(row.functional, `goal: ${row.goal}; measured: ${row.measured}`);
  // The operator CLI finds the new primary through the context's Sentinels.
  const res = await handle.weft(['workloads', '-o', 'json']);
  t.equal(res.code, 0, `weft workloads after the failover: ${res.stderr}`);
});
