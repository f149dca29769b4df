// The waypoint's endpoint choice under a TrafficPolicy: MeshRouter balances a Service
// with a policy by its loadBalancer section (hash keys from the request, a generated
// cookie), hands forward() per-attempt targets that avoid tried endpoints and report to
// the balancer and the reporter hooks; a Service without a policy gets no targets.
// forward() pairs every started attempt with one report() or cancelled().
import t from 'tap';
import { Readable } from 'node:stream';
import { MeshState } from '../src/registry/state';
import { ambientNamespace, httpRouteRecord, serviceRecord, trafficPolicyRecord, workloadRecord } from '../src/registry/fixtures';
import { recordKey, type Change, type Kind, type RecordsByKind } from '../src/registry/types';
import { MeshRouter } from '../src/waypoint/router';
import type { AttemptReporter, ServicePolicy } from '../src/waypoint/attempt-targets';
import { forward } from '../src/waypoint/forward';
import { AttemptError, type UpstreamClient, type UpstreamResponse } from '../src/waypoint/upstream';
import type { AttemptOutcome, AttemptTargets, ForwardPlan, RequestFacts, UpstreamTarget } from '../src/waypoint/types';
import { ManualClock } from './helpers/clock';

function put<K extends Kind>(kind: K, record: RecordsByKind[K]): Change {
  return { op: 'put', kind, key: recordKey(kind, record), record } as Change;
}

const ADDRS = ['10.1.2.1', '10.1.2.2', '10.1.2.3', '10.1.2.4'];

function request(headers: Record<string, string> = {}, query = ''): RequestFacts {
  return {
    method: 'GET', authority: 'echo.demo', path: '/', query, headers, protocol: 'http1',
    source: { address: '10.1.1.2', port: 40000, identity: 'spiffe://cluster.local/ns/demo/sa/client' },
    destination: { address: '10.96.0.10', port: 80, service: { namespace: 'demo', name: 'echo' } },
  };
}

function meshState(): MeshState {
  const state = new MeshState({ trustDomain: 'cluster.local' });
  state.applyChanges([
    put('namespace', ambientNamespace('demo')),
    put('service', serviceRecord({ namespace: 'demo', name: 'echo', vips: ['10.96.0.10'] })),
    ...ADDRS.map((a, i) => put('workload', workloadRecord({ namespace: 'demo', name: `echo-${i}`, node: 'n', addresses: [a], labels: { app: 'echo' } }))),
  ], 1);
  return state;
}

function forwardPlan(d: ReturnType<MeshRouter['route']>): ForwardPlan {
  if (d.kind !== 'forward') throw new Error(`expected a forward plan, got ${d.status} ${d.body}`);
  return d;
}

class Recorder implements AttemptReporter {
  readonly seen: Array<{ service: ServicePolicy; host: string; outcome: AttemptOutcome }> = [];
  report(service: ServicePolicy, target: UpstreamTarget, outcome: AttemptOutcome): void {
    this.seen.push({ service, host: target.host, outcome });
  }
}

t.test('a Service without a TrafficPolicy: plain round robin, no per-attempt targets', async (t) => {
  const router = new MeshRouter({ state: meshState() });
  t.teardown(() => router.close());
  const hosts = Array.from({ length: 4 }, () => forwardPlan(router.route(request())).upstream.host);
  t.same([...hosts].sort(), ADDRS, 'each endpoint once per round');
  t.equal(forwardPlan(router.route(request())).targets, undefined, 'no targets object');
});

t.test('consistent hash on x-user: each user sticks; a retry goes elsewhere; outcomes reach the reporters', async (t) => {
  const state = meshState();
  const policy = trafficPolicyRecord({ namespace: 'demo', name: 'echo' }, ['echo'], { loadBalancer: { type: 'ConsistentHash', consistentHash: { header: 'x-user', algorithm: 'Maglev', tableSize: 1009 } } });
  state.applyChanges([put('trafficpolicy', policy)], 2);
  const recorder = new Recorder();
  const router = new MeshRouter({ state, reporters: [recorder], random: () => 0 });
  t.teardown(() => router.close());
  const users = Array.from({ length: 200 }, (_, i) => `user-${i}`);
  const first = users.map((u) => forwardPlan(router.route(request({ 'x-user': u }))).upstream.host);
  const again = users.map((u) => forwardPlan(router.route(request({ 'x-user': u }))).upstream.host);
  t.same(again, first, 'every user to the same endpoint again');
  t.equal(new Set(first).size, 4, 'users spread over all four endpoints');

  const plan = forwardPlan(router.route(request({ 'x-user': 'alice' })));
  const targets = plan.targets!;
  t.ok(targets, 'a Service with a policy gets per-attempt targets');
  const second = targets.next([plan.upstream])!;
  t.not(second.host, plan.upstream.host, 'the retry avoids the tried endpoint');
  t.same({ port: second.port, transport: second.transport }, { port: plan.upstream.port, transport: plan.upstream.transport }, 'same port and transport');
  t.equal(targets.next([plan.upstream])!.host, second.host, 'deterministic per key');
  targets.report(second, { status: 503, latencyMs: 4 });
  t.same(recorder.seen.map((s) => [s.service.namespace, s.service.name, s.service.spec === policy.spec, s.host, s.outcome.status]), [['demo', 'echo', true, second.host, 503]]);
});

t.test('a cookie key with a ttl: a request without it gets one, and the cookie picks the endpoint', async (t) => {
  const state = meshState();
  state.applyChanges([put('trafficpolicy', trafficPolicyRecord({ namespace: 'demo', name: 'echo' }, ['echo'], {
    loadBalancer: { type: 'ConsistentHash', consistentHash: { cookie: { name: 'sticky', ttl: '1h' }, algorithm: 'Ring', minimumRingSize: 1024 } },
  }))], 2);
  const router = new MeshRouter({ state });
  t.teardown(() => router.close());
  const plan = forwardPlan(router.route(request()));
  const set = plan.responseHeaders?.add.find((h) => h.name === 'set-cookie')?.value;
  t.match(set, /^sticky=[0-9a-f]{24}; Max-Age=3600; Path=\/; HttpOnly$/, 'set-cookie on the response');
  const cookie = set!.split(';')[0]!;
  for (let i = 0; i < 5; i++) {
    const p = forwardPlan(router.route(request({ cookie })));
    t.equal(p.upstream.host, plan.upstream.host, 'the cookie sticks to the endpoint chosen with it');
    t.equal(p.responseHeaders, undefined, 'no new cookie when one came');
  }
});

t.test('the generated cookie joins the route\'s own response header edits without changing them', async (t) => {
  const state = meshState();
  const route = httpRouteRecord({ namespace: 'demo', name: 'r' }, 'echo');
  const edits = { set: [{ name: 'x-a', value: '1' }], add: [{ name: 'x-b', value: '2' }], remove: ['x-c'] };
  route.spec.rules[0]!.filters = [{ type: 'ResponseHeaderModifier', responseHeaderModifier: edits }];
  state.applyChanges([
    put('httproute', route),
    put('trafficpolicy', trafficPolicyRecord({ namespace: 'demo', name: 'echo' }, ['echo'], { loadBalancer: { type: 'ConsistentHash', consistentHash: { cookie: { name: 's', ttl: '10s' }, algorithm: 'Ring', minimumRingSize: 64 } } })),
  ], 2);
  const router = new MeshRouter({ state });
  t.teardown(() => router.close());
  const plan = forwardPlan(router.route(request()));
  t.same(plan.responseHeaders?.set, [{ name: 'x-a', value: '1' }]);
  t.same(plan.responseHeaders?.add.map((h) => h.name), ['x-b', 'set-cookie']);
  t.same(plan.responseHeaders?.remove, ['x-c']);
  const next = forwardPlan(router.route(request()));
  t.same(next.responseHeaders?.add.map((h) => h.name), ['x-b', 'set-cookie'], 'the route\'s own list was not appended to');
});

t.test('the balancer survives an edit of another section, is rebuilt when loadBalancer changes, dropped with the policy', async (t) => {
  const state = meshState();
  const clock = new ManualClock(1000);
  const base = trafficPolicyRecord({ namespace: 'demo', name: 'echo' }, ['echo'], { loadBalancer: { type: 'LeastRequest' } });
  state.applyChanges([put('trafficpolicy', base)], 2);
  const router = new MeshRouter({ state, clock, random: () => 0 });
  t.teardown(() => router.close());
  const p1 = forwardPlan(router.route(request()));
  p1.targets!.started!(p1.upstream);
  // That endpoint now has one in flight: least request avoids it.
  const p2 = forwardPlan(router.route(request()));
  t.not(p2.upstream.host, p1.upstream.host, 'the endpoint with a request in flight is avoided');
  const twoTargets = [...base.spec.targetRefs, { group: '' as const, kind: 'Service' as const, name: 'other' }];
  state.applyChanges([put('trafficpolicy', { ...base, spec: { ...base.spec, targetRefs: twoTargets } })], 3);
  t.not(forwardPlan(router.route(request())).upstream.host, p1.upstream.host, 'still avoided after an edit of another section: same balancer');
  state.applyChanges([put('trafficpolicy', { ...base, spec: { ...base.spec, loadBalancer: { type: 'LeastRequest' }, targetRefs: twoTargets } })], 4);
  t.not(forwardPlan(router.route(request())).upstream.host, p1.upstream.host, 'an equal loadBalancer section keeps it too');
  state.applyChanges([put('trafficpolicy', { ...base, spec: { ...base.spec, loadBalancer: { type: 'RoundRobin' } } })], 5);
  const rr = Array.from({ length: 4 }, () => forwardPlan(router.route(request())).upstream.host);
  t.same(rr, ADDRS, 'a new type: a new balancer (round robin in address order)');
  const view = router.balancerViews();
  t.same(view.map((v) => [v.namespace, v.name, v.type, v.endpoints.map((e) => e.address)]), [['demo', 'echo', 'RoundRobin', ADDRS]], 'the admin view lists the balancer and its endpoints');
  state.applyChanges([{ op: 'delete', kind: 'trafficpolicy', key: recordKey('trafficpolicy', base) } as Change], 6);
  t.equal(forwardPlan(router.route(request())).targets, undefined, 'policy gone: no targets');
  t.equal((router as unknown as { balancers: { size: number } }).balancers.size, 0, 'its balancer state dropped');
});

/** An UpstreamClient answering from a script per attempt: a status, or a failure kind, or 'hang' (until aborted). */
function scriptedClient(script: Array<number | 'connect' | 'hang'>): UpstreamClient {
  return {
    request: async (_target, req) => {
      const step = script.shift() ?? 200;
      if (step === 'connect') throw new AttemptError('connect', 'refused');
      if (step === 'hang') {
        await new Promise<void>((resolve) => req.signal.addEventListener('abort', () => resolve(), { once: true }));
        throw new AttemptError('reset', 'aborted');
      }
      const res: UpstreamResponse = { status: step, headers: {}, body: Readable.from([]), endStream: true, trailers: () => undefined, discard: () => {} } as unknown as UpstreamResponse;
      return res;
    },
    close: () => {},
  };
}

/** Targets that record the calls forward() makes. */
function recordingTargets(hosts: string[]): AttemptTargets & { calls: string[] } {
  const calls: string[] = [];
  let i = 1;
  const target = (host: string): UpstreamTarget => ({ host, port: 80, transport: 'tcp' });
  return {
    calls,
    next: (tried) => { calls.push(`next(${tried.map((x) => x.host).join(',')})`); return target(hosts[i++]!); },
    started: (t) => calls.push(`started ${t.host}`),
    report: (t, o) => calls.push(`report ${t.host} ${o.status ?? o.failure}`),
    cancelled: (t) => calls.push(`cancelled ${t.host}`),
  };
}

t.test('forward(): every started attempt ends in one report or one cancelled; retries ask next() with the tried list', async (t) => {
  const clock = new ManualClock();
  const base = { method: 'GET', path: '/', authority: 'echo', headers: {}, body: null };
  {
    const targets = recordingTargets(['a', 'b', 'c']);
    const plan: ForwardPlan = { kind: 'forward', upstream: { host: 'a', port: 80, transport: 'tcp' }, retry: { codes: [503], attempts: 2, backoffMs: 0 }, targets };
    const r = await forward({ ...base, client: scriptedClient([503, 'connect', 200]), downstreamGone: new AbortController().signal }, plan, clock);
    t.equal(r.kind, 'response');
    t.same(targets.calls, ['started a', 'report a 503', 'next(a)', 'started b', 'report b connect', 'next(a,b)', 'started c', 'report c 200']);
  }
  {
    const targets = recordingTargets(['a']);
    const gone = new AbortController();
    const plan: ForwardPlan = { kind: 'forward', upstream: { host: 'a', port: 80, transport: 'tcp' }, targets };
    const p = forward({ ...base, client: scriptedClient(['hang']), downstreamGone: gone.signal }, plan, clock);
    await new Promise((r) => setImmediate(r));
    gone.abort();
    t.equal((await p).kind, 'local');
    t.same(targets.calls, ['started a', 'cancelled a'], 'the downstream leaving ends the attempt without a report');
  }
});
