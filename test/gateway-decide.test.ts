/**
 * The whole route logic for one request (src/gateway/decide.ts), as the waypoint and
 * `weft explain` run it: passthrough without routes, 404 without a match, redirect,
 * 500/503, and a forward with rewritten request, both filter levels, mirrors and policy.
 */
import t from 'tap';
import { decideRoute, RouteConfig, type RouteInput } from '../src/gateway/decide';
import { headerMap } from '../src/gateway/filters';
import type { BackendState, ServiceView } from '../src/gateway/backend';
import { backend, grpcRoute, grpcRule, httpRoute, rule, svcRef } from './helpers/gateway-routes';

const state: BackendState = {
  service: (ns, name): ServiceView | undefined => (['echo', 'echo-v1', 'echo-v2', 'shadow', 'cold'].includes(name) && ns === 'demo' ? { ports: [{ port: 80 }] } : undefined),
  hasReadyEndpoints: (_ns, name) => name !== 'cold',
};

function input(path: string, extra: Partial<RouteInput> = {}): RouteInput {
  const [p, q] = path.split('?', 2) as [string, string | undefined];
  return {
    target: { namespace: 'demo', name: 'echo', port: 80 }, callerNamespace: 'demo', method: 'GET', authority: 'echo.demo',
    path: p, query: q ?? '', headers: headerMap({ 'x-user': 'beta' }), ...extra,
  };
}

const route = httpRoute('demo', 'canary', [svcRef('echo')], [
  rule([{ path: '/api' }], [
    backend('echo-v1', { weight: 95 }),
    backend('echo-v2', { weight: 5, filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-canary', value: '1' }], add: [], remove: [] } }] }),
  ], {
    name: 'api',
    filters: [
      { type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v1' } } },
      { type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [{ name: 'x-route', value: 'api' }], add: [], remove: [] } },
      { type: 'RequestMirror', requestMirror: { backendRef: backend('shadow'), percent: 50 } },
      { type: 'RequestMirror', requestMirror: { backendRef: backend('ghost') } },
    ],
    timeouts: { request: '2s' }, retry: { codes: [503], attempts: 2 },
  }),
  rule([{ path: '/old' }], [], { filters: [{ type: 'RequestRedirect', requestRedirect: { statusCode: 301, path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } } }] }),
  rule([{ path: '/broken' }], [backend('ghost')]),
  rule([{ path: '/cold' }], [backend('cold')]),
]);
const config = new RouteConfig([route]);

t.test('no route attached → passthrough; attached but unmatched → 404', async (t) => {
  t.same(decideRoute(config, state, input('/x', { target: { namespace: 'demo', name: 'other', port: 80 } })), { kind: 'passthrough' });
  t.same(decideRoute(config, state, input('/nothing')), { kind: 'no-route', status: 404 });
});

t.test('forward: weighted backend, rewrite, backendRef-level headers, response edits, mirrors, policy', async (t) => {
  const v1 = decideRoute(config, state, input('/api/users?page=2'), () => 0.1);
  if (v1.kind !== 'forward') throw new Error(`expected forward, got ${v1.kind}`);
  t.same(v1.backend, { namespace: 'demo', name: 'echo-v1', port: 80 });
  t.match(v1.by, { route: 'demo/canary', kind: 'HTTPRoute', ruleIndex: 0, ruleName: 'api', matchIndex: 0 });
  t.equal(v1.request.path, '/v1/users');
  t.equal(v1.request.query, 'page=2');
  t.equal(v1.request.headers.get('x-canary'), undefined);
  t.same(v1.responseHeaders.map((m) => m.set[0]?.name), ['x-route']);
  t.same(v1.mirrors.map((m) => [m.ref.name, m.backend?.name, m.skipped !== undefined]), [['shadow', 'shadow', false], ['ghost', undefined, true]],
    'random 0.1 < 50 %: mirrored; an unresolvable mirror is skipped, not fatal');
  t.same(v1.policy, { requestTimeoutMs: 2000, retry: { codes: new Set([503]), attempts: 2, backoffMs: 25 } });
  const v2 = decideRoute(config, state, input('/api'), () => 0.97);
  if (v2.kind !== 'forward') throw new Error(`expected forward, got ${v2.kind}`);
  t.equal(v2.backend.name, 'echo-v2');
  t.same(v2.request.headers.get('x-canary'), ['1']);
  t.same(v2.requestHeaderEdits, { set: [{ name: 'x-canary', value: '1' }], add: [], remove: [] }, 'the same edits as one modifier');
  t.same(v2.responseHeaderEdits, { set: [{ name: 'x-route', value: 'api' }], add: [], remove: [] });
  t.equal(v2.request.path, '/v1');
  t.same(v2.mirrors.map((m) => m.ref.name), ['ghost'], 'random 0.97: the 50 % mirror is not taken');
});

t.test('redirect, 500 for an invalid backend, 503 without ready endpoints', async (t) => {
  t.match(decideRoute(config, state, input('/old/page?q=1')), { kind: 'redirect', redirect: { statusCode: 301, location: 'http://echo.demo/new/page?q=1' }, by: { ruleIndex: 1 } });
  t.match(decideRoute(config, state, input('/broken')), { kind: 'error', status: 500, reason: /ghost/ });
  t.match(decideRoute(config, state, input('/cold')), { kind: 'error', status: 503, reason: /no ready endpoint/ });
});

t.test('a GRPCRoute decides too (no timeouts or retry)', async (t) => {
  const g = grpcRoute('demo', 'g', [svcRef('echo')], [grpcRule([{ method: { type: 'Exact', service: 'echo.Echo', method: 'Ping' }, headers: [] }], ['echo-v2'])]);
  const out = decideRoute(new RouteConfig([g]), state, input('/echo.Echo/Ping', { method: 'POST' }));
  t.match(out, { kind: 'forward', backend: { name: 'echo-v2' }, by: { kind: 'GRPCRoute' }, policy: {} });
  t.match(decideRoute(new RouteConfig([g]), state, input('/echo.Echo/Other', { method: 'POST' })), { kind: 'no-route' });
});

t.test('tables are cached per config and caller; a new config sees new routes', async (t) => {
  const c = new RouteConfig([route]);
  const a = c.table({ namespace: 'demo', name: 'echo', port: 80 }, 'demo');
  t.equal(c.table({ namespace: 'demo', name: 'echo', port: 80 }, 'demo'), a);
  t.not(c.table({ namespace: 'demo', name: 'echo', port: 80 }, 'other'), a);
  t.same(decideRoute(new RouteConfig([]), state, input('/api')), { kind: 'passthrough' });
});
