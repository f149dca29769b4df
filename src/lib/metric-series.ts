/**
 * Which metric label sets name which workload. prom-client removes a series only by
 * its exact label set, and the Istio metrics carry both ends' workload names, so
 * without this index every pod that ever talked would keep its series (and the
 * proxy's memory and every scrape would grow with pod churn). The ztunnel's TCP
 * metrics and the waypoint's request metrics note each label set they use and take
 * them back out when a workload leaves the registry.
 */

/** Istio's labels naming a series' two ends and the service: the TCP and the request metrics both start with them. */
export const PEER_LABEL_NAMES = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'source_principal',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_service',
] as const;

/** The Istio TCP metrics' labels (the ztunnel's metrics.ts), in a fixed order. */
export const LABEL_NAMES = [...PEER_LABEL_NAMES, 'request_protocol', 'response_flags', 'connection_security_policy'] as const;

export type LabelName = (typeof LABEL_NAMES)[number];
export type MetricLabels = Record<LabelName, string>;

const UNKNOWN = 'unknown';

/** `namespace/name`, the identity of a workload in metric labels. */
export function workloadKey(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

/** The labels naming a series' two ends. */
export type EndLabels = Record<'source_workload' | 'source_workload_namespace' | 'destination_workload' | 'destination_workload_namespace', string>;

export class WorkloadSeries<L extends EndLabels = MetricLabels> {
  /** workload key → series key → labels. */
  private readonly byWorkload = new Map<string, Map<string, L>>();

  /** Records that `labels` names a series (idempotent). */
  note(labels: L): void {
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
  take(workload: string): L[] {
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

function ends(labels: EndLabels): string[] {
  const out: string[] = [];
  if (labels.source_workload !== UNKNOWN) out.push(workloadKey(labels.source_workload_namespace, labels.source_workload));
  if (labels.destination_workload !== UNKNOWN) out.push(workloadKey(labels.destination_workload_namespace, labels.destination_workload));
  return out;
}

/**
 * The key of a label set: its values in key order, each ended by a NUL (every label set
 * of one metric family has the same keys, in the same order). Also the waypoint's per
 * request key (waypoint/request-series.ts): a loop, no array of values.
 */
export function seriesKey(labels: Record<string, string>): string {
  let k = '';
  for (const name in labels) k += `${labels[name]}\u0000`;
  return k;
}
