/**
 * The lab pieces of the admission demonstrations (test/e2e/resilience-admission.test.ts:
 * faults, rate limit, shedding): a topology with demo/waypoint serving the demo namespace (echo pods
 * optionally misbehaving), a TrafficPolicy applied with `weft apply` and waited for at
 * the waypoint (its admin view), open-loop load from demo/client (`weft lab load`), and
 * the waypoint's own metrics.
 */
import type { Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultTopologyFile } from '../../../src/lab/paths';
import type { LoadSummary } from '../../../src/lab/client-load';
import { percentile } from '../../../src/bench/stats';
import { startLab, type LabHandle } from './lab';

export interface AdmissionLab {
  lab: LabHandle;
  dir: string;
  waypointIp: string;
}

/** The default topology plus demo/waypoint on node-2 (the demo namespace's); `echo` is each demo echo pod's behaviour. */
export async function startAdmissionLab(t: Test, echo?: Record<string, string | number>): Promise<AdmissionLab> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-admission-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let text = readFileSync(defaultTopologyFile(), 'utf8');
  if (echo) {
    const inline = Object.entries(echo).map(([k, v]) => `${k}: ${v}`).join(', ');
    for (const pod of ['echo-1', 'echo-2']) {
      const re = new RegExp(`(- \\{ name: ${pod}, namespace: demo, [^\\n]*)( \\})\\n`);
      if (!re.test(text)) throw new Error(`the default topology has no pod demo/${pod} in the expected form any more`);
      text = text.replace(re, `$1, echo: { ${inline} }$2\n`);
    }
  }
  writeFileSync(join(dir, 'lab.yaml'), `${text}\nwaypoints:\n  - { name: waypoint, namespace: demo, node: node-2 }\n`);
  const lab = await startLab(t, { topology: join(dir, 'lab.yaml') });
  const ip = lab.state()!.waypoints!.find((w) => w.uid === 'demo/waypoint')!.ip;
  const use = await lab.weft(['namespace', 'use-waypoint', 'demo', 'waypoint']);
  if (use.code !== 0) throw new Error(`weft namespace use-waypoint failed: ${use.stderr}`);
  const a = { lab, dir, waypointIp: ip };
  // Requests to demo/echo go through the waypoint once the client's ztunnel has the binding.
  for (let i = 0; i < 50; i++) {
    await lab.request('demo/client', 'http://echo.demo/');
    if ((await metric(a, 'istio_requests_total', { destination_service_name: 'echo' })) > 0) return a;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('requests from demo/client to echo.demo did not reach demo/waypoint within 10 s of use-waypoint');
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
  const before = await revision(a);
  const res = await a.lab.weft(['apply', '-f', file]);
  if (res.code !== 0) throw new Error(`weft apply failed: ${res.stderr}`);
  // A new revision at the waypoint (an edit of a policy it has already is a change too).
  for (let i = 0; i < 100 && (await revision(a)) <= before; i++) await new Promise((r) => setTimeout(r, 100));
  await waitForPolicy(a, (json) => json.includes('"name":"echo"') || json.includes('"name": "echo"'));
}

/** The registry revision the waypoint has applied (its admin /status). */
async function revision(a: AdmissionLab): Promise<number> {
  const res = await a.lab.exec('demo/waypoint', ['weft', 'lab', 'request', 'http://127.0.0.1:15000/status']);
  return res.code === 0 ? (JSON.parse(res.stdout) as { registryRevision: number }).registryRevision : -1;
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

/** Sum of the waypoint's series `name` whose labels include every `labels` pair. */
export async function metric(a: AdmissionLab, name: string, labels: Record<string, string>): Promise<number> {
  const res = await a.lab.exec('demo/waypoint', ['weft', 'lab', 'request', `http://${a.waypointIp}:15020/metrics`]);
  if (res.code !== 0) throw new Error(`metrics of demo/waypoint: ${res.stderr}`);
  let sum = 0;
  for (const m of res.stdout.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)`, 'gm'))) {
    if (Object.entries(labels).every(([k, v]) => m[1]!.includes(`${k}="${v}"`))) sum += Number(m[2]);
  }
  return sum;
}

/** p50/p99/max of ascending latencies, for comments. */
export function spread(sorted: readonly number[]): string {
  if (sorted.length === 0) return 'none';
  return `p50 ${percentile(sorted, 50).toFixed(1)} ms, p99 ${percentile(sorted, 99).toFixed(1)} ms, max ${sorted[sorted.length - 1]!.toFixed(1)} ms`;
}
