/**
 * The service graph `weft graph` and the dashboard draw, built from one MeshStats
 * reading: one node per `namespace/name`, one edge per (source, destination) pair.
 *
 * A source is a workload and a destination a Service; a workload and a Service with the
 * same namespace and name are one node (as Kiali's app graph does), so a chain such as
 * client → frontend → echo reads as a chain and not as two unconnected edges. The
 * node's roles say which it was seen as.
 */
import type { EdgeStats, MeshStats } from '../telemetry/types';

export type NodeRole = 'workload' | 'service';

export interface GraphNode {
  /** `namespace/name`: stable across readings, so layouts and pages can key on it. */
  id: string;
  namespace: string;
  name: string;
  /** Sorted; a node seen both as a source and as a destination has both. */
  roles: NodeRole[];
}

/**
 * The golden signals of every EdgeStats between one source and one destination, merged:
 * the stats may report an HTTP edge from the waypoint and a TCP edge from the ztunnels
 * for the same pair, and the picture has one arrow for it.
 */
export interface GraphEdge extends Omit<EdgeStats, 'source' | 'destination' | 'protocol'> {
  /** `<from> -> <to>`. */
  id: string;
  from: string;
  to: string;
  /** Sorted protocols seen (`http`, `grpc`, `tcp`). */
  protocols: string[];
  // Merged over the pair's EdgeStats: rps summed (null when seen only at L4), successRate
  // weighted by each one's rps, p50/p95/p99 the largest (an upper bound: their histograms
  // are not here to merge), mtls only when every one carried it.
  /** True when no request-level (L7) signals exist for the pair: drawn dashed. */
  l4Only: boolean;
}

export interface ServiceGraph {
  at: string;
  windowSeconds: number;
  /** Sorted by id. */
  nodes: GraphNode[];
  /** Sorted by id. */
  edges: GraphEdge[];
  warnings: string[];
}

export interface GraphFilter {
  /** Keep edges whose source or destination is in this namespace (empty: all). */
  namespace?: string;
}

export function nodeId(namespace: string, name: string): string {
  return `${namespace}/${name}`;
}

export function edgeId(from: string, to: string): string {
  return `${from} -> ${to}`;
}

/** The graph of one reading; deterministic (sorted) so the same stats draw the same picture. */
export function buildGraph(stats: MeshStats, filter: GraphFilter = {}): ServiceGraph {
  const ns = filter.namespace;
  const kept = stats.edges.filter((e) => !ns || e.source.namespace === ns || e.destination.namespace === ns);
  const nodes = new Map<string, GraphNode>();
  const touch = (namespace: string, name: string, role: NodeRole): string => {
    const id = nodeId(namespace, name);
    const n = nodes.get(id) ?? { id, namespace, name, roles: [] };
    if (!n.roles.includes(role)) n.roles = [...n.roles, role].sort();
    nodes.set(id, n);
    return id;
  };
  const groups = new Map<string, { from: string; to: string; stats: EdgeStats[] }>();
  for (const e of kept) {
    const from = touch(e.source.namespace, e.source.name, 'workload');
    const to = touch(e.destination.namespace, e.destination.name, 'service');
    const id = edgeId(from, to);
    const g = groups.get(id) ?? { from, to, stats: [] };
    g.stats.push(e);
    groups.set(id, g);
  }
  const edges = [...groups.entries()].map(([id, g]) => mergeEdges(id, g.from, g.to, g.stats));
  return {
    at: stats.at,
    windowSeconds: stats.windowSeconds,
    nodes: [...nodes.values()].sort((a, b) => compare(a.id, b.id)),
    edges: edges.sort((a, b) => compare(a.id, b.id)),
    warnings: [...stats.warnings],
  };
}

function mergeEdges(id: string, from: string, to: string, list: EdgeStats[]): GraphEdge {
  const l7 = list.filter((e) => e.rps !== null);
  const rps = l7.length ? l7.reduce((s, e) => s + (e.rps ?? 0), 0) : null;
  const rated = l7.filter((e) => e.successRate !== null);
  const weight = rated.reduce((s, e) => s + (e.rps ?? 0), 0);
  let successRate: number | null = null;
  if (rated.length) {
    successRate = weight > 0
      ? rated.reduce((s, e) => s + e.successRate! * (e.rps ?? 0), 0) / weight
      : Math.min(...rated.map((e) => e.successRate!));
  }
  const max = (pick: (e: EdgeStats) => number | null): number | null => {
    const v = l7.map(pick).filter((x): x is number => x !== null);
    return v.length ? Math.max(...v) : null;
  };
  return {
    id, from, to,
    protocols: [...new Set(list.map((e) => e.protocol))].sort(),
    rps, successRate,
    p50Ms: max((e) => e.p50Ms), p95Ms: max((e) => e.p95Ms), p99Ms: max((e) => e.p99Ms),
    connectionsPerSecond: list.reduce((s, e) => s + e.connectionsPerSecond, 0),
    bytesPerSecond: list.reduce((s, e) => s + e.bytesPerSecond, 0),
    mtls: list.every((e) => e.mtls),
    l4Only: l7.length === 0,
    reporters: [...new Set(list.flatMap((e) => e.reporters))].sort(),
  };
}

/** Code-unit order (not the locale's), so output is the same on every machine. */
export function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
