/**
 * A waypoint's pod in the lab: its own pod network namespace on its node (the layout
 * of every lab pod), an address from the node's pod CIDR, `weft waypoint run` inside,
 * and the registry records the Kubernetes controller would write for a Gateway of
 * class weft-waypoint: a `waypoint` record and the pod's workload record, labelled
 * with the Gateway's name and `weft.io/dataplane-mode=none` (a waypoint is never
 * enrolled itself). The workload is Unhealthy until the process answers its readiness
 * endpoint, and again once it is stopped: that is what the sources' ztunnels go by.
 *
 * Used by `lab up` (the topology's waypoints) and by `weft waypoint add|remove` on a
 * running lab. Every resource is recorded in the state file before it is created, so
 * `lab down` removes a waypoint pod as it removes everything else, also after a crash.
 */
import { labRedisArgs, labRedisTarget } from './redis';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GATEWAY_NAME_LABEL } from '../gateway/types';
import { WeftError } from '../lib/errors';
import { RegistryStore } from '../registry/store';
import { DATAPLANE_MODE_LABEL, DATAPLANE_MODE_NONE, type WaypointRecord, type WorkloadRecord, type WorkloadStatus } from '../registry/types';
import { isAlreadyGone, podDownCommands, podUpScript } from './network';
import { DIST, built, type LabLayout } from './paths';
import { WAYPOINT_NODE_FLAGS } from '../waypoint/node-flags';
import { hostsFile, LAB_NET, resolvConf, type LabPlan, type PlannedWaypoint } from './plan';
import { httpStatus, isAlive, startProcess, stopProcesses, waitUntil } from './procs';
import { run } from './run';
import type { ProcessResource, Resource, StateStore } from './state';
import { writeWaypointToken, revokeWaypointToken } from './waypoint-token';

/** The ports of `weft waypoint run` (docs/waypoint.md): HBONE, readiness, metrics. */
export const WAYPOINT_PORTS = Object.freeze({ hbone: 15008, readiness: 15021, metrics: 15020 });

/** How long `add` waits for a waypoint's readiness endpoint. */
export const WAYPOINT_READY_TIMEOUT_MS = 30_000;

/** What the waypoint functions need of a running (or starting) lab. */
export interface LabRuntime {
  store: StateStore;
  layout: LabLayout;
  plan: LabPlan;
  /** Other processes to watch while waiting (lab up: all it started); see waitUntil. */
  watch?: () => readonly ProcessResource[];
}

/** Name of the waypoint's process in the state file. */
export function waypointProcessName(w: Pick<PlannedWaypoint, 'uid'>): string {
  return `waypoint/${w.uid}`;
}

export function waypointLog(layout: LabLayout, w: Pick<PlannedWaypoint, 'namespace' | 'name'>): string {
  return join(layout.logs, `waypoint-${w.namespace}-${w.name}.log`);
}

/** The identity token file handed to the waypoint (a secret: mode 0600, under the lab's run dir). */
export function waypointTokenFile(layout: LabLayout, w: Pick<PlannedWaypoint, 'namespace' | 'name'>): string {
  return join(layout.runDir, `waypoint-${w.namespace}-${w.name}.token`);
}

export function waypointReadyUrl(w: Pick<PlannedWaypoint, 'ip'>): string {
  return `http://${w.ip}:${WAYPOINT_PORTS.readiness}/healthz/ready`;
}


/**
 * `weft waypoint run` flags for one waypoint pod (src/waypoint/options.ts): the same
 * Redis, CA and trust-anchor flags as the lab's ztunnels, and the identity token file
 * instead of a node credential.
 */
export function waypointArgs(w: PlannedWaypoint, layout: LabLayout, plan: LabPlan): string[] {
  return [
    'waypoint', 'run',
    '--name', w.name,
    '--namespace', w.namespace,
    '--service-account', w.serviceAccount,
    '--address', w.ip,
    ...labRedisArgs(plan),
    '--ca-address', `${LAB_NET.gateway}:${LAB_NET.caPort}`,
    '--trust-anchor-file', layout.caRootFile,
    '--trust-domain', LAB_NET.clusterDomain,
    '--identity-token-file', waypointTokenFile(layout, w),
  ];
}

/** The records a Gateway of class weft-waypoint and its one pod amount to. */
export function waypointRecords(w: PlannedWaypoint, status: WorkloadStatus): { waypoint: WaypointRecord; workload: WorkloadRecord } {
  return {
    waypoint: { name: w.name, namespace: w.namespace, serviceAccount: w.serviceAccount, for: w.for ?? 'service' },
    workload: {
      uid: w.uid,
      name: w.name,
      namespace: w.namespace,
      node: w.node,
      addresses: w.ip6 ? [w.ip, w.ip6] : [w.ip],
      serviceAccount: w.serviceAccount,
      labels: { [GATEWAY_NAME_LABEL]: w.name, [DATAPLANE_MODE_LABEL]: DATAPLANE_MODE_NONE },
      ports: [WAYPOINT_PORTS.hbone, WAYPOINT_PORTS.readiness, WAYPOINT_PORTS.metrics],
      status,
    },
  };
}

async function withStore<T>(plan: LabPlan, fn: (s: RegistryStore) => Promise<T>): Promise<T> {
  const store = RegistryStore.connect(labRedisTarget(plan));
  try {
    return await fn(store);
  } finally {
    await store.close();
  }
}

/** Writes the pod's workload status (the lab's stand-in for the kubelet's readiness probe). */
export function setWaypointStatus(plan: LabPlan, w: PlannedWaypoint, status: WorkloadStatus): Promise<number> {
  return withStore(plan, (s) => s.apply([{ op: 'put', kind: 'workload', record: waypointRecords(w, status).workload }]));
}

/**
 * The one place the waypoint process is started (by `add`, `up` and a restart): inside
 * the pod's netns, detached, recorded in the state file with its PID.
 */
export function startWaypointProcess(rt: LabRuntime, w: PlannedWaypoint): ProcessResource {
  return startProcess(rt.store, {
    name: waypointProcessName(w), role: 'waypoint', netns: w.netns, log: waypointLog(rt.layout, w),
    argv: [process.execPath, ...WAYPOINT_NODE_FLAGS, DIST.main, ...waypointArgs(w, rt.layout, rt.plan)],
  });
}

/** Waits until the waypoint answers 200 on its readiness endpoint, then until its pod is Healthy. */
export async function awaitWaypointReady(rt: LabRuntime, w: PlannedWaypoint, proc: ProcessResource): Promise<void> {
  await waitUntil(`waypoint ${w.uid}`, async () => (await httpStatus(waypointReadyUrl(w))) === 200,
    { timeoutMs: WAYPOINT_READY_TIMEOUT_MS, process: proc, ...(rt.watch ? { watch: rt.watch } : {}) });
  await awaitWaypointStatus(rt, w, 'Healthy');
}

/** The node's readiness prober, when the lab runs one and it is alive (src/lab/prober.ts). */
function nodeProber(rt: LabRuntime, node: string): ProcessResource | undefined {
  const p = rt.store.current.resources.find((r): r is ProcessResource => r.type === 'process' && r.name === `prober/${node}`);
  return p && isAlive(p) ? p : undefined;
}

/**
 * The pod's status becomes `status`: written by the node's prober once its probe sees
 * it (the one writer of probed statuses, so a fresher verdict is never undone), or here
 * when no prober runs yet (the topology's waypoints, started before the probers).
 */
export async function awaitWaypointStatus(rt: LabRuntime, w: PlannedWaypoint, status: WorkloadStatus): Promise<void> {
  const prober = nodeProber(rt, w.node);
  if (!prober) {
    await setWaypointStatus(rt.plan, w, status);
    return;
  }
  await withStore(rt.plan, (s) => waitUntil(`the prober of ${w.node} marking waypoint ${w.uid} ${status}`,
    async () => (await s.get('workload', w.uid))?.status === status, { timeoutMs: WAYPOINT_READY_TIMEOUT_MS, process: prober }));
}

export interface CreatedWaypoint {
  waypoint: PlannedWaypoint;
  /** False when `weft waypoint run` is not built yet: the pod and records exist, no process runs. */
  started: boolean;
}

/**
 * Creates a waypoint pod: netns and veth, records (Unhealthy), the identity token, the
 * process, and waits until it is ready. Resources are recorded first; on a failure the
 * caller removes them (removeWaypointPod, or `lab down`).
 */
export async function createWaypointPod(rt: LabRuntime, w: PlannedWaypoint): Promise<CreatedWaypoint> {
  const node = rt.plan.nodes.find((n) => n.name === w.node);
  if (!node) throw new WeftError('WEFT_USAGE', `node ${JSON.stringify(w.node)} is not in the lab (nodes: ${rt.plan.nodes.map((n) => n.name).join(', ')})`);
  rt.store.addWaypoint(w);
  rt.store.record({ type: 'etc-netns', name: w.netns }, { type: 'netns', name: w.netns });
  const etc = `/etc/netns/${w.netns}`;
  mkdirSync(etc, { recursive: true });
  writeFileSync(join(etc, 'hosts'), hostsFile(rt.plan, w));
  writeFileSync(join(etc, 'resolv.conf'), resolvConf(w));
  mkdirSync(rt.layout.runDir, { recursive: true });
  const script = join(rt.layout.runDir, `pod-${w.namespace}-${w.name}-up.sh`);
  writeFileSync(script, podUpScript(node, w), { mode: 0o755 });
  await run('sh', ['-e', script]);

  const { waypoint, workload } = waypointRecords(w, 'Unhealthy');
  await withStore(rt.plan, (s) => s.apply([
    { op: 'put', kind: 'waypoint', record: waypoint },
    { op: 'put', kind: 'workload', record: workload },
  ]));
  await writeWaypointToken(labRedisTarget(rt.plan), w, waypointTokenFile(rt.layout, w));

  if (!built(DIST.waypoint)) return { waypoint: w, started: false };
  const proc = startWaypointProcess(rt, w);
  await awaitWaypointReady(rt, w, proc);
  return { waypoint: w, started: true };
}

/** Whether a recorded resource belongs to waypoint pod `w`. */
function ownedBy(w: PlannedWaypoint, r: Resource): boolean {
  return (r.type === 'process' && r.name === waypointProcessName(w))
    || ((r.type === 'netns' || r.type === 'etc-netns') && r.name === w.netns);
}

/**
 * Removes a waypoint pod: its process (by recorded PID), its registry records and
 * token, its veth and netns, its /etc/netns entry. Idempotent: what is already gone is
 * skipped, so it also cleans up after a half-made `add`. What cannot be removed stays
 * recorded for `lab down`, and the error says what.
 */
export async function removeWaypointPod(rt: LabRuntime, w: PlannedWaypoint): Promise<void> {
  const problems: string[] = [];
  const procs = rt.store.current.resources.filter((r): r is ProcessResource => r.type === 'process' && r.name === waypointProcessName(w));
  const stuck = await stopProcesses(procs);
  problems.push(...stuck.map((n) => `process ${n} is still running after SIGKILL`));

  try {
    await withStore(rt.plan, (s) => s.apply([
      { op: 'delete', kind: 'workload', key: w.uid },
      { op: 'delete', kind: 'waypoint', key: `${w.namespace}/${w.name}` },
    ]));
  } catch (err) {
    problems.push(`registry: ${err instanceof Error ? err.message : String(err)}`);
  }
  const tokenFile = waypointTokenFile(rt.layout, w);
  await revokeWaypointToken(labRedisTarget(rt.plan), tokenFile).catch((err: unknown) => {
    problems.push(`identity token: ${err instanceof Error ? err.message : String(err)}`);
  });
  rmSync(tokenFile, { force: true });

  const node = rt.plan.nodes.find((n) => n.name === w.node);
  for (const args of node ? podDownCommands(node, w) : [['netns', 'del', w.netns]]) {
    const res = await run('ip', args, { allowFailure: true });
    const unexpected = res.stderr.split('\n').filter((l) => !isAlreadyGone(l));
    if (res.code !== 0 && unexpected.length > 0) problems.push(`ip ${args.join(' ')}: ${unexpected.join('; ')}`);
  }
  rmSync(`/etc/netns/${w.netns}`, { recursive: true, force: true });
  rmSync(join(rt.layout.runDir, `pod-${w.namespace}-${w.name}-up.sh`), { force: true });

  if (problems.length > 0) {
    throw new WeftError('WEFT_COMMAND_FAILED',
      `could not remove all of waypoint pod ${w.uid}: ${problems.join('; ')}; it stays recorded: fix the cause and run the remove again (or scripts/lab down)`,
      { details: { waypoint: w.uid, problems } });
  }
  rt.store.retain((r) => !ownedBy(w, r));
  rt.store.removeWaypoint(w.uid);
}
