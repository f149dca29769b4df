/**
 * Every proxy of the mesh whose observability views the `weft` views read (traces, tap,
 * top, stat, graph, dashboard): each node's ztunnel and each ready waypoint pod, with the
 * base URL of its metrics port (15020), where /metrics, /debug/traces and /debug/tap are
 * served beside each other.
 *
 * The ztunnels come from the context's nodes (their addresses; the lab writes them),
 * the waypoint pods from the registry. Reaching them needs a route to node and pod
 * addresses: the lab's root namespace has one; on a cluster, run the CLI where pod IPs
 * are reachable (docs/observability.md).
 */
import { METRICS_PORT } from '../mesh/ports';
import type { MeshState } from '../registry/state';
import type { CliContext } from './context';
import { readyWaypointPods } from './waypoint-views';

export interface ProxyTarget {
  kind: 'ztunnel' | 'waypoint';
  /** The name its spans and tap events carry: `ztunnel node-1`, `waypoint demo/waypoint`. */
  proxy: string;
  /** The waypoint pod (waypoints have one or more). */
  pod?: string;
  /** http://address:15020 (IPv6 in brackets). */
  baseUrl: string;
}

function baseUrl(address: string, port: number): string {
  return `http://${address.includes(':') ? `[${address}]` : address}:${port}`;
}

/** The ztunnels of the context's nodes that have an address, then the ready waypoint pods of `namespace` (all when empty). */
export function proxyTargets(ctx: Pick<CliContext, 'nodes'>, state: MeshState, opts: { namespace?: string; port?: number } = {}): ProxyTarget[] {
  const port = opts.port ?? METRICS_PORT;
  const out: ProxyTarget[] = [];
  for (const n of ctx.nodes) {
    if (n.address) out.push({ kind: 'ztunnel', proxy: `ztunnel ${n.name}`, baseUrl: baseUrl(n.address, port) });
  }
  for (const p of readyWaypointPods(state, opts.namespace ?? '')) {
    out.push({ kind: 'waypoint', proxy: `waypoint ${p.waypoint}`, pod: p.pod, baseUrl: baseUrl(p.address, port) });
  }
  return out;
}
