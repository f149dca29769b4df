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

/** Issue 13's follower goal: RSS ≤ 150 "MB" at 100k workloads, in the unit its baselines were printed in (MiB). */
export const FOLLOWER_RSS_GOAL = 150 * 1024 * 1024;

export interface PopulationSize { workloads: number; services: number; namespaces: number; nodes: number }

/** A registry of `workloads` pods at issue 13's proportions: 10 pods per service and per node, 100 per namespace. */
export function sizeFor(workloads: number): PopulationSize {
  return { workloads, services: Math.max(1, Math.round(workloads / 10)), namespaces: Math.max(1, Math.round(workloads / 100)), nodes: Math.max(1, Math.round(workloads / 100)) };
}

/** Workload `i` of the population; `version` varies the record so rewriting it is a change. */
export function benchWorkload(i: number, a: PopulationSize, version = 'v1'): WorkloadRecord {
  return workloadRecord({
    namespace: `ns${i % a.namespaces}`, name: `pod-${i}`, node: `node-${i % a.nodes}`,
    addresses: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`], serviceAccount: `sa-${i % 50}`,
    labels: { app: `app-${i % a.services}`, version }, ports: [8080],
  });
}

/** Every record of the population as a put, nodes first, then namespaces, workloads and services. */
export function* populationRecords(a: PopulationSize): Generator<ChangeInput> {
  for (let n = 0; n < a.nodes; n++) {
    yield { op: 'put', kind: 'node', record: nodeRecord(`node-${n}`, `10.250.${(n >> 8) & 255}.${n & 255}`) };
  }
  for (let n = 0; n < a.namespaces; n++) {
    yield { op: 'put', kind: 'namespace', record: n % 2 ? ambientNamespace(`ns${n}`) : namespaceRecord(`ns${n}`) };
  }
  for (let i = 0; i < a.workloads; i++) yield { op: 'put', kind: 'workload', record: benchWorkload(i, a) };
  for (let s = 0; s < a.services; s++) {
    yield { op: 'put', kind: 'service', record: serviceRecord({
      namespace: `ns${s % a.namespaces}`, name: `app-${s}`, vips: [`10.96.${(s >> 8) & 255}.${s & 255}`], selector: { app: `app-${s}` },
    }) };
  }
}

/** Writes the population in batches of up to 500 changes (one revision each, one kind each); returns the ms taken. */
export async function populate(store: RegistryStore, a: PopulationSize): Promise<number> {
  const t0 = performance.now();
  const batch: ChangeInput[] = [];
  const flush = async () => { if (batch.length) await store.apply(batch.splice(0)); };
  for (const change of populationRecords(a)) {
    if (batch.length === 500 || (batch.length > 0 && batch[0]!.kind !== change.kind)) await flush();
    batch.push(change);
  }
  await flush();
  return performance.now() - t0;
}
