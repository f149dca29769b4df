/**
 * The service graph for a terminal: a tree per caller that nobody calls, each call an
 * arrow with its golden signals in one aligned column. A node reached twice (a
 * diamond) is expanded once and marked `(above)` after; an edge back to a node on the
 * current path is marked `(cycle)`, so every edge is printed exactly once and the
 * output stays finite. Dashed arrows (`┄▶`) are calls seen only at L4.
 */
import { edgeHealth, edgeLabel } from './label';
import { compare, type GraphEdge, type ServiceGraph } from './model';

interface Line {
  tree: string;
  signals: string;
}

export function renderText(g: ServiceGraph): string {
  const heading = `weft graph: ${g.nodes.length} node${g.nodes.length === 1 ? '' : 's'}, ${g.edges.length} edge${g.edges.length === 1 ? '' : 's'}, window ${g.windowSeconds} s, at ${g.at}`;
  if (g.edges.length === 0) return `${heading}\nNo calls seen in the window.\n`;
  const out = new Map<string, GraphEdge[]>();
  const called = new Set<string>();
  for (const e of g.edges) {
    (out.get(e.from) ?? out.set(e.from, []).get(e.from)!).push(e);
    if (e.from !== e.to) called.add(e.to);
  }
  for (const list of out.values()) list.sort((a, b) => compare(a.to, b.to));

  const lines: Line[] = [];
  const expanded = new Set<string>();
  const walk = (id: string, prefix: string, path: Set<string>) => {
    expanded.add(id);
    const edges = out.get(id) ?? [];
    edges.forEach((e, i) => {
      const last = i === edges.length - 1;
      const arrow = `${last ? '└' : '├'}${e.l4Only ? '┄' : '─'}▶ `;
      const self = e.to === id;
      const again = self ? '' : path.has(e.to) ? ' (cycle)' : expanded.has(e.to) && out.has(e.to) ? ' (above)' : '';
      lines.push({ tree: `${prefix}${arrow}${self ? '↻ ' : ''}${e.to}${again}`, signals: signals(e) });
      if (!self && !again && !expanded.has(e.to)) walk(e.to, prefix + (last ? '    ' : '│   '), new Set([...path, e.to]));
    });
  };
  // Callers nobody calls first, then whatever is left (nodes only in cycles).
  const roots = [...g.nodes.map((n) => n.id).filter((id) => !called.has(id)), ...g.nodes.map((n) => n.id)];
  for (const id of roots) {
    if (expanded.has(id) || !out.has(id)) continue;
    lines.push({ tree: id, signals: '' });
    walk(id, '', new Set([id]));
  }
  const width = Math.max(...lines.map((l) => [...l.tree].length));
  const body = lines.map((l) => (l.signals ? l.tree + ' '.repeat(width - [...l.tree].length + 3) + l.signals : l.tree));
  return `${heading}\n${body.join('\n')}\n`;
}

function signals(e: GraphEdge): string {
  const health = edgeHealth(e);
  const marks = [e.mtls ? 'mTLS' : 'plaintext'];
  if (e.l4Only) marks.unshift('L4');
  if (health === 'amber') marks.push('DEGRADED');
  if (health === 'red') marks.push('FAILING');
  return `${edgeLabel(e)}   ${marks.join(' · ')}`;
}
