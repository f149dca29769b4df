/**
 * Backend resolution and weighted choice (src/gateway/backend.ts), driven by a fixed
 * random sequence: weights (95/5, weight 0 = nothing, blue-green flip), the spec's 500
 * share for invalid backendRefs, 503 for no ready endpoint, and which cross-namespace
 * references are allowed without ReferenceGrant.
 */
import t from 'tap';
import { chooseBackend, resolveBackend, type BackendState, type ServiceView } from '../src/gateway/backend';
import { backend, httpRoute, rule, svcRef } from './helpers/gateway-routes';
import type { HTTPBackendRef } from '../src/gateway/types';

class FakeState implements BackendState {
  services = new Map<string, ServiceView>();
  ready = new Set<string>();
  add(ns: string, name: string, ports: number[], ready = true): this {
    this.services.set(`${ns}/${name}`, { ports: ports.map((port) => ({ port })) });
    if (ready) for (const p of ports) this.ready.add(`${ns}/${name}:${p}`);
    return this;
  }
  service(ns: string, name: string): ServiceView | undefined { return this.services.get(`${ns}/${name}`); }
  hasReadyEndpoints(ns: string, name: string, port: number): boolean { return this.ready.has(`${ns}/${name}:${port}`); }
}

const NS = 'demo';
const state = new FakeState().add(NS, 'echo-v1', [80]).add(NS, 'echo-v2', [80]).add(NS, 'echo', [80, 8080]);

function routeWith(refs: HTTPBackendRef[]) {
  return httpRoute(NS, 'r', [svcRef('echo')], [rule(undefined, refs)]);
}

/** Runs n requests with random = i/n (an even sweep of [0, 1)) and counts outcomes. */
function sweep(refs: HTTPBackendRef[], n: number, st: BackendState = state): Record<string, number> {
  const route = routeWith(refs);
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const d = chooseBackend(refs, route, st, () => i / n);
    const key = d.action === 'forward' ? d.backend.name : String(d.status);
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

t.test('weights: 95/5 canary, equal default weights, weight 0 receives nothing, blue-green flip', async (t) => {
  t.same(sweep([backend('echo-v1', { weight: 95 }), backend('echo-v2', { weight: 5 })], 1000), { 'echo-v1': 950, 'echo-v2': 50 });
  t.same(sweep([backend('echo-v1'), backend('echo-v2')], 1000), { 'echo-v1': 500, 'echo-v2': 500 }, 'default weight 1 each');
  t.same(sweep([backend('echo-v1', { weight: 100 }), backend('echo-v2', { weight: 0 })], 1000), { 'echo-v1': 1000 });
  t.same(sweep([backend('echo-v1', { weight: 0 }), backend('echo-v2', { weight: 100 })], 1000), { 'echo-v2': 1000 }, 'flipped');
  // The extremes of the random source stay in range.
  const refs = [backend('echo-v1', { weight: 0 }), backend('echo-v2', { weight: 3 }), backend('echo', { weight: 0 })];
  for (const r of [0, 0.999999999, 1]) {
    const d = chooseBackend(refs, routeWith(refs), state, () => r);
    t.equal(d.action === 'forward' && d.backend.name, 'echo-v2', `random ${r}`);
  }
});

t.test('no weight left: no backendRefs, or all weight 0 → 500', async (t) => {
  const none = chooseBackend([], routeWith([]), state, () => 0.5);
  t.match(none, { action: 'error', status: 500, reason: /no backendRefs/ });
  const zero = [backend('echo-v1', { weight: 0 })];
  t.match(chooseBackend(zero, routeWith(zero), state, () => 0.5), { action: 'error', status: 500, reason: /weight 0/ });
});

t.test('invalid backends keep their share, answered 500; all invalid → 500', async (t) => {
  t.same(sweep([backend('echo-v1'), backend('missing')], 1000), { 'echo-v1': 500, 500: 500 });
  t.same(sweep([backend('echo-v1', { weight: 3 }), backend('x', { kind: 'ConfigMap' })], 1000), { 'echo-v1': 750, 500: 250 });
  t.same(sweep([backend('missing'), backend('echo-v1', { port: 9999 })], 100), { 500: 100 });
  const d = chooseBackend([backend('missing')], routeWith([]), state, () => 0);
  t.match(d, { action: 'error', status: 500, index: 0, reason: /demo\/missing:80.*does not exist/ });
});

t.test('a valid Service without a ready endpoint → 503', async (t) => {
  const st = new FakeState().add(NS, 'echo-v1', [80], false).add(NS, 'echo-v2', [80]);
  t.same(sweep([backend('echo-v1'), backend('echo-v2')], 10, st), { 503: 5, 'echo-v2': 5 });
  t.match(chooseBackend([backend('echo-v1')], routeWith([]), st, () => 0), { action: 'error', status: 503, reason: /no ready endpoint/ });
});

t.test('resolveBackend: kind, existence, port, and cross-namespace references', async (t) => {
  const st = new FakeState().add(NS, 'echo', [80]).add('prod', 'db', [5432]).add('prod', 'api', [80]);
  const route = httpRoute(NS, 'r', [svcRef('echo')], []);
  t.same(resolveBackend(backend('echo'), route, st), { ok: true, backend: { namespace: NS, name: 'echo', port: 80 } });
  t.match(resolveBackend(backend('echo', { group: 'multicluster.x-k8s.io', kind: 'ServiceImport' }), route, st),
    { ok: false, reason: 'InvalidKind', message: /multicluster.x-k8s.io\/ServiceImport demo\/echo:80/ });
  t.match(resolveBackend(backend('echo', { port: 81 }), route, st), { ok: false, reason: 'BackendNotFound', message: /has no port 81 \(ports: 80\)/ });
  const noPort: HTTPBackendRef = { group: '', kind: 'Service', name: 'echo', weight: 1, filters: [] };
  t.match(resolveBackend(noPort, route, st), { ok: false, reason: 'BackendNotFound', message: /needs a port/ });
  t.match(resolveBackend(backend('db', { namespace: 'prod', port: 5432 }), route, st), { ok: false, reason: 'RefNotPermitted' },
    'a route cannot send into another namespace on its own say');
  const consumer = httpRoute(NS, 'c', [svcRef('api', { namespace: 'prod' })], []);
  t.same(resolveBackend(backend('api', { namespace: 'prod' }), consumer, st), { ok: true, backend: { namespace: 'prod', name: 'api', port: 80 } },
    'a consumer route may send to the Service it is attached to');
  t.match(resolveBackend(backend('db', { namespace: 'prod', port: 5432 }), consumer, st), { ok: false, reason: 'RefNotPermitted' },
    '...but not to another Service of that namespace');
});
