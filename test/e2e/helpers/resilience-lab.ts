/**
 * The labs of the resilience demonstrations (one bring-up for each file's sections, to
 * keep the suite short).
 *
 * test/e2e/resilience.test.ts: the default topology plus what each section needs, none
 * of which changes Service demo/echo's endpoints:
 *   - namespace `other` (ambient) with a client (authz);
 *   - Service demo/echo-b (selector app: echo) and demo/waypoint-b on node-1 (canary);
 *   - the chain frontend-1 → middle-1 → backend-1, each with its Service (chain);
 *   - Service demo/flaky, two echo pods failing 10 % with 503 (retry);
 *   - Service demo/slow, one echo pod answering after 1 s (pool);
 *   - demo/waypoint on node-2, serving the demo namespace (everything).
 * Appended at the end of each list, so the addresses and VIPs of the default ones stay
 * as documented.
 *
 * test/e2e/resilience-endpoints.test.ts (outlier detection, load balancing): the default
 * topology plus two more endpoints of Service demo/echo, echo-3 (node-1) and a slow
 * echo-4 (node-2, 50 ms), and demo/waypoint on node-2 serving the demo namespace.
 *
 * The state every section starts from and leaves behind: namespace demo bound to
 * demo/waypoint, no route or policy, every echo pod running with its topology behaviour.
 * `settle` waits until every waypoint has applied the registry's newest revision, so a
 * section's clean-up is in force before the next one starts.
 */
import type { Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultTopologyFile } from '../../../src/lab/paths';
import { RegistryStore } from '../../../src/registry/store';
import { waitFor } from '../../helpers/wait';
import { bindDemoToWaypoint, startLab, type LabHandle } from './lab';

export interface ResilienceLab {
  lab: LabHandle;
  /** A scratch directory removed at teardown; sections write their manifests under their own subdirectory (`sectionDir`). */
  dir: string;
  /** demo/waypoint's address (its metrics at <ip>:15020). */
  waypointIp: string;
  /** The lab's registry. */
  store: RegistryStore;
}

/** The slow endpoint's service time in the endpoints lab. */
export const SLOW_MS = 50;

function resilienceTopology(): string {
  const echoPod = (name: string, node: string, app: string, extra = '') =>
    `  - { name: ${name}, namespace: demo, node: ${node}, serviceAccount: ${app}, labels: { app: ${app} }, run: echo${extra} }\n`;
  const svc = (name: string, selector = name) => `  - name: ${name}\n    namespace: demo\n    selector: { app: ${selector} }\n    ports:\n      - { name: http, port: 80, targetPort: 8080 }\n`;
  let text = readFileSync(defaultTopologyFile(), 'utf8');
  for (const s of ['echo-v1', 'echo-v2']) {
    if (!text.includes(`- name: ${s}\n    namespace: demo`)) throw new Error(`the default topology has no Service demo/${s} any more`);
  }
  const insert = (anchor: string, add: string) => {
    if (!text.includes(anchor)) throw new Error(`the default topology has no "${anchor.trim()}" any more`);
    text = text.replace(anchor, add + anchor);
  };
  insert('\npods:\n', '  - name: other\n    labels:\n      weft.io/dataplane-mode: ambient\n');
  insert('\nservices:\n', [
    '  - { name: client, namespace: other, node: node-1, serviceAccount: client }\n',
    echoPod('frontend-1', 'node-1', 'frontend'),
    echoPod('middle-1', 'node-2', 'middle'),
    echoPod('backend-1', 'node-1', 'backend'),
    echoPod('flaky-1', 'node-1', 'flaky', ', echo: { failRatio: 0.1, failStatus: 503 }'),
    echoPod('flaky-2', 'node-2', 'flaky', ', echo: { failRatio: 0.1, failStatus: 503 }'),
    '  - { name: slow-1, namespace: demo, node: node-1, labels: { app: slow }, run: echo, echo: { serviceTime: 1s } }\n',
  ].join(''));
  return `${text.trimEnd()}\n${svc('echo-b', 'echo')}${svc('frontend')}${svc('middle')}${svc('backend')}${svc('flaky')}${svc('slow')}`
    + 'waypoints:\n  - { name: waypoint, namespace: demo, node: node-2 }\n  - { name: waypoint-b, namespace: demo, node: node-1 }\n';
}

function endpointsTopology(): string {
  const text = readFileSync(defaultTopologyFile(), 'utf8');
  const anchor = '  - { name: client, namespace: legacy, node: node-1 }\n';
  if (!text.includes(anchor)) throw new Error('the default topology changed: no legacy/client line to add pods before');
  const extra = [
    '  - { name: echo-3, namespace: demo, node: node-1, serviceAccount: echo, labels: { app: echo, version: v3 }, run: echo }',
    `  - { name: echo-4, namespace: demo, node: node-2, serviceAccount: echo, labels: { app: echo, version: v4 }, run: echo, echo: { serviceTime: ${SLOW_MS}ms } }`,
  ].join('\n');
  return `${text.replace(anchor, `${extra}\n${anchor}`)}\nwaypoints:\n  - { name: waypoint, namespace: demo, node: node-2 }\n`;
}

/** The lab of test/e2e/resilience.test.ts. */
export function startResilienceLab(t: Test): Promise<ResilienceLab> {
  return start(t, resilienceTopology());
}

/** The lab of test/e2e/resilience-endpoints.test.ts (demo/echo with four endpoints, echo-4 slow). */
export function startEndpointsLab(t: Test): Promise<ResilienceLab> {
  return start(t, endpointsTopology());
}

async function start(t: Test, topology: string): Promise<ResilienceLab> {
  const dir = mkdtempSync(join(tmpdir(), 'weft-resilience-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'lab.yaml'), topology);
  const lab = await startLab(t, { topology: join(dir, 'lab.yaml') });
  const store = RegistryStore.connect(lab.context.redisUrl);
  t.teardown(() => store.close());
  const waypointIp = lab.state()!.waypoints!.find((w) => w.uid === 'demo/waypoint')!.ip;
  const r = { lab, dir, waypointIp, store };
  await bindDemoToWaypoint(lab, waypointIp);
  return r;
}

/** A fresh directory for one section's files (under the lab's scratch directory). */
export function sectionDir(r: ResilienceLab, name: string): string {
  return mkdtempSync(join(r.dir, `${name}-`));
}

/** The registry revision a waypoint has applied (its admin /status); -1 if it does not answer. */
export async function waypointRevision(lab: LabHandle, waypoint = 'demo/waypoint'): Promise<number> {
  const res = await lab.exec(waypoint, ['weft', 'lab', 'request', 'http://127.0.0.1:15000/status']);
  return res.code === 0 ? (JSON.parse(res.stdout) as { registryRevision: number }).registryRevision : -1;
}

/** Until every waypoint has applied the registry's newest revision (bounded: 10 s each); throws if not. */
export async function settle(r: ResilienceLab): Promise<void> {
  const revision = await r.store.revision();
  for (const wp of r.lab.state()!.waypoints!.map((w) => w.uid)) {
    let seen = await waypointRevision(r.lab, wp);
    for (let i = 0; i < 100 && seen < revision; i++) {
      await new Promise((res) => setTimeout(res, 100));
      seen = await waypointRevision(r.lab, wp);
    }
    if (seen < revision) throw new Error(`${wp} is at registry revision ${seen}, not ${revision}, 10 s after a section's clean-up`);
  }
}

/** `weft delete -f file` (the section's own manifest), throwing if it fails. */
export async function deleteFile(r: ResilienceLab, file: string): Promise<void> {
  const res = await r.lab.weft(['delete', '-f', file]);
  if (res.code !== 0) throw new Error(`weft delete -f ${file} failed (${res.code}): ${res.stderr}`);
}

/** Sets an echo pod's behaviour live (`/_echo/behaviour?query`). */
export async function setBehaviour(lab: LabHandle, pod: string, query: string): Promise<void> {
  const res = await lab.exec(pod, ['weft', 'lab', 'request', `http://127.0.0.1:8080/_echo/behaviour?${query}`]);
  if (res.code !== 0) throw new Error(`behaviour of ${pod}: ${res.stderr}`);
}

/** A demo workload's status in the registry (`weft workloads`): Healthy, Unhealthy, .... */
export async function workloadStatus(lab: LabHandle, name: string): Promise<string | undefined> {
  const res = await lab.weft(['workloads', '-n', 'demo', '-o', 'json']);
  return (JSON.parse(res.stdout) as { items: Array<{ name: string; status: string }> }).items.find((w) => w.name === name)?.status;
}

/**
 * `weft lab app stop|start demo/<pod>`, then until the prober has marked it Unhealthy or
 * Healthy and every waypoint has that revision (bounded: 30 s). Start is a no-op for an
 * app that runs and is Healthy.
 */
export async function setApp(r: ResilienceLab, pod: string, action: 'stop' | 'start'): Promise<void> {
  const want = action === 'stop' ? 'Unhealthy' : 'Healthy';
  if (action === 'start' && (await workloadStatus(r.lab, pod)) === want) return;
  const res = await r.lab.weft(['lab', 'app', action, `demo/${pod}`]);
  if (res.code !== 0 && !/still runs/.test(res.stderr)) throw new Error(`weft lab app ${action} demo/${pod} failed (${res.code}): ${res.stderr}`);
  await waitFor(`the prober marks demo/${pod} ${want}`, async () => (await workloadStatus(r.lab, pod)) === want, { timeoutMs: 30_000, intervalMs: 100 });
  await settle(r);
}
