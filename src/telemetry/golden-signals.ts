/**
 * Golden signals from two scrapes of every proxy (docs/observability.md, "Golden
 * signals and saturation"): what `weft stat`, `weft top`, `weft graph` and the dashboard
 * show. Pure functions of parsed scrapes, so they are tested on recorded fixtures.
 *
 * Edges are source workload → destination Service:
 *   - L7, from the waypoints' `istio_requests_total` and
 *     `istio_request_duration_milliseconds` (reporter `waypoint`): rate, non-5xx share,
 *     p50/p95/p99 from the histogram's bucket deltas, interpolated as Prometheus'
 *     histogram_quantile does;
 *   - L4, from the ztunnels' `istio_tcp_*`: connections opened and bytes per second,
 *     one reporter per edge (the source's ztunnel when it reported, else the
 *     destination's, so a connection between two mesh pods is not counted twice). The
 *     hop from a client to its waypoint carries the Service's name and adds its
 *     connections and bytes to the L7 edge; the waypoint's own hop to the pod is the
 *     same traffic again and is left out.
 * A counter that went down between the scrapes (a restarted proxy) counts from zero,
 * as Prometheus' rate() does; when process_start_time_seconds changed, every series
 * does (one that grew past its old value since the restart too).
 */
import type { EdgeStats, MeshStats, ProxySaturation } from './types';
import { histogramQuantile, histogramsOf, labelKey, samplesOf, type PromScrape } from './prom-text';

/** One proxy read once. */
export interface ProxyReading {
  kind: 'ztunnel' | 'waypoint';
  /** `ztunnel node-1`, `waypoint demo/waypoint` (one per pod: `pod` tells them apart). */
  proxy: string;
  pod?: string;
  /** Epoch ms when the scrape was answered. */
  atMs: number;
  scrape?: PromScrape;
  /** Why there is no scrape. */
  error?: string;
}

export interface GoldenSignalOptions {
  /** Only edges with an end in this namespace (all when empty). */
  namespace?: string;
  /**
   * One row per destination Service, every source merged (its source is `*`/`*`): the
   * per-service view, with quantiles from the merged buckets rather than averaged.
   */
  perService?: boolean;
}

/** The source of every row of a per-service reading. */
export const ANY_SOURCE = '*';

const UNKNOWN = 'unknown';

/** Which reading of `before` is the same proxy as `r`. */
function readingKey(r: Pick<ProxyReading, 'proxy' | 'pod'>): string {
  return `${r.proxy}\u0000${r.pod ?? ''}`;
}

const EMPTY_SCRAPE: PromScrape = { samples: [], types: new Map(), help: new Map() };

/** Whether the process behind two scrapes changed (prom-client's process_start_time_seconds). */
function restarted(before: PromScrape, after: PromScrape): boolean {
  const start = (s: PromScrape) => samplesOf(s, 'process_start_time_seconds')[0]?.value;
  const b = start(before);
  const a = start(after);
  return a !== undefined && b !== undefined && a !== b;
}

/** Counter increase between two readings; a decrease is a restart (counted from zero). */
function increase(before: number | undefined, after: number): number {
  if (before === undefined || after < before) return after;
  return after - before;
}

/** Counter deltas per label set of series `name`. */
function deltas(before: PromScrape, after: PromScrape, name: string): { labels: Record<string, string>; delta: number }[] {
  const old = new Map(samplesOf(before, name).map((s) => [labelKey(s.labels), s.value]));
  return samplesOf(after, name).map((s) => ({ labels: s.labels, delta: increase(old.get(labelKey(s.labels)), s.value) }));
}

/** Mutable sums of one edge while the scrapes are read. */
interface EdgeAcc {
  stats: EdgeStats;
  requests: number;
  ok: number;
  grpc: boolean;
  /** le → count delta, summed over the edge's series. */
  buckets: Map<number, number>;
  /** Series with activity that were not mutual TLS. */
  plaintext: boolean;
  reporters: Set<string>;
}

function edgeKey(srcNs: string, src: string, dstNs: string, dst: string): string {
  return `${srcNs}/${src}\u0000${dstNs}/${dst}`;
}

function newEdge(srcNs: string, src: string, dstNs: string, dst: string): EdgeAcc {
  return {
    stats: {
      source: { namespace: srcNs, name: src }, destination: { namespace: dstNs, name: dst }, protocol: 'tcp',
      rps: null, successRate: null, p50Ms: null, p95Ms: null, p99Ms: null, connectionsPerSecond: 0, bytesPerSecond: 0, mtls: true, reporters: [],
    },
    requests: 0, ok: 0, grpc: false, buckets: new Map(), plaintext: false, reporters: new Set(),
  };
}

/** Seconds between two readings of a proxy (at least 1 ms, so a rate is always finite). */
function seconds(before: ProxyReading, after: ProxyReading): number {
  return Math.max(1, after.atMs - before.atMs) / 1000;
}

/** A Service host `name.namespace.svc...` as an edge end; other hosts keep their name. */
export function serviceEnd(host: string, fallbackNamespace: string): { namespace: string; name: string } {
  const m = /^([^.]+)\.([^.]+)(?:\.svc(?:\.|$)|$)/.exec(host);
  return m ? { name: m[1]!, namespace: m[2]! } : { name: host, namespace: fallbackNamespace };
}

/**
 * The golden signals of every edge with traffic between two readings of each proxy,
 * and each proxy's saturation at the second. A proxy without both scrapes is a warning.
 * `waypointWorkloads` (`namespace/pod`) tells the ztunnels' hops from a waypoint apart.
 */
export function goldenSignals(before: readonly ProxyReading[], after: readonly ProxyReading[], opts: GoldenSignalOptions & {
  waypointWorkloads?: ReadonlySet<string>;
  windowSeconds?: number;
} = {}): MeshStats {
  const old = new Map(before.map((r) => [readingKey(r), r]));
  const edges = new Map<string, EdgeAcc>();
  const l4 = new Map<string, { source?: EdgeAcc; destination?: EdgeAcc }>();
  const warnings: string[] = [];
  const proxies: ProxySaturation[] = [];
  const waypoints = opts.waypointWorkloads ?? new Set<string>();
  let latest = 0;
  let windows = 0;
  let windowSum = 0;
  for (const a of after) {
    const label = a.pod && a.kind === 'waypoint' ? `${a.proxy} pod ${a.pod}` : a.proxy;
    if (!a.scrape) {
      warnings.push(`${label}: not answering (${a.error ?? 'no scrape'})`);
      continue;
    }
    latest = Math.max(latest, a.atMs);
    proxies.push(saturation(a, a.scrape));
    const b = old.get(readingKey(a));
    if (!b?.scrape) {
      warnings.push(`${label}: answered only the second scrape; its rates start with the next reading`);
      continue;
    }
    const secs = seconds(b, a);
    windows++;
    windowSum += secs;
    const perService = opts.perService === true;
    // After a restart every series starts again from zero, also one that has grown past its old value.
    const since = restarted(b.scrape, a.scrape) ? EMPTY_SCRAPE : b.scrape;
    if (a.kind === 'waypoint') addRequests(edges, since, a.scrape, secs, a.proxy, perService);
    else addConnections(l4, since, a.scrape, secs, a.proxy, waypoints);
  }
  // One reporter per L4 edge: the source's ztunnel saw it first; the destination's only when the source is not in the mesh.
  // Per service, the sources are merged only then: a caller outside the mesh (destination's
  // count) and one inside (source's count) each count once.
  // A source whose own ztunnel reported is in the mesh, and that ztunnel saw all it sent:
  // the destination's series of it are the same connections again, and name no Service
  // (an inbound CONNECT is addressed to the pod), so they would show as a second edge.
  // An unknown source names no one: it would hide every caller outside the mesh.
  const meshSources = new Set<string>();
  for (const sides of l4.values()) {
    const src = sides.source?.stats.source;
    if (src && src.name !== UNKNOWN) meshSources.add(`${src.namespace}/${src.name}`);
  }
  for (const [key, sides] of l4) {
    if (!sides.source && meshSources.has(`${sides.destination!.stats.source.namespace}/${sides.destination!.stats.source.name}`)) continue;
    const side = sides.source ?? sides.destination!;
    const dst = side.stats.destination;
    const into = opts.perService === true ? edgeKey(ANY_SOURCE, ANY_SOURCE, dst.namespace, dst.name) : key;
    let l7 = edges.get(into);
    if (!l7 && opts.perService !== true) {
      edges.set(into, side);
      continue;
    }
    if (!l7) {
      l7 = newEdge(ANY_SOURCE, ANY_SOURCE, dst.namespace, dst.name);
      edges.set(into, l7);
    }
    l7.stats.connectionsPerSecond += side.stats.connectionsPerSecond;
    l7.stats.bytesPerSecond += side.stats.bytesPerSecond;
    for (const r of side.reporters) l7.reporters.add(r);
    if (side.plaintext) l7.plaintext = true;
  }
  const ns = opts.namespace ?? '';
  const out: EdgeStats[] = [];
  for (const e of edges.values()) {
    const s = e.stats;
    if (ns && s.source.namespace !== ns && s.destination.namespace !== ns) continue;
    if (e.requests > 0) {
      s.protocol = e.grpc ? 'grpc' : 'http';
      s.successRate = e.ok / e.requests;
      const buckets = [...e.buckets].sort((x, y) => x[0] - y[0]).map(([le, count]) => ({ le, count }));
      s.p50Ms = quantile(0.5, buckets);
      s.p95Ms = quantile(0.95, buckets);
      s.p99Ms = quantile(0.99, buckets);
    }
    s.mtls = !e.plaintext;
    s.reporters = [...e.reporters].sort();
    out.push(s);
  }
  out.sort((x, y) => (y.rps ?? 0) - (x.rps ?? 0) || y.connectionsPerSecond - x.connectionsPerSecond || edgeName(x).localeCompare(edgeName(y)));
  return {
    at: new Date(latest || Date.now()).toISOString(),
    windowSeconds: opts.windowSeconds ?? (windows ? Math.round((windowSum / windows) * 10) / 10 : 0),
    edges: out,
    proxies: proxies.sort((x, y) => x.proxy.localeCompare(y.proxy)),
    warnings,
  };
}

function edgeName(e: EdgeStats): string {
  return `${e.source.namespace}/${e.source.name}\u0000${e.destination.namespace}/${e.destination.name}`;
}

function quantile(q: number, buckets: { le: number; count: number }[]): number | null {
  const v = histogramQuantile(q, buckets);
  return v === null ? null : Math.round(v * 100) / 100;
}

/** The waypoint's request metrics: one L7 edge per source workload → destination Service. */
function addRequests(edges: Map<string, EdgeAcc>, before: PromScrape, after: PromScrape, secs: number, proxy: string, perService: boolean): void {
  const get = (l: Record<string, string>): EdgeAcc => {
    const srcNs = perService ? ANY_SOURCE : l.source_workload_namespace ?? UNKNOWN;
    const src = perService ? ANY_SOURCE : l.source_workload ?? UNKNOWN;
    const dstNs = l.destination_service_namespace ?? UNKNOWN;
    const dst = l.destination_service_name ?? UNKNOWN;
    const key = edgeKey(srcNs, src, dstNs, dst);
    let e = edges.get(key);
    if (!e) {
      e = newEdge(srcNs, src, dstNs, dst);
      edges.set(key, e);
    }
    return e;
  };
  for (const { labels, delta } of deltas(before, after, 'istio_requests_total')) {
    if (labels.reporter !== 'waypoint' || delta <= 0) continue;
    const e = get(labels);
    e.requests += delta;
    if (!(labels.response_code ?? '').startsWith('5')) e.ok += delta;
    if (labels.request_protocol === 'grpc') e.grpc = true;
    if (labels.connection_security_policy !== 'mutual_tls') e.plaintext = true;
    e.reporters.add(proxy);
    e.stats.rps = (e.stats.rps ?? 0) + delta / secs;
  }
  const oldHist = new Map(histogramsOf(before, 'istio_request_duration_milliseconds').map((h) => [labelKey(h.labels), h]));
  for (const h of histogramsOf(after, 'istio_request_duration_milliseconds')) {
    if (h.labels.reporter !== 'waypoint') continue;
    const prev = oldHist.get(labelKey(h.labels));
    // A restarted proxy (count went down) counts every bucket from zero.
    const restarted = prev !== undefined && h.count < prev.count;
    const prevBuckets = new Map(restarted || !prev ? [] : prev.buckets.map((b) => [b.le, b.count]));
    if (h.count - (restarted || !prev ? 0 : prev.count) <= 0) continue;
    const e = get(h.labels);
    for (const b of h.buckets) e.buckets.set(b.le, (e.buckets.get(b.le) ?? 0) + Math.max(0, b.count - (prevBuckets.get(b.le) ?? 0)));
  }
}

/** The ztunnels' TCP metrics: one L4 edge per source workload → destination Service (or workload), per reporter side. */
function addConnections(l4: Map<string, { source?: EdgeAcc; destination?: EdgeAcc }>, before: PromScrape, after: PromScrape, secs: number, proxy: string,
  waypoints: ReadonlySet<string>): void {
  const get = (l: Record<string, string>): EdgeAcc | undefined => {
    // A waypoint's own hop to the pod: the L7 edge counted those requests already.
    if (waypoints.has(`${l.source_workload_namespace ?? UNKNOWN}/${l.source_workload ?? UNKNOWN}`)) return undefined;
    // Per source even per service: which side reports an edge depends on its source (goldenSignals merges after).
    const srcNs = l.source_workload_namespace ?? UNKNOWN;
    const src = l.source_workload ?? UNKNOWN;
    const side = l.reporter === 'source' ? 'source' : l.reporter === 'destination' ? 'destination' : undefined;
    if (!side) return undefined;
    const host = l.destination_service ?? UNKNOWN;
    const dst = host !== UNKNOWN
      ? serviceEnd(host, l.destination_workload_namespace ?? UNKNOWN)
      : { namespace: l.destination_workload_namespace ?? UNKNOWN, name: l.destination_workload ?? UNKNOWN };
    const key = edgeKey(srcNs, src, dst.namespace, dst.name);
    let sides = l4.get(key);
    if (!sides) {
      sides = {};
      l4.set(key, sides);
    }
    let e = sides[side];
    if (!e) {
      e = newEdge(srcNs, src, dst.namespace, dst.name);
      sides[side] = e;
    }
    return e;
  };
  for (const { labels, delta } of deltas(before, after, 'istio_tcp_connections_opened_total')) {
    if (delta <= 0) continue;
    const e = get(labels);
    if (!e) continue;
    e.stats.connectionsPerSecond += delta / secs;
    e.reporters.add(proxy);
    if (labels.connection_security_policy !== 'mutual_tls') e.plaintext = true;
  }
  for (const name of ['istio_tcp_sent_bytes_total', 'istio_tcp_received_bytes_total']) {
    for (const { labels, delta } of deltas(before, after, name)) {
      if (delta <= 0) continue;
      const e = get(labels);
      if (!e) continue;
      e.stats.bytesPerSecond += delta / secs;
      e.reporters.add(proxy);
      if (labels.connection_security_policy !== 'mutual_tls') e.plaintext = true;
    }
  }
}

/** Sum of every series of gauge `name`, null when the proxy does not export it. */
function gaugeSum(scrape: PromScrape, name: string, where?: (l: Record<string, string>) => boolean): number | null {
  const samples = samplesOf(scrape, name).filter((s) => !where || where(s.labels));
  if (samples.length === 0) return scrape.types.has(name) ? 0 : null;
  return samples.reduce((n, s) => n + s.value, 0);
}

/**
 * A proxy's saturation at one reading: event-loop lag and memory (prom-client's
 * default metrics), live connections, requests in flight and waiting for a
 * connectionPool slot (the weft_* gauges, docs/observability.md).
 */
export function saturation(r: Pick<ProxyReading, 'kind' | 'proxy' | 'pod'>, scrape: PromScrape): ProxySaturation {
  const lag = gaugeSum(scrape, 'nodejs_eventloop_lag_p99_seconds');
  const sum = (...xs: (number | null)[]) => (xs.every((x) => x === null) ? null : xs.reduce<number>((n, x) => n + (x ?? 0), 0));
  const waypoint = r.kind === 'waypoint';
  return {
    proxy: waypoint && r.pod ? `${r.proxy} pod ${r.pod}` : r.proxy,
    kind: r.kind,
    eventLoopLagP99Ms: lag === null ? null : Math.round(lag * 1e5) / 100,
    residentMemoryBytes: gaugeSum(scrape, 'process_resident_memory_bytes'),
    connections: waypoint
      ? sum(gaugeSum(scrape, 'weft_waypoint_downstream_connections'), gaugeSum(scrape, 'weft_waypoint_upstream_connections'))
      : gaugeSum(scrape, 'weft_ztunnel_connections'),
    inflightRequests: waypoint ? gaugeSum(scrape, 'weft_waypoint_requests_in_flight') : null,
    pendingRequests: waypoint ? gaugeSum(scrape, 'weft_waypoint_pool_requests', (l) => l.state === 'pending') : null,
  };
}
