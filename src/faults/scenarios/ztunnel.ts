/**
 * A node's ztunnel dies (SIGKILL) or is restarted gracefully (SIGTERM, as a rolling
 * update does) while its pods send traffic. Evidence of plaintext: the echo app seeing
 * the client pod itself as its peer (same-node target), and SYNs to app ports of
 * enrolled pods on the bridge (cross-node target).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { LAB_DRAIN_TIMEOUT_MS } from '../../lab/up';
import type { FaultLab } from '../lab';
import { flowsOf } from '../lab';
import { captureRules } from '../observe';
import { PlaintextWatch } from '../wire';
import { recoveryMs, secs, summarize, verdict, type Durations, type Row } from '../scenario';
import { until } from '../../lab/procs';

const NODE = 'node-1';

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

/**
 * How long after the stop the graceful scenario's established connections go on
 * before they end on their own: inside the lab's drain period (LAB_DRAIN_TIMEOUT_MS,
 * lab/up.ts) with 2 s of room for the CLI's own start-up before it signals.
 */
const WITHIN_DRAIN_MS = LAB_DRAIN_TIMEOUT_MS - 2000;

type LiveLine = { open?: number; conn?: number; how?: string; rounds?: number; ms?: number };

async function underRestart(lab: FaultLab, d: Durations, sig: 'SIGTERM' | 'SIGKILL') {
  const client = lab.pod('demo/client');
  const demoIps = lab.ctx.pods.filter((p) => p.namespace === 'demo').map((p) => p.ip);
  const wire = new PlaintextWatch(demoIps, [8080, 9000]);
  await wire.started();
  const rulesBefore = await captureRules(lab.node(NODE).netns);
  const log = lab.ztunnelLog(NODE);
  const totalMs = d.warmMs + d.killGapMs + 9000;
  const runs = [
    lab.flows('demo/client', `${lab.pod('demo/echo-1').ip}:8080`, d.rate, totalMs), // same node as the client
    lab.flows('demo/client', `${lab.pod('demo/echo-2').ip}:8080`, d.rate, totalMs), // across the bridge
  ];
  const liveRun = (count: number, ms: number) => lab.traffic<LiveLine>('demo/client',
    ['live', '--target', `${lab.pod('demo/echo-2').ip}:9000`, '--count', String(count), '--duration', String(ms)]);
  // Established connections: 4 that outlast the whole run; under SIGTERM 4 more that
  // finish on their own during the drain period (a rolling update must let them), while
  // the long ones show what happens to connections still open when the drain ends.
  const lives = [liveRun(4, totalMs), ...(sig === 'SIGTERM' ? [liveRun(4, d.warmMs + WITHIN_DRAIN_MS)] : [])];
  for (const l of lives) await l.waitLine((x) => x.open !== undefined, 10_000);
  await sleep(d.warmMs);
  const times = await restartZtunnel(lab, NODE, sig, d.killGapMs);
  await Promise.all(runs.map((r) => r.done));
  for (const l of lives) l.stop();
  await Promise.all(lives.map((l) => l.done));
  const seen = await wire.stop();
  const rulesAfter = await captureRules(lab.node(NODE).netns);
  const all = runs.flatMap(flowsOf);
  const down = summarize(all, client.ip, times.signalledAt, times.startedAt);
  const total = summarize(all, client.ip);
  const recovery = recoveryMs(all, times.startedAt);
  const [longEnds, drainEnds] = lives.map((l) => l.lines.filter((x) => x.conn !== undefined));
  // The old ztunnel's own word: it finished its stop (not SIGKILLed by the lab after
  // 10 s), and which connections it reset when the drain period ended.
  const logged = log.since();
  const stoppedItself = logged.some((l) => l.msg === 'ztunnel stopped');
  const resetByDrain = logged.filter((l) => l.msg === 'connection complete' && typeof l.reason === 'string' && l.reason.includes('drain period over')).length;
  return {
    times, down, total, recovery, seen, rulesSame: rulesBefore === rulesAfter, longEnds: longEnds ?? [], drainEnds: drainEnds ?? [],
    stoppedItself, resetByDrain,
  };
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

/** "3 done (lasted 4.1–4.2 s), 1 reset (lasted 9.0 s)" */
function endsText(ends: LiveLine[]): string {
  const hows = new Map<string, number[]>();
  for (const e of ends) hows.set(e.how ?? '?', [...(hows.get(e.how ?? '?') ?? []), e.ms ?? NaN]);
  return [...hows].map(([h, ms]) => `${ms.length} ${h} (lasted ${secs(Math.min(...ms))}${ms.length > 1 ? `–${secs(Math.max(...ms))}` : ''})`).join(', ');
}

/**
 * Drained: every connection that finished during the drain period ended on its own
 * terms ('done': it round-tripped every 100 ms until its own end, after the SIGTERM),
 * none was reset. Connections longer than any drain period are reset at its end (as
 * in Istio); the row reports how, and when, but cannot ask them to survive a restart.
 */
export async function ztunnelGraceful(lab: FaultLab, d: Durations): Promise<Row> {
  const r = await underRestart(lab, d, 'SIGTERM');
  const drained = r.drainEnds.length > 0 && r.drainEnds.every((e) => e.how === 'done');
  const lines = describe(r);
  lines.push(`${r.drainEnds.length} established connections ending ${secs(WITHIN_DRAIN_MS)} after the stop: ${endsText(r.drainEnds)}`);
  lines.push(`${r.longEnds.length} outlasting the drain period: ${endsText(r.longEnds)}, ${r.resetByDrain} access-log lines 'drain period over'`);
  lines.push(`stop took ${r.times.exitedAt - r.times.signalledAt} ms, ${r.stoppedItself ? 'ending with \'ztunnel stopped\'' : 'WITHOUT \'ztunnel stopped\' (killed?)'}`);
  const ok = r.down.plaintext === 0 && r.seen.length === 0 && drained && r.stoppedItself && r.rulesSame;
  return {
    scenario: 'ztunnel graceful restart (SIGTERM, rolling update)', goal: 'no plaintext window; established connections drained',
    measured: lines.join('; '), ...verdict(ok),
  };
}
