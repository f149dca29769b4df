// OwnerIndex (src/registry/indexes.ts): key → latest claimant, falling back to earlier
// ones when it goes. One owner is stored as a plain string, several as a list; the
// answers must be the same as a plain list's, whatever the order of claims and releases.
import t from 'tap';
import { OwnerIndex } from '../src/registry/indexes';

t.test('the latest claim wins; releasing it falls back to the earlier claimant; a stale release changes nothing', async (t) => {
  const idx = new OwnerIndex();
  idx.claim('10.0.0.1', 'old');
  t.equal(idx.get('10.0.0.1'), 'old');
  idx.claim('10.0.0.1', 'new'); // the IP reused before the old pod's delete arrived
  t.equal(idx.get('10.0.0.1'), 'new');
  idx.release('10.0.0.1', 'old');
  t.equal(idx.get('10.0.0.1'), 'new', "the old record's delete does not erase the new owner");
  idx.release('10.0.0.1', 'nobody');
  t.equal(idx.get('10.0.0.1'), 'new');
  idx.claim('10.0.0.1', 'new');
  idx.release('10.0.0.1', 'new');
  t.equal(idx.get('10.0.0.1'), undefined, 'a claim repeated is one claim');
  idx.claim('a', 'x'); idx.claim('a', 'y'); idx.claim('a', 'z');
  idx.release('a', 'z');
  t.equal(idx.get('a'), 'y');
  idx.claim('a', 'x');
  t.equal(idx.get('a'), 'x', 'a claimant claiming again becomes the latest');
  idx.clear();
  t.equal(idx.get('a'), undefined);
});

t.test('the same answers as a list of claimants, over 20,000 random claims and releases', async (t) => {
  let seed = 7;
  // Park–Miller: seed × 48271 stays below 2^53, so every bit is kept (a larger multiplier lost the low bits).
  const rand = (n: number) => { seed = (seed * 48271) % 2147483647; return seed % n; };
  const idx = new OwnerIndex();
  const model = new Map<string, string[]>();
  let mismatches = 0;
  let most = 0;
  let shared = 0;
  for (let i = 0; i < 20_000; i++) {
    const key = `k${rand(20)}`;
    const owner = `o${rand(4)}`;
    const list = model.get(key) ?? [];
    if (rand(2)) {
      idx.claim(key, owner);
      const at = list.indexOf(owner);
      if (at !== -1) list.splice(at, 1);
      list.push(owner);
    } else {
      idx.release(key, owner);
      const at = list.indexOf(owner);
      if (at !== -1) list.splice(at, 1);
    }
    if (list.length) model.set(key, list); else model.delete(key);
    if (idx.get(key) !== list[list.length - 1]) mismatches++;
    most = Math.max(most, list.length);
    if (list.length > 1) shared++;
  }
  t.equal(mismatches, 0);
  t.ok(most >= 3 && shared > 1000, `keys held by several claimants at once (up to ${most}; ${shared} steps), not only the single-owner path`);
});
