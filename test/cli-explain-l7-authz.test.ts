// `weft explain <source> <url> --method M --path P` shows the waypoint's L7
// authorization before its routes: each bound policy, whether it matched, the decision,
// and a denial as the waypoint's own 403 answer (verdict refused). A Service that lost
// its waypoint: its policies are enforced by nobody, which explain and weft policies say.
import t from 'tap';
import { formatExplanation } from '../src/cli/commands/explain';
import { listPolicies, policiesFrame } from '../src/cli/commands/policies';
import { explainRequest } from '../src/cli/explain-l7';
import { policyRecord, waypointPod, waypointRecord } from '../src/registry/fixtures';
import { MeshState } from '../src/registry/state';
import { recordKey, type Change } from '../src/registry/types';
import { demoMesh } from './helpers/cli';

const WP = waypointRecord({ namespace: 'demo', name: 'waypoint' });
const put = (kind: Change['kind'], record: unknown): Change => ({ op: 'put', kind, key: recordKey(kind, record as never), record } as Change);

function state(): MeshState {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const base = demoMesh().map((c) => (c.op === 'put' ? { ...c, key: recordKey(c.kind, c.record as never) } : c) as Change);
  s.applyChanges([
    ...base,
    put('namespace', { name: 'demo', labels: { 'weft.io/dataplane-mode': 'ambient', 'weft.io/use-waypoint': 'waypoint' } }),
    put('waypoint', WP),
    put('workload', waypointPod(WP, { uid: 'wp-1', name: 'wp-1', node: 'node-2', addresses: ['198.19.2.50'] })),
    put('policy', policyRecord({
      namespace: 'demo', name: 'deny-admin', action: 'DENY', targetRefs: [{ kind: 'Service', name: 'echo' }],
      rules: [{ clauses: [{ matches: [{ methods: ['POST'], paths: ['/admin*'] }] }] }],
    })),
    put('policy', policyRecord({
      namespace: 'demo', name: 'allow-demo', action: 'ALLOW', targetRefs: [{ kind: 'Gateway', name: 'waypoint' }],
      rules: [{ clauses: [{ matches: [{ namespaces: ['demo'] }] }] }],
    })),
  ], 1);
  return s;
}

t.test('a denied request: the deciding policy, 403 RBAC: access denied answered by the waypoint, verdict refused', async (t) => {
  const e = explainRequest(state(), 'demo/client', 'http://echo.demo/admin/users', { method: 'POST' });
  t.match(e.l7?.authorization, {
    allowed: false, decidingPolicy: 'demo/deny-admin',
    policies: [{ policy: 'demo/allow-demo', action: 'ALLOW', matched: true, rule: 1 }, { policy: 'demo/deny-admin', action: 'DENY', matched: true, rule: 1 }],
  });
  t.equal(e.l7?.status, 403);
  t.equal(e.verdict, 'refused');
  const text = formatExplanation(e);
  t.match(text, /Authorization \(L7, before the routes\): policies bound to the Service or the waypoint:/);
  t.match(text, /Authorization: DENY by demo\/deny-admin — DENY policy demo\/deny-admin matches POST echo\.demo\/admin\/users from spiffe:\/\/cluster\.local\/ns\/demo\/sa\/client/);
  t.match(text, /Answer: 403 RBAC: access denied/);
});

t.test('an allowed request: the ALLOW policy that admitted it, then routing as before', async (t) => {
  const e = explainRequest(state(), 'demo/client', 'http://echo.demo/admin/users', { method: 'GET' });
  t.match(e.l7?.authorization, { allowed: true, decidingPolicy: 'demo/allow-demo' });
  t.equal(e.verdict, 'allowed');
  t.match(formatExplanation(e), /Authorization: ALLOW by demo\/allow-demo/);
  const path = explainRequest(state(), 'demo/client', 'echo.demo:80', { method: 'POST', path: '/public' });
  t.match(path.l7?.authorization, { allowed: true, decidingPolicy: 'demo/allow-demo' }, '--path as well as a URL');
});

t.test('a Service that lost its waypoint: explain and weft policies say its policies are enforced by nobody', async (t) => {
  const s = state();
  t.equal(policiesFrame(s, {}).warnings?.length ?? 0, 0, 'bound to a waypoint: no warning');
  s.applyChanges([put('namespace', { name: 'demo', labels: { 'weft.io/dataplane-mode': 'ambient' } })], 2);
  const nobody = /AuthorizationPolicy demo\/deny-admin is enforced by nobody for Service demo\/echo has no waypoint: its traffic goes straight to the pods, which the policy does not guard\. Bind the Service to a waypoint \(weft namespace use-waypoint demo <waypoint>\), or delete the policy/;
  const e = explainRequest(s, 'demo/client', 'http://echo.demo/admin/users', { method: 'POST' });
  t.equal(e.l7?.applied, false);
  t.match(e.l7?.warning, nobody);
  t.match(formatExplanation(e), nobody);
  const frame = policiesFrame(s, {});
  t.equal(frame.warnings?.length, 1, 'the Gateway-bound policy is not about the Service');
  t.match(frame.warnings?.[0], nobody);
  t.same(listPolicies(s).filter((p) => p.unenforced).map((p) => [p.name, p.unenforced]), [['deny-admin', ['Service demo/echo has no waypoint']]]);

  // Bound again, but to a waypoint for workload traffic only: the ztunnel takes the Service's traffic straight to the pods.
  s.applyChanges([
    put('namespace', { name: 'demo', labels: { 'weft.io/dataplane-mode': 'ambient', 'weft.io/use-waypoint': 'waypoint' } }),
    put('waypoint', { ...WP, for: 'workload' }),
  ], 3);
  t.match(policiesFrame(s, {}).warnings?.[0], /deny-admin is enforced by nobody for Service demo\/echo is bound to waypoint waypoint, which is for workload traffic, not services/);
});
