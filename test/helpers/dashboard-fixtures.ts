/**
 * Dashboard sources from fixtures (test/dashboard-*.test.ts): a demo mesh's stats, a
 * graph, one two-hop trace and a tap that the test drives by hand. `hostile` names a
 * workload with markup in it, to prove the page shows it as text.
 */
import type { DashboardSources, DashboardTrace, TapSubscriber } from '../../src/dashboard/api';
import type { EdgeStats, MeshStats, TapEvent } from '../../src/telemetry/types';

export const HOSTILE = '<img src=x onerror="window.__pwned=1">';

function edge(src: string, dst: string, over: Partial<EdgeStats> = {}): EdgeStats {
  const [sn, sw] = src.split('/') as [string, string];
  const [dn, dw] = dst.split('/') as [string, string];
  return {
    source: { namespace: sn, name: sw }, destination: { namespace: dn, name: dw }, protocol: 'http',
    rps: 20, successRate: 1, p50Ms: 1.2, p95Ms: 3.4, p99Ms: 7.9, connectionsPerSecond: 0.4, bytesPerSecond: 9000,
    mtls: true, reporters: ['waypoint demo/waypoint'], ...over,
  };
}

export function fixtureStats(opts: { hostile?: boolean } = {}): MeshStats {
  return {
    at: '2026-12-01T01:00:00.000Z', windowSeconds: 5,
    edges: [
      edge('demo/client', 'demo/frontend'),
      edge('demo/frontend', 'demo/echo', { successRate: 0.95, p99Ms: 12.5 }),
      edge('demo/client', 'demo/echo'),
      edge('legacy/client', 'legacy/echo', { protocol: 'tcp', rps: null, successRate: null, p50Ms: null, p95Ms: null, p99Ms: null, mtls: false, reporters: ['ztunnel node-1'] }),
      ...(opts.hostile ? [edge(`demo/${HOSTILE}`, 'demo/echo')] : []),
    ],
    proxies: [
      { proxy: 'ztunnel node-1', kind: 'ztunnel', eventLoopLagP99Ms: 1.1, residentMemoryBytes: 80 * 2 ** 20, connections: 12, inflightRequests: null, pendingRequests: null },
      { proxy: 'waypoint demo/waypoint', kind: 'waypoint', eventLoopLagP99Ms: 2.2, residentMemoryBytes: 95 * 2 ** 20, connections: 8, inflightRequests: 3, pendingRequests: 0 },
    ],
    warnings: opts.hostile ? [`ztunnel ${HOSTILE}: connect ECONNREFUSED`] : [],
  };
}

/** A small graph as the graph view draws it, plus things a hostile SVG could carry. */
export function fixtureSvg(opts: { hostile?: boolean } = {}): string {
  const names = ['demo/client', 'demo/frontend', 'demo/echo', ...(opts.hostile ? [HOSTILE.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/"/g, '&quot;')] : [])];
  const nodes = names.map((n, i) => `<g class="node"><rect x="${20 + i * 200}" y="40" width="160" height="40" rx="6" fill="#eef" stroke="#446"/><text x="${100 + i * 200}" y="65" text-anchor="middle">${n}</text></g>`).join('');
  const active = opts.hostile ? '<script>window.__pwned=2</script><rect width="1" height="1" onload="window.__pwned=3"/>' : '';
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${40 + names.length * 200}" height="120" viewBox="0 0 ${40 + names.length * 200} 120">${nodes}${active}</svg>`;
}

export function fixtureTraces(): DashboardTrace[] {
  const t0 = Date.parse('2026-12-01T01:00:00.000Z');
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  return [{
    traceId,
    spans: [
      { traceId, spanId: '00f067aa0ba902b7', name: 'GET frontend.demo.svc.cluster.local/', kind: 'server', startMs: t0, endMs: t0 + 9, proxy: 'waypoint demo/waypoint', attributes: { 'http.response.status_code': 200 } },
      { traceId, spanId: '00f067aa0ba902b8', parentSpanId: '00f067aa0ba902b7', name: 'attempt 1 198.19.1.12:8080', kind: 'client', startMs: t0 + 0.5, endMs: t0 + 8.5, proxy: 'waypoint demo/waypoint', attributes: {} },
      { traceId, spanId: '00f067aa0ba902b9', parentSpanId: '00f067aa0ba902b8', name: 'GET echo.demo.svc.cluster.local/', kind: 'server', startMs: t0 + 2, endMs: t0 + 6, proxy: 'waypoint demo/waypoint', attributes: {} },
      { traceId, spanId: '00f067aa0ba902ba', parentSpanId: '00f067aa0ba902b9', name: 'attempt 1 198.19.2.11:8080', kind: 'client', startMs: t0 + 2.5, endMs: t0 + 5.5, proxy: 'waypoint demo/waypoint', attributes: {}, error: 'UF' },
    ],
  }];
}

export function tapEvent(over: Partial<TapEvent> = {}): TapEvent {
  return {
    time: new Date().toISOString(), proxy: 'waypoint demo/waypoint', kind: 'request', verdict: 'routed',
    source: { namespace: 'demo', workload: 'client' }, destination: { namespace: 'demo', service: 'demo/echo' },
    method: 'GET', authority: 'echo.demo', path: '/', status: 200, responseFlag: '-', durationMs: 1.5, attempts: 1, mtls: true,
    ...over,
  };
}

/** Fixture sources with a tap the test publishes into; `subscribed` counts the live subscriptions. */
export function fixtureSources(opts: { hostile?: boolean } = {}): DashboardSources & { publish(e: TapEvent): void; subscribed(): number } {
  const subs = new Set<TapSubscriber>();
  return {
    stats: async () => fixtureStats(opts),
    svg: async () => fixtureSvg(opts),
    traces: async () => fixtureTraces(),
    tap(s) {
      subs.add(s);
      return () => { subs.delete(s); };
    },
    publish(e) { for (const s of subs) s(e); },
    subscribed: () => subs.size,
  };
}
