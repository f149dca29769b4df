/**
 * Follows the registry for the Istio metrics of the ztunnel and the waypoint: when
 * workloads leave it (a delete, or a new snapshot without them), the series naming
 * them are dropped (lib/metric-series.ts says why). A delete carries only the uid (the
 * pod UID on a cluster), so what is left is compared with what the series name.
 */
import { workloadKey } from '../lib/metric-series';
import type { MeshState } from '../registry/state';
import type { Change } from '../registry/types';

/** Calls `forget(namespace, name)` for each workload `named()` lists that `state` no longer has; returns the unsubscribe function. */
export function sweepGoneWorkloads(state: MeshState, named: () => readonly string[], forget: (namespace: string, name: string) => void): () => void {
  const sweep = () => {
    const present = new Set(state.workloads().map((w) => workloadKey(w.record.namespace, w.record.name)));
    for (const key of named()) {
      if (present.has(key)) continue;
      const slash = key.indexOf('/');
      forget(key.slice(0, slash), key.slice(slash + 1));
    }
  };
  const onChange = (changes: Change[]) => {
    if (changes.some((c) => c.kind === 'workload' && c.op === 'delete')) sweep();
  };
  state.on('change', onChange);
  state.on('snapshot', sweep);
  return () => {
    state.off('change', onChange);
    state.off('snapshot', sweep);
  };
}
