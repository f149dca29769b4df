// The shared stream window of an HBONE session (src/hbone/window-share.ts) as pure
// logic: the arithmetic (n streams × (window + overhead) within the budget), when
// SETTINGS are sent (lowering at once, raising after a delay, few in flight), the
// window in force until the peer acknowledges, and stall reservations shrunk with it.
// Manual clock, no sockets, no sleeps.
import t from 'tap';
import { CROSSING_WRITE_MAX, queueBound, sharedWindow, stalledReceiveSize, WindowShare, type WindowShareOptions } from '../src/hbone/window-share';
import { ByteBudget, StallReservation } from '../src/hbone/limits';
import { DEFAULT_HBONE_LIMITS } from '../src/hbone/limits';
import { DEFAULT_HBONE_TUNING } from '../src/hbone/settings';
import { ManualClock } from './helpers/clock';

const KiB = 1024;
const MiB = 1024 * KiB;
const defaults: WindowShareOptions = {
  budget: DEFAULT_HBONE_LIMITS.connectionBufferBytes,
  maxWindow: DEFAULT_HBONE_TUNING.streamWindow,
  minWindow: 65_535,
  overhead: 2 * DEFAULT_HBONE_TUNING.pipeHighWaterMark,
};

t.test('the window: whole for few streams, halved until every stream fits the budget, floored', async (t) => {
  const w = (n: number) => sharedWindow(n, defaults);
  t.equal(w(0), 4 * MiB, 'no stream: the whole window');
  t.equal(w(1), 4 * MiB, 'one stream keeps its 4 MiB (throughput)');
  t.equal(w(3), 4 * MiB);
  t.equal(w(4), 2 * MiB);
  t.equal(w(8), 1 * MiB, 'iperf3 -P 8: 1 MiB each');
  t.equal(w(100), 65_535, 'never below the floor');
  for (let n = 1; n <= 28; n++) {
    t.ok(n * (w(n) + defaults.overhead) <= defaults.budget, `${n} streams × (${w(n)} + overhead) fit 16 MiB`);
  }
  t.equal(sharedWindow(5, { ...defaults, maxWindow: 32 * KiB }), 32 * KiB, 'a configured window below the floor is kept');
});

function share(o: Partial<WindowShareOptions> = {}) {
  const clock = new ManualClock();
  const sent: Array<{ window: number; ack: () => void }> = [];
  const s = new WindowShare({ ...defaults, ...o }, (window, ack) => { sent.push({ window, ack }); return true; }, clock, 1000);
  return { s, sent, clock };
}

t.test('lowering is sent at once and in force only once acknowledged', async (t) => {
  const { s, sent } = share();
  for (let i = 0; i < 3; i++) s.opened();
  t.equal(sent.length, 0, 'three streams fit with the whole window: no SETTINGS');
  s.opened();
  t.same(sent.map((x) => x.window), [2 * MiB]);
  t.equal(s.window, 2 * MiB);
  t.equal(s.inForce, 4 * MiB, 'the peer may still use 4 MiB until it acknowledges');
  for (let i = 0; i < 4; i++) s.opened();
  t.same(sent.map((x) => x.window), [2 * MiB, 1 * MiB]);
  sent[0]!.ack();
  t.equal(s.inForce, 2 * MiB, 'first ACK: 2 MiB, 1 MiB still unacknowledged');
  sent[1]!.ack();
  t.equal(s.inForce, 1 * MiB);
});

t.test('raising waits, and streams that come and go within the delay send nothing', async (t) => {
  const { s, sent, clock } = share();
  for (let i = 0; i < 8; i++) s.opened();
  sent.forEach((x) => x.ack());
  const before = sent.length;
  for (let i = 0; i < 6; i++) s.closed();
  clock.advance(500);
  s.opened();
  s.closed();
  clock.advance(499);
  t.equal(sent.length, before, 'nothing within the delay, counted from when the window could grow');
  clock.advance(1);
  t.same(sent.slice(before).map((x) => x.window), [4 * MiB], 'one SETTINGS back to the whole window');
  t.equal(s.inForce, 4 * MiB, 'a raise is in force at once (the peer may use it when it reads it)');
  s.opened();
  t.equal(sent.length, before + 1, 'one stream: no change');
});

t.test('few SETTINGS in flight: a peer that does not acknowledge keeps the window it had', async (t) => {
  const { s, sent, clock } = share({ budget: 64 * MiB, overhead: 0 });
  // Each step up in streams halves the window: 16 → 32 → 64 → ... streams.
  for (let i = 0; i < 1000; i++) s.opened();
  t.equal(sent.length, 4, 'at most four unacknowledged');
  t.equal(s.inForce, 4 * MiB, 'nothing acknowledged: the peer may still fill 4 MiB per stream');
  for (let i = 0; i < 1000; i++) s.closed();
  clock.advance(10_000);
  t.equal(sent.length, 4, 'still no more while none is acknowledged');
  sent[0]!.ack();
  clock.advance(1000);
  t.equal(sent.length, 5, 'an ACK lets the pending change go: back up to the whole window');
  t.equal(sent.at(-1)!.window, 4 * MiB);
  s.stop();
  sent[1]!.ack();
  clock.advance(10_000);
  t.equal(sent.length, 5, 'stopped: nothing more');
});

t.test('a SETTINGS the session could not send changes nothing', async (t) => {
  let accept = false;
  const sent: number[] = [];
  const s = new WindowShare(defaults, (window) => { if (accept) sent.push(window); return accept; }, new ManualClock(), 1000);
  for (let i = 0; i < 8; i++) s.opened();
  t.same([s.window, s.inForce], [4 * MiB, 4 * MiB], 'not sent: neither advertised nor in flight');
  accept = true;
  s.opened();
  t.same(sent, [1 * MiB], 'the next change sends the whole drop');
});

t.test('stall reservations take the window in force and shrink when it drops', async (t) => {
  const { s, sent } = share();
  const budget = new ByteBudget(defaults.budget);
  const hwm = DEFAULT_HBONE_TUNING.pipeHighWaterMark;
  const reservations: StallReservation[] = [];
  const reserve = () => {
    const r: StallReservation = new StallReservation(budget, { received: () => s.inForce + hwm, sent: hwm }, () => s.forget(r));
    s.hold(r);
    reservations.push(r);
    return r;
  };
  for (let i = 0; i < 3; i++) {
    s.opened();
    t.ok(reserve().stall('received', true));
  }
  t.equal(budget.used, 3 * (4 * MiB + hwm));
  for (let i = 0; i < 5; i++) s.opened();
  t.notOk(reserve().stall('received', true), 'before the ACK a fourth 4 MiB stall does not fit');
  sent.forEach((x) => x.ack());
  t.equal(s.inForce, 1 * MiB);
  t.equal(budget.used, 3 * (1 * MiB + hwm), 'held reservations shrunk to the window in force');
  for (let i = 0; i < 5; i++) t.ok(reserve().stall('received', true), `stall ${i + 4} fits now`);
  for (const r of reservations) t.ok(r.stall('sent', true));
  t.ok(budget.used <= defaults.budget, `8 streams stalled both ways: ${budget.used} ≤ ${defaults.budget}`);
  for (const r of reservations) r.release();
  t.equal(budget.used, 0);
  sent.push({ window: 0, ack: () => {} });
  s.closed();
  t.equal(budget.used, 0, 'released reservations are forgotten by the share');
});

t.test('a raise grows the stalled streams\' reservations first, and waits while the budget cannot cover it', async (t) => {
  const { s, sent, clock } = share();
  const budget = new ByteBudget(defaults.budget);
  const hwm = DEFAULT_HBONE_TUNING.pipeHighWaterMark;
  const reserve = () => {
    const r: StallReservation = new StallReservation(budget, { received: () => s.inForce + hwm, sent: hwm }, () => s.forget(r));
    s.hold(r);
    return r;
  };
  for (let i = 0; i < 8; i++) s.opened();
  sent.forEach((x) => x.ack());
  const stalled = Array.from({ length: 3 }, () => reserve());
  for (const r of stalled) t.ok(r.stall('received', true));
  t.equal(budget.used, 3 * (1 * MiB + hwm));
  // Something else on the node holds most of the connection's budget.
  t.ok(budget.tryTake(defaults.budget - 3 * (1 * MiB + hwm) - 2 * MiB));
  for (let i = 0; i < 5; i++) s.closed();
  const before = sent.length;
  clock.advance(1000);
  t.equal(sent.length, before, 'no raise: three stalled streams cannot grow by 3 MiB each');
  t.equal(s.inForce, 1 * MiB);
  t.equal(budget.used, defaults.budget - 2 * MiB, 'nothing taken by the failed attempt');
  budget.give(defaults.budget - 3 * (1 * MiB + hwm) - 2 * MiB);
  clock.advance(1000);
  t.same(sent.slice(before).map((x) => x.window), [4 * MiB], 'raised once there is room');
  t.equal(budget.used, 3 * (4 * MiB + hwm), 'the stalled streams now hold the raised window');
  for (const r of stalled) r.release();
  t.equal(budget.used, 0);
});

t.test('streams that filled the old window before it dropped keep what they hold: the account never falls below what is parked', async (t) => {
  // Staggered stalls: three streams fill their 4 MiB, then more streams open and the
  // window drops; what arrived under the old window stays queued in those streams.
  const { s, sent } = share();
  const budget = new ByteBudget(defaults.budget);
  const hwm = DEFAULT_HBONE_TUNING.pipeHighWaterMark;
  const parked: number[] = [];
  const reserve = (i: number) => {
    parked[i] = 0;
    const r: StallReservation = new StallReservation(budget, { received: stalledReceiveSize(s, { stream: { get readableLength() { return parked[i]!; }, writableLength: 0 }, upstream: { writableLength: 0 } }, hwm), sent: hwm }, () => s.forget(r));
    s.hold(r);
    return r;
  };
  const first = [0, 1, 2].map((i) => {
    s.opened();
    const r = reserve(i);
    t.ok(r.stall('received', true));
    parked[i] = 4 * MiB; // the peer filled the window
    return r;
  });
  for (let i = 0; i < 5; i++) s.opened();
  sent.forEach((x) => x.ack());
  t.equal(s.inForce, 1 * MiB);
  t.equal(budget.used, 3 * (4 * MiB + hwm), 'the three full streams are still counted at 4 MiB, not the new 1 MiB');
  const admitted = [3, 4, 5, 6, 7].filter((i) => reserve(i).stall('received', true));
  t.ok(budget.used <= defaults.budget, `${admitted.length} of 5 later stalls admitted; ${budget.used} reserved ≤ ${defaults.budget}`);
  t.ok(budget.used >= 3 * 4 * MiB + admitted.length * 1 * MiB, 'and at least what they may park');
  t.ok(admitted.length < 5, 'the rest are refused (reset), not parked beyond the budget');
  parked[0] = 0.5 * MiB;
  const before = budget.used;
  first[0]!.stall('received', false);
  t.equal(budget.used, before - (4 * MiB + hwm), 'the first stream reads again: its whole reservation is given back');
});

t.test('the write that crossed the high-water mark is reserved too: the upstream queue counts at what it holds when larger', async (t) => {
  // The pipe pauses after the write that took the upstream's queue past the mark, so the
  // queue can hold the mark plus that chunk (up to a frame); paused, it only shrinks.
  const hwm = DEFAULT_HBONE_TUNING.pipeHighWaterMark;
  const { s } = share();
  const budget = new ByteBudget(defaults.budget);
  s.opened();
  let queued = hwm + 48 * KiB;
  const r: StallReservation = new StallReservation(budget, {
    received: stalledReceiveSize(s, { stream: { readableLength: 0, writableLength: 0 }, upstream: { get writableLength() { return queued; } } }, hwm), sent: hwm,
  }, () => s.forget(r));
  s.hold(r);
  t.ok(r.stall('received', true));
  t.equal(budget.used, 4 * MiB + hwm + 48 * KiB, 'the window plus the whole queue');
  queued = 10 * KiB;
  t.ok(r.refit());
  t.equal(budget.used, 4 * MiB + hwm, 'as the queue drains, the reservation shrinks to the window plus the mark, never below');
  r.release();
  t.equal(budget.used, 0);
});

t.test('the share leaves room for the writes that cross the marks: up to 23 streams all stall, both ways, none refused', async (t) => {
  const hwm = DEFAULT_HBONE_TUNING.pipeHighWaterMark;
  // As session-guard.ts sizes it.
  const o: WindowShareOptions = { ...defaults, overhead: 2 * (hwm + CROSSING_WRITE_MAX) };
  for (const n of [1, 4, 9, 16, 23]) {
    const w = sharedWindow(n, o);
    const budget = new ByteBudget(o.budget);
    const admitted = Array.from({ length: n }, () => {
      const r = new StallReservation(budget, { received: w + queueBound(hwm, hwm + CROSSING_WRITE_MAX), sent: queueBound(hwm, hwm + CROSSING_WRITE_MAX) });
      return r.stall('received', true) && r.stall('sent', true);
    }).filter(Boolean).length;
    t.equal(admitted, n, `${n} streams with ${w} B windows, each queue a whole crossing write past the mark: all admitted (${budget.used} of ${o.budget} B)`);
  }
});
