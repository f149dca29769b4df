// MeshRouter's registry reads: a request lists its backend Service's endpoints once
// (the readiness check while choosing the backend and the endpoint pick share the list).
import t from 'tap';
import { MeshState } from '../src/registry/state';
import { ambientNamespace, httpRouteRecord, serviceRecord, trafficPolicyRecord, workloadRecord } from '../src/registry/fixtures';
import { validateConnectionPool } from '../src/resilience/pool-spec';
import { ServiceBulkheads } from '../src/waypoint/bulkheads';
import { TrafficPolicies } from '../src/waypoint/traffic-policies';
import { recordKey, type Change, type Kind, type RecordsByKind, type ServiceRecord } from '../src/registry/types';
import { MeshRouter } from '../src/waypoint/router';
import type { RequestFacts } from '../src/waypoint/types';

function put<K extends Kind>(kind: K, record: RecordsByKind[K]): Change {
  return { op: 'put', kind, key: recordKey(kind, record), record } as Change;
}

function request(service: string): RequestFacts {
  return {
    method: 'GET', authority: `${service}.demo`, path: '/', query: '', headers: {}, protocol: 'http1',
    source: { address: '10.1.1.2', port: 40000, identity: 'spiffe://cluster.local/ns/demo/sa/client' },
    destination: { address: '10.96.0.10', port: 80, service: { namespace: 'demo', name: service } },
  };
}

/** A state whose endpoints() calls are counted per Service. */
function countingState(): { state: MeshState; listed: Map<string, number> } {
  const state = new MeshState({ trustDomain: 'cluster.local' });
  state.applyChanges([
    put('namespace', ambientNamespace('demo')),
    put('service', serviceRecord({ namespace: 'demo', name: 'echo', vips: ['10.96.0.10'] })),
    put('service', serviceRecord({ namespace: 'demo', name: 'shadow', vips: ['10.96.0.11'] })),
    put('workload', workloadRecord({ namespace: 'demo', name: 'echo-0', node: 'n', addresses: ['10.1.2.3'], labels: { app: 'echo' } })),
    put('workload', workloadRecord({ namespace: 'demo', name: 'shadow-0', node: 'n', addresses: ['10.1.2.4'], labels: { app: 'shadow' } })),
  ], 1);
  const listed = new Map<string, number>();
  const endpoints = state.endpoints.bind(state);
  state.endpoints = (svc: ServiceRecord) => {
    const k = `${svc.namespace}/${svc.name}`;
    listed.set(k, (listed.get(k) ?? 0) + 1);
    return endpoints(svc);
  };
  return { state, listed };
}

t.test('a routed request lists its backend Service\'s endpoints once, a mirror\'s once', async (t) => {
  const { state, listed } = countingState();
  const route = httpRouteRecord({ namespace: 'demo', name: 'r' }, 'echo');
  route.spec.rules[0]!.filters = [{ type: 'RequestMirror', requestMirror: { backendRef: { group: '', kind: 'Service', name: 'shadow', port: 80 } } }];
  state.applyChanges([put('httproute', route)], 2);
  const router = new MeshRouter({ state, random: () => 0 });
  t.teardown(() => router.close());
  const d = router.route(request('echo'));
  t.equal(d.kind, 'forward');
  t.equal(d.kind === 'forward' && d.upstream.host, '10.1.2.3');
  t.same(d.kind === 'forward' && d.mirrors?.map((m) => m.upstream.host), ['10.1.2.4'], 'the mirror is planned');
  t.same(Object.fromEntries(listed), { 'demo/echo': 1, 'demo/shadow': 1 }, 'each Service listed once per request');
  listed.clear();
  router.route(request('echo'));
  t.same(Object.fromEntries(listed), { 'demo/echo': 1, 'demo/shadow': 1 }, 'the next request lists afresh (no list outlives its request)');
});

t.test('a request to a Service without routes lists its endpoints once', async (t) => {
  const { state, listed } = countingState();
  const router = new MeshRouter({ state });
  t.teardown(() => router.close());
  const d = router.route(request('echo'));
  t.equal(d.kind === 'forward' && d.upstream.host, '10.1.2.3');
  t.same(Object.fromEntries(listed), { 'demo/echo': 1 });
});

t.test('a Service\'s connectionPool reaches its plans (one bulkhead across requests and edits of other sections); none without a policy; dropped with the policy', async (t) => {
  const { state } = countingState();
  const pool = validateConnectionPool({ maxConcurrentRequests: 2, maxPendingRequests: 1, maxConnections: 3 }, 'spec.connectionPool', 'reject');
  state.applyChanges([put('trafficpolicy', trafficPolicyRecord({ namespace: 'demo', name: 'p' }, ['echo'], { connectionPool: pool }))], 2);
  const policies = new TrafficPolicies(state);
  const bulkheads = new ServiceBulkheads((ns, n) => policies.forService(ns, n));
  policies.on('change', () => bulkheads.prune());
  const router = new MeshRouter({ state, policies, bulkheads });
  t.teardown(() => { router.close(); policies.close(); });
  const plan = (service: string) => {
    const d = router.route(request(service));
    if (d.kind !== 'forward') throw new Error(`not forwarded: ${JSON.stringify(d)}`);
    return d;
  };
  const first = plan('echo');
  t.ok(first.bulkhead, 'request slots on the plan');
  t.same(first.pool, { maxConnections: 3, maxRequestsPerConnection: undefined }, 'per-connection limits on the plan');
  t.equal(plan('echo').bulkhead, first.bulkhead, 'the same bulkhead for the next request');
  const other = plan('shadow');
  t.equal(other.bulkhead, undefined, 'no policy: no slots');
  t.equal(other.pool, undefined, 'no policy: no connection limits');
  state.applyChanges([put('trafficpolicy', trafficPolicyRecord({ namespace: 'demo', name: 'p' }, ['echo'], { connectionPool: { ...pool }, loadBalancer: { type: 'RoundRobin' } }))], 3);
  t.equal(plan('echo').bulkhead, first.bulkhead, 'another section edited: the bulkhead (and the slots it holds) stays');
  state.applyChanges([{ op: 'delete', kind: 'trafficpolicy', key: 'demo/p' }], 4);
  t.same(bulkheads.views(), [], 'dropped with the policy');
  const after = plan('echo');
  t.equal(after.bulkhead, undefined, 'the policy gone: no slots');
  t.equal(after.pool, undefined);
});
