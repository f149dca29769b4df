/**
 * MeshStats readings for the graph renderers' tests (src/graph): no edges, one edge, a
 * chain, a diamond, a cycle (with a self-loop and a call back), the demo topology of the
 * observability lab, and names chosen to break every output format.
 */
import type { EdgeStats, MeshStats } from '../../src/telemetry/types';

export function edge(from: string, to: string, over: Partial<EdgeStats> = {}): EdgeStats {
  const [sns, sname] = from.split('/') as [string, string];
  const [dns, dname] = to.split('/') as [string, string];
  return {
    source: { namespace: sns, name: sname },
    destination: { namespace: dns, name: dname },
    protocol: 'http', rps: 12.3, successRate: 0.995, p50Ms: 2, p95Ms: 5, p99Ms: 8,
    connectionsPerSecond: 0.5, bytesPerSecond: 2048, mtls: true, reporters: ['waypoint demo/waypoint'],
    ...over,
  };
}

/** An L4-only edge (ztunnel TCP metrics, no waypoint). */
export function tcpEdge(from: string, to: string, over: Partial<EdgeStats> = {}): EdgeStats {
  return edge(from, to, { protocol: 'tcp', rps: null, successRate: null, p50Ms: null, p95Ms: null, p99Ms: null, connectionsPerSecond: 2, bytesPerSecond: 1536, reporters: ['ztunnel node-1'], ...over });
}

export function stats(edges: EdgeStats[]): MeshStats {
  return { at: '2026-12-01T01:00:00.000Z', windowSeconds: 10, edges, proxies: [], warnings: [] };
}

/** The hostile names: they would close a tag, a string, a label or a statement in some format. */
export const HOSTILE_NS = 'x"><script>&amp;';
export const HOSTILE_NAME = "a\\b'|]})#;--> \"c\u0001\nd";

export const FIXTURES: Record<string, MeshStats> = {
  empty: stats([]),
  one: stats([edge('demo/client', 'demo/echo')]),
  chain: stats([edge('demo/client', 'demo/frontend'), edge('demo/frontend', 'demo/echo', { successRate: 0.97 })]),
  diamond: stats([
    edge('shop/web', 'shop/cart'), edge('shop/web', 'shop/catalog', { successRate: 0.5 }),
    edge('shop/cart', 'shop/db'), edge('shop/catalog', 'shop/db'),
  ]),
  cycle: stats([
    edge('ring/a', 'ring/b'), edge('ring/b', 'ring/c'), edge('ring/c', 'ring/a'),
    edge('ring/b', 'ring/a', { successRate: 0.9 }), edge('ring/c', 'ring/c', { p99Ms: 1250 }),
  ]),
  demo: stats([
    edge('demo/client', 'demo/frontend'), edge('demo/frontend', 'demo/echo'), edge('demo/client', 'demo/echo'),
    tcpEdge('demo/client', 'demo/frontend'), tcpEdge('demo/frontend', 'demo/echo'),
    tcpEdge('legacy/client', 'legacy/echo', { mtls: false }),
  ]),
  skip: stats([edge('s/a', 's/b'), edge('s/b', 's/c'), edge('s/c', 's/d'), edge('s/a', 's/d'), edge('s/a', 's/c'), edge('s/x', 's/c')]),
  hostile: stats([
    edge(`${HOSTILE_NS}/${HOSTILE_NAME}`, 'demo/echo'),
    edge('demo/client', `${HOSTILE_NS}/${HOSTILE_NAME}`),
  ]),
};
