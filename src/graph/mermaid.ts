/**
 * The service graph as a Mermaid flowchart, for Markdown that renders it (GitHub,
 * GitLab, many wikis). Node ids are generated (`n0`, `n1`, ...) because Mermaid ids
 * cannot hold `/`; every label is quoted and entity-escaped (escape.ts). Services are
 * rounded boxes, workloads that are only callers square ones; L4-only edges dotted.
 */
import { mermaidText } from './escape';
import { edgeHealth, edgeLabel, HEALTH_COLOURS } from './label';
import type { ServiceGraph } from './model';

export function renderMermaid(g: ServiceGraph): string {
  const lines = ['flowchart LR'];
  const ids = new Map(g.nodes.map((n, i) => [n.id, `n${i}`]));
  for (const n of g.nodes) {
    const text = `"${mermaidText(n.id)}"`;
    lines.push(`  ${ids.get(n.id)}${n.roles.includes('service') ? `(${text})` : `[${text}]`}`);
  }
  const styles: string[] = [];
  g.edges.forEach((e, i) => {
    const label = mermaidText(edgeLabel(e) + (e.mtls ? ' · mTLS' : ''));
    lines.push(`  ${ids.get(e.from)} ${e.l4Only ? '-.->' : '-->'}|"${label}"| ${ids.get(e.to)}`);
    styles.push(`  linkStyle ${i} stroke:${HEALTH_COLOURS[edgeHealth(e)]},stroke-width:2px`);
  });
  return [...lines, ...styles].join('\n') + '\n';
}
