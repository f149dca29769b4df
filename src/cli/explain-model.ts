/**
 * `weft explain`'s reasoning, kept pure: given a MeshState, a source pod and a
 * destination, answer what the mesh would do with a new connection, and why, using
 * the very functions the ztunnels run — routeOutbound (outbound-route.ts) for the
 * path, MeshState.policiesFor/peerAuthModeFor plus authorize (authorization.ts) for
 * the destination's decision. Nothing here re-implements a rule of the data path,
 * so the explanation cannot drift from what the proxies do.
 */
import { isIP } from 'node:net';
import { WeftError } from '../lib/errors';
import type { MeshState, WorkloadView } from '../registry/state';
import {
  DATAPLANE_MODE_AMBIENT, DATAPLANE_MODE_LABEL, DATAPLANE_MODE_NONE, type PeerAuthenticationMode, type ServiceRecord,
} from '../registry/types';
import { formatHostPort, type HostPort } from '../lib/address';
import { defaultHboneDialTarget } from '../ztunnel/contracts';
import { INBOUND_PLAINTEXT_PORT, OUTBOUND_PORT } from '../mesh/ports';
import { HBONE_PORT } from '../hbone/contracts';
import { RoundRobin, type EndpointPicker } from '../mesh/load-balancer';
import { fixedSelfAddresses, loopGuard } from '../ztunnel/loop-guard';
import { routeOutbound, type OutboundDecision } from '../ztunnel/outbound-route';
import { usableEndpoint } from '../mesh/service-endpoint';
import { authorizationAt } from './explain-authz';
import type { L7Explanation } from './explain-l7';
import { explainWaypoint, type WaypointExplanation, type WaypointL7Explainer } from './explain-waypoint';

// ---- parsing what the operator typed ----

export type DestinationRef =
  | { kind: 'address'; ip: string; port: number }
  | { kind: 'pod'; namespace: string; name: string; port: number }
  /** `name` alone (resolved in the source's namespace, as DNS search paths do), `name.ns`, or a full hostname. */
  | { kind: 'host'; host: string; port: number };

export function parseDestination(text: string): DestinationRef {
  const bad = (why: string, details?: { missing: 'port' }) => new WeftError('WEFT_USAGE',
    `destination "${text}" ${why}; expected host:port, ip:port, <service>.<namespace>[.svc.cluster.local]:port or <namespace>/<pod>:port`,
    details ? { details } : {});
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    // Brackets are only for an IPv6 address, as in a URL: [fd00::1] or [fd00::1]:8080.
    const end = text.indexOf(']');
    if (end === -1) throw bad('has an unclosed [; write an IPv6 address as [fd00::1]:<port>');
    host = text.slice(1, end);
    if (isIP(host) !== 6) throw bad(`has "${host}" in brackets, which is not an IPv6 address; brackets only hold one, as in [fd00::1]:<port>`);
    if (end === text.length - 1) throw bad(`has no port; write [${host}]:<port>`, { missing: 'port' });
    if (text[end + 1] !== ':') throw bad(`has "${text.slice(end + 1)}" after the ]; write [${host}]:<port>`);
    portText = text.slice(end + 2);
  } else if (isIP(text) === 6) {
    // A bare IPv6 address has no port: its last group is part of the address, so
    // fd00::1:8080 is the address fd00::1:8080, not fd00::1 port 8080.
    throw bad(`is an IPv6 address without a port; write [${text}]:<port>`, { missing: 'port' });
  } else {
    const colon = text.lastIndexOf(':');
    if (colon <= 0) throw bad('has no port', { missing: 'port' });
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) throw bad(`looks like an IPv6 address with a port but "${host}" is not one; write an IPv6 address in brackets: [fd00::1]:<port>`);
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) throw bad(`has an invalid port "${portText}"`);
  const port = Number(portText);
  if (isIP(host)) return { kind: 'address', ip: host, port };
  const slash = host.indexOf('/');
  if (slash !== -1) {
    const namespace = host.slice(0, slash);
    const name = host.slice(slash + 1);
    if (!namespace || !name || name.includes('/')) throw bad('is not <namespace>/<pod>');
    return { kind: 'pod', namespace, name, port };
  }
  if (!/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(host)) throw bad(`has an invalid host "${host}"`);
  return { kind: 'host', host: host.toLowerCase(), port };
}

export function parseSource(text: string): { namespace: string; name: string } | { ip: string } {
  if (isIP(text)) return { ip: text };
  const m = /^([^/\s]+)\/([^/\s]+)$/.exec(text);
  if (!m) throw new WeftError('WEFT_USAGE', `source "${text}" is not <namespace>/<pod> (or a client IP)`);
  return { namespace: m[1]!, name: m[2]! };
}

// ---- the explanation ----

export interface WorkloadRef {
  namespace: string;
  name: string;
  node: string;
  address?: string;
  identity: string;
  enrolled: boolean;
  status: string;
  waypoint?: string;
}

export interface SourceExplanation {
  /** Absent for a client IP that is no workload. */
  workload?: WorkloadRef;
  ip: string;
  enrolled: boolean;
  /** Why it is (not) in the mesh: namespace label, pod opt-out. */
  enrolmentReason: string;
}

export interface EndpointExplanation extends WorkloadRef {
  /** Healthy and has an address: the load balancer may pick it. */
  usable: boolean;
  /** Why the load balancer skips it (only when not usable). */
  skipped?: string;
}

export interface DestinationExplanation {
  /** What the operator typed. */
  input: string;
  kind: 'service' | 'workload' | 'unknown';
  /** What the client dials: a service VIP:port or an address. */
  dialled: string;
  /** How a name was resolved, when it was one. */
  resolution?: string;
  service?: { namespace: string; name: string; hostname: string; vip: string; port: number; targetPort?: number; waypoint?: string };
  endpoints?: EndpointExplanation[];
  workload?: WorkloadRef;
}

export interface PolicyVerdict {
  policy: string;
  action: string;
  matched: boolean;
  rule?: number;
}

export interface AuthorizationExplanation {
  /** Which proxy decides and on which listener. */
  enforcedBy: string;
  peerIdentity?: string;
  peerAuthentication: PeerAuthenticationMode;
  policies: PolicyVerdict[];
  allowed: boolean;
  decidingPolicy?: string;
  reason: string;
}

export type Outcome = 'allowed' | 'denied' | 'refused';

export interface PathExplanation {
  /** `waypoint`: the waypoint's upstream hop to this endpoint (the hop to the waypoint is Explanation.waypoint). */
  kind: 'hbone' | 'passthrough' | 'refuse' | 'waypoint' | 'answer';
  /** The endpoint this path goes to (for a service with several, one path each). */
  endpoint?: string;
  /** `ip:port` the bytes finally reach. */
  target?: string;
  /** Where the source's connection goes first. */
  route: string;
  /** HBONE: the CONNECT :authority and the tunnel's peer. */
  authority?: string;
  hboneAddress?: string;
  identities?: { source: string; destination: string };
  /** Plain TCP: not encrypted by the mesh. */
  plaintext: boolean;
  reason?: string;
  refusal?: { flag: string; reason: string };
  authorization?: AuthorizationExplanation;
  /** Set when no Weft policy can apply (destination outside the mesh). */
  noPolicy?: string;
  waypointNote?: string;
  outcome: Outcome;
}

export interface Explanation {
  source: SourceExplanation;
  destination: DestinationExplanation;
  /** The waypoint the source ztunnel sends the connection to, when the service is bound to one and it is ready. */
  waypoint?: WaypointExplanation;
  /** The L7 step (routes) for the request described, when the command evaluated one (explain-l7.ts). */
  l7?: L7Explanation;
  paths: PathExplanation[];
  /** allowed; denied/refused when every path is; partly-denied when paths disagree. */
  verdict: Outcome | 'partly-denied';
  registryRevision: number;
}

export function workloadRef(w: WorkloadView): WorkloadRef {
  const r = w.record;
  const ref: WorkloadRef = {
    namespace: r.namespace, name: r.name, node: r.node, identity: w.identity, enrolled: w.enrolled, status: r.status,
  };
  if (r.addresses[0]) ref.address = r.addresses[0];
  if (w.waypoint) ref.waypoint = w.waypoint;
  return ref;
}

const wlName = (w: { namespace: string; name: string }) => `${w.namespace}/${w.name}`;

/** Why a workload is or is not in the mesh, from the same labels enrolment.ts reads. */
export function enrolmentReason(state: MeshState, w: WorkloadView): string {
  const ns = w.record.namespace;
  const nsRecord = state.get('namespace', ns);
  if (!nsRecord) return `namespace ${ns} has no registry record, so none of its pods is enrolled`;
  const nsMode = nsRecord.labels[DATAPLANE_MODE_LABEL];
  if (nsMode !== DATAPLANE_MODE_AMBIENT) {
    return `namespace ${ns} is not enrolled (${nsMode === undefined ? `no ${DATAPLANE_MODE_LABEL} label` : `${DATAPLANE_MODE_LABEL}=${nsMode}`}); `
      + `weft namespace enroll ${ns} would put it in the mesh`;
  }
  if (w.record.labels[DATAPLANE_MODE_LABEL] === DATAPLANE_MODE_NONE) {
    return `the pod opts out with ${DATAPLANE_MODE_LABEL}=${DATAPLANE_MODE_NONE} (its namespace ${ns} is enrolled)`;
  }
  return `namespace ${ns} has ${DATAPLANE_MODE_LABEL}=${DATAPLANE_MODE_AMBIENT}`;
}

function findWorkload(state: MeshState, namespace: string, name: string, role: string): WorkloadView {
  const found = state.workloads().find((w) => w.record.namespace === namespace && w.record.name === name);
  if (found) return found;
  const inNs = state.workloads().filter((w) => w.record.namespace === namespace).map((w) => w.record.name).sort();
  throw new WeftError('WEFT_REGISTRY_NOT_FOUND',
    `${role} pod ${namespace}/${name} is not in the registry`
    + (inNs.length > 0 ? ` (pods in ${namespace}: ${inNs.slice(0, 10).join(', ')}${inNs.length > 10 ? ', ...' : ''})` : ` (namespace ${namespace} has no pods)`)
    + `; list pods with weft workloads -n ${namespace}`,
    { details: { kind: 'workload', namespace, name } });
}

function resolveService(state: MeshState, host: string, sourceNs: string | undefined): { service: ServiceRecord; resolution: string } | undefined {
  const exact = state.serviceByHostname(host);
  if (exact) return { service: exact, resolution: `${host} is the hostname of service ${exact.namespace}/${exact.name}` };
  const labels = host.split('.');
  if (labels.length === 1) {
    if (!sourceNs) return undefined;
    const s = state.get('service', `${sourceNs}/${host}`);
    return s ? { service: s, resolution: `${host} resolves in the source's namespace to service ${sourceNs}/${host}` } : undefined;
  }
  // name.ns and name.ns.svc[.<cluster domain>], as cluster DNS answers them.
  if (labels.length === 2 || labels[2] === 'svc') {
    const s = state.get('service', `${labels[1]}/${labels[0]}`);
    return s ? { service: s, resolution: `${host} is service ${labels[1]}/${labels[0]}` } : undefined;
  }
  return undefined;
}

/** Why usableEndpoint refused a workload, in the operator's words. */
function skipReason(w: WorkloadView): string {
  if (w.record.status !== 'Healthy') {
    return `status ${w.record.status}: its readiness probe fails (the kubelet, or the lab's prober, marked it), so the load balancer skips it until the probe passes again`;
  }
  return 'no address in the registry yet (not started?), so there is nothing to dial';
}

/**
 * The destinations a port-less one stands for: every port of the service it names (a
 * user asking about "echo.demo" means all of it), or the ports a pod declares. A
 * destination with a port, or a URL, is itself. Refuses, saying what to add, when no
 * port can be found.
 */
export function expandDestination(state: MeshState, sourceText: string, destinationText: string): string[] {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(destinationText)) return [destinationText];
  try {
    parseDestination(destinationText);
    return [destinationText];
  } catch (err) {
    if (!(err instanceof WeftError) || err.details?.missing !== 'port') throw err;
  }
  // [fd00::1] stands for the bare address, as fd00::1 does.
  const host = /^\[[^\]]*\]$/.test(destinationText) ? destinationText.slice(1, -1) : destinationText;
  const pod = /^([^/]+)\/([^/]+)$/.exec(host);
  if (pod) {
    const w = findWorkload(state, pod[1]!, pod[2]!, 'destination');
    const ports = w.record.ports ?? [];
    if (ports.length === 0) {
      throw new WeftError('WEFT_USAGE', `destination pod ${host} declares no ports in the registry; add the port you mean: ${host}:<port>`);
    }
    return ports.map((p) => `${host}:${p}`);
  }
  if (isIP(host)) throw new WeftError('WEFT_USAGE', `destination ${destinationText} is an address without a port; add the port you mean: ${isIP(host) === 6 ? `[${host}]` : host}:<port>`);
  const srcRef = parseSource(sourceText);
  const sourceNs = 'ip' in srcRef ? state.workloadByAddress(srcRef.ip)?.record.namespace : srcRef.namespace;
  const found = resolveService(state, host.toLowerCase(), sourceNs);
  if (!found) {
    throw new WeftError('WEFT_REGISTRY_NOT_FOUND',
      `no service answers to "${host}" in the registry; list services with weft services (names are <service>.<namespace>), or give a port (host:port)`,
      { details: { kind: 'service', host } });
  }
  return found.service.ports.map((p) => `${host}:${p.port}`);
}

/** An EndpointPicker that always takes one given workload: explain walks every endpoint. */
class FixedPicker implements EndpointPicker {
  constructor(private readonly uid: string) {}
  pick(_s: ServiceRecord, candidates: readonly WorkloadView[]): WorkloadView {
    return candidates.find((c) => c.record.uid === this.uid) ?? candidates[0]!;
  }

  /** The first ready waypoint pod by uid: any would do, the answer must be stable. */
  pickWaypoint(_w: unknown, candidates: readonly WorkloadView[]): WorkloadView {
    return [...candidates].sort((a, b) => (a.record.uid < b.record.uid ? -1 : 1))[0]!;
  }
}

export interface ExplainOptions {
  /** Explains the waypoint's L7 choice (route, rule, backend); without it that step is marked as not evaluated. */
  l7?: WaypointL7Explainer;
}

export function explain(state: MeshState, sourceText: string, destinationText: string, opts: ExplainOptions = {}): Explanation {
  const srcRef = parseSource(sourceText);
  const dstRef = parseDestination(destinationText);

  // 1. the source
  let source: SourceExplanation;
  let sourceView: WorkloadView | undefined;
  if ('ip' in srcRef) {
    sourceView = state.workloadByAddress(srcRef.ip);
    source = sourceView
      ? { workload: workloadRef(sourceView), ip: srcRef.ip, enrolled: sourceView.enrolled, enrolmentReason: enrolmentReason(state, sourceView) }
      : { ip: srcRef.ip, enrolled: false, enrolmentReason: `${srcRef.ip} is no workload in the registry: a client outside the mesh` };
  } else {
    sourceView = findWorkload(state, srcRef.namespace, srcRef.name, 'source');
    const ip = sourceView.record.addresses[0];
    if (!ip) {
      throw new WeftError('WEFT_REGISTRY_NOT_FOUND',
        `source pod ${srcRef.namespace}/${srcRef.name} has no address in the registry yet (not started?); nothing can leave it`);
    }
    source = { workload: workloadRef(sourceView), ip, enrolled: sourceView.enrolled, enrolmentReason: enrolmentReason(state, sourceView) };
  }

  // 2. the destination, down to what the client would dial
  const destination: DestinationExplanation = { input: destinationText, kind: 'unknown', dialled: '' };
  let dst: HostPort;
  let service: ServiceRecord | undefined;
  if (dstRef.kind === 'address') {
    dst = { ip: dstRef.ip, port: dstRef.port };
  } else if (dstRef.kind === 'pod') {
    const w = findWorkload(state, dstRef.namespace, dstRef.name, 'destination');
    if (!w.record.addresses[0]) throw new WeftError('WEFT_REGISTRY_NOT_FOUND', `destination pod ${wlName(dstRef)} has no address in the registry yet`);
    dst = { ip: w.record.addresses[0], port: dstRef.port };
    destination.resolution = `pod ${wlName(dstRef)} has address ${w.record.addresses[0]}`;
  } else {
    const found = resolveService(state, dstRef.host, source.workload?.namespace);
    if (!found) {
      throw new WeftError('WEFT_REGISTRY_NOT_FOUND',
        `no service answers to "${dstRef.host}" in the registry; list services with weft services (names are <service>.<namespace>)`,
        { details: { kind: 'service', host: dstRef.host } });
    }
    const vip = found.service.vips[0];
    if (!vip) {
      throw new WeftError('WEFT_REGISTRY_NOT_FOUND',
        `service ${found.service.namespace}/${found.service.name} has no VIP (headless): clients dial its pods directly; explain a pod instead (<namespace>/<pod>:port)`);
    }
    dst = { ip: vip, port: dstRef.port };
    destination.resolution = `${found.resolution}, VIP ${vip}`;
  }
  destination.dialled = formatHostPort(dst.ip, dst.port);
  service = state.serviceByVip(dst.ip);
  if (service) {
    destination.kind = 'service';
    const sp = service.ports.find((p) => p.port === dst.port);
    destination.service = { namespace: service.namespace, name: service.name, hostname: service.hostname, vip: dst.ip, port: dst.port };
    if (sp) destination.service.targetPort = sp.targetPort;
    const bound = state.serviceWaypointName(service);
    if (bound !== undefined) destination.service.waypoint = bound;
    destination.endpoints = state.endpoints(service)
      .map((w): EndpointExplanation => {
        const usable = usableEndpoint(w);
        return usable ? { ...workloadRef(w), usable } : { ...workloadRef(w), usable, skipped: skipReason(w) };
      })
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  } else {
    const w = state.workloadByAddress(dst.ip);
    if (w) {
      destination.kind = 'workload';
      destination.workload = workloadRef(w);
    }
  }

  // 3. the path(s), from the proxies' own routing function
  const req = { sourceIp: source.ip, dst };
  // The source node's ztunnel refuses its own node's addresses; the registry knows the
  // node address the ztunnel binds (its other interfaces are only known on the node).
  const nodeAddress = sourceView ? state.node(sourceView.record.node)?.address : undefined;
  const guard = loopGuard(fixedSelfAddresses(nodeAddress ? [nodeAddress] : []));
  const first = routeOutbound(state, req, new RoundRobin(), guard);
  if (first.kind === 'waypoint' && !isEndpointWaypoint(first)) {
    // The source ztunnel picks no endpoint: the waypoint does. One path per endpoint it may reach.
    const hop = explainWaypoint(state, first, source, opts.l7);
    return { source, destination, waypoint: hop.waypoint, paths: hop.paths, verdict: verdictOf(hop.paths), registryRevision: state.revision };
  }
  const usable = service ? state.endpoints(service).filter(usableEndpoint) : [];
  // The same registry, so the same answer about the Service's waypoint: it has none.
  // An endpoint may still be bound to a workload waypoint, which then takes its share.
  const decisions: OutboundDecision[] = usable.length > 1
    ? [...usable].sort((a, b) => (a.record.uid < b.record.uid ? -1 : 1)).map((w) => routeOutbound(state, req, new FixedPicker(w.record.uid), guard))
    : [first];
  let waypoint: WaypointExplanation | undefined;
  const pathsOf = (d: OutboundDecision): PathExplanation[] => {
    if (d.kind !== 'waypoint') return [explainPath(state, d, source, sourceView)];
    const hop = explainWaypoint(state, d, source, opts.l7);
    waypoint ??= hop.waypoint;
    const via = `the service has no waypoint; endpoint ${wlName(d.workload!.record)} is bound to waypoint ${hop.waypoint.waypoint} (for workloads), `
      + `so ${d.source.record.node}'s ztunnel sends this endpoint's share to that waypoint (the waypoint step above), :authority ${hop.waypoint.authority}`;
    return hop.paths.map((p) => ({ ...p, waypointNote: p.waypointNote ? `${via}; ${p.waypointNote}` : via }));
  };
  // A refusal decided before any endpoint is chosen (no such port) is the same for all: show it once.
  const seen = new Set<string>();
  const paths = decisions.flatMap(pathsOf).filter((p) => {
    if (!p.refusal) return true;
    const key = `${p.refusal.flag}\u0000${p.refusal.reason}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });

  return { source, destination, ...(waypoint ? { waypoint } : {}), paths, verdict: verdictOf(paths), registryRevision: state.revision };
}

/** The chosen endpoint's workload waypoint, for a Service without one: one endpoint's share, not the whole Service. */
function isEndpointWaypoint(d: Extract<OutboundDecision, { kind: 'waypoint' }>): boolean {
  return d.workload !== undefined && d.service !== undefined;
}

function verdictOf(paths: PathExplanation[]): Explanation['verdict'] {
  const outcomes = new Set(paths.map((p) => p.outcome));
  if (outcomes.size === 1) return paths[0]!.outcome;
  return outcomes.has('allowed') ? 'partly-denied' : outcomes.has('denied') ? 'denied' : 'refused';
}

/** A decision the source ztunnel carries out itself (not through a waypoint). */
type DirectDecision = Exclude<OutboundDecision, { kind: 'waypoint' }>;

function explainPath(state: MeshState, d: DirectDecision, source: SourceExplanation, sourceView: WorkloadView | undefined): PathExplanation {
  const srcNode = sourceView?.record.node;
  if (d.kind === 'refuse') {
    return {
      kind: 'refuse', plaintext: false, outcome: 'refused', refusal: { flag: d.flag, reason: d.reason },
      route: source.enrolled ? `${srcNode}'s ztunnel takes the connection on ${OUTBOUND_PORT} and closes it` : 'the connection is refused',
    };
  }
  if (d.kind === 'hbone') {
    const dest = d.destination;
    const hbone = defaultHboneDialTarget(dest);
    const authority = formatHostPort(d.target.ip, d.target.port);
    const authorization = authorizationAt(state, dest, d.target, source, d.source.identity, `inbound HBONE (${HBONE_PORT})`);
    const p: PathExplanation = {
      kind: 'hbone', endpoint: wlName(dest.record), target: authority, plaintext: false,
      route: `${d.source.record.node}'s ztunnel captures it on ${OUTBOUND_PORT} and opens mTLS HTTP/2 CONNECT to `
        + `${formatHostPort(hbone.host, hbone.port)} (${dest.record.node}'s ztunnel, reached through the pod IP)`,
      authority, hboneAddress: formatHostPort(hbone.host, hbone.port),
      identities: { source: d.source.identity, destination: d.identity },
      authorization, outcome: authorization.allowed ? 'allowed' : 'denied',
    };
    if (d.waypointNote) p.waypointNote = d.waypointNote;
    return p;
  }
  // Passthrough: plain TCP. An enrolled destination still sees it: its node captures
  // plaintext to mesh pods on 15006 and applies policy without a peer identity.
  const target = formatHostPort(d.ip, d.port);
  const p: PathExplanation = {
    kind: 'passthrough', target, plaintext: true, reason: d.reason, outcome: 'allowed',
    route: source.enrolled
      ? `${srcNode}'s ztunnel captures it on ${OUTBOUND_PORT} and connects to ${target} in plain TCP (no tunnel)`
      : `plain TCP straight to ${target}: the source is not in the mesh, so no ztunnel touches its outbound traffic`,
  };
  if (d.destination) p.endpoint = wlName(d.destination.record);
  if (d.waypointNote) p.waypointNote = d.waypointNote;
  if (d.destination?.enrolled) {
    p.authorization = authorizationAt(state, d.destination, { ip: d.ip, port: d.port }, source, undefined, `inbound plaintext (${INBOUND_PLAINTEXT_PORT})`);
    p.outcome = p.authorization.allowed ? 'allowed' : 'denied';
  } else {
    p.noPolicy = d.destination
      ? `destination ${wlName(d.destination.record)} is not in the mesh: no Weft policy applies to it`
      : 'the destination is outside the mesh: no Weft policy applies';
  }
  return p;
}
