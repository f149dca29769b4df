/**
 * Which metric label sets name which workload. prom-client removes a series only by
 * its exact label set, and the Istio TCP metrics carry both ends' workload names, so
 * without this index every pod that ever talked would keep its series (and the
 * ztunnel's memory and every scrape would grow with pod churn). ZtunnelMetrics notes
 * each label set it uses and takes them back out when a workload leaves the registry.
 */

/** The Istio TCP metrics' labels (metrics.ts), in a fixed order. */
export const LABEL_NAMES = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_service',
  'request_protocol',
  'response_flags',
  'connection_security_policy',
] as const;

export type LabelName = (typeof LABEL_NAMES)[number];
export type MetricLabels = Record<LabelName, string>;

const UNKNOWN = 'unknown';

/** `namespace/name`, the identity of a workload in metric labels. */
export function workloadKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export class WorkloadSeries {
  /** workload key → series key → labels. */
  private readonly byWorkload = new Map<string, Map<string, MetricLabels>>();

  /** Records that `labels` names a series (idempotent). */
  note(labels: MetricLabels): void {
    const key = seriesKey(labels);
    for (const w of ends(labels)) {
      let m = this.byWorkload.get(w);
      if (!m) {
        m = new Map();
        this.byWorkload.set(w, m);
      }
      if (!m.has(key)) m.set(key, labels);
    }
  }

  /** Workloads that name at least one series. */
  workloads(): string[] {
    return [...this.byWorkload.keys()];
  }

  /** Removes and returns every label set naming `workload` on either end. */
  take(workload: string): MetricLabels[] {
    const m = this.byWorkload.get(workload);
    if (!m) return [];
    this.byWorkload.delete(workload);
    for (const [key, labels] of m) {
      // The series also sits under the other end's workload.
      for (const other of ends(labels)) {
        if (other === workload) continue;
        const om = this.byWorkload.get(other);
        om?.delete(key);
        if (om?.size === 0) this.byWorkload.delete(other);
      }
    }
    return [...m.values()];
  }
}

function ends(labels: MetricLabels): string[] {
  const out: string[] = [];
  if (labels.source_workload !== UNKNOWN) out.push(workloadKey(labels.source_workload_namespace, labels.source_workload));
  if (labels.destination_workload !== UNKNOWN) out.push(workloadKey(labels.destination_workload_namespace, labels.destination_workload));
  return out;
}

/** The label values in LABEL_NAMES order: every label set has exactly those keys. */
function seriesKey(labels: MetricLabels): string {
  let key = labels[LABEL_NAMES[0]];
  for (let i = 1; i < LABEL_NAMES.length; i++) key += `\u0000${labels[LABEL_NAMES[i]!]}`;
  return key;
}
