/**
 * The destination side of a waypoint hop. A waypoint's upstream CONNECT to an endpoint
 * arrives with the waypoint's certificate and `forwarded: for="<original client>"`.
 * L4 policy keeps seeing the WAYPOINT's identity as the principal (reference §11; no
 * implicit allow is added), but the client address may be believed from a waypoint
 * that is bound to this destination — and only from such a waypoint: a waypoint speaks
 * for the sources whose traffic it was given, never for the rest of the mesh.
 *
 * Exactly when (checked per stream, against the registry as it is now):
 *   - the peer identity is spiffe://<our trust domain>/ns/<ns>/sa/<sa>, and a waypoint
 *     record in <ns> runs as <sa>;
 *   - and that waypoint is bound to the destination: the waypoint of a Service (in the
 *     waypoint's namespace) selecting the destination workload, the waypoint serving
 *     services (`for` service or all); or the destination workload's own binding
 *     (pod or namespace label), the waypoint serving workloads (`for` workload or all);
 *   - and the claimed address is a workload in the registry (request.ts checks it).
 * Otherwise the usual rule holds (an address of the peer's own identity) and, failing
 * that, the peer's socket address is the source.
 */
import { parseIdentity } from '../lib/identity';
import type { WorkloadView } from '../registry/enrolment';
import { labelsMatch } from '../registry/enrolment';
import type { MeshState } from '../registry/state';
import { servesServices } from './waypoint-route';

export type WaypointPeerState = Pick<MeshState, 'trustDomain' | 'list' | 'serviceWaypointName'>;

/** `<namespace>/<name>` of the waypoint `peerIdentity` is, bound to `destination`; undefined otherwise. */
export function boundWaypointPeer(state: WaypointPeerState, peerIdentity: string, destination: WorkloadView): string | undefined {
  const id = parseIdentity(peerIdentity);
  if (!id || id.trustDomain !== state.trustDomain) return undefined;
  const mine = state.list('waypoint').filter((w) => w.namespace === id.namespace && w.serviceAccount === id.serviceAccount);
  if (mine.length === 0) return undefined;
  const ref = (name: string) => `${id.namespace}/${name}`;
  const own = destination.waypoint;
  if (own !== undefined && destination.record.namespace === id.namespace) {
    const w = mine.find((x) => x.name === own && (x.for === 'workload' || x.for === 'all'));
    if (w) return ref(w.name);
  }
  for (const s of state.list('service')) {
    // A binding names a waypoint of the Service's own namespace; a Service selects pods of its own namespace.
    if (s.namespace !== id.namespace || s.namespace !== destination.record.namespace) continue;
    if (Object.keys(s.selector).length === 0 || !labelsMatch(s.selector, destination.record.labels)) continue;
    const name = state.serviceWaypointName(s);
    const w = name === undefined ? undefined : mine.find((x) => x.name === name && servesServices(x));
    if (w) return ref(w.name);
  }
  return undefined;
}
