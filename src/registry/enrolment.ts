/**
 * Enrolment is derived, never stored: whether a workload is in the mesh follows from
 * its namespace's labels and its own, so that relabelling a namespace enrols or
 * releases every pod in it at once, without a pod restart and without a writer having
 * to touch each workload record.
 */
import { formatIdentity } from '../lib/identity';
import {
  DATAPLANE_MODE_AMBIENT,
  DATAPLANE_MODE_LABEL,
  DATAPLANE_MODE_NONE,
  USE_WAYPOINT_LABEL,
  type Labels,
  type NamespaceRecord,
  type WorkloadRecord,
} from './types';

/** `weft.io/use-waypoint=none` on a pod opts it out of its namespace's waypoint (as in Istio). */
export const USE_WAYPOINT_NONE = 'none';

export type TunnelProtocol = 'HBONE' | 'TCP';

/** A workload as every component sees it: the stored record plus the derived facts. */
export interface WorkloadView {
  /** The stored record, as read from the registry (never mutated). */
  record: WorkloadRecord;
  /** True when the workload is in the mesh (its traffic is captured and tunnelled). */
  enrolled: boolean;
  /** HBONE when enrolled, TCP (plain passthrough) otherwise. */
  protocol: TunnelProtocol;
  /** spiffe://<trust-domain>/ns/<namespace>/sa/<service account>. */
  identity: string;
  /** Name of the waypoint its inbound traffic goes through; only for enrolled workloads. */
  waypoint?: string;
}

/**
 * A pod is enrolled when its namespace opts in with `weft.io/dataplane-mode=ambient`
 * and the pod does not opt out with `weft.io/dataplane-mode=none`. A pod cannot opt in
 * on its own: the namespace is the unit an operator enrols. An unknown namespace
 * (record absent) enrols nothing.
 */
export function isEnrolled(podLabels: Labels, namespaceLabels: Labels | undefined): boolean {
  if (namespaceLabels?.[DATAPLANE_MODE_LABEL] !== DATAPLANE_MODE_AMBIENT) return false;
  return podLabels[DATAPLANE_MODE_LABEL] !== DATAPLANE_MODE_NONE;
}

/**
 * The pod's `weft.io/use-waypoint` label wins over its namespace's; `none` on the pod
 * cancels a namespace waypoint. Returns undefined when there is no waypoint.
 */
export function waypointFor(podLabels: Labels, namespaceLabels: Labels | undefined): string | undefined {
  const own = podLabels[USE_WAYPOINT_LABEL];
  if (own !== undefined && own !== '') return own === USE_WAYPOINT_NONE ? undefined : own;
  const ns = namespaceLabels?.[USE_WAYPOINT_LABEL];
  if (ns === undefined || ns === '' || ns === USE_WAYPOINT_NONE) return undefined;
  return ns;
}

/** Builds the view of one workload; a pure function of its inputs. */
export function deriveWorkloadView(
  record: WorkloadRecord,
  namespace: NamespaceRecord | undefined,
  trustDomain: string,
): WorkloadView {
  const enrolled = isEnrolled(record.labels, namespace?.labels);
  const view: WorkloadView = {
    record,
    enrolled,
    protocol: enrolled ? 'HBONE' : 'TCP',
    identity: formatIdentity({ trustDomain, namespace: record.namespace, serviceAccount: record.serviceAccount }),
  };
  if (enrolled) {
    const waypoint = waypointFor(record.labels, namespace?.labels);
    if (waypoint !== undefined) view.waypoint = waypoint;
  }
  return view;
}

/** True when two views of the same workload differ in anything a consumer acts on. */
export function sameDerivation(a: WorkloadView, b: WorkloadView): boolean {
  return a.enrolled === b.enrolled && a.waypoint === b.waypoint && a.identity === b.identity;
}

/** Every `key=value` of `selector` is in `labels`. An empty selector selects everything. */
export function labelsMatch(selector: Labels, labels: Labels): boolean {
  for (const k of Object.keys(selector)) {
    if (labels[k] !== selector[k]) return false;
  }
  return true;
}
