/**
 * `weft services`: services with their VIPs, ports, waypoint and how many endpoints
 * are healthy — the columns of `istioctl ztunnel-config services`, plus PORTS.
 */
import type { MeshState } from '../../registry/state';
import type { ServicePort, ServiceRecord } from '../../registry/types';
import { defineCommand, noPositionals } from '../io';
import type { Frame, Table } from '../output';
import { byKey, namespaceOption, registryViewOptions, runRegistryView, scopeText } from '../registry-command';

export interface ServiceEndpointItem {
  namespace: string;
  name: string;
  address?: string;
  node: string;
  status: string;
  protocol: 'HBONE' | 'TCP';
}

export interface ServiceItem {
  namespace: string;
  name: string;
  hostname: string;
  vips: string[];
  ports: ServicePort[];
  selector: Record<string, string>;
  waypoint?: string;
  loadBalancing: string;
  healthyEndpoints: number;
  totalEndpoints: number;
  endpoints: ServiceEndpointItem[];
}

export function serviceItem(state: MeshState, s: ServiceRecord): ServiceItem {
  const endpoints = state.endpoints(s)
    .map((w): ServiceEndpointItem => {
      const e: ServiceEndpointItem = {
        namespace: w.record.namespace, name: w.record.name, node: w.record.node, status: w.record.status, protocol: w.protocol,
      };
      if (w.record.addresses[0]) e.address = w.record.addresses[0];
      return e;
    })
    .sort(byKey((e) => e.name));
  const item: ServiceItem = {
    namespace: s.namespace, name: s.name, hostname: s.hostname, vips: [...s.vips], ports: s.ports.map((p) => ({ ...p })),
    selector: { ...s.selector }, loadBalancing: s.loadBalancing ?? 'ROUND_ROBIN',
    // The data path only picks endpoints that are healthy AND have an address (outbound-route.ts).
    healthyEndpoints: endpoints.filter((e) => e.status === 'Healthy' && e.address).length,
    totalEndpoints: endpoints.length,
    endpoints,
  };
  if (s.waypoint) item.waypoint = s.waypoint;
  return item;
}

export function listServices(state: MeshState, f: { namespace?: string } = {}): ServiceItem[] {
  return state.list('service')
    .filter((s) => !f.namespace || s.namespace === f.namespace)
    .map((s) => serviceItem(state, s))
    .sort(byKey((s) => `${s.namespace}\u0000${s.name}`));
}

/** `80→8080` when the target differs, `80` otherwise; app protocol appended as `/http`. */
export function formatPorts(ports: readonly ServicePort[]): string {
  return ports.map((p) => `${p.port}${p.targetPort !== p.port ? `→${p.targetPort}` : ''}${p.appProtocol ? `/${p.appProtocol}` : ''}`).join(',');
}

export function servicesTable(items: readonly ServiceItem[]): Table {
  return {
    headers: ['NAMESPACE', 'SERVICE NAME', 'SERVICE VIP', 'PORTS', 'WAYPOINT', 'ENDPOINTS'],
    rows: items.map((s) => [
      s.namespace, s.name, s.vips.join(',') || 'None', formatPorts(s.ports), s.waypoint ?? 'None',
      `${s.healthyEndpoints}/${s.totalEndpoints}`,
    ]),
  };
}

export function servicesFrame(state: MeshState, f: { namespace?: string }): Frame {
  const items = listServices(state, f);
  return { table: servicesTable(items), data: { revision: state.revision, items }, warnings: [], empty: `No services found${scopeText(f)}.` };
}

const USAGE = 'weft services [-n NAMESPACE] [-o table|json|yaml] [-w]';

export default defineCommand({
  usage: USAGE,
  summary: 'list services: VIPs, ports, waypoint, healthy/total endpoints (from the registry)',
  description: 'ENDPOINTS counts the workloads the selector picks that are Healthy and have an address (the ones\n'
    + 'the ztunnels balance over) out of all it picks. -o json lists each endpoint.',
  specs: { ...registryViewOptions, namespace: namespaceOption },
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    return runRegistryView(values, io, 'weft services', (state) => servicesFrame(state, { namespace: values.namespace }));
  },
});
