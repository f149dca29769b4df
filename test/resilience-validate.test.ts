import t from 'tap';
import { FieldError } from '../src/registry/checks';
import { validateTrafficPolicy, validateTrafficPolicySpec } from '../src/resilience/validate';
import { validateRecord } from '../src/registry/validate';
import { trafficPolicyRecord } from '../src/registry/fixtures';

const good = () => ({
  apiVersion: 'networking.weft.io/v1alpha1',
  kind: 'TrafficPolicy',
  metadata: { name: 'echo', namespace: 'demo', uid: 'x', resourceVersion: '7' },
  spec: { targetRefs: [{ group: '', kind: 'Service', name: 'echo' }, { kind: 'Service', name: 'echo-v2' }] },
  status: { anything: true },
});

t.test('a whole object: envelope checked, spec returned fresh with known keys only', async (t) => {
  const out = validateTrafficPolicy(good());
  t.same(out, { name: 'echo', namespace: 'demo', spec: { targetRefs: [
    { group: '', kind: 'Service', name: 'echo' }, { group: '', kind: 'Service', name: 'echo-v2' }] } }, 'a left-out group is the core group ""');
  const noNs = good();
  delete (noNs.metadata as { namespace?: string }).namespace;
  t.equal(validateTrafficPolicy(noNs, { namespace: 'other' }).namespace, 'other', 'the default namespace (-n) fills in');
  const withTs = good();
  (withTs.metadata as Record<string, unknown>).creationTimestamp = '2026-11-30T10:00:00Z';
  t.equal(validateTrafficPolicy(withTs).creationTimestamp, '2026-11-30T10:00:00.000Z');
});

t.test('the sections: each goes to its own module; a left-out one stays absent (its defaults apply at use)', async (t) => {
  const spec = validateTrafficPolicySpec({ targetRefs: [{ kind: 'Service', name: 'echo' }], retry: {}, faults: {} }, 'spec', 'reject');
  t.ok('retry' in spec && 'faults' in spec);
  t.notOk('loadBalancer' in spec);
  t.notOk('rateLimit' in spec);
});

// [patch, field, message]: every bad value names its full path.
type Case = [(o: any) => void, string, RegExp];
const cases: Case[] = [
  [(o) => { o.apiVersion = 'networking.weft.io/v1'; }, 'apiVersion', /must be networking\.weft\.io\/v1alpha1 for a TrafficPolicy/],
  [(o) => { o.kind = 'DestinationRule'; }, 'kind', /must be TrafficPolicy/],
  [(o) => { o.extra = 1; }, 'extra', /not a known field/],
  [(o) => { delete o.metadata.name; }, 'metadata.name', /is required/],
  [(o) => { o.metadata.name = 'Echo'; }, 'metadata.name', /DNS-1123 subdomain/],
  [(o) => { o.metadata.namespace = 'a.b'; }, 'metadata.namespace', /DNS-1123 label/],
  [(o) => { delete o.spec; }, 'spec', /must be an object/],
  [(o) => { o.spec.retires = {}; }, 'spec.retires', /is not a known field \(known: targetRefs, loadBalancer/],
  [(o) => { delete o.spec.targetRefs; }, 'spec.targetRefs', /is required/],
  [(o) => { o.spec.targetRefs = []; }, 'spec.targetRefs', /at least one Service/],
  [(o) => { o.spec.targetRefs = Array.from({ length: 17 }, (_, i) => ({ kind: 'Service', name: `s${i}` })); }, 'spec.targetRefs', /at most 16 entries, got 17/],
  [(o) => { o.spec.targetRefs[1].name = 'echo'; }, 'spec.targetRefs[1].name', /already targeted by spec.targetRefs\[0\]/],
  [(o) => { o.spec.targetRefs[0].kind = 'Pod'; }, 'spec.targetRefs[0].kind', /must be Service/],
  [(o) => { o.spec.targetRefs[0].group = 'apps'; }, 'spec.targetRefs[0].group', /must be ""/],
  [(o) => { o.spec.targetRefs[0].namespace = 'other'; }, 'spec.targetRefs[0].namespace', /not a known field/],
  [(o) => { o.spec.targetRefs[0].name = 'Echo'; }, 'spec.targetRefs[0].name', /DNS-1123 label/],
  [(o) => { o.spec.retry = 3; }, 'spec.retry', /must be an object, got 3/],
];

t.test('bad input: one refusal per rule, naming the field', async (t) => {
  for (const [patch, field, message] of cases) {
    const o = good();
    patch(o);
    try {
      validateTrafficPolicy(o);
      t.fail(`accepted, expected a refusal of ${field}`);
    } catch (err) {
      t.type(err, FieldError, field);
      t.equal((err as FieldError).field, field);
      t.match((err as FieldError).problem, message, field);
    }
  }
});

t.test('the registry record: same spec check, readers drop unknown keys, writers refuse them', async (t) => {
  const rec = trafficPolicyRecord({ namespace: 'demo', name: 'p' }, ['echo']);
  t.same(validateRecord('trafficpolicy', JSON.parse(JSON.stringify(rec)), { unknownKeys: 'reject' }), rec);
  const extra = { ...rec, spec: { ...rec.spec, future: {} } };
  t.same(validateRecord('trafficpolicy', extra), rec, 'a reader drops a newer writer\'s section');
  t.throws(() => validateRecord('trafficpolicy', extra, { unknownKeys: 'reject' }), { code: 'WEFT_REGISTRY_RECORD_INVALID', message: /trafficpolicy demo\/p: spec\.future is not a known field/ });
  t.throws(() => validateRecord('trafficpolicy', { ...rec, spec: { targetRefs: [] } }), { message: /spec\.targetRefs must name at least one Service/ });
});

t.test('every section validates its own output to itself (the registry re-validates what apply stored)', async (t) => {
  // Each section with its defaults filled in: what `weft apply` stores. A reader (the
  // waypoint's follower) validates it again; if that changed it or refused it, a policy
  // would differ between the lab's CLI view and the waypoint, or vanish on read.
  const sections = ['loadBalancer', 'connectionPool', 'outlierDetection', 'retry', 'faults', 'rateLimit', 'loadShedding'];
  // rateLimit has one required field (a rate limit without a rate means nothing).
  const minimal = (s: string) => (s === 'rateLimit' ? { requestsPerSecond: 10 } : {});
  const spec = validateTrafficPolicySpec({ targetRefs: [{ kind: 'Service', name: 'echo' }], ...Object.fromEntries(sections.map((s) => [s, minimal(s)])) }, 'spec', 'reject');
  const stored = JSON.parse(JSON.stringify(spec));
  t.same(validateTrafficPolicySpec(stored, 'spec', 'reject'), spec, 'a fixed point, unknown keys refused');
  const rec = trafficPolicyRecord({ namespace: 'demo', name: 'all' }, ['echo'], spec);
  t.same(validateRecord('trafficpolicy', JSON.parse(JSON.stringify(rec)), { unknownKeys: 'reject' }), rec, 'as a registry record');
});
