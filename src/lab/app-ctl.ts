/**
 * `weft lab app stop|start <ns>/<pod>`: one pod's app down or up again, as a crash or
 * a restart of its container would, so failover can be shown: the pod's readiness
 * probe then fails, the node's prober marks it Unhealthy and the ztunnels stop
 * choosing it. Only the process the lab recorded for the pod is signalled, by its PID.
 */
import { readFileSync } from 'node:fs';
import { WeftError } from '../lib/errors';
import { READY_TIMEOUT_MS } from './up';
import { isAlive, restartRecorded, stopProcesses, waitUntil } from './procs';
import type { PlannedPod } from './plan';
import { requireState, StateStore, type ProcessResource } from './state';

export interface AppChange {
  /** PID stopped or started (undefined: it was not running). */
  pid?: number;
  probed: boolean;
  periodSeconds?: number;
  failureThreshold?: number;
  successThreshold?: number;
}

function find(labDir: string, uid: string): { store: StateStore; pod: PlannedPod; proc: ProcessResource } {
  const state = requireState(labDir);
  const pod = state.plan.pods.find((p) => p.uid === uid);
  const proc = state.resources.find((r): r is ProcessResource => r.type === 'process' && r.name === `app/${uid}`);
  if (!pod || !proc) {
    const apps = state.plan.pods.filter((p) => p.run !== 'none').map((p) => p.uid);
    throw new WeftError('WEFT_USAGE', `the lab runs no app in pod ${JSON.stringify(uid)} (pods with an app: ${apps.join(', ') || 'none'}); use one of them, or exec into the pod`);
  }
  return { store: StateStore.open(state), pod, proc };
}

function probeInfo(pod: PlannedPod): Omit<AppChange, 'pid'> {
  const p = pod.readinessProbe;
  return p ? { probed: true, periodSeconds: p.periodSeconds, failureThreshold: p.failureThreshold, successThreshold: p.successThreshold } : { probed: false };
}

export async function stopApp(labDir: string, uid: string, signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<AppChange> {
  const { pod, proc } = find(labDir, uid);
  const pid = isAlive(proc) ? proc.pid : undefined;
  const stuck = await stopProcesses([proc], { signal });
  if (stuck.length > 0) throw new WeftError('WEFT_COMMAND_FAILED', `the app of ${uid} (pid ${proc.pid}) is still running after SIGKILL; see /proc/${proc.pid}/status`);
  return { pid, ...probeInfo(pod) };
}

function listeningLines(log: string): number {
  try {
    return readFileSync(log, 'utf8').split('\n').filter((l) => l.includes('"msg":"echo listening"')).length;
  } catch {
    return 0;
  }
}

/**
 * Starts the app with the argv it was recorded with and waits until it says it listens
 * (its log, not a connect from here: for a pod in the mesh the node's ztunnel would
 * accept that connection even with the app down).
 */
export async function startApp(labDir: string, uid: string): Promise<AppChange> {
  const { store, pod, proc } = find(labDir, uid);
  if (isAlive(proc)) throw new WeftError('WEFT_USAGE', `the app of ${uid} still runs (pid ${proc.pid}); stop it first (weft lab app stop ${uid})`);
  const before = listeningLines(proc.log);
  const started = restartRecorded(store, proc, process.env);
  await waitUntil(`app of ${uid}`, async () => listeningLines(proc.log) > before, { timeoutMs: READY_TIMEOUT_MS, process: started });
  return { pid: started.pid, ...probeInfo(pod) };
}
