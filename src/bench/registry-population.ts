/**
 * A synthetic registry for the registry benches (registry.ts, scale.ts): nodes,
 * namespaces (every other one enrolled), workloads spread round-robin over them, and
 * services selecting the workloads by an `app` label. Names are stable, so a bench can
 * rewrite workload `i` as a change.
 */
import { performance } from 'node:perf_hooks';
import { ambientNamespace, namespaceRecord, nodeRecord, serviceRecord, workloadRecord } from '../registry/fixtures';
import type { ChangeInput, RegistryStore } from '../registry/store';
import type { WorkloadRecord } from '../registry/types';

export interface PopulationSize { workloads: number; services: number; namespaces: number; nodes: number }

/** Workload `i` of the population; `version` varies the record so rewriting it is a change. */
export function benchWorkload(i: number, a: PopulationSize, version = 'v1'): WorkloadRecord {
  return workloadRecord({
    namespace: `ns${i % a.namespaces}`, name: `pod-${i}`, node: `node-${i % a.nodes}`,
    addresses: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`], serviceAccount: `sa-${i % 50}`,
    labels: { app: `app-${i % a.services}`, version }, ports: [8080],
  });
}

/** Writes the population in batches of 500 changes (one revision each); returns the ms taken. */
export async function populate(store: RegistryStore, a: PopulationSize): Promise<number> {
  const t0 = performance.now();
  const batch: ChangeInput[] = [];
  const flush = async () => { if (batch.length) await store.apply(batch.splice(0)); };
  for (let n = 0; n < a.nodes; n++) {
    batch.push({ op: 'put', kind: 'node', record: nodeRecord(`node-${n}`, `10.250.${(n >> 8) & 255}.${n & 255}`) });
    if (batch.length === 500) await flush();
  }
  for (let n = 0; n < a.namespaces; n++) {
    batch.push({ op: 'put', kind: 'namespace', record: n % 2 ? ambientNamespace(`ns${n}`) : namespaceRecord(`ns${n}`) });
  }
  await flush();
  for (let i = 0; i < a.workloads; i++) {
    batch.push({ op: 'put', kind: 'workload', record: benchWorkload(i, a) });
    if (batch.length === 500) await flush();
  }
  for (let s = 0; s < a.services; s++) {
    batch.push({ op: 'put', kind: 'service', record: serviceRecord({
      namespace: `ns${s % a.namespaces}`, name: `app-${s}`, vips: [`10.96.${(s >> 8) & 255}.${s & 255}`], selector: { app: `app-${s}` },
    }) });
    if (batch.length === 500) await flush();
  }
  await flush();
  return performance.now() - t0;
}
