// MeshRouter.plan(): how an HTTPRoute rule's retry (GEP-1731) and the backend Service's
// TrafficPolicy `retry` combine into the forward plan; the budget (one per Service, shared
// by both) and the cross-hop cap hold for route retries without any policy too.
import t, { type Test } from 'tap';
import { MeshState } from '../src/registry/state';
import { ambientNamespace, httpRouteRecord, serviceRecord, trafficPolicyRecord, workloadRecord } from '../src/registry/fixtures';
import { recordKey, type Change, type Kind, type RecordsByKind } from '../src/registry/types';
import { validateRetry } from '../src/resilience/retry-spec';
import { MeshRouter } from '../src/waypoint/router';
import type { ForwardPlan, RequestFacts } from '../src/waypoint/types';
import { ManualClock } from './helpers/clock';

function put<K extends Kind>(kind: K, record: RecordsByKind[K]): Change {
  return { op: 'put', kind, key: recordKey(kind, record), record } as Change;
}

const request: RequestFacts = {
  method: 'GET', authority: 'echo.demo', path: '/', query: '', headers: {}, protocol: 'http1',
  source: { address: '10.1.1.2', port: 40000, identity: 'spiffe://cluster.local/ns/demo/sa/client' },
  destination: { address: '10.96.0.10', port: 80, service: { namespace: 'demo', name: 'echo' } },
};

function setup(t: Test, changes: Change[]): { router: MeshRouter; state: MeshState; plan: () => ForwardPlan } {
  const state = new MeshState({ trustDomain: 'cluster.local' });
  state.applyChanges([
    put('namespace', ambientNamespace('demo')),
    put('service', serviceRecord({ namespace: 'demo', name: 'echo', vips: ['10.96.0.10'] })),
    put('workload', workloadRecord({ namespace: 'demo', name: 'echo-0', node: 'n', addresses: ['10.1.2.3'], labels: { app: 'echo' } })),
    ...changes,
  ], 1);
  const router = new MeshRouter({ state, random: () => 0, clock: new ManualClock(0) });
  t.teardown(() => router.close());
  return {
    router, state, plan: () => {
      const d = router.route(request);
      if (d.kind !== 'forward') throw new Error(`not forwarded: ${JSON.stringify(d)}`);
      return d;
    },
  };
}

function routeWithRetry(retry: { codes: number[]; attempts?: number; backoff?: string }, timeouts?: { backendRequest?: string }) {
  const route = httpRouteRecord({ namespace: 'demo', name: 'r' }, 'echo');
  route.spec.rules[0]!.retry = retry;
  if (timeouts) route.spec.rules[0]!.timeouts = timeouts;
  return put('httproute', route);
}

function policyWithRetry(retry: unknown) {
  return put('trafficpolicy', trafficPolicyRecord({ namespace: 'demo', name: 'p' }, ['echo'], { retry: validateRetry(retry, 'spec.retry', 'reject') }));
}

t.test('neither a route retry nor a policy: no retries, nothing allocated for them', async (t) => {
  t.equal(setup(t, []).plan().retry, undefined);
});

t.test('a route retry alone: GEP-1731 codes/attempts/fixed backoff, with the default budget and the cross-hop cap', async (t) => {
  const { plan } = setup(t, [routeWithRetry({ codes: [503], attempts: 3, backoff: '10ms' })]);
  const r = plan().retry!;
  t.match(r, { codes: [503], attempts: 3, backoffMs: 10, crossHopCap: true });
  t.equal(r.backoffMaxMs, undefined, 'a fixed interval, as GEP-1731 says');
  t.equal(r.retryOn, undefined, 'GEP-1731: every connection error and backend timeout');
  t.ok(r.budget, 'the default budget');
  t.equal(r.budget!.available(), 20, 'its floor: 2/s over 10 s');
  t.equal(plan().retry!.budget, r.budget, 'one budget per Service, kept across requests');
});

t.test('a policy alone (no route): its rules, its per-try timeout', async (t) => {
  const { plan } = setup(t, [policyWithRetry({ attempts: 3, perTryTimeout: '300ms', retriableStatusCodes: [409] })]);
  const p = plan();
  t.match(p.retry, { codes: [409], attempts: 3, backoffMs: 25, backoffMaxMs: 250, retryOn: ['gateway-error', 'connect-failure', 'reset'], idempotentOnly: true, crossHopCap: true });
  t.equal(p.attemptTimeoutMs, 300);
});

t.test('both: the rule wins for codes, attempts and backoff and for its own backendRequest timeout; the policy adds the rest', async (t) => {
  const { plan } = setup(t, [
    routeWithRetry({ codes: [500], attempts: 1 }, { backendRequest: '2s' }),
    policyWithRetry({ attempts: 4, perTryTimeout: '300ms', retryOn: ['reset'], retryNonIdempotent: true, budget: { ratio: 0.5 } }),
  ]);
  const p = plan();
  t.match(p.retry, { codes: [500], attempts: 1, backoffMs: 25, retryOn: ['reset'], idempotentOnly: false, crossHopCap: true });
  t.equal(p.retry!.backoffMaxMs, undefined);
  t.equal(p.attemptTimeoutMs, 2000, 'the rule\'s backendRequest, not the policy\'s perTryTimeout');
  t.equal(p.retry!.budget!.spec.ratio, 0.5, 'the policy\'s budget');
});

t.test('a policy switching the budget and the cap off does so for the route\'s retries too', async (t) => {
  const { plan } = setup(t, [routeWithRetry({ codes: [503] }), policyWithRetry({ budget: { enabled: false }, crossHopCap: false })]);
  const r = plan().retry!;
  t.equal(r.budget, undefined);
  t.equal(r.crossHopCap, false);
});

t.test('a changed policy (a new spec object) gets a fresh budget', async (t) => {
  const { plan, state } = setup(t, [policyWithRetry({ budget: { ratio: 0.1 } })]);
  const first = plan().retry!.budget!;
  state.applyChanges([policyWithRetry({ budget: { ratio: 0.3 } })], 2);
  const second = plan().retry!.budget!;
  t.not(second, first);
  t.equal(second.spec.ratio, 0.3);
});
