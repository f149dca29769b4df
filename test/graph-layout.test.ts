// The layered layout of the service graph (src/graph/layers.ts, layout.ts) as the SVG
// renderer sizes it (graphLayout): for every fixture and a large seeded random graph,
// boxes and labels never overlap and stay inside the picture, callers sit left of what
// they call, edges start and end on their boxes, cycles are broken, and the same graph
// always gets the same picture whatever order its edges came in.
import t from 'tap';
import { buildGraph } from '../src/graph/model';
import { graphLayout } from '../src/graph/svg';
import { layer, countCrossings } from '../src/graph/layers';
import type { Box, Layout } from '../src/graph/layout';
import { FIXTURES, edge, stats } from './helpers/graph-fixtures';

function disjoint(a: Box, b: Box): boolean {
  return a.x + a.width <= b.x || b.x + b.width <= a.x || a.y + a.height <= b.y || b.y + b.height <= a.y;
}

function overlaps(lay: Layout): string[] {
  const items = [
    ...[...lay.nodes].map(([id, b]) => ({ what: `node ${id}`, b })),
    ...lay.edges.map((e) => ({ what: `label of ${e.id}`, b: e.label })),
  ];
  const bad: string[] = [];
  for (let i = 0; i < items.length; i++) {
    const { what, b } = items[i]!;
    if (b.x < 0 || b.y < 0 || b.x + b.width > lay.width || b.y + b.height > lay.height) bad.push(`${what} outside the picture`);
    for (let j = i + 1; j < items.length; j++) if (!disjoint(b, items[j]!.b)) bad.push(`${what} overlaps ${items[j]!.what}`);
  }
  return bad;
}

function onSide(p: { x: number; y: number }, b: Box): boolean {
  return (Math.abs(p.x - b.x) < 0.01 || Math.abs(p.x - b.x - b.width) < 0.01 || Math.abs(p.y - b.y) < 0.01) && p.y >= b.y - 0.01 && p.y <= b.y + b.height + 0.01;
}

for (const [name, s] of Object.entries(FIXTURES)) {
  t.test(`${name}: boxes and labels disjoint, inside the picture, edges end on their boxes`, async (t) => {
    const g = buildGraph(s);
    const lay = graphLayout(g);
    t.equal(lay.nodes.size, g.nodes.length, 'a box per node');
    t.equal(lay.edges.length, g.edges.length, 'a route per edge');
    t.same(overlaps(lay), []);
    for (const r of lay.edges) {
      t.ok(onSide(r.points[0]!, lay.nodes.get(r.from)!), `${r.id} starts on ${r.from}`);
      t.ok(onSide(r.points[r.points.length - 1]!, lay.nodes.get(r.to)!), `${r.id} ends on ${r.to}`);
    }
    t.same(graphLayout(buildGraph({ ...s, edges: [...s.edges].reverse() })), lay, 'the same whatever the order of the edges');
    t.comment(`${name}: ${g.nodes.length} nodes, ${g.edges.length} edges, ${Math.round(lay.width)}x${Math.round(lay.height)} px, ${lay.crossings} crossings`);
  });
}

t.test('callers are left of what they call; a diamond and a chain have no crossings', async (t) => {
  const chain = graphLayout(buildGraph(FIXTURES.chain!));
  const x = (id: string) => chain.nodes.get(id)!.x;
  t.ok(x('demo/client') < x('demo/frontend') && x('demo/frontend') < x('demo/echo'));
  t.equal(chain.crossings, 0);
  const diamond = graphLayout(buildGraph(FIXTURES.diamond!));
  const d = (id: string) => diamond.nodes.get(id)!;
  const cx = (id: string) => d(id).x + d(id).width / 2;
  t.ok(cx('shop/web') < cx('shop/cart') && cx('shop/cart') === cx('shop/catalog') && cx('shop/cart') < cx('shop/db'), 'cart and catalog share a column');
  t.equal(diamond.crossings, 0);
});

t.test('an edge spanning layers routes through dummies, not through the box it skips', async (t) => {
  const lay = graphLayout(buildGraph(FIXTURES.skip!));
  const r = lay.edges.find((e) => e.id === 's/a -> s/d')!;
  t.ok(r.points.length > 4, 'bends between columns');
  for (const id of ['s/b', 's/c']) {
    const b = lay.nodes.get(id)!;
    const inside = r.points.filter((p) => p.x > b.x && p.x < b.x + b.width && p.y > b.y && p.y < b.y + b.height);
    t.same(inside, [], `no point inside ${id}`);
  }
});

t.test('cycles: back edges are reversed and the layering is still a DAG', async (t) => {
  const edges = [
    { id: 'ab', from: 'a', to: 'b' }, { id: 'bc', from: 'b', to: 'c' }, { id: 'ca', from: 'c', to: 'a' },
    { id: 'ba', from: 'b', to: 'a' }, { id: 'cc', from: 'c', to: 'c' },
  ];
  const L = layer(['a', 'b', 'c'], edges);
  t.same([...L.reversed].sort(), ['ba', 'ca'], 'the calls back towards a are the reversed ones');
  for (const chain of L.chains.values()) for (const s of chain) t.equal(L.layerOf.get(s.to), L.layerOf.get(s.from)! + 1);
  t.notOk(L.chains.has('cc'), 'a self-loop is no layer edge');
  const lay = graphLayout(buildGraph(FIXTURES.cycle!));
  const loop = lay.edges.find((e) => e.from === e.to)!;
  t.ok(loop.selfLoop);
  t.ok(loop.label.y + loop.label.height <= lay.nodes.get('ring/c')!.y, 'the self-loop label sits above its box');
  const back = lay.edges.find((e) => e.id === 'ring/c -> ring/a')!;
  t.ok(back.reversed);
  t.ok(back.points[0]!.x > back.points[back.points.length - 1]!.x, 'a reversed edge runs right to left');
});

t.test('barycenter sweeps remove avoidable crossings', async (t) => {
  // Two callers each calling the callee listed "on the other side".
  const L = layer(['a', 'b', 'x', 'y'], [{ id: '1', from: 'a', to: 'y' }, { id: '2', from: 'b', to: 'x' }, { id: '3', from: 'a', to: 'x' }, { id: '4', from: 'b', to: 'y' }]);
  t.equal(L.crossings, countCrossings(L.layers, [...L.chains.values()].flat()));
  t.ok(L.crossings <= 1);
});

t.test('a large random graph: no overlaps (figures printed)', async (t) => {
  let seed = 42;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const names = Array.from({ length: 60 }, (_, i) => `ns${i % 4}/svc-${i}`);
  const edges = Array.from({ length: 150 }, () => edge(names[Math.floor(rnd() * 60)]!, names[Math.floor(rnd() * 60)]!, { successRate: rnd() }));
  const g = buildGraph(stats(edges));
  const started = process.hrtime.bigint();
  const lay = graphLayout(g);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.same(overlaps(lay), []);
  t.comment(`random: ${g.nodes.length} nodes, ${g.edges.length} edges laid out in ${ms.toFixed(1)} ms, ${lay.crossings} crossings, ${Math.round(lay.width)}x${Math.round(lay.height)} px`);
});
