/**
 * The lab pieces of the admission demonstrations (test/e2e/resilience/admission.ts:
 * faults, rate limit, shedding), on the resilience lab (helpers/resilience-lab.ts, with
 * demo/waypoint serving the demo namespace): a TrafficPolicy applied with `weft apply`
 * and waited for at the waypoint (its admin view), open-loop load from demo/client
 * (`weft lab load`), and the waypoint's own metrics.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LoadSummary } from '../../../src/lab/client-load';
import { percentile } from '../../../src/bench/stats';
import type { LabHandle } from './lab';
import { waypointRevision } from './resilience-lab';

export interface AdmissionLab {
  lab: LabHandle;
  dir: string;
  waypointIp: string;
}

/** `weft apply` of TrafficPolicy demo/echo with `spec` (YAML lines under spec:), then waits until the waypoint has it. */
export async function applyPolicy(a: AdmissionLab, spec: string): Promise<void> {
  const file = join(a.dir, 'policy.yaml');
  writeFileSync(file, `apiVersion: networking.weft.io/v1alpha1
kind: TrafficPolicy
metadata: { name: echo, namespace: demo }
spec:
  targetRefs: [{ group: "", kind: Service, name: echo }]
${spec}`);
  const before = await waypointRevision(a.lab);
  const res = await a.lab.weft(['apply', '-f', file]);
  if (res.code !== 0) throw new Error(`weft apply failed: ${res.stderr}`);
  // A new revision at the waypoint (an edit of a policy it has already is a change too).
  for (let i = 0; i < 100 && (await waypointRevision(a.lab)) <= before; i++) await new Promise((r) => setTimeout(r, 100));
  await waitForPolicy(a, (json) => json.includes('"name":"echo"') || json.includes('"name": "echo"'));
}

/** `weft delete` of the policy, then waits until the waypoint has none. */
export async function deletePolicy(a: AdmissionLab): Promise<void> {
  const res = await a.lab.weft(['delete', '-f', join(a.dir, 'policy.yaml')]);
  if (res.code !== 0) throw new Error(`weft delete failed: ${res.stderr}`);
  await waitForPolicy(a, (json) => json.trim() === '[]');
}

async function waitForPolicy(a: AdmissionLab, ok: (json: string) => boolean): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const res = await a.lab.exec('demo/waypoint', ['weft', 'lab', 'request', 'http://127.0.0.1:15000/trafficpolicies']);
    if (res.code === 0 && ok(res.stdout)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('the waypoint did not see the TrafficPolicy change within 10 s');
}

/** Open-loop load from demo/client to http://echo.demo/ (`weft lab load`). */
export async function load(a: AdmissionLab, opts: { rate: number; durationMs: number; conns?: number; path?: string }): Promise<LoadSummary> {
  const res = await a.lab.exec('demo/client', ['weft', 'lab', 'load', `http://echo.demo${opts.path ?? '/'}`, '--rate', String(opts.rate), '--duration', `${opts.durationMs}ms`,
    '--conns', String(opts.conns ?? 32)]);
  if (!res.stdout.trim()) throw new Error(`weft lab load failed (${res.code}): ${res.stderr}`);
  return JSON.parse(res.stdout) as LoadSummary;
}

/** The waypoint's metrics page (one `weft lab exec`: read it once, then take several series from it with `sumOf`). */
export async function scrape(a: AdmissionLab): Promise<string> {
  const res = await a.lab.exec('demo/waypoint', ['weft', 'lab', 'request', `http://${a.waypointIp}:15020/metrics`]);
  if (res.code !== 0) throw new Error(`metrics of demo/waypoint: ${res.stderr}`);
  return res.stdout;
}

/** Sum of the series `name` in a metrics page whose labels include every `labels` pair. */
export function sumOf(page: string, name: string, labels: Record<string, string>): number {
  let sum = 0;
  for (const m of page.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)`, 'gm'))) {
    if (Object.entries(labels).every(([k, v]) => m[1]!.includes(`${k}="${v}"`))) sum += Number(m[2]);
  }
  return sum;
}

/** p50/p99/max of ascending latencies, for comments. */
export function spread(sorted: readonly number[]): string {
  if (sorted.length === 0) return 'none';
  return `p50 ${percentile(sorted, 50).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms, max ${sorted[sorted.length - 1]!.toFixed(1)} ms`;
}
