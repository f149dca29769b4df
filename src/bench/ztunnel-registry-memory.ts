/**
 * The real ztunnel's memory with a large registry (issue 13, "Scale beyond one
 * machine": follower RSS ≤ 150 MB at 100k workloads). scale.js measures a bare
 * follower; this runs the ztunnel itself: the two ZtunnelApp processes of
 * ztunnel-rig.ts following a registry of N synthetic workloads (registry-population.ts:
 * 10 per service and per node, 100 per namespace) beside the rig's own four records.
 * For each size, per ztunnel:
 *
 *   at rest     just after the start-up reclaim (memory-reclaim.ts, 10 s after start),
 *               and 20 s later
 *   start peak  VmHWM: the snapshot load's transient copies included
 *   reloaded    after a forced snapshot reload (a gap in the change stream, as after
 *               a lost stream) and the reclaim it triggers; its own peak (VmHWM reset
 *               before it)
 *
 *   npm run build && flock /run/weft-bench.lock node dist/bench/ztunnel-registry-memory.js [--workloads 0,100000]
 */
import { writeFileSync } from 'node:fs';
import { rssBytes } from '../faults/observe';
import { until } from '../lab/procs';
import { optionsHelp, parse, parseOptions } from '../lib/options';
import { openRedis } from '../registry/connection';
import { DEFAULT_PREFIX, registryKeys } from '../registry/layout';
import { ZTUNNEL_NODE_FLAGS } from '../ztunnel/node-flags';
import { inMiB, mdTable } from '../lib/markdown';
import { FOLLOWER_RSS_GOAL } from './registry-population';
import { runBench } from './signals';
import { startZtunnelRig, type RigNode, type ZtunnelRig } from './ztunnel-rig';

const specs = {
  help: { flag: 'help', boolean: true, default: false, description: 'print the flags', parse: parse.bool() },
  workloads: {
    flag: 'workloads', default: [0, 100_000] as number[], defaultText: '0,100000', description: 'registry sizes (synthetic workloads besides the rig\'s two), comma-separated',
    parse: (raw: string) => raw.split(',').map(parse.int({ min: 0, max: 1_000_000 })),
  },
};

interface Row {
  workloads: number; role: string;
  /** Right after the start-up reclaim, and SETTLE_MS later (what a quiet ztunnel drifts to). */
  atRest: number; settled: number;
  /** VmHWM: the start's peak (the snapshot load), then the reload's alone (reset before it). */
  startPeak: number; reloadPeak: number;
  reloaded: number; reclaims: number;
  /** The event-loop pause of the reclaims after the start and after the reload (V8's full GC + malloc_trim). */
  startPauseMs: number; reloadPauseMs: number;
}

/** A second look at rest: the first is taken just after the reclaim, its most favourable moment. */
const SETTLE_MS = 20_000;

/** Polls until `fn` holds; false (with a warning) after `timeoutMs`. */
async function waitFor(what: string, fn: () => Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const held = await until(fn, timeoutMs, 200);
  if (!held) console.error(`warning: no ${what} within ${timeoutMs / 1000} s; the figures are from before it`);
  return held;
}

/** Resets the process's peak RSS (VmHWM) to its current RSS (Linux: clear_refs 5). */
function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
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
    const rss = (field?: 'VmHWM') => nodes.map((n) => rssBytes(n.pid, field));
    const reclaims = async () => Promise.all(nodes.map(async (n) => (await n.mem()).reclaims));
    await waitFor('start-up reclaim', async () => (await reclaims()).every((r) => r >= 1), 30_000);
    const atRest = rss();
    const startPeak = rss('VmHWM');
    const pauses = async () => Promise.all(nodes.map(async (n) => (await n.mem()).lastReclaimPauseMs));
    const startPause = await pauses();
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    const settled = rss();
    for (const n of nodes) resetPeak(n.pid);
    await forceReload(rig);
    // The reclaimer looks every 2 s (at most once a minute; the start-up reclaim does not count); the reload takes ~3 s at 100k.
    await waitFor('reclaim after the reload', async () => (await reclaims()).every((r) => r >= 2), 30_000);
    const reloaded = rss();
    const reloadPeak = rss('VmHWM');
    const reloadPause = await pauses();
    const counts = await reclaims();
    return nodes.map((n, i) => ({
      workloads, role: n.role, atRest: atRest[i]!, settled: settled[i]!, startPeak: startPeak[i]!, reloadPeak: reloadPeak[i]!, reloaded: reloaded[i]!, reclaims: counts[i]!, startPauseMs: startPause[i]!, reloadPauseMs: reloadPause[i]!,
    }));
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
  const smallest = rows.filter((r) => r.workloads === rows[0]!.workloads);
  // MiB: what every bench here computes (the older ones label it MB) and what issue 13's baselines were measured in.
  const headers = ['registry workloads', 'ztunnel', 'at rest MiB', `+${SETTLE_MS / 1000} s MiB`, 'start peak MiB', 'after a reload MiB', 'reload peak MiB', 'reclaims', 'reclaim pause ms (start, reload)',
    `at rest − ${rows[0]!.workloads} workloads' MiB`, 'worst at rest / goal', `goal ≤ ${inMiB(FOLLOWER_RSS_GOAL)} MiB at rest`];
  console.log(`\n${mdTable(headers, rows.map((r) => {
    const base = smallest.find((s) => s.role === r.role)!;
    const worst = Math.max(r.atRest, r.settled, r.reloaded);
    return [r.workloads, r.role, inMiB(r.atRest), inMiB(r.settled), inMiB(r.startPeak), inMiB(r.reloaded), inMiB(r.reloadPeak), r.reclaims, `${r.startPauseMs}, ${r.reloadPauseMs}`, inMiB(r.atRest - base.atRest),
      (worst / FOLLOWER_RSS_GOAL).toFixed(3), worst <= FOLLOWER_RSS_GOAL ? 'met' : 'NOT met'];
  }))}`);
  console.log(`\nPeaks are VmHWM: the start's includes the snapshot load until the start-up reclaim (10 s after the listeners are up); the reload's was reset just before it.`);
}

if (require.main === module) {
  // The rig's ztunnels leave when their IPC channel closes; redis-server and the directories by exit hooks.
  runBench(main);
}
