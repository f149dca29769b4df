// Issue 9, item 14: an invalid policy must never fail open. A stored policy record
// that fails validation becomes a fail-closed stand-in on every reader (snapshot load
// and change stream alike), and the ztunnel's L4 authorization keeps refusing what the
// ALLOW policy did not admit.
import t from 'tap';
import { createLogger } from '../src/lib/log';
import { failClosedPolicy, heldText, keepLastGood } from '../src/registry/policy-fallback';
import { emptySnapshot, logInvalid, parseChanges, parseHashes, type OnInvalid } from '../src/registry/layout';
import { MeshState } from '../src/registry/state';
import { KINDS, type AuthorizationPolicyRecord } from '../src/registry/types';
import { validateRecord } from '../src/registry/validate';
import { authorizeRequest } from '../src/waypoint/authorize';
import { authorize, type AuthzRequest } from '../src/ztunnel/authorization';
import { ambientNamespace, workloadRecord } from '../src/ztunnel/testing/records';
import { LogLines } from './helpers/log-lines';

const CLIENT = 'spiffe://cluster.local/ns/demo/sa/client';
const INTRUDER = 'spiffe://cluster.local/ns/demo/sa/intruder';

const allowClient: AuthorizationPolicyRecord = {
  name: 'allow-client', namespace: 'demo', scope: 'WORKLOAD_SELECTOR', selector: { app: 'echo' }, action: 'ALLOW',
  rules: [{ clauses: [{ matches: [{ principals: [CLIENT] }] }] }],
};

function meshWith(policies: Record<string, string>): { state: MeshState; invalid: number } {
  let invalid = 0;
  const onInvalid: OnInvalid = () => { invalid++; };
  const hashes = KINDS.map((k) => (k === 'policy' ? policies : {}));
  const snap = parseHashes(hashes, onInvalid);
  snap.namespace.push(ambientNamespace('demo'));
  snap.workload.push(workloadRecord({ name: 'echo-1', namespace: 'demo', node: 'n1', ip: '10.0.1.5', sa: 'echo', labels: { app: 'echo' } }));
  const state = new MeshState({ trustDomain: 'cluster.local' });
  state.replaceAll(snap, 1);
  return { state, invalid };
}

function decide(state: MeshState, identity: string | undefined): ReturnType<typeof authorize> {
  const echo = state.workloadByAddress('10.0.1.5')!;
  const r: AuthzRequest = { source: { ip: '10.0.2.7' }, destination: { workload: echo, ip: '10.0.1.5', port: 8080 } };
  if (identity) r.source.identity = identity;
  return authorize(r, state.policiesFor(echo), state.peerAuthModeFor(echo));
}

t.test('a valid ALLOW guards echo: the intruder is refused (the baseline)', async (t) => {
  const { state } = meshWith({ 'demo/allow-client': JSON.stringify(allowClient) });
  t.ok(decide(state, CLIENT).allowed);
  t.notOk(decide(state, INTRUDER).allowed);
});

t.test('an invalid stored ALLOW does not vanish: the intruder is still refused', async (t) => {
  const broken = { ...allowClient, rules: [{ clauses: [{ matches: [{ destinationPorts: [0] }] }] }] };
  const { state, invalid } = meshWith({ 'demo/allow-client': JSON.stringify(broken) });
  t.equal(invalid, 1, 'counted and logged as invalid');
  const held = state.get('policy', 'demo/allow-client');
  t.match(held, { action: 'ALLOW', scope: 'WORKLOAD_SELECTOR', selector: { app: 'echo' }, rules: [], invalid: { state: 'FailClosed', reason: /destinationPorts\[0\]/ } });
  const d = decide(state, INTRUDER);
  t.notOk(d.allowed, 'the guarded workload stays deny-by-default');
  t.match(d.reason, /demo\/allow-client is invalid .* enforced fail-closed/);
  t.notOk(decide(state, undefined).allowed, 'plaintext too');
});

t.test('the log line of a malformed record says what is held instead and what to do', async (t) => {
  const log = new LogLines();
  const logger = createLogger({ level: 'warn', component: 'test', destination: log });
  let counted = 0;
  const broken = { ...allowClient, rules: [{ clauses: [{ matches: [{ destinationPorts: [0] }] }] }] };
  const hashes = KINDS.map((k): Record<string, string> => (k === 'policy' ? { 'demo/allow-client': JSON.stringify(broken), 'no-slash': '{}' }
    : k === 'workload' ? { 'demo/w': '{}' } : {}));
  parseHashes(hashes, logInvalid(logger, () => { counted++; }));
  const { lines } = log;
  t.equal(counted, 3);
  t.match(lines.find((l) => l.key === 'demo/allow-client'), {
    kind: 'policy', standIn: { action: 'ALLOW', scope: 'WORKLOAD_SELECTOR', selector: { app: 'echo' } },
    msg: /^malformed policy record: no valid version is known, so it is enforced fail-closed as an ALLOW that matches nothing .*; fix or re-apply the AuthorizationPolicy; the controller rewrites the record on its next sync$/,
  }, 'the stand-in actually built, and the way out');
  const skipped = lines.find((l) => l.key === 'no-slash');
  t.match(skipped, { kind: 'policy', msg: 'skipping malformed registry record' }, 'a policy with an unreadable key claims no stand-in');
  t.notOk(skipped && 'standIn' in skipped);
  t.match(lines.find((l) => l.key === 'demo/w'), { kind: 'workload', msg: 'skipping malformed registry record' });
});

t.test('an invalid stored DENY denies everything in its scope', async (t) => {
  const deny = { name: 'deny-intruder', namespace: 'demo', scope: 'NAMESPACE', action: 'DENY', rules: [{ clauses: [{ matches: [{ principals: ['not-a-spiffe-id'] }] }] }] };
  const { state } = meshWith({ 'demo/deny-intruder': JSON.stringify(deny) });
  t.notOk(decide(state, INTRUDER).allowed);
  t.notOk(decide(state, CLIENT).allowed, 'even the client: the DENY could not be read, so it is read as widely as possible');
});

t.test('unreadable scope, action or JSON: the widest fail-closed reading', async (t) => {
  t.match(failClosedPolicy('demo/x', { action: 'ALLOW', scope: 'WORKLOAD_SELECTOR', selector: { 'bad key!': 'v' } }, 'r'),
    { action: 'ALLOW', scope: 'NAMESPACE', rules: [] }, 'bad selector: the whole namespace is guarded');
  t.match(failClosedPolicy('weft-system/x', { action: 'ALLOW' }, 'r'), { scope: 'GLOBAL' }, 'root namespace: mesh-wide');
  t.match(failClosedPolicy('demo/x', { action: 'MAYBE' }, 'r'), { action: 'DENY', rules: [{ clauses: [] }] }, 'unknown action: deny');
  t.match(failClosedPolicy('weft-system/x', { action: 'ALLOW', scope: 'NAMESPACE' }, 'r'), { scope: 'NAMESPACE' }, 'a readable scope is kept');
  t.equal(failClosedPolicy('no-slash', {}, 'r'), undefined, 'no namespace to apply it to');
  const { state } = meshWith({ 'demo/garbage': '{not json' });
  t.match(state.get('policy', 'demo/garbage'), { action: 'DENY', scope: 'NAMESPACE', invalid: { state: 'FailClosed' } });
  t.notOk(decide(state, CLIENT).allowed);
  // The stand-ins and kept versions are valid records for every reader (CLI dump, follower).
  for (const r of [failClosedPolicy('demo/x', {}, 'r')!, keepLastGood(allowClient, 'r')]) {
    t.same(validateRecord('policy', r, { unknownKeys: 'reject' }), r);
  }
});

t.test('the change stream gives the same stand-in as a snapshot load', async (t) => {
  const broken = { ...allowClient, rules: 'nope' };
  const changes = parseChanges(JSON.stringify([{ op: 'put', kind: 'policy', key: 'demo/allow-client', record: broken }]), () => {});
  const snap = emptySnapshot();
  const loaded = parseHashes(KINDS.map((k): Record<string, string> => (k === 'policy' ? { 'demo/allow-client': JSON.stringify(broken) } : {})), () => {});
  t.same(changes, [{ op: 'put', kind: 'policy', key: 'demo/allow-client', record: loaded.policy[0] }]);
  t.same(snap.policy, []);
  // A followed state that had the valid version now holds the stand-in, not nothing.
  const { state } = meshWith({ 'demo/allow-client': JSON.stringify(allowClient) });
  state.applyChanges(changes!, 2);
  t.notOk(decide(state, INTRUDER).allowed);
});

t.test('a waypoint-bound policy (targetRefs) stays bound in its stand-in: never a namespace-wide L4 policy of the ztunnels', async (t) => {
  const raw = { name: 'l7', namespace: 'demo', scope: 'NAMESPACE', action: 'DENY', targetRefs: [{ kind: 'Service', name: 'echo' }], rules: [{ clauses: [{ matches: [{ paths: ['admin'] }] }] }] };
  const p = failClosedPolicy('demo/l7', raw, 'paths[0] must start with /')!;
  t.match(p, { scope: 'NAMESPACE', action: 'DENY', targetRefs: [{ kind: 'Service', name: 'echo' }], rules: [{ clauses: [] }], invalid: { state: 'FailClosed' } });
  const state = new MeshState({ trustDomain: 'cluster.local' });
  state.replaceAll({ namespace: [ambientNamespace('demo')], workload: [workloadRecord({ namespace: 'demo', name: 'echo-1', node: 'node-1', ip: '10.1.0.5', labels: { app: 'echo' } })], policy: [p] }, 1);
  t.same(state.policiesFor(state.workloads()[0]!), [], 'the ztunnel does not see it');
  t.same(state.waypointPolicies('demo').map((x) => x.name), ['l7'], 'the waypoint does');
});

t.test('an invalid AUDIT policy: held as an AUDIT matching nothing on its targets, never a DENY (AUDIT decides nothing)', async (t) => {
  const refs = [{ kind: 'Service', name: 'echo' }];
  const held = failClosedPolicy('demo/audit-all', { action: 'AUDIT', scope: 'NAMESPACE', targetRefs: refs, rules: 'not a list' }, 'bad rules');
  t.same(held && { action: held.action, rules: held.rules, targetRefs: held.targetRefs, state: held.invalid?.state }, { action: 'AUDIT', rules: [], targetRefs: refs, state: 'FailClosed' });
  const r = { source: { identity: INTRUDER, ip: '10.0.2.9' }, destination: { ip: '10.0.1.5', port: 80 }, request: { method: 'GET', host: 'echo.demo', path: '/', headers: {} } };
  t.same(authorizeRequest(r, [held!]), { allowed: true, audited: [], reason: 'no ALLOW policy applies and no DENY policy matches GET echo.demo/ from spiffe://cluster.local/ns/demo/sa/intruder (10.0.2.9); allowed by default' },
    'the waypoint lets the request on, as without the policy');
  // Targets that cannot be read (a kind typo): nothing stands in; before, a namespace-wide DENY of every connection.
  t.equal(failClosedPolicy('demo/audit-all', { action: 'AUDIT', scope: 'NAMESPACE', targetRefs: [{ kind: 'Deployment', name: 'echo' }] }, 'bad kind'), undefined);
  t.equal(failClosedPolicy('demo/audit-all', { action: 'AUDIT' }, 'no scope'), undefined);
  t.match(heldText('FailClosed', 'AUDIT'), /held as an AUDIT that matches nothing \(AUDIT decides nothing/);
  t.match(heldText(undefined, 'AUDIT'), /^AUDIT decides nothing, so nothing is enforced in its place until it is fixed$/);
  t.equal(heldText('LastGood', 'AUDIT'), 'the last valid version stays in force until it is fixed');
  // A DENY with unreadable targets still closes its namespace at the ztunnels.
  t.same(failClosedPolicy('demo/d', { action: 'DENY', scope: 'NAMESPACE', targetRefs: [{ kind: 'Deployment', name: 'echo' }] }, 'bad kind')?.rules, [{ clauses: [] }]);
});
