/**
 * One reading of the mesh's golden signals (src/telemetry/golden-signals.ts) from the
 * proxies themselves: every ztunnel and ready waypoint pod (proxy-targets.ts) is
 * scraped on its metrics port, twice `windowMs` apart, and the two scrapes give the
 * rates. `weft stat` takes one reading; `weft top`, `weft graph` and the dashboard
 * keep the previous scrape (readProxies + goldenSignals) so each refresh costs one.
 *
 *   const stats = await collectMeshStats(proxyTargets(ctx, state), { windowMs: 10_000 });
 *
 * A proxy that does not answer (or answers something that is not Prometheus text) is a
 * warning of the reading; the others are still read.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parsePromText } from '../telemetry/prom-text';
import { goldenSignals, type GoldenSignalOptions, type ProxyReading } from '../telemetry/golden-signals';
import type { MeshStats } from '../telemetry/types';
import { boundedGet } from './http-get';
import type { ProxyTarget } from './proxy-targets';

export const SCRAPE_TIMEOUT_MS = 2000;
/** A proxy's scrape is some hundred KiB; far more is not a Weft proxy. */
const MAX_SCRAPE_BYTES = 32 * 1024 * 1024;

export interface MeshStatsOptions {
  /** Time between the two scrapes. */
  windowMs: number;
  /** Only edges with an end in this namespace (all when empty). */
  namespace?: string;
  timeoutMs?: number;
  /** Ends the wait between the scrapes early (the reading is then not taken: rejects with the abort reason). */
  signal?: AbortSignal;
}

/** GETs `url` as text within `timeoutMs`; rejects with a message for the operator. */
export async function getText(url: string, timeoutMs: number = SCRAPE_TIMEOUT_MS): Promise<string> {
  const { status, body } = await boundedGet({ target: url, where: url, accept: 'text/plain', timeoutMs, maxBytes: MAX_SCRAPE_BYTES });
  if (status !== 200) throw new Error(`HTTP ${status} to GET ${url}`);
  return body;
}

/** Scrapes one proxy's /metrics; a failure is in the reading's `error`. */
export async function readProxy(target: ProxyTarget, timeoutMs: number = SCRAPE_TIMEOUT_MS): Promise<ProxyReading> {
  const base = { kind: target.kind, proxy: target.proxy, ...(target.pod ? { pod: target.pod } : {}) };
  const url = `${target.baseUrl}/metrics`;
  try {
    const text = await getText(url, timeoutMs);
    return { ...base, atMs: Date.now(), scrape: parsePromText(text) };
  } catch (err) {
    return { ...base, atMs: Date.now(), error: `${url}: ${(err as Error).message}` };
  }
}

/** Scrapes every proxy at once. */
export function readProxies(targets: readonly ProxyTarget[], timeoutMs?: number): Promise<ProxyReading[]> {
  return Promise.all(targets.map((t) => readProxy(t, timeoutMs)));
}

/** `namespace/pod` of each waypoint pod: the ztunnels' hops from them are the L7 edges' traffic again. */
export function waypointWorkloads(targets: readonly ProxyTarget[]): Set<string> {
  const out = new Set<string>();
  for (const t of targets) {
    if (t.kind === 'waypoint' && t.pod) out.add(`${t.proxy.replace(/^waypoint /, '').split('/')[0]}/${t.pod}`);
  }
  return out;
}

/** Golden signals between two readings of `targets`. */
export function meshStatsBetween(targets: readonly ProxyTarget[], before: readonly ProxyReading[], after: readonly ProxyReading[],
  opts: GoldenSignalOptions = {}): MeshStats {
  const stats = goldenSignals(before, after, { ...opts, waypointWorkloads: waypointWorkloads(targets) });
  if (targets.length === 0) stats.warnings.push('no proxies to read: no ztunnel in the context has an address, and no waypoint pod is ready');
  return stats;
}

/** Scrapes every proxy, waits `windowMs`, scrapes again: one reading of the mesh. */
export async function collectMeshStats(targets: readonly ProxyTarget[], opts: MeshStatsOptions): Promise<MeshStats> {
  const before = await readProxies(targets, opts.timeoutMs);
  await sleep(opts.windowMs, undefined, opts.signal ? { signal: opts.signal } : {});
  const after = await readProxies(targets, opts.timeoutMs);
  return meshStatsBetween(targets, before, after, opts);
}
