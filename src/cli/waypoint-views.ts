/**
 * Asks every ready waypoint pod for one of its read-only resilience views (served on its
 * metrics port beside /metrics: /outliers, /admission, ...), for the `weft` commands that
 * show them. Each waypoint pod decides on its own, so each pod's answer is kept apart; a
 * pod that does not answer (or answers in another shape) is a warning, not a failure of
 * the others.
 */
import { adminGet } from './admin-client';
import type { MeshState } from '../registry/state';
import { METRICS_PORT } from '../mesh/ports';
import { listWaypoints } from './commands/waypoints';

export interface WaypointPodRef {
  /** `namespace/name` of the waypoint. */
  waypoint: string;
  pod: string;
  address: string;
}

/** The waypoint pods to ask: ready ones with an address, of waypoints in `namespace` (all when empty). */
export function readyWaypointPods(state: MeshState, namespace: string): WaypointPodRef[] {
  return listWaypoints(state, namespace ? { namespace } : {}).flatMap((w) => w.pods
    .filter((p) => p.ready && p.addresses.length > 0)
    .map((p) => ({ waypoint: `${w.namespace}/${w.name}`, pod: p.name, address: p.addresses[0]! })));
}

export interface PodAnswers<T> {
  pods: WaypointPodRef[];
  answers: { pod: WaypointPodRef; items: T[] }[];
  warnings: string[];
}

/** GET `path` from every ready pod; `check` says what is wrong with an answer (undefined: a T[]). */
export async function askWaypointPods<T>(state: MeshState, namespace: string, path: string, check: (data: unknown) => string | undefined,
  port: number = METRICS_PORT): Promise<PodAnswers<T>> {
  const pods = readyWaypointPods(state, namespace);
  const out: PodAnswers<T> = { pods, answers: [], warnings: [] };
  await Promise.all(pods.map(async (p) => {
    const host = p.address.includes(':') ? `[${p.address}]` : p.address;
    const where = `waypoint ${p.waypoint} pod ${p.pod} (${p.address}:${port})`;
    let data: unknown;
    try {
      data = await adminGet<unknown>({ name: `${p.waypoint} (pod ${p.pod})`, admin: { baseUrl: `http://${host}:${port}` } }, path);
    } catch (err) {
      out.warnings.push(`${where}: not answering (${(err as Error).message})`);
      return;
    }
    const problem = check(data);
    if (problem) out.warnings.push(`${where}: answered ${path} in another shape (${problem}); is that pod running another Weft version?`);
    else out.answers.push({ pod: p, items: data as T[] });
  }));
  return out;
}
