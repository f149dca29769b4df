/**
 * The real ztunnel's memory with a large registry (issue 13, "Scale beyond one
 * machine": follower RSS ≤ 150 MB at 100k workloads). scale.js measures a bare
 * follower; this runs the ztunnel itself: the two ZtunnelApp processes of
 * ztunnel-rig.ts following a registry of N synthetic workloads (registry-population.ts:
 * 10 per service and per node, 100 per namespace) beside the rig's own four records.
 * For each size, per ztunnel:
 *
 *   at rest     after the start-up reclaim (memory-reclaim.ts, 10 s after start)
 *   peak        VmHWM: the snapshot load's transient copies included
 *   reloaded    after a forced snapshot reload (a gap in the change stream, as after
 *               a lost stream) and the reclaim it triggers
 *
 *   npm run build && flock /run/weft-bench.lock node dist/bench/ztunnel-registry-memory.js [--workloads 0,100000]
 */
import { rssBytes } from '../faults/observe';
import { optionsHelp, parse, parseOptions } from '../lib/options';
import { openRedis } from '../registry/connection';
import { DEFAULT_PREFIX, registryKeys } from '../registry/layout';
import { ZTUNNEL_NODE_FLAGS } from '../ztunnel/node-flags';
import { mdTable } from './markdown';
import { runBench } from './signals';
import { startZtunnelRig, type RigNode, type ZtunnelRig } from './ztunnel-rig';

const MB = 1024 * 1024;
const GOAL_RSS = 150 * MB;

const specs = {
  help: { flag: 'help', boolean: true, default: false, description: 'print the flags', parse: parse.bool() },
  workloads: {
    flag: 'workloads', default: [0, 100_000] as number[], defaultText: '0,100000', description: 'registry sizes (synthetic workloads besides the rig\'s two), comma-separated',
    parse: (raw: string) => raw.split(',').map(parse.int({ min: 0, max: 1_000_000 })),
  },
};

interface Row { workloads: number; role: string; atRest: number; peak: number; reloaded: number; reclaims: number }

async function until(what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) {
      console.error(`warning: no ${what} within ${timeoutMs / 1000} s; the figures are from before it`);
      return false;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return true;
}

/** One entry two revisions ahead: each follower sees a gap in the stream and loads the snapshot again. */
async function forceReload(rig: ZtunnelRig): Promise<void> {
  const keys = registryKeys(DEFAULT_PREFIX);
  const redis = openRedis(rig.redisUrl);
  try {
    const [rev, epoch] = await Promise.all([redis.get(keys.revision), redis.get(keys.epoch)]);
    await redis.xadd(keys.changes, '*', 'rev', String(Number(rev ?? 0) + 2), 'epoch', epoch ?? '', 'changes', '[]');
  } finally {
    redis.disconnect();
  }
}

async function measure(workloads: number): Promise<Row[]> {
  const rig = await startZtunnelRig({ nodeArgs: ZTUNNEL_NODE_FLAGS, registryWorkloads: workloads });
  try {
    const nodes: RigNode[] = [rig.nodeA, rig.nodeB];
    const reclaims = async () => Promise.all(nodes.map(async (n) => (await n.mem()).reclaims));
    await until('start-up reclaim', async () => (await reclaims()).every((r) => r >= 1), 30_000);
    const atRest = nodes.map((n) => rssBytes(n.pid));
    const peak = nodes.map((n) => rssBytes(n.pid, 'VmHWM'));
    await forceReload(rig);
    // The reclaimer looks every 2 s; the reload itself takes ~3 s at 100k.
    await until('reclaim after the reload', async () => (await reclaims()).every((r) => r >= 2), 30_000);
    const reloaded = nodes.map((n) => rssBytes(n.pid));
    const counts = await reclaims();
    return nodes.map((n, i) => ({ workloads, role: n.role, atRest: atRest[i]!, peak: peak[i]!, reloaded: reloaded[i]!, reclaims: counts[i]! }));
  } finally {
    await rig.stop();
  }
}

async function main(): Promise<void> {
  const o = parseOptions(specs, process.argv.slice(2), {}).values;
  if (o.help) return void console.log(`node dist/bench/ztunnel-registry-memory.js [flags]\n${optionsHelp(specs)}`);
  console.log(`ztunnel RSS with a large registry: two ZtunnelApp processes on loopback (real Redis, CA, HBONE); node ${process.version}`);
  const rows: Row[] = [];
  for (const n of o.workloads) {
    rows.push(...await measure(n));
    process.stderr.write(`  ${n} workloads done\n`);
  }
  const f = (b: number) => (b / MB).toFixed(1);
  const smallest = rows.filter((r) => r.workloads === rows[0]!.workloads);
  const headers = ['registry workloads', 'ztunnel', 'RSS at rest MB', 'peak RSS MB', 'after a snapshot reload MB', 'reclaims', `growth over ${rows[0]!.workloads} workloads MB`, `goal ≤ ${f(GOAL_RSS)} MB`];
  console.log(`\n${mdTable(headers, rows.map((r) => {
    const base = smallest.find((s) => s.role === r.role)!;
    const worst = Math.max(r.atRest, r.reloaded);
    return [r.workloads, r.role, f(r.atRest), f(r.peak), f(r.reloaded), r.reclaims, f(r.atRest - base.atRest), worst <= GOAL_RSS ? 'met' : 'NOT met'];
  }))}`);
}

if (require.main === module) {
  // The rig's ztunnels leave when their IPC channel closes; redis-server and the directories by exit hooks.
  runBench(main);
}
