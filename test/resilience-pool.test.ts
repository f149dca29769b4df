// Bulkheads as pure logic (src/resilience/pool.ts) and the connectionPool section's
// validation: slots, a bounded FIFO queue, overflow refused at once, abort while waiting.
import t from 'tap';
import { FieldError } from '../src/registry/checks';
import { Bulkhead } from '../src/resilience/pool';
import { validateConnectionPool } from '../src/resilience/pool-spec';

const P = 'spec.connectionPool';

t.test('validation: limits as written, absent ones unlimited; bad values named', async (t) => {
  t.same(validateConnectionPool({}, P, 'reject'), {});
  const v = validateConnectionPool({ maxConcurrentRequests: 4, maxPendingRequests: 0, maxConnections: 2, maxRequestsPerConnection: 100 }, P, 'reject');
  t.same(v, { maxConcurrentRequests: 4, maxPendingRequests: 0, maxConnections: 2, maxRequestsPerConnection: 100 });
  t.same(validateConnectionPool(v, P, 'reject'), v, 'validates to itself');
  t.same(validateConnectionPool({ maxRequestsPerConnection: 0 }, P, 'reject'), {}, '0 requests per connection: no limit');
  const bad: [unknown, string, RegExp][] = [
    [{ maxConcurrentRequests: 0 }, `${P}.maxConcurrentRequests`, /must be an integer 1-1000000, got 0/],
    [{ maxPendingRequests: -1 }, `${P}.maxPendingRequests`, /must be an integer 0-1000000, got -1/],
    [{ maxConnections: '10' }, `${P}.maxConnections`, /got "10"/],
    [{ maxRequestsPerConnection: 2.5 }, `${P}.maxRequestsPerConnection`, /integer/],
    [{ http1MaxPendingRequests: 1 }, `${P}.http1MaxPendingRequests`, /is not a known field/],
    [{ maxPendingRequests: 10, maxConnections: 5 }, `${P}.maxPendingRequests`, /applies only with maxConcurrentRequests .*; add maxConcurrentRequests, or remove maxPendingRequests/],
  ];
  for (const [input, field, problem] of bad) {
    try {
      validateConnectionPool(input, P, 'reject');
      t.fail(`${field} accepted`);
    } catch (err) {
      t.type(err, FieldError);
      t.equal((err as FieldError).field, field);
      t.match((err as FieldError).problem, problem);
    }
  }
});

t.test('bulkhead: slots, then a bounded queue in order, then overflow at once', async (t) => {
  const b = new Bulkhead({ maxConcurrentRequests: 2, maxPendingRequests: 2 });
  const signal = new AbortController().signal;
  t.ok(b.enter());
  t.ok(b.enter());
  t.notOk(b.enter(), 'both slots taken');
  const order: string[] = [];
  const w1 = b.wait(signal)!.then((ok) => order.push(`w1 ${ok}`));
  const w2 = b.wait(signal)!.then((ok) => order.push(`w2 ${ok}`));
  t.equal(b.wait(signal), undefined, 'queue full: refused at once (the overflow)');
  t.equal(b.overflowed, 1);
  t.same(b.load, { active: 2, pending: 2 });
  b.leave();
  await w1;
  t.same(order, ['w1 true'], 'the first waiter got the freed slot');
  t.notOk(b.enter(), 'no slot skips the queue');
  b.leave();
  await w2;
  t.same(order, ['w1 true', 'w2 true']);
  b.leave();
  b.leave();
  t.same(b.load, { active: 0, pending: 0 });
  t.ok(b.enter(), 'free again');
});

t.test('bulkhead: a waiter whose downstream left gives up its place; no queue at all with maxPendingRequests 0', async (t) => {
  const b = new Bulkhead({ maxConcurrentRequests: 1, maxPendingRequests: 5 });
  t.ok(b.enter());
  const ac = new AbortController();
  const gone = b.wait(ac.signal)!;
  const next = b.wait(new AbortController().signal)!;
  ac.abort();
  t.equal(await gone, false, 'aborted: no slot to leave');
  t.same(b.load, { active: 1, pending: 1 });
  b.leave();
  t.equal(await next, true, 'the slot went to the one still waiting');
  const strict = new Bulkhead({ maxConcurrentRequests: 1, maxPendingRequests: 0 });
  t.ok(strict.enter());
  t.equal(strict.wait(new AbortController().signal), undefined, 'nothing may wait');
  const open = new Bulkhead({});
  let all = true;
  for (let i = 0; i < 1000; i++) all &&= open.enter();
  t.ok(all, 'no limits written: always admitted');
});
