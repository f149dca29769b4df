// The idle timer both ends of an HBONE connection use (pool tunnels, server
// sessions): armed when not busy, disarmed by a stream, re-checked when it fires,
// dead once stopped. On the injected clock, no sleeps.
import t from 'tap';
import { IdleTimer } from '../src/hbone/idle';
import { ManualClock } from './helpers/clock';

function timer(ms = 1000) {
  const clock = new ManualClock();
  const s = { busy: false, fired: 0 };
  const idle = new IdleTimer(ms, () => s.busy, () => { s.fired++; }, clock);
  return { clock, s, idle };
}

t.test('fires once after ms of not being busy', async (t) => {
  const { clock, s, idle } = timer();
  idle.arm();
  clock.advance(999);
  t.equal(s.fired, 0);
  clock.advance(1);
  t.equal(s.fired, 1);
  t.notOk(idle.armed);
  clock.advance(10_000);
  t.equal(s.fired, 1, 'once');
});

t.test('a stream disarms it; arming again counts from then', async (t) => {
  const { clock, s, idle } = timer();
  idle.arm();
  clock.advance(900);
  idle.disarm();
  clock.advance(5000);
  t.equal(s.fired, 0, 'disarmed');
  idle.arm();
  clock.advance(900);
  idle.arm();
  clock.advance(900);
  t.equal(s.fired, 0, 're-arming restarts the count');
  clock.advance(100);
  t.equal(s.fired, 1);
  t.equal(clock.pending, 0, 'one timer at a time');
});

t.test('busy: not armed, and not fired if busy when due', async (t) => {
  const { clock, s, idle } = timer();
  s.busy = true;
  idle.arm();
  t.notOk(idle.armed, 'busy: nothing to count');
  s.busy = false;
  idle.arm();
  s.busy = true;
  clock.advance(1000);
  t.equal(s.fired, 0, 'busy when due');
});

t.test('stopped: never fires again', async (t) => {
  const { clock, s, idle } = timer();
  idle.arm();
  idle.stop();
  idle.arm();
  clock.advance(5000);
  t.equal(s.fired, 0);
  t.equal(clock.pending, 0);
});
