// The pieces every status the controller writes shares (src/controller/status-patch.ts).
import t from 'tap';
import { stampCondition, statusTime } from '../src/controller/status-patch';

t.test('stampCondition: lastTransitionTime moves only on a flip; observedGeneration when known', async (t) => {
  const now = '2026-12-01T00:00:00Z';
  const c = { type: 'Accepted', status: 'True', reason: 'Accepted', message: 'ok' };
  t.same(stampCondition(c, undefined, 3, now), { ...c, observedGeneration: 3, lastTransitionTime: now }, 'first time: now');
  t.same(stampCondition(c, { status: 'True', lastTransitionTime: 'before' }, 4, now), { ...c, observedGeneration: 4, lastTransitionTime: 'before' }, 'same status: kept');
  t.same(stampCondition(c, { status: 'False', lastTransitionTime: 'before' }, undefined, now), { ...c, lastTransitionTime: now }, 'a flip: now; no generation, none written');
  t.same(stampCondition(c, { status: 'True', lastTransitionTime: 7 }, 1, now).lastTransitionTime, now, 'a malformed previous time is replaced');
});

t.test('statusTime: RFC 3339 in whole seconds, as Kubernetes writes it', async (t) => {
  t.equal(statusTime(new Date('2026-12-01T01:02:03.456Z')), '2026-12-01T01:02:03Z');
});
