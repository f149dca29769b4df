// The waypoint's per-Service table (per-service.ts), which the outlier detectors,
// bulkheads, balancers and admission gates keep their state in: made once per Service,
// kept while its section is the same object or the same JSON, made afresh (the old one
// dropped) when it changes, dropped by prune() when the section goes, and safe against
// a make() that prunes the table itself (admission does).
import t from 'tap';
import { PerService } from '../src/waypoint/per-service';

interface Section { limit: number }

function table(opts: { same?: (a: Section, b: Section) => boolean; onMake?: () => void } = {}) {
  const made: string[] = [];
  const dropped: string[] = [];
  const cache = new PerService<Section, { id: number; section: Section }>({
    make: (ns, name, section) => {
      opts.onMake?.();
      made.push(`${ns}/${name}`);
      return { id: made.length, section };
    },
    ...(opts.same ? { same: opts.same } : {}),
    drop: (state, ns, name) => { dropped.push(`${ns}/${name}#${state.id}`); },
  });
  return { cache, made, dropped };
}

t.test('one state per Service, kept while the section is the same object or the same JSON', async (t) => {
  const { cache, made, dropped } = table();
  const s1 = { limit: 1 };
  const a = cache.get('demo', 'echo', s1);
  t.equal(cache.get('demo', 'echo', s1), a, 'the same object');
  const s1again = { limit: 1 };
  t.equal(cache.get('demo', 'echo', s1again), a, 'an equal section (another section of the policy was edited)');
  t.equal([...cache.entries()][0]!.section, s1again, 'the entry now holds the latest equal section');
  t.not(cache.get('other', 'echo', s1), a, 'another namespace, another state');
  t.equal(cache.size, 2);
  const b = cache.get('demo', 'echo', { limit: 2 });
  t.not(b, a, 'a changed section: a new state');
  t.same(made, ['demo/echo', 'other/echo', 'demo/echo']);
  t.same(dropped, ['demo/echo#1'], 'the replaced state was dropped');
});

t.test('same: identity only when told so', async (t) => {
  const { cache } = table({ same: () => false });
  const a = cache.get('demo', 'echo', { limit: 1 });
  t.not(cache.get('demo', 'echo', { limit: 1 }), a, 'an equal but new section is a new state');
});

t.test('prune drops the states whose section is gone or changed, and empty namespaces', async (t) => {
  const { cache, dropped } = table();
  const keep = { limit: 1 };
  cache.get('a', 'kept', keep);
  cache.get('a', 'edited', { limit: 1 });
  cache.get('b', 'gone', { limit: 1 });
  const now: Record<string, Section | undefined> = { 'a/kept': { limit: 1 }, 'a/edited': { limit: 9 } };
  cache.prune((ns, name) => now[`${ns}/${name}`]);
  t.same([...cache.entries()].map((e) => `${e.namespace}/${e.name}`), ['a/kept'], 'an equal section keeps its state');
  t.same(dropped, ['a/edited#2', 'b/gone#3']);
  t.equal(cache.size, 1);
  cache.clear();
  t.equal(cache.size, 0);
  t.same(dropped, ['a/edited#2', 'b/gone#3', 'a/kept#1'], 'clear drops every state');
});

t.test('a make() that prunes the table (the namespace emptied under it) still stores its state', async (t) => {
  let prune = (): void => {};
  const { cache, dropped } = table({ same: () => false, onMake: () => prune() });
  prune = () => cache.prune(() => undefined);
  const a = cache.get('demo', 'echo', { limit: 1 });
  t.equal(cache.get('demo', 'echo', a.section), a, 'stored and found again');
  const b = cache.get('demo', 'echo', { limit: 2 });
  t.not(b, a);
  t.equal(cache.get('demo', 'echo', b.section), b);
  t.same(dropped, ['demo/echo#1'], 'the old state dropped once, by get(), not again by the prune');
  t.equal(cache.size, 1);
});
