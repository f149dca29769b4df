/**
 * `weft lab down`: removes exactly what the state file records, in an order that never
 * leaves a process holding a namespace: processes (by recorded PID and start time),
 * root-namespace iptables chains, then links, namespaces and routes in one
 * `ip -force -batch`, then /etc/netns entries and the context file. Idempotent: what
 * is already gone is skipped quietly, so it also finishes the job after a crash of
 * `up`, of a previous `down`, or of the processes themselves. What cannot be removed
 * stays recorded for the next `down`.
 */
import { existsSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import { ExecCommandRunner } from '../iptables/runner';
import { IptablesApplier } from '../iptables/apply';
import { WeftError } from '../lib/errors';
import { removeContextIfOurs } from './context';
import { isAlreadyGone, networkDownBatch } from './network';
import { labLayout } from './paths';
import { isAlive, stopProcesses } from './procs';
import { forgetLabDir, readState, StateStore, type ProcessResource, type Resource } from './state';
import { run } from './run';

export interface DownOptions {
  labDir: string;
  contextFile: string;
  progress: (line: string) => void;
}

export interface DownResult {
  /** False when no lab was recorded (nothing to do). */
  recorded: boolean;
  removed: number;
  ms: number;
}

function listDir(dir: string): Set<string> {
  try {
    return new Set(readdirSync(dir));
  } catch {
    return new Set();
  }
}

/** Whether a recorded resource still exists (processes: alive with the same start time). */
function stillThere(r: Resource, netns: Set<string>, links: Set<string>): boolean {
  switch (r.type) {
    case 'process': return isAlive(r);
    case 'netns': return netns.has(r.name);
    case 'link': return links.has(r.name);
    case 'etc-netns': return existsSync(`/etc/netns/${r.name}`);
    default: return false;
  }
}

export async function labDown(opts: DownOptions): Promise<DownResult> {
  const started = Date.now();
  const state = readState(opts.labDir);
  if (!state) {
    opts.progress(`no lab recorded in ${opts.labDir}; nothing to remove`);
    return { recorded: false, removed: 0, ms: Date.now() - started };
  }
  const store = StateStore.open(state);
  const resources = state.resources;
  const problems: string[] = [];

  const procs = resources.filter((r): r is ProcessResource => r.type === 'process');
  for (const p of procs.filter((p) => p.pid === undefined)) {
    problems.push(`process ${p.name} was recorded without a PID (crash while starting it); if it runs, stop it by hand (its log: ${p.log})`);
  }
  const alive = procs.filter(isAlive);
  const stuck = await stopProcesses(alive);
  if (alive.length > 0) opts.progress(`stopped ${alive.length - stuck.length} process(es)`);

  for (const r of resources) {
    // Chains inside a lab netns vanish with it; only root-namespace ones need removing.
    if (r.type !== 'iptables-chain' || r.netns) continue;
    try {
      await new IptablesApplier({
        runner: new ExecCommandRunner(), table: r.table, chains: [r.chain], jumps: [{ from: r.hook, to: r.chain, position: 'first' }],
      }).remove();
      opts.progress(`removed iptables chain ${r.table}/${r.chain}`);
    } catch (err) {
      problems.push(`iptables chain ${r.table}/${r.chain}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  const netns = resources.flatMap((r) => (r.type === 'netns' ? [r.name] : []));
  const links = resources.flatMap((r) => (r.type === 'link' ? [r.name] : []));
  const routes = resources.flatMap((r) => (r.type === 'route' ? [r.spec] : []));
  if (netns.length + links.length + routes.length > 0) {
    const batch = networkDownBatch({ netns, links, routes });
    const res = await run('ip', ['-force', '-batch', '-'], { input: batch, allowFailure: true });
    const unexpected = res.stderr.split('\n').filter((l) => !isAlreadyGone(l));
    if (unexpected.length > 0) problems.push(`ip: ${unexpected.join('; ')}`);
    opts.progress(`removed ${netns.length} network namespace(s), ${links.length} link(s), ${routes.length} route(s)`);
  }

  const etc = resources.flatMap((r) => (r.type === 'etc-netns' ? [r.name] : []));
  for (const name of etc) rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
  // Directories the lab created (/etc/netns) are shared with other tools: only if empty.
  for (const r of resources) {
    if (r.type === 'dir') {
      try { rmdirSync(r.path); } catch { /* not empty, or gone */ }
    }
  }

  for (const r of resources) {
    if (r.type === 'context' && removeContextIfOurs(r.path, opts.labDir)) opts.progress(`removed context ${r.path}`);
  }

  const nowNetns = listDir('/run/netns');
  const nowLinks = listDir('/sys/class/net');
  const left = resources.filter((r) => stillThere(r, nowNetns, nowLinks));
  if (left.length > 0) {
    store.retain((r) => left.includes(r));
    const names = left.map((r) => ('name' in r ? `${r.type} ${r.name}` : r.type));
    throw new WeftError('WEFT_COMMAND_FAILED',
      `lab down could not remove ${names.join(', ')}${problems.length ? ` (${problems.join('; ')})` : ''}; they stay recorded: fix the cause and run down again`,
      { details: { left: names, problems } });
  }
  for (const p of problems) opts.progress(`warning: ${p}`);

  const layout = labLayout(opts.labDir);
  for (const path of [layout.redisDir, layout.caDir, layout.binDir, layout.runDir, layout.networkScript]) rmSync(path, { recursive: true, force: true });
  store.remove();
  forgetLabDir(opts.labDir);
  const ms = Date.now() - started;
  opts.progress(`lab down in ${(ms / 1000).toFixed(2)}s (logs kept in ${layout.logs})`);
  return { recorded: true, removed: resources.length, ms };
}
