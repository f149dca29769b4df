/**
 * Coordinates for a layered drawing, left to right (callers left of callees, as a call
 * reads): columns are the layers of layers.ts; each column is as wide as its widest
 * box, each gap between columns as wide as the widest edge label in it, so labels sit
 * between columns and never on a box. Boxes stack in a column in the chosen order,
 * centred vertically. Edges leave a box on its right side and enter on the left, with
 * their ports spread over the side so parallel edges do not coincide.
 *
 * Sizes are given by the caller (the SVG renderer measures its own text), so this file
 * knows nothing about fonts or formats.
 */
import { layer, type Segment } from './layers';

export interface Point {
  x: number;
  y: number;
}

export interface Size {
  width: number;
  height: number;
}

/** x, y: the top-left corner. */
export interface Box extends Point, Size {}

export interface LayoutNode extends Size {
  id: string;
}

export interface LayoutEdge {
  id: string;
  from: string;
  to: string;
  /** The size of its label. */
  label: Size;
}

export interface EdgeRoute {
  id: string;
  from: string;
  to: string;
  /**
   * From the source's port to the target's port, in the edge's own direction. Joined
   * by cubic curves with horizontal tangents (straight where two points share a y);
   * for a self-loop: start, two control points, end (one cubic curve).
   */
  points: Point[];
  selfLoop: boolean;
  /** Drawn against the layer direction (it closes a cycle). */
  reversed: boolean;
  label: Box;
}

export interface Layout extends Size {
  nodes: Map<string, Box>;
  edges: EdgeRoute[];
  /** Edge crossings left (for tests and curiosity). */
  crossings: number;
}

export interface LayoutOptions {
  margin?: number;
  /** Least horizontal gap between columns. */
  minGap?: number;
  /** Vertical gap between boxes of a column. */
  rowGap?: number;
  /** Space left and right of a label in its gap. */
  labelPad?: number;
  /** Height of a self-loop above its box. */
  loopHeight?: number;
  sweeps?: number;
}

const DUMMY_HEIGHT = 12;
const PORT_SPACING = 8;

export function layout(nodes: readonly LayoutNode[], edges: readonly LayoutEdge[], opts: LayoutOptions = {}): Layout {
  const margin = opts.margin ?? 16;
  const minGap = opts.minGap ?? 48;
  const rowGap = opts.rowGap ?? 28;
  const labelPad = opts.labelPad ?? 10;
  const loopHeight = opts.loopHeight ?? 24;
  const size = new Map(nodes.map((n) => [n.id, n]));
  const L = layer(nodes.map((n) => n.id), edges, opts.sweeps);
  const edgeById = new Map(edges.map((e) => [e.id, e]));

  const loops = new Map<string, LayoutEdge[]>();
  for (const e of edges) if (e.from === e.to) (loops.get(e.from) ?? loops.set(e.from, []).get(e.from)!).push(e);
  const loopSpace = (id: string) => (loops.get(id) ?? []).reduce((s, e) => s + e.label.height + 2, loops.has(id) ? loopHeight : 0);

  // The segment that carries each edge's label: the one leaving its real source.
  const labelled = new Map<string, Segment>();
  for (const [id, chain] of L.chains) labelled.set(id, L.reversed.has(id) ? chain[chain.length - 1]! : chain[0]!);

  const depth = L.layers.length;
  const colWidth = L.layers.map((ids) => Math.max(0, ...ids.filter((id) => !L.dummies.has(id)).flatMap((id) =>
    [size.get(id)!.width, ...(loops.get(id) ?? []).map((e) => e.label.width)])));
  const gap = Array.from({ length: Math.max(0, depth - 1) }, () => minGap);
  for (const [id, seg] of labelled) {
    const k = L.layerOf.get(seg.from)!;
    gap[k] = Math.max(gap[k]!, edgeById.get(id)!.label.width + 2 * labelPad);
  }
  const colX: number[] = [];
  for (let k = 0, x = margin; k < depth; k++) {
    colX.push(x);
    x += colWidth[k]! + (gap[k] ?? 0);
  }

  const slot = (id: string) => (L.dummies.has(id) ? DUMMY_HEIGHT : loopSpace(id) + size.get(id)!.height);
  const colHeight = L.layers.map((ids) => ids.reduce((s, id) => s + slot(id), 0) + rowGap * Math.max(0, ids.length - 1));
  const tallest = Math.max(0, ...colHeight);
  const boxes = new Map<string, Box>();
  L.layers.forEach((ids, k) => {
    let y = margin + (tallest - colHeight[k]!) / 2;
    for (const id of ids) {
      if (L.dummies.has(id)) boxes.set(id, { x: colX[k]!, y, width: colWidth[k]!, height: DUMMY_HEIGHT });
      else {
        const n = size.get(id)!;
        boxes.set(id, { x: colX[k]! + (colWidth[k]! - n.width) / 2, y: y + loopSpace(id), width: n.width, height: n.height });
      }
      y += slot(id) + rowGap;
    }
  });
  const midY = (id: string) => boxes.get(id)!.y + boxes.get(id)!.height / 2;

  // Ports: a box's outgoing segments spread over its right side in the order of their
  // targets' heights, incoming ones over its left side likewise.
  const segments = [...L.chains.values()].flat();
  const outPort = new Map<Segment, Point>();
  const inPort = new Map<Segment, Point>();
  const spread = (list: Segment[], end: 'from' | 'to', other: 'from' | 'to', into: Map<Segment, Point>, side: 'left' | 'right') => {
    const byNode = new Map<string, Segment[]>();
    for (const s of list) (byNode.get(s[end]) ?? byNode.set(s[end], []).get(s[end])!).push(s);
    for (const [id, segs] of byNode) {
      segs.sort((a, b) => midY(a[other]) - midY(b[other]) || (a.edge < b.edge ? -1 : a.edge > b.edge ? 1 : 0));
      const b = boxes.get(id)!;
      const step = segs.length > 1 ? Math.min(PORT_SPACING, Math.max(0, b.height - 8) / (segs.length - 1)) : 0;
      segs.forEach((s, i) => into.set(s, { x: side === 'right' ? b.x + b.width : b.x, y: midY(id) + (i - (segs.length - 1) / 2) * step }));
    }
  };
  spread(segments, 'from', 'to', outPort, 'right');
  spread(segments, 'to', 'from', inPort, 'left');

  const colRight = (id: string) => colX[L.layerOf.get(id)!]! + colWidth[L.layerOf.get(id)!]!;
  const colLeft = (id: string) => colX[L.layerOf.get(id)!]!;
  const routes: EdgeRoute[] = [];
  const labelsByGap = new Map<number, Box[]>();
  for (const [id, chain] of L.chains) {
    const e = edgeById.get(id)!;
    const points: Point[] = [];
    const add = (p: Point) => {
      const last = points[points.length - 1];
      if (!last || last.x !== p.x || last.y !== p.y) points.push(p);
    };
    let label: Box | undefined;
    for (const s of chain) {
      const p = outPort.get(s)!;
      const q = inPort.get(s)!;
      add(p);
      add({ x: colRight(s.from), y: p.y });
      add({ x: colLeft(s.to), y: q.y });
      add(q);
      if (s === labelled.get(id)) {
        const cx = (colRight(s.from) + colLeft(s.to)) / 2;
        // Just above the curve's midpoint, so the line stays visible under its label.
        label = { x: cx - e.label.width / 2, y: (p.y + q.y) / 2 - e.label.height - 1, ...e.label };
        const k = L.layerOf.get(s.from)!;
        (labelsByGap.get(k) ?? labelsByGap.set(k, []).get(k)!).push(label);
      }
    }
    const reversed = L.reversed.has(id);
    routes.push({ id, from: e.from, to: e.to, points: reversed ? points.reverse() : points, selfLoop: false, reversed, label: label! });
  }
  // Labels in one gap are pushed apart downwards where they would overlap (crossing edges meet mid-gap).
  for (const list of labelsByGap.values()) {
    list.sort((a, b) => a.y - b.y);
    for (let i = 1; i < list.length; i++) list[i]!.y = Math.max(list[i]!.y, list[i - 1]!.y + list[i - 1]!.height + 2);
  }
  for (const [id, list] of loops) {
    const b = boxes.get(id)!;
    let top = b.y - loopHeight;
    list.forEach((e, i) => {
      const x1 = b.x + b.width * (0.3 - 0.05 * i);
      const x2 = b.x + b.width * (0.7 + 0.05 * i);
      const points = [{ x: x1, y: b.y }, { x: x1, y: b.y - loopHeight }, { x: x2, y: b.y - loopHeight }, { x: x2, y: b.y }];
      top -= e.label.height + 2;
      routes.push({ id: e.id, from: id, to: id, points, selfLoop: true, reversed: false,
        label: { x: b.x + b.width / 2 - e.label.width / 2, y: top + 2, ...e.label } });
    });
  }
  routes.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

  const real = new Map([...boxes].filter(([id]) => !L.dummies.has(id)));
  let all = [...real.values(), ...routes.map((r) => r.label)];
  // A label above the topmost edge may reach over the margin: move everything down.
  const dy = all.length ? Math.max(0, margin - Math.min(...all.map((b) => b.y))) : 0;
  if (dy > 0) {
    for (const b of new Set([...real.values(), ...routes.map((r) => r.label)])) b.y += dy;
    for (const r of routes) r.points = r.points.map((p) => ({ x: p.x, y: p.y + dy }));
    all = [...real.values(), ...routes.map((r) => r.label)];
  }
  const width = all.length ? Math.max(...all.map((b) => b.x + b.width)) + margin : 2 * margin;
  const height = all.length ? Math.max(...all.map((b) => b.y + b.height)) + margin : 2 * margin;
  return { width, height, nodes: real, edges: routes, crossings: L.crossings };
}
