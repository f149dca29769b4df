// `weft apply` refuses an AuthorizationPolicy bound (targetRefs) to a Service no waypoint
// serves, or to a waypoint that does not exist: stored, it would be enforced nowhere.
import t from 'tap';
import { refuseUnboundPolicies } from '../src/cli/apply-authz';
import { applyToRegistry } from '../src/cli/apply-registry';
import { parseManifest } from '../src/cli/manifest';
import { parseObjects } from '../src/cli/manifest-objects';
import { isWeftError } from '../src/lib/errors';
import { policyRecord, serviceRecord, waypointRecord } from '../src/registry/fixtures';
import type { AuthorizationPolicyRecord, Kind } from '../src/registry/types';
import { startDemoRegistry } from './helpers/cli';
import { caught } from './helpers/wait';

function existing(records: Partial<Record<Kind, Record<string, unknown>[]>>): Map<Kind, Map<string, Record<string, unknown>>> {
  return new Map(Object.entries(records).map(([kind, list]) => [kind as Kind,
    new Map(list.map((r) => [kind === 'namespace' ? String(r.name) : `${String(r.namespace)}/${String(r.name)}`, r]))]));
}

const bound = (kind: 'Service' | 'Gateway', name: string): AuthorizationPolicyRecord =>
  policyRecord({ namespace: 'demo', name: 'p', action: 'DENY', targetRefs: [{ kind, name }] });

function refusal(fn: () => void): string {
  try {
    fn();
  } catch (err) {
    if (isWeftError(err, 'WEFT_MANIFEST_INVALID')) return err.message;
    throw err;
  }
  return '';
}

t.test('a Service without a waypoint: refused, saying how to add one', async (t) => {
  const state = existing({ service: [serviceRecord({ namespace: 'demo', name: 'echo' }) as never], namespace: [{ name: 'demo', labels: {} }] });
  const msg = refusal(() => refuseUnboundPolicies([bound('Service', 'echo')], state, new Set()));
  t.match(msg, /^AuthorizationPolicy demo\/p: targetRefs\[0\] names Service demo\/echo, which has no waypoint: its traffic goes straight to the pods and the policy would be enforced nowhere; add a waypoint and bind the Service to it \(weft waypoint add demo\/<name> --node <node>; weft namespace use-waypoint demo <name>\), then apply again\nnothing was applied$/);
});

t.test('bound by its own label or its namespace label: accepted; a Service that does not exist yet: accepted', async (t) => {
  const own = existing({ service: [serviceRecord({ namespace: 'demo', name: 'echo', waypoint: 'waypoint' }) as never] });
  t.equal(refusal(() => refuseUnboundPolicies([bound('Service', 'echo')], own, new Set())), '');
  const byNs = existing({ service: [serviceRecord({ namespace: 'demo', name: 'echo' }) as never], namespace: [{ name: 'demo', labels: { 'weft.io/use-waypoint': 'waypoint' } }] });
  t.equal(refusal(() => refuseUnboundPolicies([bound('Service', 'echo')], byNs, new Set())), '');
  const optOut = existing({ service: [serviceRecord({ namespace: 'demo', name: 'echo', waypoint: 'none' }) as never], namespace: [{ name: 'demo', labels: { 'weft.io/use-waypoint': 'waypoint' } }] });
  t.match(refusal(() => refuseUnboundPolicies([bound('Service', 'echo')], optOut, new Set())), /has no waypoint/, 'a Service opted out (none) has none');
  t.equal(refusal(() => refuseUnboundPolicies([bound('Service', 'later')], byNs, new Set())), '');
  t.equal(refusal(() => refuseUnboundPolicies([policyRecord({ namespace: 'demo', name: 'l4' })], own, new Set())), '', 'an L4 policy is not checked');
});

t.test('a Service bound to a waypoint for workload traffic only: refused (the ztunnel takes its traffic straight to the pods)', async (t) => {
  const ns = { name: 'demo', labels: { 'weft.io/use-waypoint': 'waypoint' } };
  const svc = serviceRecord({ namespace: 'demo', name: 'echo' }) as never;
  const withFor = (f: string) => existing({ service: [svc], namespace: [ns], waypoint: [{ ...waypointRecord({ namespace: 'demo', name: 'waypoint' }), for: f }] as never[] });
  t.match(refusal(() => refuseUnboundPolicies([bound('Service', 'echo')], withFor('workload'), new Set())),
    /^AuthorizationPolicy demo\/p: targetRefs\[0\] names Service demo\/echo, which is bound to waypoint waypoint, which is for workload traffic, not services: its traffic goes straight to the pods and the policy would be enforced nowhere; /);
  t.match(refusal(() => refuseUnboundPolicies([bound('Service', 'echo')], withFor('none'), new Set())), /which is for none traffic, not services/);
  t.equal(refusal(() => refuseUnboundPolicies([bound('Service', 'echo')], withFor('all'), new Set())), '');
  t.equal(refusal(() => refuseUnboundPolicies([bound('Service', 'echo')], withFor('service'), new Set())), '');
});

t.test('a waypoint Gateway: it must exist, in the registry or in the same apply', async (t) => {
  const none = existing({});
  t.match(refusal(() => refuseUnboundPolicies([bound('Gateway', 'waypoint')], none, new Set())), /names waypoint demo\/waypoint, which does not exist/);
  t.equal(refusal(() => refuseUnboundPolicies([bound('Gateway', 'waypoint')], none, new Set(['demo/waypoint']))), '');
  t.equal(refusal(() => refuseUnboundPolicies([bound('Gateway', 'waypoint')], existing({ waypoint: [waypointRecord({ namespace: 'demo', name: 'waypoint' }) as never] }), new Set())), '');
});

t.test('against a real registry: refused until the namespace is bound to a waypoint, then applied', async (t) => {
  const { store } = await startDemoRegistry(t);
  const doc = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin, namespace: demo }
spec:
  targetRefs: [{ group: "", kind: Service, name: echo }]
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/admin"] } }] }]
`;
  const objs = () => parseObjects(parseManifest(doc, 'p.yaml'), { defaultNamespace: 'default' });
  const err = await caught(() => applyToRegistry(store, objs(), { dryRun: false }));
  t.equal(err.code, 'WEFT_MANIFEST_INVALID');
  t.match(err.message, /names Service demo\/echo, which has no waypoint/);
  t.equal(await store.get('policy', 'demo/deny-admin'), undefined, 'nothing written');
  const ns = await store.get('namespace', 'demo');
  await store.apply([{ op: 'put', kind: 'namespace', record: { ...ns!, labels: { ...ns!.labels, 'weft.io/use-waypoint': 'waypoint' } } }]);
  const out = await applyToRegistry(store, objs(), { dryRun: false });
  t.match(out.results, [{ kind: 'AuthorizationPolicy', name: 'deny-admin', action: 'created' }], 'the namespace label binds echo: accepted');
  t.match(await store.get('policy', 'demo/deny-admin'), { targetRefs: [{ kind: 'Service', name: 'echo' }], action: 'DENY' });
});
