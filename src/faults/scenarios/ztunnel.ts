/**
 * A node's ztunnel dies (SIGKILL) or is restarted gracefully (SIGTERM, as a rolling
 * update does) while its pods send traffic. Evidence of plaintext: the echo app seeing
 * the client pod itself as its peer (same-node target), and SYNs to app ports of
 * enrolled pods on the bridge (cross-node target).
 */
import { execFileSync } from 'node:child_process';
import type { FaultLab } from '../lab';
import { flowsOf, until } from '../lab';
import { PlaintextWatch } from '../wire';
import { recoveryMs, secs, sleep, summarize, verdict, type Durations, type Row } from '../scenario';

const NODE = 'node-1';

/** The node's nat and filter tables without counters: what capture installed. */
export function captureRules(lab: FaultLab, node: string): string {
  const netns = lab.node(node).netns;
  return ['nat', 'filter', 'mangle'].map((table) => execFileSync('ip', ['netns', 'exec', netns, 'iptables-save', '-t', table], { encoding: 'utf8' })
    .split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.replace(/^(:\S+ \S+) \[\d+:\d+\]$/, '$1')).join('\n')).join('\n');
}

/**
 * Stops node's ztunnel with `sig` and starts it again `gapMs` after it is gone, both
 * through the real CLI (`weft lab ztunnel <node> stop|start`, as an operator would);
 * `extraEnv` reaches the new ztunnel. "Started" is when the start command was launched
 * (its own start-up, ~0.3 s, counts against the restart).
 */
export async function restartZtunnel(lab: FaultLab, node: string, sig: 'SIGTERM' | 'SIGKILL', gapMs: number, extraEnv: NodeJS.ProcessEnv = {}) {
  const signalledAt = Date.now();
  const stop = await lab.weft(['lab', 'ztunnel', node, 'stop', '--signal', sig]);
  if (stop.code !== 0) throw new Error(`weft lab ztunnel ${node} stop failed (${stop.code}): ${stop.stderr}`);
  const exitedAt = Date.now();
  await sleep(gapMs);
  const startedAt = Date.now();
  const start = await lab.weft(['lab', 'ztunnel', node, 'start'], extraEnv);
  if (start.code !== 0) throw new Error(`weft lab ztunnel ${node} start failed (${start.code}): ${start.stderr}`);
  const readyAt = (await until(() => lab.ztunnelReady(node), 30_000, 50)) ? Date.now() : NaN;
  return { signalledAt, exitedAt, startedAt, readyAt };
}

async function underRestart(lab: FaultLab, d: Durations, sig: 'SIGTERM' | 'SIGKILL') {
  const client = lab.pod('demo/client');
  const demoIps = lab.ctx.pods.filter((p) => p.namespace === 'demo').map((p) => p.ip);
  const wire = new PlaintextWatch(demoIps, [8080, 9000]);
  await wire.started();
  const rulesBefore = captureRules(lab, NODE);
  const totalMs = d.warmMs + d.killGapMs + 9000;
  const runs = [
    lab.flows('demo/client', `${lab.pod('demo/echo-1').ip}:8080`, d.rate, totalMs), // same node as the client
    lab.flows('demo/client', `${lab.pod('demo/echo-2').ip}:8080`, d.rate, totalMs), // across the bridge
  ];
  const live = lab.traffic<{ open?: number; conn?: number; how?: string; rounds?: number; ms?: number }>('demo/client',
    ['live', '--target', `${lab.pod('demo/echo-2').ip}:9000`, '--count', '4', '--duration', String(totalMs)]);
  await live.waitLine((l) => l.open !== undefined, 10_000);
  await sleep(d.warmMs);
  const times = await restartZtunnel(lab, NODE, sig, d.killGapMs);
  await Promise.all(runs.map((r) => r.done));
  live.stop();
  await live.done;
  const seen = await wire.stop();
  const rulesAfter = captureRules(lab, NODE);
  const all = runs.flatMap(flowsOf);
  const down = summarize(all, client.ip, times.signalledAt, times.startedAt);
  const total = summarize(all, client.ip);
  const recovery = recoveryMs(all, times.startedAt);
  const ends = live.lines.filter((l) => l.conn !== undefined);
  return { times, down, total, recovery, seen, rulesSame: rulesBefore === rulesAfter, ends };
}

function describe(r: Awaited<ReturnType<typeof underRestart>>): string[] {
  return [
    `down ${secs(r.times.startedAt - r.times.signalledAt)}: ${r.down.total} flows, ${r.down.failed} failed${r.down.errors.length ? ` (${r.down.errors.join(', ')})` : ''}, ${r.down.plaintext} reached the app from the client itself`,
    `${r.seen.length} plaintext SYNs to enrolled pods on the bridge`,
    `ready ${Number.isFinite(r.times.readyAt) ? `${r.times.readyAt - r.times.startedAt} ms` : 'never'} after restart; flows all OK from ${Number.isFinite(r.recovery) ? `${r.recovery} ms` : 'never'} after restart`,
    `iptables ${r.rulesSame ? 'identical before and after' : 'DIFFER before/after'}`,
  ];
}

export async function ztunnelKill(lab: FaultLab, d: Durations): Promise<Row> {
  const r = await underRestart(lab, d, 'SIGKILL');
  const ok = r.down.plaintext === 0 && r.seen.length === 0 && Number.isFinite(r.recovery) && r.rulesSame;
  return {
    scenario: 'ztunnel SIGKILL, restarted', goal: 'new flows OK within 2 s of the restart; enrolled traffic fails closed meanwhile, never plaintext; no leaked rules',
    measured: describe(r).join('; '), ...verdict(ok, r.recovery <= 2000),
  };
}

export async function ztunnelGraceful(lab: FaultLab, d: Durations): Promise<Row> {
  const r = await underRestart(lab, d, 'SIGTERM');
  const hows = new Map<string, number>();
  for (const e of r.ends) hows.set(e.how ?? '?', (hows.get(e.how ?? '?') ?? 0) + 1);
  const drained = r.ends.length > 0 && r.ends.every((e) => e.how === 'fin' || e.how === 'done');
  const lines = describe(r);
  lines.push(`4 established connections ended: ${[...hows].map(([h, n]) => `${n} ${h}`).join(', ')} (stop took ${r.times.exitedAt - r.times.signalledAt} ms)`);
  const ok = r.down.plaintext === 0 && r.seen.length === 0 && drained && r.rulesSame;
  return {
    scenario: 'ztunnel graceful restart (SIGTERM, rolling update)', goal: 'no plaintext window; established connections drained',
    measured: lines.join('; '), ...verdict(ok),
  };
}
