/**
 * `weft workloads`: every pod the registry knows and how the mesh treats it — the
 * columns of `istioctl ztunnel-config workloads`, plus status and identity.
 */
import { labelsMatch } from '../../registry/enrolment';
import type { MeshState, WorkloadView } from '../../registry/state';
import { defineCommand, noPositionals } from '../io';
import type { Frame, Table } from '../output';
import { byKey, namespaceOption, nodeOption, registryViewOptions, runRegistryView, scopeText } from '../registry-command';

export interface WorkloadItem {
  namespace: string;
  name: string;
  uid: string;
  addresses: string[];
  node: string;
  /** HBONE in the mesh, TCP otherwise. */
  protocol: 'HBONE' | 'TCP';
  enrolled: boolean;
  waypoint?: string;
  identity: string;
  serviceAccount: string;
  status: string;
  labels: Record<string, string>;
}

export interface WorkloadFilter {
  namespace?: string;
  node?: string;
  /** Label selector `k=v`; every pair must match. */
  selector?: Record<string, string>;
}

export function workloadItem(w: WorkloadView): WorkloadItem {
  const r = w.record;
  const item: WorkloadItem = {
    namespace: r.namespace, name: r.name, uid: r.uid, addresses: [...r.addresses], node: r.node,
    protocol: w.protocol, enrolled: w.enrolled, identity: w.identity, serviceAccount: r.serviceAccount,
    status: r.status, labels: { ...r.labels },
  };
  if (w.waypoint) item.waypoint = w.waypoint;
  return item;
}

export function listWorkloads(state: MeshState, f: WorkloadFilter = {}): WorkloadItem[] {
  const views = f.node ? state.workloadsOnNode(f.node) : state.workloads();
  return views
    .filter((w) => !f.namespace || w.record.namespace === f.namespace)
    .filter((w) => !f.selector || labelsMatch(f.selector, w.record.labels))
    .map(workloadItem)
    .sort(byKey((w) => `${w.namespace}\u0000${w.name}`));
}

export function workloadsTable(items: readonly WorkloadItem[]): Table {
  return {
    headers: ['NAMESPACE', 'POD NAME', 'ADDRESS', 'NODE', 'WAYPOINT', 'PROTOCOL', 'STATUS', 'IDENTITY'],
    rows: items.map((w) => [
      w.namespace, w.name, w.addresses.join(','), w.node, w.waypoint ?? 'None', w.protocol, w.status, w.identity,
    ]),
  };
}

export function workloadsFrame(state: MeshState, f: WorkloadFilter): Frame {
  const items = listWorkloads(state, f);
  return {
    table: workloadsTable(items),
    data: { revision: state.revision, items },
    warnings: [],
    empty: `No workloads found${scopeText(f)}.`,
  };
}

export function parseSelector(raw: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of raw.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new Error('expected key=value[,key=value...]');
    out[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return out;
}

const USAGE = 'weft workloads [-n NAMESPACE] [--node NODE] [-l k=v] [-o table|json|yaml] [-w]';

export default defineCommand({
  usage: USAGE,
  summary: 'list workloads: address, node, waypoint, HBONE or TCP, identity (from the registry)',
  description: 'PROTOCOL is HBONE for pods in the mesh (their namespace has weft.io/dataplane-mode=ambient and the pod does\n'
    + 'not opt out with weft.io/dataplane-mode=none), TCP for the others.',
  specs: {
    ...registryViewOptions,
    namespace: namespaceOption,
    node: nodeOption,
    selector: { flag: 'selector', default: undefined as Record<string, string> | undefined, defaultText: 'none', description: 'label selector k=v[,k=v] (-l)', parse: parseSelector },
  },
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    const f: WorkloadFilter = { namespace: values.namespace, node: values.node };
    if (values.selector) f.selector = values.selector;
    return runRegistryView(values, io, 'weft workloads', (state) => workloadsFrame(state, f));
  },
});
