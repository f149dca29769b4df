// lib/deadline: the signal behind the waypoint's route and attempt timeouts, on a manual clock.
import t from 'tap';
import { Deadline } from '../src/lib/deadline';
import { ManualClock } from './helpers/clock';

t.test('the time runs out: aborted and expired', async (t) => {
  const clock = new ManualClock();
  const parent = new AbortController();
  const d = new Deadline(parent.signal, 100, clock);
  clock.advance(99);
  t.notOk(d.signal.aborted);
  clock.advance(1);
  t.ok(d.signal.aborted);
  t.ok(d.expired);
  d.dispose();
});

t.test('the parent aborts first (also before it was made): aborted, not expired', async (t) => {
  const clock = new ManualClock();
  const parent = new AbortController();
  const d = new Deadline(parent.signal, 100, clock);
  parent.abort();
  t.ok(d.signal.aborted);
  t.notOk(d.expired);
  d.dispose();
  const gone = new Deadline(parent.signal, 100, clock);
  t.ok(gone.signal.aborted, 'a parent already aborted aborts at once');
  gone.dispose();
});

t.test('dispose clears the timer and stops following the parent', async (t) => {
  const clock = new ManualClock();
  const parent = new AbortController();
  const d = new Deadline(parent.signal, 100, clock);
  d.dispose();
  t.equal(clock.pending, 0, 'no timer left');
  parent.abort();
  clock.advance(200);
  t.notOk(d.signal.aborted);
  t.notOk(d.expired);
});
