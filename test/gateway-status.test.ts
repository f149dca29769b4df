/**
 * Route status per parentRef (src/gateway/status.ts): Accepted and ResolvedRefs as the
 * conformance cases for missing parents, invalid backendRefs (BackendNotFound,
 * InvalidKind) and cross-namespace references expect them, with messages that name
 * the object at fault.
 */
import t from 'tap';
import { referencedBackends, routeStatus, WEFT_CONTROLLER_NAME } from '../src/gateway/status';
import type { ServiceLookup, ServiceView } from '../src/gateway/backend';
import { backend, grpcRoute, grpcRule, httpRoute, rule, svcRef } from './helpers/gateway-routes';

class Lookup implements ServiceLookup {
  private readonly m = new Map<string, ServiceView>();
  add(ns: string, name: string, ports: { port: number; name?: string }[]): this { this.m.set(`${ns}/${name}`, { ports }); return this; }
  service(ns: string, name: string): ServiceView | undefined { return this.m.get(`${ns}/${name}`); }
}

const lookup = new Lookup()
  .add('demo', 'echo', [{ port: 80, name: 'http' }, { port: 8080 }])
  .add('demo', 'echo-v1', [{ port: 80 }])
  .add('prod', 'api', [{ port: 80 }]);

const cond = (s: ReturnType<typeof routeStatus>[number], type: string) => s.conditions.find((c) => c.type === type)!;

t.test('a route to an existing Service with valid backends: Accepted and ResolvedRefs True', async (t) => {
  const r = httpRoute('demo', 'ok', [svcRef('echo', { port: 80 })], [rule(undefined, [backend('echo-v1')])]);
  const [s] = routeStatus(r, lookup);
  t.equal(s!.controllerName, WEFT_CONTROLLER_NAME);
  t.same(s!.parentRef, svcRef('echo', { port: 80 }));
  t.match(cond(s!, 'Accepted'), { status: 'True', reason: 'Accepted', message: /demo\/echo:80/ });
  t.match(cond(s!, 'ResolvedRefs'), { status: 'True', reason: 'ResolvedRefs' });
});

t.test('Accepted False/NoMatchingParent: missing Service, a port or port name it does not have', async (t) => {
  const r = httpRoute('demo', 'bad-parents', [
    svcRef('nope'), svcRef('echo', { port: 9090 }), svcRef('echo', { sectionName: 'grpc' }), svcRef('echo', { sectionName: 'http' }),
    svcRef('gw', { group: 'gateway.networking.k8s.io', kind: 'Gateway' }),
  ], [rule(undefined, [backend('echo-v1')])]);
  const st = routeStatus(r, lookup);
  t.equal(st.length, 4, 'no status for a Gateway parent (not Weft\'s)');
  t.match(cond(st[0]!, 'Accepted'), { status: 'False', reason: 'NoMatchingParent', message: /Service demo\/nope.*does not exist/ });
  t.match(cond(st[1]!, 'Accepted'), { status: 'False', reason: 'NoMatchingParent', message: /demo\/echo:9090.*no such port \(ports: 80 \(http\), 8080\)/ });
  t.match(cond(st[2]!, 'Accepted'), { status: 'False', reason: 'NoMatchingParent', message: /port grpc/ });
  t.match(cond(st[3]!, 'Accepted'), { status: 'True' });
  t.match(cond(st[0]!, 'ResolvedRefs'), { status: 'True' }, 'ResolvedRefs is about backends, not parents');
});

t.test('ResolvedRefs False: BackendNotFound, InvalidKind, RefNotPermitted, messages naming every bad backend', async (t) => {
  const missing = httpRoute('demo', 'm', [svcRef('echo')], [rule(undefined, [backend('echo-v1'), backend('ghost')])]);
  t.match(cond(routeStatus(missing, lookup)[0]!, 'ResolvedRefs'), { status: 'False', reason: 'BackendNotFound', message: /demo\/ghost:80.*does not exist/ });
  const kind = httpRoute('demo', 'k', [svcRef('echo')], [rule(undefined, [backend('x', { group: 'example.com', kind: 'Widget' }), backend('ghost')])]);
  const c = cond(routeStatus(kind, lookup)[0]!, 'ResolvedRefs');
  t.match(c, { status: 'False', reason: 'InvalidKind', message: /example\.com\/Widget demo\/x.*; .*demo\/ghost/ });
  const cross = httpRoute('demo', 'x', [svcRef('echo')], [rule(undefined, [backend('api', { namespace: 'prod' })])]);
  t.match(cond(routeStatus(cross, lookup)[0]!, 'ResolvedRefs'), { status: 'False', reason: 'RefNotPermitted' });
  const consumer = httpRoute('demo', 'c', [svcRef('api', { namespace: 'prod' })], [rule(undefined, [backend('api', { namespace: 'prod' })])]);
  const [cs] = routeStatus(consumer, lookup);
  t.match(cond(cs!, 'Accepted'), { status: 'True' });
  t.match(cond(cs!, 'ResolvedRefs'), { status: 'True' }, 'a consumer route sending to its parent Service');
  const badPort = httpRoute('demo', 'p', [svcRef('echo')], [rule(undefined, [backend('echo-v1', { port: 81 })])]);
  t.match(cond(routeStatus(badPort, lookup)[0]!, 'ResolvedRefs'), { status: 'False', reason: 'BackendNotFound', message: /no port 81/ });
});

t.test('mirror targets are references too, at rule and backendRef level', async (t) => {
  const mirrorTo = (name: string) => ({ type: 'RequestMirror' as const, requestMirror: { backendRef: backend(name) } });
  const r = httpRoute('demo', 'mir', [svcRef('echo')], [
    rule(undefined, [backend('echo-v1', { filters: [mirrorTo('ghost-b')] })], { filters: [mirrorTo('ghost-a')] }),
  ]);
  t.same(referencedBackends(r).map((b) => b.name), ['echo-v1', 'ghost-a', 'ghost-b']);
  t.match(cond(routeStatus(r, lookup)[0]!, 'ResolvedRefs'), { status: 'False', message: /ghost-a.*ghost-b/ });
});

t.test('an HTTPRoute and an older GRPCRoute on the same Service port: only the older is Accepted', async (t) => {
  const g = grpcRoute('demo', 'g', [svcRef('echo', { port: 80 })], [grpcRule([], ['echo-v1'])], '2025-01-01T00:00:00Z');
  const h = httpRoute('demo', 'h', [svcRef('echo')], [rule(undefined, [backend('echo-v1')])], '2026-01-01T00:00:00Z');
  const all = [g, h];
  t.match(cond(routeStatus(h, lookup, all)[0]!, 'Accepted'), { status: 'False', reason: 'NotAllowedByListeners', message: /GRPCRoute demo\/g is older/ });
  t.match(cond(routeStatus(g, lookup, all)[0]!, 'Accepted'), { status: 'True' });
  const h8080 = httpRoute('demo', 'h2', [svcRef('echo', { port: 8080 })], [rule(undefined, [backend('echo-v1')])], '2026-01-01T00:00:00Z');
  t.match(cond(routeStatus(h8080, lookup, [g, h8080])[0]!, 'Accepted'), { status: 'True' }, 'different ports do not conflict');
});
