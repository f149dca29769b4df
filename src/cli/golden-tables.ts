/**
 * The tables `weft stat` and `weft top` print from a MeshStats reading (per Service, per
 * edge, and the proxies' saturation), and the reading both take: scrapes of every proxy
 * (mesh-stats.ts), once per edge and once merged per Service, from the same two scrapes.
 */
import type { EdgeStats, MeshStats, ProxySaturation } from '../telemetry/types';
import type { ProxyReading } from '../telemetry/golden-signals';
import { formatBytes, formatTable, type Cell } from './output';
import { meshStatsBetween } from './mesh-stats';
import type { ProxyTarget } from './proxy-targets';

/** One reading as `weft stat -o json` prints it: the MeshStats, and the same edges merged per destination Service. */
export interface StatReading extends MeshStats {
  /** Per destination Service (source `*`/`*`): all callers together. */
  services: EdgeStats[];
}

/** Both views of the same two scrapes. */
export function statReading(targets: readonly ProxyTarget[], before: readonly ProxyReading[], after: readonly ProxyReading[], namespace: string): StatReading {
  const edges = meshStatsBetween(targets, before, after, { namespace });
  const services = meshStatsBetween(targets, before, after, { namespace, perService: true }).edges;
  return { ...edges, services };
}

function fixed(n: number | null, digits: number): Cell {
  return n === null ? '-' : n.toFixed(digits);
}

/** 100%, 99.5%, 0%: one decimal only when it is not whole. */
export function percent(rate: number | null): Cell {
  if (rate === null) return '-';
  const p = Math.round(rate * 1000) / 10;
  return `${p}%`;
}

function end(e: { namespace: string; name: string }): string {
  return `${e.namespace}/${e.name}`;
}

function perSecond(e: EdgeStats): Cell {
  return e.rps !== null ? fixed(e.rps, 1) : '-';
}

function mtls(e: EdgeStats): Cell {
  return e.mtls ? 'yes' : 'no';
}

export function serviceRows(services: readonly EdgeStats[]): { headers: string[]; rows: Cell[][] } {
  return {
    headers: ['SERVICE', 'PROTOCOL', 'RPS', 'SUCCESS', 'P50 MS', 'P95 MS', 'P99 MS', 'TCP CONN/S', 'BYTES/S', 'MTLS'],
    rows: services.map((s) => [end(s.destination), s.protocol, perSecond(s), percent(s.successRate), fixed(s.p50Ms, 1), fixed(s.p95Ms, 1), fixed(s.p99Ms, 1),
      fixed(s.connectionsPerSecond, 1), formatBytes(Math.round(s.bytesPerSecond)), mtls(s)]),
  };
}

export function edgeRows(edges: readonly EdgeStats[]): { headers: string[]; rows: Cell[][] } {
  return {
    headers: ['SOURCE', 'DESTINATION', 'PROTOCOL', 'RPS', 'SUCCESS', 'P50 MS', 'P95 MS', 'P99 MS', 'TCP CONN/S', 'BYTES/S', 'MTLS'],
    rows: edges.map((e) => [end(e.source), end(e.destination), e.protocol, perSecond(e), percent(e.successRate), fixed(e.p50Ms, 1), fixed(e.p95Ms, 1), fixed(e.p99Ms, 1),
      fixed(e.connectionsPerSecond, 1), formatBytes(Math.round(e.bytesPerSecond)), mtls(e)]),
  };
}

export function proxyRows(proxies: readonly ProxySaturation[]): { headers: string[]; rows: Cell[][] } {
  return {
    headers: ['PROXY', 'LOOP LAG P99 MS', 'MEMORY', 'CONNECTIONS', 'IN FLIGHT', 'PENDING'],
    rows: proxies.map((p) => [p.proxy, fixed(p.eventLoopLagP99Ms, 1), p.residentMemoryBytes === null ? '-' : formatBytes(p.residentMemoryBytes),
      p.connections, p.inflightRequests, p.pendingRequests]),
  };
}

/** A titled table, or a line saying there is nothing. */
export function section(title: string, t: { headers: string[]; rows: Cell[][] }, empty: string): string {
  return `${title}\n${t.rows.length ? formatTable(t) : `${empty}\n`}`;
}

/** Said when a window saw no traffic. */
export function noTraffic(windowSeconds: number, namespace: string): string {
  return `No traffic in the last ${windowSeconds} s${namespace ? ` in namespace ${namespace}` : ''} (requests are counted at waypoints, connections at ztunnels).`;
}
