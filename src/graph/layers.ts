/**
 * The first half of a layered (Sugiyama-style) drawing, simplified for service graphs
 * of tens to hundreds of edges: break cycles by reversing the back edges a DFS finds,
 * put every node on its longest-path layer, cut edges that span layers into chains
 * through dummy nodes (so they route between boxes, never through them), then order
 * each layer by barycenters over a few down/up sweeps, keeping the order with the
 * fewest crossings. Deterministic: the same graph always gets the same layers.
 */
import { compare } from './model';

export interface LayerEdge {
  id: string;
  from: string;
  to: string;
}

/** One edge of the layered graph: always from layer k to layer k + 1. */
export interface Segment {
  /** The input edge it is part of. */
  edge: string;
  from: string;
  to: string;
}

export interface Layering {
  /** Node ids per layer, in drawing order; dummies included. */
  layers: string[][];
  layerOf: Map<string, number>;
  /** Dummy node ids (they carry an edge across a layer). */
  dummies: Set<string>;
  /** Per input edge (self-loops excluded): its chain of segments in layer order. */
  chains: Map<string, Segment[]>;
  /** Input edges drawn against the layer direction (they closed a cycle). */
  reversed: Set<string>;
  /** Edge crossings of the chosen order. */
  crossings: number;
}

export function layer(nodeIds: readonly string[], edges: readonly LayerEdge[], sweeps = 8): Layering {
  const ids = [...new Set([...nodeIds, ...edges.flatMap((e) => [e.from, e.to])])].sort(compare);
  const real = edges.filter((e) => e.from !== e.to);
  const { reversed, order } = breakCycles(ids, real);
  const dag = real.map((e) => (reversed.has(e.id) ? { id: e.id, from: e.to, to: e.from } : e));
  const layerOf = longestPath(ids, dag);

  const dummies = new Set<string>();
  const chains = new Map<string, Segment[]>();
  for (const e of dag) {
    const chain: Segment[] = [];
    let prev = e.from;
    for (let l = layerOf.get(e.from)! + 1; l < layerOf.get(e.to)!; l++) {
      const d = `\u0000${e.id}\u0000${l}`;
      dummies.add(d);
      layerOf.set(d, l);
      chain.push({ edge: e.id, from: prev, to: d });
      prev = d;
    }
    chain.push({ edge: e.id, from: prev, to: e.to });
    chains.set(e.id, chain);
  }
  const segments = [...chains.values()].flat();

  // Initial order: DFS discovery, which keeps a chain's nodes at similar heights.
  const depth = Math.max(-1, ...layerOf.values()) + 1;
  const layers: string[][] = Array.from({ length: depth }, () => []);
  for (const id of order) layers[layerOf.get(id)!]!.push(id);
  for (const seg of segments) if (dummies.has(seg.to)) layers[layerOf.get(seg.to)!]!.push(seg.to);

  const up = new Map<string, string[]>();
  const down = new Map<string, string[]>();
  for (const s of segments) {
    (down.get(s.from) ?? down.set(s.from, []).get(s.from)!).push(s.to);
    (up.get(s.to) ?? up.set(s.to, []).get(s.to)!).push(s.from);
  }
  let best = layers.map((l) => [...l]);
  let bestCrossings = countCrossings(best, segments);
  let current = best.map((l) => [...l]);
  for (let sweep = 0; sweep < sweeps && bestCrossings > 0; sweep++) {
    const downward = sweep % 2 === 0;
    const range = downward ? [...Array(depth).keys()].slice(1) : [...Array(depth).keys()].slice(0, -1).reverse();
    for (const l of range) {
      const fixed = current[downward ? l - 1 : l + 1]!;
      const pos = new Map(fixed.map((id, i) => [id, i]));
      const neighbours = downward ? up : down;
      const bary = new Map(current[l]!.map((id, i) => {
        const ns = (neighbours.get(id) ?? []).map((n) => pos.get(n)!);
        return [id, ns.length ? ns.reduce((a, b) => a + b, 0) / ns.length : i];
      }));
      // Stable: ties keep their present order.
      current[l] = current[l]!.map((id, i) => ({ id, i })).sort((a, b) => bary.get(a.id)! - bary.get(b.id)! || a.i - b.i).map((x) => x.id);
    }
    const c = countCrossings(current, segments);
    if (c < bestCrossings) {
      bestCrossings = c;
      best = current.map((l) => [...l]);
    }
  }
  return { layers: best, layerOf, dummies, chains, reversed, crossings: bestCrossings };
}

/**
 * Reverses the edges a depth-first search finds going back to a node still on its
 * stack. The search starts at nodes nobody calls (clients), so in a call cycle the edge
 * back towards the caller is the one drawn reversed. Returns the discovery order too.
 */
function breakCycles(ids: string[], edges: readonly LayerEdge[]): { reversed: Set<string>; order: string[] } {
  const out = new Map<string, LayerEdge[]>();
  const indegree = new Map(ids.map((id) => [id, 0]));
  for (const e of edges) {
    (out.get(e.from) ?? out.set(e.from, []).get(e.from)!).push(e);
    indegree.set(e.to, (indegree.get(e.to) ?? 0) + 1);
  }
  for (const list of out.values()) list.sort((a, b) => compare(a.to, b.to) || compare(a.id, b.id));
  const reversed = new Set<string>();
  const state = new Map<string, 'open' | 'done'>();
  const order: string[] = [];
  const starts = [...ids.filter((id) => indegree.get(id) === 0), ...ids];
  for (const start of starts) {
    if (state.has(start)) continue;
    // Iterative DFS: a long call chain must not overflow the stack.
    const stack: { id: string; next: number }[] = [{ id: start, next: 0 }];
    state.set(start, 'open');
    order.push(start);
    while (stack.length) {
      const top = stack[stack.length - 1]!;
      const e = (out.get(top.id) ?? [])[top.next++];
      if (!e) {
        state.set(top.id, 'done');
        stack.pop();
        continue;
      }
      const s = state.get(e.to);
      if (s === 'open') reversed.add(e.id);
      else if (s === undefined) {
        state.set(e.to, 'open');
        order.push(e.to);
        stack.push({ id: e.to, next: 0 });
      }
    }
  }
  return { reversed, order };
}

/** Layer = length of the longest path reaching the node (callers left of callees). */
function longestPath(ids: string[], dag: readonly LayerEdge[]): Map<string, number> {
  const layerOf = new Map(ids.map((id) => [id, 0]));
  const indegree = new Map(ids.map((id) => [id, 0]));
  const out = new Map<string, string[]>();
  for (const e of dag) {
    indegree.set(e.to, indegree.get(e.to)! + 1);
    (out.get(e.from) ?? out.set(e.from, []).get(e.from)!).push(e.to);
  }
  const queue = ids.filter((id) => indegree.get(id) === 0);
  for (let i = 0; i < queue.length; i++) {
    const id = queue[i]!;
    for (const to of out.get(id) ?? []) {
      layerOf.set(to, Math.max(layerOf.get(to)!, layerOf.get(id)! + 1));
      indegree.set(to, indegree.get(to)! - 1);
      if (indegree.get(to) === 0) queue.push(to);
    }
  }
  return layerOf;
}

/** Pairs of segments between the same two layers whose ends are in opposite order. */
export function countCrossings(layers: string[][], segments: readonly Segment[]): number {
  const pos = new Map<string, number>();
  const layerOf = new Map<string, number>();
  layers.forEach((l, k) => l.forEach((id, i) => {
    pos.set(id, i);
    layerOf.set(id, k);
  }));
  const byLayer = new Map<number, [number, number][]>();
  for (const s of segments) {
    const k = layerOf.get(s.from)!;
    const list = byLayer.get(k) ?? byLayer.set(k, []).get(k)!;
    list.push([pos.get(s.from)!, pos.get(s.to)!]);
  }
  let n = 0;
  for (const list of byLayer.values()) {
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length; j++) {
        if ((list[i]![0] - list[j]![0]) * (list[i]![1] - list[j]![1]) < 0) n++;
      }
    }
  }
  return n;
}
