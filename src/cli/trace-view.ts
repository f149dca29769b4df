/**
 * Traces put together from the spans of many proxies (`weft traces`, the dashboard):
 * each proxy keeps only its own spans (src/telemetry/span-ring.ts), so a request that
 * crossed a ztunnel, a waypoint and another ztunnel comes back in pieces. Here they are
 * merged by trace id, joined parent to child by span id across proxies, and drawn as a
 * waterfall: one block per trace, the span tree indented, each span's proxy, name and
 * duration, and a bar placed and scaled on the trace's own time span. Pure functions,
 * so the view is tested on fixtures.
 */
import { DESTINATION_SERVICE_ATTRIBUTE } from '../telemetry/span-ring';
import type { SpanRecord } from '../telemetry/types';

export interface TraceNode {
  span: SpanRecord;
  children: TraceNode[];
}

export interface StitchedTrace {
  traceId: string;
  startMs: number;
  endMs: number;
  /** Spans with no parent, or whose parent no proxy holds (the caller's own span, or one a ring dropped), by start. */
  roots: TraceNode[];
  /** Every span, depth-first in the order drawn. */
  spans: SpanRecord[];
  /** Roots that name a parent no proxy returned. */
  orphans: number;
  errors: number;
  proxies: string[];
}

/** One list of spans from several proxies' answers; a span two answers both carry (same trace and span id) is kept once. */
export function mergeSpans(answers: Iterable<readonly SpanRecord[]>): SpanRecord[] {
  const seen = new Map<string, SpanRecord>();
  for (const list of answers) for (const s of list) seen.set(`${s.traceId}/${s.spanId}`, s);
  return [...seen.values()];
}

const byStart = (a: TraceNode, b: TraceNode) => a.span.startMs - b.span.startMs || a.span.endMs - b.span.endMs;

/** The spans grouped into traces, each a tree joined across proxies, oldest trace first. */
export function stitchTraces(spans: readonly SpanRecord[]): StitchedTrace[] {
  const byTrace = new Map<string, SpanRecord[]>();
  for (const s of spans) {
    let list = byTrace.get(s.traceId);
    if (!list) byTrace.set(s.traceId, (list = []));
    list.push(s);
  }
  const out: StitchedTrace[] = [];
  for (const [traceId, list] of byTrace) {
    const nodes = new Map<string, TraceNode>();
    for (const s of list) nodes.set(s.spanId, { span: s, children: [] });
    const roots: TraceNode[] = [];
    let orphans = 0;
    for (const node of nodes.values()) {
      const parentId = node.span.parentSpanId;
      const parent = parentId !== undefined && parentId !== node.span.spanId ? nodes.get(parentId) : undefined;
      if (parent && !isAncestor(node, parent, nodes)) parent.children.push(node);
      else {
        roots.push(node);
        if (parentId !== undefined) orphans++;
      }
    }
    const ordered: SpanRecord[] = [];
    const walk = (n: TraceNode) => {
      ordered.push(n.span);
      n.children.sort(byStart);
      n.children.forEach(walk);
    };
    roots.sort(byStart);
    roots.forEach(walk);
    out.push({
      traceId,
      startMs: Math.min(...list.map((s) => s.startMs)),
      endMs: Math.max(...list.map((s) => s.endMs)),
      roots, spans: ordered, orphans,
      errors: list.filter((s) => s.error !== undefined).length,
      proxies: [...new Set(list.map((s) => s.proxy))].sort(),
    });
  }
  return out.sort((a, b) => a.startMs - b.startMs || (a.traceId < b.traceId ? -1 : 1));
}

/** Whether `node` is above `candidate` already (a span id loop, which only a broken or hostile peer makes): keeps the walk finite. */
function isAncestor(node: TraceNode, candidate: TraceNode, nodes: Map<string, TraceNode>): boolean {
  let at: TraceNode | undefined = candidate;
  for (let hops = 0; at && hops <= nodes.size; hops++) {
    if (at === node) return true;
    const up: string | undefined = at.span.parentSpanId;
    at = up !== undefined ? nodes.get(up) : undefined;
  }
  return false;
}

/** Whether a span of the trace names `service` (`namespace/name`) as its destination. */
export function traceTouches(trace: StitchedTrace, service: string): boolean {
  return trace.spans.some((s) => s.attributes[DESTINATION_SERVICE_ATTRIBUTE] === service);
}

/** 0.42 ms, 12.3 ms, 1.25 s. */
export function formatSpanDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms < 100 ? ms.toFixed(1) : Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

export interface WaterfallOptions {
  /** Columns of the bar. Default 40. */
  barWidth?: number;
  /** Longest span name shown (longer ones are cut with …). Default 56. */
  nameWidth?: number;
}

function cut(s: string, max: number): string {
  const chars = [...s];
  return chars.length <= max ? s : `${chars.slice(0, max - 1).join('')}…`;
}

/** The bar of one span: blank before it, █ over it, blank after, on the trace's time span. */
export function spanBar(span: Pick<SpanRecord, 'startMs' | 'endMs'>, traceStart: number, traceEnd: number, width: number): string {
  const total = traceEnd - traceStart;
  if (!(total > 0)) return '█'.repeat(width);
  const from = Math.min(width - 1, Math.max(0, Math.floor(((span.startMs - traceStart) / total) * width)));
  const to = Math.max(from + 1, Math.min(width, Math.ceil(((span.endMs - traceStart) / total) * width)));
  return ' '.repeat(from) + '█'.repeat(to - from) + ' '.repeat(width - to);
}

/** One trace as a block of lines: a heading, then one line per span (tree, name, proxy, duration, bar, error). */
export function renderWaterfall(trace: StitchedTrace, opts: WaterfallOptions = {}): string {
  const barWidth = opts.barWidth ?? 40;
  const nameWidth = opts.nameWidth ?? 56;
  const rows: { label: string; proxy: string; duration: string; bar: string; error: string }[] = [];
  const visit = (n: TraceNode, prefix: string, branch: string, last: boolean) => {
    const s = n.span;
    rows.push({
      label: cut(`${prefix}${branch}${s.name}`, nameWidth),
      proxy: s.proxy,
      duration: formatSpanDuration(s.endMs - s.startMs),
      bar: spanBar(s, trace.startMs, trace.endMs, barWidth),
      error: s.error !== undefined ? `✗ ${s.error}` : '',
    });
    const childPrefix = branch === '' ? prefix : prefix + (last ? '   ' : '│  ');
    n.children.forEach((c, i) => visit(c, childPrefix, i === n.children.length - 1 ? '└─ ' : '├─ ', i === n.children.length - 1));
  };
  trace.roots.forEach((r) => visit(r, '', '', true));
  const w = (k: 'label' | 'proxy' | 'duration') => Math.max(...rows.map((r) => [...r[k]].length));
  const [lw, pw, dw] = [w('label'), w('proxy'), w('duration')];
  const pad = (s: string, n: number) => s + ' '.repeat(Math.max(0, n - [...s].length));
  const facts = [
    new Date(trace.startMs).toISOString(),
    formatSpanDuration(trace.endMs - trace.startMs),
    `${trace.spans.length} span${trace.spans.length === 1 ? '' : 's'}`,
    `${trace.proxies.length} prox${trace.proxies.length === 1 ? 'y' : 'ies'}`,
    ...(trace.errors > 0 ? [`${trace.errors} error${trace.errors === 1 ? '' : 's'}`] : []),
    ...(trace.orphans > 0 ? [`${trace.orphans} span${trace.orphans === 1 ? '' : 's'} with a parent outside the mesh or no longer kept`] : []),
  ];
  const lines = [`trace ${trace.traceId}   ${facts.join(' · ')}`];
  for (const r of rows) {
    lines.push(`  ${pad(r.label, lw)}   ${pad(r.proxy, pw)}   ${' '.repeat(dw - r.duration.length)}${r.duration}   │${r.bar}│${r.error ? ` ${r.error}` : ''}`);
  }
  return lines.join('\n') + '\n';
}

/** Every trace's block, a blank line between them. */
export function renderWaterfalls(traces: readonly StitchedTrace[], opts: WaterfallOptions = {}): string {
  return traces.map((tr) => renderWaterfall(tr, opts)).join('\n');
}
