// The service graph's formats (src/graph): the model merges what the stats report per
// pair, labels and colours follow the success rate, and every format is well-formed for
// no edges, one edge, a chain, a diamond, a cycle and the demo topology: the SVG parses
// as XML, DOT and Mermaid parse with small grammars of their syntax, and names built
// to break each format come back intact from each of them.
import t from 'tap';
import { buildGraph } from '../src/graph/model';
import { renderSvg } from '../src/graph/svg';
import { renderText } from '../src/graph/text';
import { renderDot } from '../src/graph/dot';
import { renderMermaid } from '../src/graph/mermaid';
import { edgeLabel, edgeHealth } from '../src/graph/label';
import { dotString, escapeXml, mermaidText } from '../src/graph/escape';
import { FIXTURES, HOSTILE_NAME, HOSTILE_NS, edge, stats, tcpEdge } from './helpers/graph-fixtures';
import { xmlProblems } from './helpers/xml-wellformed';

/** What DOT keeps of a name: control characters other than line breaks are dropped (Graphviz chokes on them). */
function dotName(s: string): string {
  return s.replace(/\r\n?/g, '\n').replace(/[\u0000-\u0009\u000b-\u001f]/g, '');
}

// ---- a DOT reader for what renderDot writes: digraph, attribute statements, nodes, edges ----

type Attrs = Record<string, string>;
interface DotGraph { nodes: Map<string, Attrs>; edges: { from: string; to: string; attrs: Attrs }[] }

function dotTokens(s: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < s.length) {
    const c = s[i]!;
    if (/\s/.test(c)) { i++; continue; }
    if (c === '"') {
      let j = i + 1;
      let v = '';
      for (; j < s.length && s[j] !== '"'; j++) {
        if (s[j] === '\\') {
          const n = s[++j]!;
          v += n === 'n' ? '\n' : n === '"' || n === '\\' ? n : `\\${n}`;
        } else v += s[j];
      }
      if (j >= s.length) throw new Error('unterminated string');
      out.push(`"${v}`);
      i = j + 1;
      continue;
    }
    if (s.startsWith('->', i)) { out.push('->'); i += 2; continue; }
    if ('{}[];,='.includes(c)) { out.push(c); i++; continue; }
    const m = /^[A-Za-z0-9_.#]+/.exec(s.slice(i));
    if (!m) throw new Error(`unexpected ${JSON.stringify(s.slice(i, i + 10))}`);
    out.push(m[0]);
    i += m[0].length;
  }
  return out;
}

function parseDot(s: string): DotGraph {
  const tk = dotTokens(s);
  let i = 0;
  const expect = (v: string) => { if (tk[i++] !== v) throw new Error(`expected ${v} at token ${i - 1}, got ${tk[i - 1]}`); };
  const id = () => { const v = tk[i++]; if (!v || '{}[];,=->'.includes(v)) throw new Error(`expected an id, got ${v}`); return v.startsWith('"') ? v.slice(1) : v; };
  const attrs = (): Attrs => {
    const a: Attrs = {};
    if (tk[i] !== '[') return a;
    i++;
    while (tk[i] !== ']') {
      const k = id();
      expect('=');
      a[k] = id();
      if (tk[i] === ',' || tk[i] === ';') i++;
    }
    i++;
    return a;
  };
  expect('digraph'); id(); expect('{');
  const g: DotGraph = { nodes: new Map(), edges: [] };
  while (tk[i] !== '}') {
    if (['graph', 'node', 'edge'].includes(tk[i]!)) { i++; attrs(); }
    else {
      const a = id();
      if (tk[i] === '->') { i++; const b = id(); g.edges.push({ from: a, to: b, attrs: attrs() }); }
      else g.nodes.set(a, attrs());
    }
    expect(';');
  }
  expect('}');
  if (i !== tk.length) throw new Error('text after the graph');
  return g;
}

// ---- a Mermaid reader for what renderMermaid writes ----

function unMermaid(s: string): string {
  return s.replace(/#(\d+);/g, (_, n: string) => String.fromCodePoint(Number(n)));
}

function parseMermaid(s: string): { nodes: Map<string, { label: string; shape: string }>; edges: { from: string; to: string; label: string; dotted: boolean }[]; styles: number } {
  const lines = s.trimEnd().split('\n');
  if (lines[0] !== 'flowchart LR') throw new Error('not a flowchart');
  const nodes = new Map<string, { label: string; shape: string }>();
  const edges: { from: string; to: string; label: string; dotted: boolean }[] = [];
  let styles = 0;
  for (const line of lines.slice(1)) {
    let m: RegExpExecArray | null;
    if ((m = /^ {2}(n\d+)(\(|\[)"([^"]*)"(\)|\])$/.exec(line))) nodes.set(m[1]!, { label: unMermaid(m[3]!), shape: m[2]! });
    else if ((m = /^ {2}(n\d+) (-->|-\.->)\|"([^"|]*)"\| (n\d+)$/.exec(line))) edges.push({ from: m[1]!, to: m[4]!, label: unMermaid(m[3]!), dotted: m[2] === '-.->' });
    else if (/^ {2}linkStyle \d+ stroke:#[0-9a-f]{6},stroke-width:2px$/.test(line)) styles++;
    else throw new Error(`unexpected line ${JSON.stringify(line)}`);
  }
  for (const e of edges) if (!nodes.has(e.from) || !nodes.has(e.to)) throw new Error(`edge to an undeclared node: ${e.from} -> ${e.to}`);
  return { nodes, edges, styles };
}

t.test('the model: one node per namespace/name, one edge per pair with merged signals', async (t) => {
  const g = buildGraph(FIXTURES.demo!);
  t.same(g.nodes.map((n) => `${n.id}:${n.roles.join('+')}`), ['demo/client:workload', 'demo/echo:service', 'demo/frontend:service+workload', 'legacy/client:workload', 'legacy/echo:service']);
  const cf = g.edges.find((e) => e.id === 'demo/client -> demo/frontend')!;
  t.same(cf.protocols, ['http', 'tcp']);
  t.equal(cf.l4Only, false);
  t.equal(cf.rps, 12.3);
  t.equal(cf.connectionsPerSecond, 2.5, 'L4 figures add up');
  t.same(cf.reporters, ['waypoint demo/waypoint', 'ztunnel node-1']);
  const legacy = g.edges.find((e) => e.from === 'legacy/client')!;
  t.ok(legacy.l4Only && !legacy.mtls);
  // Two request edges of a pair: rps add up, success weighted by rps, latency the worse.
  const m = buildGraph(stats([edge('a/x', 'a/y', { rps: 30, successRate: 1, p99Ms: 5 }), edge('a/x', 'a/y', { protocol: 'grpc', rps: 10, successRate: 0.6, p99Ms: 40 })])).edges[0]!;
  t.equal(m.rps, 40);
  t.equal(m.successRate, 0.9);
  t.equal(m.p99Ms, 40);
  t.same(buildGraph(FIXTURES.demo!, { namespace: 'legacy' }).nodes.map((n) => n.id), ['legacy/client', 'legacy/echo'], '-n keeps edges touching the namespace');
});

t.test('labels and colours', async (t) => {
  const e = (over: Parameters<typeof edge>[2]) => buildGraph(stats([edge('a/x', 'a/y', over)])).edges[0]!;
  t.equal(edgeLabel(e({})), '12.3 rps · 99.5 % · p99 8 ms');
  t.equal(edgeLabel(e({ rps: 250, successRate: 0.99999, p99Ms: 0.42 })), '250 rps · 99.9 % · p99 0.4 ms', 'never rounded up to 100 %');
  t.equal(edgeLabel(e({ successRate: null, p99Ms: null, rps: 0 })), '0.0 rps');
  t.equal(edgeLabel(buildGraph(stats([tcpEdge('a/x', 'a/y')])).edges[0]!), '2.0 conn/s · 1.5 KiB/s');
  t.equal(edgeHealth(e({ successRate: 0.99 })), 'green');
  t.equal(edgeHealth(e({ successRate: 0.989 })), 'amber');
  t.equal(edgeHealth(e({ successRate: 0.95 })), 'amber');
  t.equal(edgeHealth(e({ successRate: 0.949 })), 'red');
  t.equal(edgeHealth(buildGraph(stats([tcpEdge('a/x', 'a/y')])).edges[0]!), 'none');
});

t.test('escaping', async (t) => {
  t.equal(escapeXml(`<a href="x">&'\u0001`), '&lt;a href=&quot;x&quot;&gt;&amp;&#39;');
  t.equal(dotString('a"b\\c\nd'), '"a\\"b\\\\c\\nd"');
  t.equal(mermaidText('a"b|c#d;<e>'), 'a#34;b#124;c#35;d#59;#60;e#62;');
});

for (const [name, s] of Object.entries(FIXTURES)) {
  t.test(`${name}: every format is well-formed and shows every edge`, async (t) => {
    const g = buildGraph(s);
    const svg = renderSvg(s);
    const { problems, elements } = xmlProblems(svg);
    t.same(problems, [], 'the SVG is well-formed XML');
    t.equal(elements[0], 'svg');
    t.equal(elements.filter((e) => e === 'path').length >= g.edges.length, true);
    t.equal((svg.match(/<g class="node"/g) ?? []).length, g.nodes.length, 'a box per node');
    t.equal((svg.match(/<g class="edge /g) ?? []).length, g.edges.length, 'a path per edge');
    t.notMatch(svg, /NaN|undefined|Infinity/);

    const dot = parseDot(renderDot(g));
    t.same([...dot.nodes.keys()].sort(), g.nodes.map((n) => dotName(n.id)), 'DOT: node ids are namespace/name');
    t.same(dot.edges.map((e) => `${e.from} -> ${e.to}`).sort(), g.edges.map((e) => dotName(e.id)).sort(), 'DOT: every edge');
    for (const e of g.edges) {
      const d = dot.edges.find((x) => x.from === dotName(e.from) && x.to === dotName(e.to))!;
      t.equal(d.attrs.label, edgeLabel(e) + (e.mtls ? ' · mTLS' : ''));
      t.equal(d.attrs.style, e.l4Only ? 'dashed' : undefined);
    }

    const mm = parseMermaid(renderMermaid(g));
    t.same([...mm.nodes.values()].map((n) => n.label).sort(), g.nodes.map((n) => n.id), 'Mermaid: labels are namespace/name');
    t.same(mm.edges.map((e) => `${mm.nodes.get(e.from)!.label} -> ${mm.nodes.get(e.to)!.label}`).sort(), g.edges.map((e) => e.id).sort(), 'Mermaid: every edge');
    t.equal(mm.styles, g.edges.length, 'Mermaid: a colour per edge');
    t.same(mm.edges.map((e) => e.dotted).filter(Boolean).length, g.edges.filter((e) => e.l4Only).length, 'Mermaid: L4-only edges dotted');

    const text = renderText(g);
    for (const e of g.edges) t.ok(text.includes(edgeLabel(e)), `text shows ${e.id}`);
    t.comment(`${name}: svg ${svg.length} B, dot ${renderDot(g).length} B, mermaid ${renderMermaid(g).length} B`);
  });
}

t.test('hostile names: escaped in SVG, round-trip through DOT and Mermaid, never split a line', async (t) => {
  const s = FIXTURES.hostile!;
  const g = buildGraph(s);
  const hostile = `${HOSTILE_NS}/${HOSTILE_NAME}`;
  const svg = renderSvg(s);
  t.notMatch(svg, /<script/);
  t.ok(svg.includes(escapeXml(hostile)));
  t.ok(parseDot(renderDot(g)).nodes.has(dotName(hostile)), 'DOT gives the name back (less its control characters)');
  const mm = parseMermaid(renderMermaid(g));
  t.ok([...mm.nodes.values()].some((n) => n.label === hostile), 'Mermaid gives the name back');
  t.equal(renderMermaid(g).split('\n').length, 1 + g.nodes.length + 2 * g.edges.length + 1, 'one line per statement');
});

t.test('text: a tree per caller, diamonds and cycles printed once', async (t) => {
  t.equal(renderText(buildGraph(FIXTURES.chain!)), [
    'weft graph: 3 nodes, 2 edges, window 10 s, at 2026-12-01T01:00:00.000Z',
    'demo/client',
    '└─▶ demo/frontend   12.3 rps · 99.5 % · p99 8 ms   mTLS',
    '    └─▶ demo/echo   12.3 rps · 97.0 % · p99 8 ms   mTLS · DEGRADED',
    '',
  ].join('\n'));
  const cycle = renderText(buildGraph(FIXTURES.cycle!));
  t.match(cycle, /├─▶ ring\/a \(cycle\)/);
  t.match(cycle, /└─▶ ↻ ring\/c +12\.3 rps · 99\.5 % · p99 1\.3 s/);
  t.equal(cycle.trim().split('\n').length, 1 + 1 + 5, 'a heading, the root, one line per edge');
  const demo = renderText(buildGraph(FIXTURES.demo!));
  t.match(demo, /legacy\/client\n└┄▶ legacy\/echo +2\.0 conn\/s · 1\.5 KiB\/s +L4 · plaintext/);
  const above = renderText(buildGraph(stats([edge('a/r', 'a/x'), edge('a/r', 'a/y'), edge('a/x', 'a/y'), edge('a/y', 'a/z')])));
  t.match(above, /└─▶ a\/y \(above\)/, 'a node already expanded is referred to');
  t.equal(renderText(buildGraph(FIXTURES.empty!)).split('\n')[1], 'No calls seen in the window.');
});
