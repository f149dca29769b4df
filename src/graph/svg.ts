/**
 * The service graph as a standalone SVG, drawn by Weft (no Graphviz): boxes labelled
 * `namespace/name`, arrows carrying `12.3 rps · 99.5 % · p99 8 ms`, coloured by success
 * rate (legend below), dashed where only L4 was seen, a padlock where every call was
 * mTLS, and every figure of an edge in its tooltip. The dashboard embeds the same
 * markup in its page, so ids carry a prefix and styles are attributes (no global CSS).
 */
import type { MeshStats } from '../telemetry/types';
import { escapeXml } from './escape';
import { edgeDetails, edgeHealth, edgeLabel, HEALTH_COLOURS, type Health } from './label';
import { layout, type Box, type EdgeRoute, type Layout, type Point } from './layout';
import { buildGraph, type GraphEdge, type GraphFilter, type ServiceGraph } from './model';

export interface SvgOptions extends GraphFilter {
  /** Prefix of element ids (markers), unique per page when several graphs share one. Default `weft`. */
  idPrefix?: string;
  /** Draw the heading line (counts, window, time). Default true. */
  heading?: boolean;
  /** Draw the legend. Default true. */
  legend?: boolean;
}

const FONT = 'DejaVu Sans Mono, Menlo, Consolas, monospace';
const NODE_FONT = 12;
const LABEL_FONT = 11;
/** Advance of a monospace glyph per font-size unit (DejaVu Sans Mono: 0.602). */
const ADVANCE = 0.61;
const NODE_PAD = 12;
const NODE_HEIGHT = 30;
const LABEL_HEIGHT = 16;
const LOCK_WIDTH = 13;
const BAND = 28;

/** Width of text in the monospace font; East Asian wide characters take two columns. */
export function textWidth(s: string, fontSize: number): number {
  let cols = 0;
  for (const ch of s) cols += /[\u1100-\u115f\u2e80-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6]|[\u{1f300}-\u{1faff}]/u.test(ch) ? 2 : 1;
  return cols * fontSize * ADVANCE;
}

/** One reading's graph as an SVG document. */
export function renderSvg(stats: MeshStats, opts: SvgOptions = {}): string {
  return renderGraphSvg(buildGraph(stats, opts), opts);
}

/** Where the SVG puts boxes, edges and labels (graph coordinates, before the heading band). */
export function graphLayout(g: ServiceGraph): Layout {
  const labelWidth = (e: GraphEdge) => textWidth(edgeLabel(e), LABEL_FONT) + 8 + (e.mtls ? LOCK_WIDTH : 0);
  return layout(
    g.nodes.map((n) => ({ id: n.id, width: textWidth(n.id, NODE_FONT) + 2 * NODE_PAD, height: NODE_HEIGHT })),
    g.edges.map((e) => ({ id: e.id, from: e.from, to: e.to, label: { width: labelWidth(e), height: LABEL_HEIGHT } })),
  );
}

export function renderGraphSvg(g: ServiceGraph, opts: SvgOptions = {}): string {
  const id = (opts.idPrefix ?? 'weft').replace(/[^A-Za-z0-9_-]/g, '_');
  const labels = new Map(g.edges.map((e) => [e.id, edgeLabel(e)]));
  const lay = graphLayout(g);
  const top = opts.heading === false ? 0 : BAND;
  const heading = `weft graph · ${g.nodes.length} node${g.nodes.length === 1 ? '' : 's'} · ${g.edges.length} edge${g.edges.length === 1 ? '' : 's'} · window ${g.windowSeconds} s · ${g.at}`;
  const empty = g.nodes.length === 0 ? 'no traffic seen in the window' : undefined;
  const legendWidth = 560;
  const width = Math.ceil(Math.max(lay.width, opts.heading === false ? 0 : textWidth(heading, LABEL_FONT) + 32,
    opts.legend === false ? 0 : legendWidth, empty ? textWidth(empty, NODE_FONT) + 32 : 0));
  const bodyHeight = empty ? 60 : lay.height;
  const height = Math.ceil(top + bodyHeight + (opts.legend === false ? 0 : BAND));
  const edgesById = new Map(g.edges.map((e) => [e.id, e]));
  const nodesById = new Map(g.nodes.map((n) => [n.id, n]));
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="${FONT}" role="img">`);
  out.push(`<title>${escapeXml(heading)}</title>`);
  out.push('<defs>');
  for (const h of Object.keys(HEALTH_COLOURS) as Health[]) {
    out.push(`<marker id="${id}-arrow-${h}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" markerUnits="userSpaceOnUse" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="${HEALTH_COLOURS[h]}"/></marker>`);
  }
  out.push('</defs>');
  out.push(`<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  if (opts.heading !== false) out.push(`<text x="16" y="18" font-size="${LABEL_FONT}" fill="#374151">${escapeXml(heading)}</text>`);
  if (empty) out.push(`<text x="${n(width / 2)}" y="${n(top + 30)}" font-size="${NODE_FONT}" text-anchor="middle" fill="#6b7280">${escapeXml(empty)}</text>`);
  out.push(`<g class="edges" transform="translate(0 ${top})">`);
  for (const r of lay.edges) out.push(edgePath(r, edgesById.get(r.id)!, id));
  out.push('</g>');
  out.push(`<g class="nodes" transform="translate(0 ${top})">`);
  for (const [nid, b] of lay.nodes) {
    const node = nodesById.get(nid)!;
    const service = node.roles.includes('service');
    out.push(`<g class="node" data-id="${escapeXml(nid)}"><title>${escapeXml(`${nid} (${node.roles.join(', ')})`)}</title>`
      + `<rect x="${n(b.x)}" y="${n(b.y)}" width="${n(b.width)}" height="${n(b.height)}" rx="6" fill="${service ? '#eff6ff' : '#f8fafc'}" stroke="${service ? '#1d4ed8' : '#475569'}" stroke-width="1.2"/>`
      + `<text x="${n(b.x + b.width / 2)}" y="${n(b.y + b.height / 2 + NODE_FONT * 0.35)}" font-size="${NODE_FONT}" text-anchor="middle" fill="#111827">${escapeXml(nid)}</text></g>`);
  }
  out.push('</g>');
  out.push(`<g class="labels" transform="translate(0 ${top})">`);
  for (const r of lay.edges) out.push(edgeLabelSvg(r.label, edgesById.get(r.id)!, labels.get(r.id)!));
  out.push('</g>');
  if (opts.legend !== false) out.push(legend(top + bodyHeight, id));
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** Coordinates with at most one decimal: short, and never in exponent notation. */
function n(v: number): string {
  return String(Math.round(v * 10) / 10);
}

function pathData(r: EdgeRoute): string {
  const p = r.points;
  if (r.selfLoop) return `M${pt(p[0]!)} C${pt(p[1]!)} ${pt(p[2]!)} ${pt(p[3]!)}`;
  let d = `M${pt(p[0]!)}`;
  for (let i = 1; i < p.length; i++) {
    const a = p[i - 1]!;
    const b = p[i]!;
    if (a.y === b.y) d += ` L${pt(b)}`;
    else {
      const mx = (a.x + b.x) / 2;
      d += ` C${n(mx)},${n(a.y)} ${n(mx)},${n(b.y)} ${pt(b)}`;
    }
  }
  return d;
}

function pt(p: Point): string {
  return `${n(p.x)},${n(p.y)}`;
}

function edgePath(r: EdgeRoute, e: GraphEdge, id: string): string {
  const h = edgeHealth(e);
  const dash = e.l4Only ? ' stroke-dasharray="6 4"' : '';
  return `<g class="edge health-${h}" data-id="${escapeXml(e.id)}"><title>${escapeXml(edgeDetails(e).join('\n'))}</title>`
    + `<path d="${pathData(r)}" fill="none" stroke="${HEALTH_COLOURS[h]}" stroke-width="1.6"${dash} marker-end="url(#${id}-arrow-${h})"/></g>`;
}

/** A small padlock (shackle and body), drawn rather than an emoji glyph the viewer's fonts may lack. */
function padlock(x: number, y: number, colour: string): string {
  return `<path d="M${n(x + 2.5)},${n(y + 6)} v-2.5 a3,3 0 0 1 6,0 v2.5" fill="none" stroke="${colour}" stroke-width="1.4"/>`
    + `<rect x="${n(x + 0.5)}" y="${n(y + 6)}" width="10" height="7" rx="1.2" fill="${colour}"/>`;
}

function edgeLabelSvg(b: Box, e: GraphEdge, text: string): string {
  const colour = HEALTH_COLOURS[edgeHealth(e)];
  const lock = e.mtls ? padlock(b.x + 4, b.y + 1.5, '#374151') : '';
  const tx = b.x + 4 + (e.mtls ? LOCK_WIDTH : 0);
  return `<g class="edge-label" data-id="${escapeXml(e.id)}"><title>${escapeXml(edgeDetails(e).join('\n'))}</title>`
    + `<rect x="${n(b.x)}" y="${n(b.y)}" width="${n(b.width)}" height="${n(b.height)}" rx="3" fill="#ffffff" fill-opacity="0.9"/>${lock}`
    + `<text x="${n(tx)}" y="${n(b.y + b.height / 2 + LABEL_FONT * 0.35)}" font-size="${LABEL_FONT}" fill="${colour}">${escapeXml(text)}</text></g>`;
}

function legend(y: number, id: string): string {
  const items: string[] = [];
  let x = 16;
  const cy = y + BAND / 2;
  const entry = (h: Health, text: string, dashed = false) => {
    items.push(`<path d="M${x},${n(cy)} h26" stroke="${HEALTH_COLOURS[h]}" stroke-width="1.6"${dashed ? ' stroke-dasharray="6 4"' : ''} marker-end="url(#${id}-arrow-${h})"/>`);
    items.push(`<text x="${x + 32}" y="${n(cy + 4)}" font-size="${LABEL_FONT}" fill="#374151">${escapeXml(text)}</text>`);
    x += 32 + textWidth(text, LABEL_FONT) + 16;
  };
  entry('green', 'success ≥ 99 %');
  entry('amber', '≥ 95 %');
  entry('red', '< 95 %');
  entry('none', 'L4 only', true);
  items.push(padlock(x, cy - 7, '#374151'));
  items.push(`<text x="${x + LOCK_WIDTH + 2}" y="${n(cy + 4)}" font-size="${LABEL_FONT}" fill="#374151">mTLS</text>`);
  return `<g class="legend">${items.join('')}</g>`;
}
