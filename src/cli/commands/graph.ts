/**
 * `weft graph`: the service dependency graph with the golden signals on each edge, from
 * one reading of the proxies' own metrics (collectMeshStats: every ztunnel and ready
 * waypoint pod scraped twice, --window apart). Printed as a tree for the terminal, or
 * as DOT, Mermaid, a standalone SVG drawn by Weft (src/graph/svg.ts; no Graphviz), or
 * the graph as JSON. A proxy that does not answer is a warning on stderr; exit 1 when
 * none answers.
 */
import { contextOptions, loadContext } from '../context';
import { defineCommand, noPositionals } from '../io';
import { collectMeshStats } from '../mesh-stats';
import { proxyTargets } from '../proxy-targets';
import { namespaceOption } from '../registry-command';
import { withRegistry } from '../registry-session';
import { parse, type OptionSpec } from '../../lib/options';
import { buildGraph, type ServiceGraph } from '../../graph/model';
import { renderText } from '../../graph/text';
import { renderDot } from '../../graph/dot';
import { renderMermaid } from '../../graph/mermaid';
import { renderGraphSvg } from '../../graph/svg';

export const GRAPH_FORMATS = ['text', 'dot', 'mermaid', 'svg', 'json'] as const;
export type GraphFormat = (typeof GRAPH_FORMATS)[number];

/** The graph in one of the formats. */
export function renderGraph(g: ServiceGraph, format: GraphFormat): string {
  switch (format) {
    case 'text': return renderText(g);
    case 'dot': return renderDot(g);
    case 'mermaid': return renderMermaid(g);
    case 'svg': return renderGraphSvg(g);
    case 'json': return JSON.stringify(g, null, 2) + '\n';
  }
}

const USAGE = 'weft graph [-n NAMESPACE] [--window 10s] [-o text|dot|mermaid|svg|json]';

export default defineCommand({
  usage: USAGE,
  summary: 'the service graph with rps, success rate and latency on each edge: text, DOT, Mermaid, SVG or JSON',
  description: 'Every ztunnel and ready waypoint pod is scraped on its metrics port (15020) twice, --window apart;\n'
    + 'the two scrapes give each edge (source workload → destination Service) its requests per second,\n'
    + 'success rate and p99 latency (p50/p95 too in SVG tooltips, DOT tooltips and JSON), or its connections\n'
    + 'and bytes per second when it was seen only at L4 (dashed). A workload and a Service of the same\n'
    + 'namespace and name are one node. Colours: green success ≥ 99 %, amber ≥ 95 %, red below.',
  specs: {
    ...contextOptions,
    namespace: { ...namespaceOption, description: 'only edges with an end in this namespace (-n)' },
    window: {
      flag: 'window', default: 10_000, defaultText: '10s', description: 'time between the two scrapes (100ms to 10m)',
      parse: parse.duration({ min: 100, max: 600_000 }),
    } satisfies OptionSpec<number>,
    output: {
      flag: 'output', default: 'text' as GraphFormat, description: 'output format: text, dot, mermaid, svg or json (-o)',
      parse: parse.oneOf(GRAPH_FORMATS),
    } satisfies OptionSpec<GraphFormat>,
  },
  footer: 'Examples:\n'
    + '  weft graph -n demo\n'
    + '  weft graph -o svg > mesh.svg\n'
    + '  weft graph -o dot | dot -Tpng > mesh.png',
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    const ctx = loadContext(values, io.env);
    // The registry only names the waypoint pods; it is not held open across the window.
    // Every waypoint is read even with -n: a call into the namespace may pass another's.
    const targets = await withRegistry(ctx, async (session) => proxyTargets(ctx, await session.load()));
    const stats = await collectMeshStats(targets, {
      windowMs: values.window,
      ...(values.namespace ? { namespace: values.namespace } : {}),
      ...(io.signal ? { signal: io.signal } : {}),
    });
    const g = buildGraph(stats, { namespace: values.namespace });
    io.stdout(renderGraph(g, values.output));
    if (g.warnings.length) io.stderr(g.warnings.map((w) => `warning: ${w}\n`).join(''));
    return stats.proxies.length === 0 ? 1 : 0;
  },
});
