/**
 * What every format writes on an edge, and the health class its colour comes from, so
 * the terminal, DOT, Mermaid and SVG pictures of one reading say the same thing.
 */
import { formatBytes } from '../cli/output';
import type { GraphEdge } from './model';

/** green: success ≥ 99 %, amber: ≥ 95 %, red: below, none: no requests to judge (L4 only, or idle). */
export type Health = 'green' | 'amber' | 'red' | 'none';

export const HEALTH_COLOURS: Record<Health, string> = {
  green: '#15803d',
  amber: '#b45309',
  red: '#b91c1c',
  none: '#6b7280',
};

export function edgeHealth(e: GraphEdge): Health {
  if (e.successRate === null) return 'none';
  if (e.successRate >= 0.99) return 'green';
  if (e.successRate >= 0.95) return 'amber';
  return 'red';
}

/** 12.3 (one decimal below 100, none above). */
export function formatRate(n: number): string {
  return n < 100 ? n.toFixed(1) : String(Math.round(n));
}

/** 99.5 % (never rounded up to 100 % unless it is 100 %). */
export function formatPercent(share: number): string {
  const p = Math.floor(share * 1000) / 10;
  return `${p.toFixed(1)} %`;
}

/** 8 ms, 0.4 ms, 1.2 s. */
export function formatMs(ms: number): string {
  if (ms >= 1000) return `${(ms / 1000).toFixed(ms >= 10_000 ? 0 : 1)} s`;
  if (ms < 10) return `${Number(ms.toFixed(1))} ms`;
  return `${Math.round(ms)} ms`;
}

/**
 * `12.3 rps · 99.5 % · p99 8 ms` for request edges; `1.0 conn/s · 2.3 KiB/s` for edges
 * seen only at L4. mTLS is not in the text: each format marks it its own way.
 */
export function edgeLabel(e: GraphEdge): string {
  if (e.l4Only) return `${formatRate(e.connectionsPerSecond)} conn/s · ${formatBytes(Math.round(e.bytesPerSecond))}/s`;
  const parts = [`${formatRate(e.rps ?? 0)} rps`];
  if (e.successRate !== null) parts.push(formatPercent(e.successRate));
  if (e.p99Ms !== null) parts.push(`p99 ${formatMs(e.p99Ms)}`);
  return parts.join(' · ');
}

/** Every figure of the edge, one per line (SVG tooltips, the dashboard). */
export function edgeDetails(e: GraphEdge): string[] {
  const lines = [`${e.from} → ${e.to}`, `protocol ${e.protocols.join(', ')}${e.mtls ? ', mTLS' : ', not mTLS'}`];
  if (!e.l4Only) {
    lines.push(`${formatRate(e.rps ?? 0)} rps` + (e.successRate === null ? '' : `, success ${formatPercent(e.successRate)}`));
    const p = (name: string, v: number | null) => (v === null ? [] : [`${name} ${formatMs(v)}`]);
    const lat = [...p('p50', e.p50Ms), ...p('p95', e.p95Ms), ...p('p99', e.p99Ms)];
    if (lat.length) lines.push(lat.join(', '));
  }
  lines.push(`${formatRate(e.connectionsPerSecond)} conn/s, ${formatBytes(Math.round(e.bytesPerSecond))}/s`);
  if (e.reporters.length) lines.push(`reported by ${e.reporters.join(', ')}`);
  return lines;
}
