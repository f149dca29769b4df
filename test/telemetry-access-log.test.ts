/**
 * Access-log volume (src/telemetry/access-log.ts): per-namespace levels by the
 * destination's namespace else the source's, failures and sampled traces always
 * written, the sampling share of the rest, drops counted by reason.
 */
import t from 'tap';
import { Registry } from 'prom-client';
import { AccessLogPolicy, type AccessLogFacts } from '../src/telemetry/access-log';

const ok = (over: Partial<AccessLogFacts> = {}): AccessLogFacts => ({
  failed: false, traceSampled: false, destinationNamespace: 'demo', sourceNamespace: () => 'legacy', ...over,
});

async function dropped(registry: Registry): Promise<Record<string, number>> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'weft_access_log_dropped_total');
  return Object.fromEntries(((m?.values ?? []) as Array<{ labels: { reason: string }; value: number }>).map((v) => [v.labels.reason, v.value]));
}

t.test('the defaults write every line and ask for nothing', async (t) => {
  const p = new AccessLogPolicy({ sampling: 1, levels: {}, random: () => { throw new Error('no draw'); } });
  t.equal(p.filtering, false);
  let asked = false;
  t.ok(p.keep(ok({ sourceNamespace: () => { asked = true; return 'x'; } })));
  t.notOk(asked, 'the source namespace is not looked up');
});

t.test('sampling: the share of successful lines; failures and sampled traces always', async (t) => {
  const registry = new Registry();
  let draw = 0;
  const draws = [0.05, 0.5, 0.95, 0.2];
  const p = new AccessLogPolicy({ sampling: 0.25, levels: {}, registry, random: () => draws[draw++ % draws.length]! });
  t.equal(p.filtering, true);
  t.same([p.keep(ok()), p.keep(ok()), p.keep(ok()), p.keep(ok())], [true, false, false, true], 'kept when the draw is under 0.25');
  t.ok(p.keep(ok({ failed: true })), 'a failure is always written');
  t.ok(p.keep(ok({ traceSampled: true })), 'a line of a sampled trace is always written');
  t.equal(draw, 4, 'no draw for those');
  t.same(await dropped(registry), { sampling: 2 });
  const none = new AccessLogPolicy({ sampling: 0, levels: {}, random: () => 0 });
  t.notOk(none.keep(ok()), 'sampling 0 writes no successful line');
  t.ok(none.keep(ok({ failed: true })), 'but every failure');
});

t.test('levels: by the destination namespace, else the source namespace; off writes nothing, failures included', async (t) => {
  const registry = new Registry();
  const p = new AccessLogPolicy({ sampling: 1, levels: { demo: 'info', legacy: 'off' }, registry });
  t.ok(p.keep(ok()), 'demo is info');
  t.notOk(p.keep(ok({ destinationNamespace: 'legacy' })), 'legacy is off');
  t.notOk(p.keep(ok({ destinationNamespace: 'legacy', failed: true })), 'off is off for failures too');
  t.notOk(p.keep(ok({ destinationNamespace: undefined })), 'no destination namespace: the source (legacy) decides');
  t.ok(p.keep(ok({ destinationNamespace: 'other' })), 'a namespace without a level: info');
  t.ok(p.keep(ok({ destinationNamespace: undefined, sourceNamespace: () => undefined })), 'neither known: info');
  t.same(await dropped(registry), { level: 3 });
});
