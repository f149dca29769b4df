/**
 * `weft waypoints`: every waypoint the registry knows, where its pods run, whether one
 * is ready, and what is bound to it. "Used by" is what `weft waypoint remove` refuses
 * on: a namespace whose weft.io/use-waypoint label names the waypoint, and Services
 * whose own label does (a Service label wins over its namespace's, `none` opts out).
 */
import { formatIdentity } from '../../lib/identity';
import type { MeshState } from '../../registry/state';
import { USE_WAYPOINT_NONE } from '../../registry/enrolment';
import { USE_WAYPOINT_LABEL } from '../../registry/types';
import { defineCommand, noPositionals } from '../io';
import type { Frame } from '../output';
import { byKey, namespaceOption, registryViewOptions, runRegistryView, scopeText } from '../registry-command';

export interface WaypointPodItem {
  name: string;
  node: string;
  addresses: string[];
  ready: boolean;
}

export interface WaypointItem {
  namespace: string;
  name: string;
  serviceAccount: string;
  for: string;
  identity: string;
  pods: WaypointPodItem[];
  /** Pods ready (status Healthy). */
  readyPods: number;
  /** `namespace <ns>` and `service <ns>/<name>` that send their traffic through it. */
  usedBy: string[];
}

/**
 * Who binds waypoint `namespace/name`: the namespace (by its label) and each Service
 * of the namespace that names it itself. A Service bound only through its namespace's
 * label is covered by the namespace entry.
 */
export function waypointUsers(state: MeshState, namespace: string, name: string): string[] {
  const users: string[] = [];
  if (state.get('namespace', namespace)?.labels[USE_WAYPOINT_LABEL] === name) users.push(`namespace ${namespace}`);
  for (const s of state.list('service').filter((x) => x.namespace === namespace && x.waypoint === name).sort(byKey((x) => x.name))) {
    users.push(`service ${s.namespace}/${s.name}`);
  }
  return users;
}

export function listWaypoints(state: MeshState, f: { namespace?: string } = {}): WaypointItem[] {
  return state.list('waypoint')
    .filter((w) => !f.namespace || w.namespace === f.namespace)
    .map((w) => {
      const pods = state.waypointPods(w).map((p) => ({
        name: p.record.name, node: p.record.node, addresses: [...p.record.addresses], ready: p.record.status === 'Healthy',
      })).sort(byKey((p) => p.name));
      return {
        namespace: w.namespace, name: w.name, serviceAccount: w.serviceAccount, for: w.for,
        identity: formatIdentity({ trustDomain: state.trustDomain, namespace: w.namespace, serviceAccount: w.serviceAccount }),
        pods, readyPods: pods.filter((p) => p.ready).length, usedBy: waypointUsers(state, w.namespace, w.name),
      };
    })
    .sort(byKey((w) => `${w.namespace}\u0000${w.name}`));
}

/** A bound name with no such waypoint: its traffic is refused (fail closed); say so. */
export function danglingBindings(state: MeshState, f: { namespace?: string } = {}): string[] {
  const out: string[] = [];
  const exists = (ns: string, name: string) => state.waypoint(ns, name) !== undefined;
  for (const n of state.list('namespace')) {
    const v = n.labels[USE_WAYPOINT_LABEL];
    if (v && v !== USE_WAYPOINT_NONE && (!f.namespace || n.name === f.namespace) && !exists(n.name, v)) {
      out.push(`namespace ${n.name} uses waypoint ${v}, which does not exist: its services' traffic is refused until it does`);
    }
  }
  for (const s of state.list('service')) {
    if (s.waypoint && s.waypoint !== USE_WAYPOINT_NONE && (!f.namespace || s.namespace === f.namespace) && !exists(s.namespace, s.waypoint)) {
      out.push(`service ${s.namespace}/${s.name} uses waypoint ${s.waypoint}, which does not exist: its traffic is refused until it does`);
    }
  }
  return out.sort();
}

export function waypointsFrame(state: MeshState, f: { namespace?: string } = {}): Frame {
  const items = listWaypoints(state, f);
  return {
    table: {
      headers: ['NAMESPACE', 'NAME', 'NODE/POD', 'ADDRESS', 'IDENTITY', 'READY', 'USED BY'],
      rows: items.map((w) => [
        w.namespace, w.name,
        w.pods.map((p) => `${p.node}/${p.name}`).join(',') || '-',
        w.pods.flatMap((p) => p.addresses.slice(0, 1)).join(',') || '-',
        w.identity,
        `${w.readyPods}/${w.pods.length}`,
        w.usedBy.join(', ') || '-',
      ]),
    },
    data: { revision: state.revision, items },
    warnings: danglingBindings(state, f),
    empty: `No waypoints${scopeText(f)}; add one with weft waypoint add <namespace>/<name> --node <node>.`,
  };
}

const USAGE = 'weft waypoints [-n NAMESPACE] [-o table|json|yaml] [-w]';

export default defineCommand({
  usage: USAGE,
  summary: 'list waypoints: node and pod, address, identity, ready pods, what uses them',
  description: 'READY counts the waypoint\'s pods whose readiness endpoint answers (status Healthy); with 0 ready, every\n'
    + 'Service bound to it is refused by the source ztunnels (fail closed), never sent around it.',
  specs: { ...registryViewOptions, namespace: namespaceOption },
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    return runRegistryView(values, io, 'weft waypoints', (state) => waypointsFrame(state, { namespace: values.namespace }));
  },
});
