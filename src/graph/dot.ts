/**
 * The service graph in Graphviz DOT, for `dot -Tsvg` and the tools that read it. Same
 * labels and colours as the SVG; node ids are the quoted `namespace/name`.
 */
import { dotString } from './escape';
import { edgeDetails, edgeHealth, edgeLabel, HEALTH_COLOURS } from './label';
import type { ServiceGraph } from './model';

export function renderDot(g: ServiceGraph): string {
  const lines = [
    'digraph weft {',
    `  graph [rankdir=LR, fontname="monospace", fontsize=10, labelloc=t, label=${dotString(`weft graph · window ${g.windowSeconds} s · ${g.at}`)}];`,
    '  node [shape=box, style="rounded,filled", fontname="monospace", fontsize=11];',
    '  edge [fontname="monospace", fontsize=9];',
  ];
  for (const n of g.nodes) {
    const service = n.roles.includes('service');
    lines.push(`  ${dotString(n.id)} [label=${dotString(n.id)}, tooltip=${dotString(`${n.id} (${n.roles.join(', ')})`)}, `
      + `fillcolor="${service ? '#eff6ff' : '#f8fafc'}", color="${service ? '#1d4ed8' : '#475569'}"];`);
  }
  for (const e of g.edges) {
    const colour = HEALTH_COLOURS[edgeHealth(e)];
    const label = edgeLabel(e) + (e.mtls ? ' · mTLS' : '');
    lines.push(`  ${dotString(e.from)} -> ${dotString(e.to)} [label=${dotString(label)}, tooltip=${dotString(edgeDetails(e).join('\n'))}, `
      + `color="${colour}", fontcolor="${colour}"${e.l4Only ? ', style=dashed' : ''}];`);
  }
  lines.push('}');
  return lines.join('\n') + '\n';
}
