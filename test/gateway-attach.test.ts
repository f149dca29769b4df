/**
 * GAMMA attachment: which routes apply to a request at a Service VIP:port from a caller
 * namespace (src/gateway/attach.ts). Cases follow the mesh conformance suite
 * (MeshPorts, MeshConsumerRoute) plus the spec's rules around them.
 */
import t from 'tap';
import { attachedRoutes, compareRouteAge, parentRefTargets, routeKey } from '../src/gateway/attach';
import { backend, grpcRoute, grpcRule, httpRoute, rule, svcRef } from './helpers/gateway-routes';

const MESH = 'gateway-conformance-mesh';
const CONSUMER = 'gateway-conformance-mesh-consumer';
const names = (rs: { namespace: string; name: string }[]) => rs.map(routeKey);

t.test('parentRef: group "" kind Service, namespace defaults to the route\'s, port and sectionName scope it', async (t) => {
  const target = { namespace: MESH, name: 'echo', port: 80, portName: 'http' };
  t.ok(parentRefTargets(svcRef('echo'), MESH, target));
  t.ok(parentRefTargets(svcRef('echo', { port: 80 }), MESH, target));
  t.notOk(parentRefTargets(svcRef('echo', { port: 8080 }), MESH, target), 'another port');
  t.notOk(parentRefTargets(svcRef('echo'), 'other', target), 'namespace defaults to the route\'s');
  t.ok(parentRefTargets(svcRef('echo', { namespace: MESH }), 'other', target));
  t.notOk(parentRefTargets(svcRef('echo', { group: 'gateway.networking.k8s.io', kind: 'Gateway' }), MESH, target), 'a Gateway parent');
  t.notOk(parentRefTargets(svcRef('echo', { group: 'networking.istio.io', kind: 'ServiceEntry' }), MESH, target));
  t.notOk(parentRefTargets(svcRef('echo-v2'), MESH, target));
  t.ok(parentRefTargets(svcRef('echo', { sectionName: 'http' }), MESH, target));
  t.notOk(parentRefTargets(svcRef('echo', { sectionName: 'grpc' }), MESH, target));
  t.notOk(parentRefTargets(svcRef('echo', { sectionName: 'http', port: 8080 }), MESH, target), 'port and sectionName must both hold');
});

t.test('MeshPorts: a parentRef port scopes the route; without a port it covers every port', async (t) => {
  const v1 = httpRoute(MESH, 'mesh-split-v1', [svcRef('echo-v1', { port: 80 })], [rule(undefined, [backend('echo-v1')])]);
  const v2 = httpRoute(MESH, 'mesh-split-v2', [svcRef('echo-v2')], [rule(undefined, [backend('echo-v2')])]);
  const routes = [v1, v2];
  t.same(names(attachedRoutes(routes, { namespace: MESH, name: 'echo-v1', port: 80 }, MESH)), [`${MESH}/mesh-split-v1`]);
  t.same(attachedRoutes(routes, { namespace: MESH, name: 'echo-v1', port: 8080 }, MESH), [], 'excluded port: nothing attached (passthrough, not 404)');
  t.same(names(attachedRoutes(routes, { namespace: MESH, name: 'echo-v2', port: 80 }, MESH)), [`${MESH}/mesh-split-v2`]);
  t.same(names(attachedRoutes(routes, { namespace: MESH, name: 'echo-v2', port: 8080 }, MESH)), [`${MESH}/mesh-split-v2`]);
});

t.test('MeshConsumerRoute: a consumer route applies only to its own namespace\'s callers, and wins there', async (t) => {
  const producer = httpRoute(MESH, 'producer', [svcRef('echo-v1')], [rule(undefined, [backend('echo-v1')])]);
  const consumer = httpRoute(CONSUMER, 'mesh-echo-add-header', [svcRef('echo-v1', { namespace: MESH })],
    [rule(undefined, [backend('echo-v1', { namespace: MESH })])]);
  const target = { namespace: MESH, name: 'echo-v1', port: 80 };
  t.same(names(attachedRoutes([consumer], target, CONSUMER)), [`${CONSUMER}/mesh-echo-add-header`]);
  t.same(attachedRoutes([consumer], target, MESH), [], 'producer-namespace caller: the consumer route does not apply');
  t.same(names(attachedRoutes([producer, consumer], target, CONSUMER)), [`${CONSUMER}/mesh-echo-add-header`],
    'consumer routes replace the producer routes for that caller');
  t.same(names(attachedRoutes([producer, consumer], target, MESH)), [`${MESH}/producer`]);
  t.same(names(attachedRoutes([producer, consumer], target, 'third')), [`${MESH}/producer`], 'any other caller sees the producer route');
  const third = httpRoute('third', 'sneaky', [svcRef('echo-v1', { namespace: MESH })], [rule(undefined, [backend('x')])]);
  t.same(names(attachedRoutes([producer, third], target, CONSUMER)), [`${MESH}/producer`],
    'a route in a namespace that is neither the Service\'s nor the caller\'s never attaches');
});

t.test('routes come out oldest first, then ns/name; HTTP and gRPC routes are never merged', async (t) => {
  const target = { namespace: 'demo', name: 'echo', port: 80 };
  const b = httpRoute('demo', 'b', [svcRef('echo')], [], '2026-01-01T00:00:00Z');
  const a = httpRoute('demo', 'a', [svcRef('echo')], [], '2026-01-01T00:00:00Z');
  const old = httpRoute('demo', 'z-old', [svcRef('echo')], [], '2025-06-01T00:00:00Z');
  t.same(names(attachedRoutes([b, a, old], target, 'demo')), ['demo/z-old', 'demo/a', 'demo/b']);
  t.ok(compareRouteAge(old, a) < 0 && compareRouteAge(a, b) < 0 && compareRouteAge(a, a) === 0);
  const g = grpcRoute('demo', 'g', [svcRef('echo')], [grpcRule([], ['echo'])], '2025-01-01T00:00:00Z');
  t.same(names(attachedRoutes([b, g, a], target, 'demo')), ['demo/g'], 'the older GRPCRoute wins the port; the HTTPRoutes are left out');
  const young = grpcRoute('demo', 'g', [svcRef('echo')], [grpcRule([], ['echo'])], '2026-06-01T00:00:00Z');
  t.same(names(attachedRoutes([b, young, a], target, 'demo')), ['demo/a', 'demo/b']);
  const badTime = httpRoute('demo', '0-bad-time', [svcRef('echo')], [], 'not a time');
  t.same(names(attachedRoutes([badTime, b], target, 'demo')), ['demo/b', 'demo/0-bad-time'], 'an unparsable timestamp sorts last');
});
