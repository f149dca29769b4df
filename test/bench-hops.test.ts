// The hop decomposition of `node dist/bench/hbone.js --hops` (src/bench/hops.ts): perf
// script lines in, each round trip's steps matched in order, gaps named and summed.
import t from 'tap';
import { gapNames, hopReport, matchRoundTrips, parseEvents, roundTripSteps } from '../src/bench/hops';

const CLIENT = 100;
const A = 201;
const B = 202;

/** perf script -F pid,time,event,trace lines for one round trip through A and B starting at `t0` s, 10 µs per step. */
function trip(t0: number): string[] {
  const steps = roundTripSteps(CLIENT, [A, B]);
  return steps.map((s, i) => {
    const t = (t0 + i * 10e-6).toFixed(6);
    return s.op === 'w'
      ? `  ${s.pid} ${t}:   syscalls:sys_enter_write: fd: 0x00000015, buf: 0x23f714f9, count: 0x00000400`
      : `  ${s.pid} ${t}:     syscalls:sys_exit_read: 0x400`;
  });
}

t.test('roundTripSteps and gapNames: the request through the path, the echo, back in reverse', async (t) => {
  const steps = roundTripSteps(CLIENT, [A, B]);
  t.equal(steps.length, 12);
  t.same(steps.slice(0, 3), [{ pid: CLIENT, op: 'w' }, { pid: A, op: 'r' }, { pid: A, op: 'w' }]);
  t.same(steps[steps.length - 1], { pid: CLIENT, op: 'r' });
  const names = gapNames(['source', 'dest']);
  t.equal(names.length, steps.length - 1, 'one name per gap');
  t.equal(names[0], 'client → source (hand-over)');
  t.equal(names[5], 'echo');
  t.equal(names[names.length - 1], 'source → client (hand-over)');
  t.equal(gapNames([]).length, roundTripSteps(CLIENT, []).length - 1, 'direct: three gaps');
});

t.test('parseEvents: reads that returned bytes and writes of the traced pids only', async (t) => {
  const ev = parseEvents([
    `  ${A} 10.000020:     syscalls:sys_exit_read: 0x400`,
    `  ${A} 10.000010:     syscalls:sys_exit_read: 0xfffffffffffffff5`, // EAGAIN
    `  ${A} 10.000011:     syscalls:sys_exit_recvfrom: 0x0`, // EOF
    `  999 10.000012:   syscalls:sys_enter_write: fd: 0x00000015, buf: 0x1, count: 0x00000400`,
    `  ${B} 10.000005:   syscalls:sys_enter_sendto: fd: 0x00000015, buf: 0x1, count: 0x00000400`,
    'garbage',
  ].join('\n'), new Set([A, B]));
  t.same(ev.map((e) => [e.pid, e.op]), [[B, 'w'], [A, 'r']], 'sorted by time; EAGAIN, EOF and other pids dropped');
  t.ok(Math.abs(ev[1]!.t - 10000.02) < 1e-6, 'milliseconds');
});

t.test('matchRoundTrips and hopReport: complete trips only, gaps per step, the tail separately', async (t) => {
  const lines = [...trip(1), ...trip(1.001)];
  // A stray read of A between trips (e.g. a keepalive) must not break the matching.
  lines.push(`  ${A} 1.000500:     syscalls:sys_exit_read: 0x20`);
  // A trip cut off by the end of the trace.
  lines.push(...trip(1.002).slice(0, 5));
  const steps = roundTripSteps(CLIENT, [A, B]);
  const trips = matchRoundTrips(parseEvents(lines.join('\n'), new Set([CLIENT, A, B])), steps);
  t.equal(trips.length, 2, 'the cut-off trip is left out');
  const r = hopReport(trips, gapNames(['source', 'dest']));
  t.equal(r.trips, 2);
  t.ok(Math.abs(r.p50 - 0.11) < 1e-6, '11 gaps of 10 µs');
  for (const g of r.gaps) t.ok(Math.abs(g.mean - 0.01) < 1e-6, `${g.name}: 10 µs`);
});
