/**
 * Waypoints on a running lab: `weft waypoint add|remove` (a waypoint pod made or
 * removed live, nothing else restarted) and stop/start of one waypoint's process, as a
 * crash or a rolling update would (the "waypoint restart" tests). Only what the state
 * file records is touched.
 */
import { labRedisTarget } from './redis';
import { WeftError } from '../lib/errors';
import { RegistryStore } from '../registry/store';
import { labLayout } from './paths';
import { freePodHost, planWaypoint, type PlannedWaypoint } from './plan';
import { isAlive, restartRecorded, stopProcesses } from './procs';
import { readState, requireState, StateStore, type ProcessResource } from './state';
import {
  awaitWaypointReady, awaitWaypointStatus, createWaypointPod, removeWaypointPod, waypointProcessName,
  type CreatedWaypoint, type LabRuntime,
} from './waypoint-pod';

export interface AddWaypointRequest {
  name: string;
  namespace: string;
  node: string;
  /** Default: the waypoint's name. */
  serviceAccount?: string;
}

function runtime(labDir: string): LabRuntime {
  const state = requireState(labDir);
  if (state.phase !== 'up') {
    throw new WeftError('WEFT_LAB_NOT_RUNNING', `the lab in ${labDir} is not up (phase ${state.phase}); run scripts/lab down, then up`);
  }
  return { store: StateStore.open(state), layout: labLayout(labDir), plan: state.plan };
}

/** The lab's waypoint pods (topology and added). */
export function labWaypoints(labDir: string): PlannedWaypoint[] {
  return readState(labDir)?.waypoints ?? [];
}

function find(rt: LabRuntime, namespace: string, name: string): PlannedWaypoint {
  const w = (rt.store.current.waypoints ?? []).find((x) => x.namespace === namespace && x.name === name);
  if (!w) {
    const known = (rt.store.current.waypoints ?? []).map((x) => x.uid).sort();
    throw new WeftError('WEFT_REGISTRY_NOT_FOUND',
      `the lab runs no waypoint ${namespace}/${name} (waypoints: ${known.join(', ') || 'none'}); list them with weft waypoints`,
      { details: { kind: 'waypoint', key: `${namespace}/${name}` } });
  }
  return w;
}

/**
 * Adds a waypoint pod to the running lab and waits until it is ready. Refuses a
 * namespace the registry does not know, an unknown node, and a name taken by a pod or
 * waypoint of that namespace. A failure removes what was made.
 */
export async function addWaypoint(labDir: string, req: AddWaypointRequest): Promise<CreatedWaypoint> {
  const rt = runtime(labDir);
  const { plan } = rt;
  const node = plan.nodes.find((n) => n.name === req.node);
  if (!node) {
    throw new WeftError('WEFT_USAGE', `the lab has no node ${JSON.stringify(req.node)} (nodes: ${plan.nodes.map((n) => n.name).join(', ')}); pass one of them with --node`);
  }
  const uid = `${req.namespace}/${req.name}`;
  const registry = RegistryStore.connect(labRedisTarget(plan));
  try {
    if (!(await registry.get('namespace', req.namespace))) {
      const known = (await registry.list('namespace')).map((n) => n.name).sort();
      throw new WeftError('WEFT_REGISTRY_NOT_FOUND',
        `namespace "${req.namespace}" is not in the registry (namespaces: ${known.join(', ') || 'none'}); a waypoint serves an existing namespace`,
        { details: { kind: 'namespace', key: req.namespace } });
    }
    const taken = (await registry.get('waypoint', uid)) ? 'a waypoint' : (await registry.get('workload', uid)) ? 'a pod' : undefined;
    if (taken) {
      throw new WeftError('WEFT_WAYPOINT_EXISTS',
        `${taken} named ${uid} already exists; pick another name, or remove it first (weft waypoint remove ${uid})`,
        { details: { waypoint: uid } });
    }
  } finally {
    await registry.close();
  }
  const waypoints = rt.store.current.waypoints ?? [];
  const host = freePodHost(plan, node.name, waypoints);
  if (host === undefined) throw new WeftError('WEFT_LAB_CONFLICT', `node ${node.name}'s pod CIDR ${node.podCidr} is full; add the waypoint on another node`);
  const w = planWaypoint(node, { name: req.name, namespace: req.namespace, serviceAccount: req.serviceAccount ?? req.name }, host);
  try {
    return await createWaypointPod(rt, w);
  } catch (err) {
    await removeWaypointPod(rt, w).catch(() => { /* it stays recorded; lab down removes it */ });
    throw err;
  }
}

/** Removes a waypoint pod and its records from the running lab. */
export async function removeWaypoint(labDir: string, namespace: string, name: string): Promise<PlannedWaypoint> {
  const rt = runtime(labDir);
  const w = find(rt, namespace, name);
  await removeWaypointPod(rt, w);
  return w;
}

function recordedProcess(rt: LabRuntime, w: PlannedWaypoint): ProcessResource | undefined {
  return rt.store.current.resources.find((r): r is ProcessResource => r.type === 'process' && r.name === waypointProcessName(w));
}

/**
 * Stops the waypoint's process (SIGTERM: a rolling update; SIGKILL: a crash) and
 * returns once its pod is Unhealthy (the node's failing readiness probe marks it, as the
 * kubelet's would). Returns the PID stopped (undefined: it was not running).
 */
export async function stopWaypoint(labDir: string, namespace: string, name: string, signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<number | undefined> {
  const rt = runtime(labDir);
  const w = find(rt, namespace, name);
  const proc = recordedProcess(rt, w);
  const pid = proc && isAlive(proc) ? proc.pid : undefined;
  if (proc) {
    const stuck = await stopProcesses([proc], { signal, firstToProcessOnly: true });
    if (stuck.length > 0) {
      throw new WeftError('WEFT_COMMAND_FAILED', `waypoint ${w.uid} (pid ${proc.pid}) is still running after SIGKILL; see /proc/${proc.pid}/status`);
    }
  }
  await awaitWaypointStatus(rt, w, 'Unhealthy');
  return pid;
}

/** Starts the waypoint's process again (same argv, same token file) and waits until it is ready. */
export async function startWaypoint(labDir: string, namespace: string, name: string): Promise<number> {
  const rt = runtime(labDir);
  const w = find(rt, namespace, name);
  const old = recordedProcess(rt, w);
  if (!old) throw new WeftError('WEFT_USAGE', `waypoint ${w.uid} has no recorded process (weft waypoint run was not built when it was added); remove and add it again`);
  if (isAlive(old)) throw new WeftError('WEFT_USAGE', `waypoint ${w.uid} still runs (pid ${old.pid}); stop it first`);
  const proc = restartRecorded(rt.store, old, process.env);
  await awaitWaypointReady(rt, w, proc);
  return proc.pid!;
}
