/**
 * Route selection: compile (precedence order, compiled regexes) and select (first entry
 * that matches). The request/expectation tables restate the Gateway API conformance
 * cases (mesh HTTPRouteMatching and QueryParamMatching; gateway-profile PathMatchOrder,
 * HeaderMatching, MethodMatching) in our own words, plus the spec's precedence rules
 * across routes and the GRPCRoute method matches.
 */
import t from 'tap';
import { compileRouteTable, type RouteTable } from '../src/gateway/compile';
import { explainSelection, parseQuery, prefixMatches, selectRoute, splitGrpcPath } from '../src/gateway/select';
import type { RouteRecord } from '../src/gateway/attach';
import { backend, grpcRoute, grpcRule, httpRoute, request, rule, svcRef, type MatchSpec } from './helpers/gateway-routes';

const NS = 'gateway-conformance-mesh';
const TARGET = { namespace: NS, name: 'echo', port: 80 };

function table(...routes: RouteRecord[]): RouteTable {
  return compileRouteTable(routes, TARGET, NS);
}

/** One rule per entry: its matches and the single backend it sends to. */
function oneRoute(rules: [MatchSpec[] | undefined, string][]): RouteTable {
  return table(httpRoute(NS, 'r', [svcRef('echo')], rules.map(([m, b]) => rule(m, [backend(b)]))));
}

/** The first backend of the winning rule, or 404. */
function winner(tbl: RouteTable, path: string, opts: Parameters<typeof request>[1] = {}): string {
  const [p, q] = path.split('?', 2) as [string, string | undefined];
  const sel = selectRoute(tbl, request(p, { ...opts, query: q ?? '' }));
  return sel === undefined ? '404' : sel.rule.backendRefs[0]!.name;
}

t.test('prefix matching is whole-segment and ignores the prefix\'s trailing slash', async (t) => {
  for (const p of ['/abc', '/abc/', '/abc/def']) t.ok(prefixMatches('/abc', p), p);
  t.notOk(prefixMatches('/abc', '/abcd'));
  t.notOk(prefixMatches('/abc', '/ab'));
  t.ok(prefixMatches('', '/anything'), 'the prefix / matches every path');
  const tbl = oneRoute([[[{ path: '/abc/' }], 'v1']]);
  t.equal(winner(tbl, '/abc'), 'v1', 'prefix /abc/ matches /abc');
  t.equal(winner(tbl, '/abcd'), '404');
});

t.test('mesh HTTPRouteMatching: path and header matches for two backends', async (t) => {
  const tbl = oneRoute([
    [[{ path: '/' }, { headers: { version: 'one' } }], 'echo-v1'],
    [[{ path: '/v2' }, { headers: { version: 'two' } }], 'echo-v2'],
  ]);
  const cases: [string, Record<string, string>, string][] = [
    ['/', {}, 'echo-v1'], ['/example', {}, 'echo-v1'], ['/', { Version: 'one' }, 'echo-v1'],
    ['/v2', {}, 'echo-v2'], ['/v2/example', {}, 'echo-v2'], ['/', { Version: 'two' }, 'echo-v2'],
    ['/v2/', {}, 'echo-v2'], ['/v2example', {}, 'echo-v1'], ['/foo/v2/example', {}, 'echo-v1'],
  ];
  for (const [path, headers, want] of cases) t.equal(winner(tbl, path, { headers }), want, `${path} ${JSON.stringify(headers)}`);
});

t.test('PathMatchOrder: exact beats prefix, longer prefix beats shorter, regardless of rule order', async (t) => {
  const tbl = oneRoute([
    [[{ type: 'Exact', path: '/match' }], 'v1'],
    [[{ type: 'Exact', path: '/match/exact' }], 'v2'],
    [[{ type: 'Exact', path: '/match/exact/one' }], 'v3'],
    [[{ path: '/match/' }], 'v3'],
    [[{ path: '/match/prefix/' }], 'v1'],
    [[{ path: '/match/prefix/one' }], 'v2'],
  ]);
  const cases: [string, string][] = [
    ['/match/exact/one', 'v3'], ['/match/exact', 'v2'], ['/match', 'v1'],
    ['/match/prefix/one/any', 'v2'], ['/match/prefix/any', 'v1'], ['/match/any', 'v3'],
  ];
  for (const [path, want] of cases) t.equal(winner(tbl, path), want, path);
});

t.test('a regex path ranks after every prefix, even `/`; among themselves by the next criteria', async (t) => {
  const tbl = oneRoute([
    [[{ type: 'RegularExpression', path: '/api/v[0-9]+/.*' }], 'regex'],
    [[{ path: '/' }], 'catch-all'],
  ]);
  t.equal(winner(tbl, '/api/v2/users'), 'catch-all');
  const only = oneRoute([
    [[{ type: 'RegularExpression', path: '/api/v[0-9]+/.*' }], 'regex'],
    [[{ path: '/other' }], 'other'],
  ]);
  t.equal(winner(only, '/api/v2/users'), 'regex');
  t.equal(winner(only, '/api/vx/users'), '404');
  t.equal(winner(only, '/x/api/v2/users'), '404', 'regex paths match the whole path');
});

t.test('HeaderMatching: case-insensitive names, more header matches win, OR across matches', async (t) => {
  const tbl = oneRoute([
    [[{ headers: { version: 'one' } }], 'v1'],
    [[{ headers: { version: 'two' } }], 'v2'],
    [[{ headers: { version: 'two', color: 'orange' } }], 'v1'],
    [[{ headers: { color: 'blue' } }, { headers: { color: 'green' } }], 'v1'],
    [[{ headers: { color: 'red' } }, { headers: { color: 'yellow' } }], 'v2'],
  ]);
  const cases: [Record<string, string>, string][] = [
    [{ Version: 'one' }, 'v1'], [{ Version: 'two' }, 'v2'], [{ Version: 'two', Color: 'orange' }, 'v1'],
    [{ Version: 'two', Color: 'blue' }, 'v2'], [{ Color: 'orange' }, '404'], [{ 'Some-Other-Header': 'one' }, '404'],
    [{ Color: 'blue' }, 'v1'], [{ Color: 'green' }, 'v1'], [{ Color: 'red' }, 'v2'], [{ Color: 'yellow' }, 'v2'],
    [{ Color: 'purple' }, '404'],
  ];
  for (const [headers, want] of cases) t.equal(winner(tbl, '/', { headers }), want, JSON.stringify(headers));
  t.equal(winner(tbl, '/', { headers: { version: 'ONE' } }), '404', 'header values compare case-sensitively');
  t.equal(winner(tbl, '/', { headers: { color: ['purple', 'green'] } }), 'v1', 'a repeated header matches by any of its values');
  const re = oneRoute([[[{ headersRe: { 'X-Build': '[0-9]+' } }], 'build']]);
  t.equal(winner(re, '/', { headers: { 'x-build': '1234' } }), 'build');
  t.equal(winner(re, '/', { headers: { 'x-build': '12a' } }), '404', 'a header regex is a full match');
});

t.test('header and query names given twice: only the first entry counts', async (t) => {
  const r = httpRoute(NS, 'dup', [svcRef('echo')], [{
    matches: [{
      path: { type: 'PathPrefix', value: '/' },
      headers: [{ type: 'Exact', name: 'X-A', value: '1' }, { type: 'Exact', name: 'x-a', value: '2' }],
      queryParams: [{ type: 'Exact', name: 'q', value: '1' }, { type: 'Exact', name: 'q', value: '2' }],
    }],
    filters: [], backendRefs: [backend('b')],
  }]);
  const tbl = table(r);
  t.equal(tbl.matches[0]!.headers.length, 1);
  t.equal(winner(tbl, '/?q=1', { headers: { 'x-a': '1' } }), 'b');
  t.equal(winner(tbl, '/?q=1', { headers: { 'x-a': '2' } }), '404');
});

t.test('MethodMatching: method alone and combined; precedence path > method > headers', async (t) => {
  const tbl = oneRoute([
    [[{ method: 'POST' }], 'v1'],
    [[{ method: 'GET' }], 'v2'],
    [[{ path: '/path1', method: 'GET' }], 'v1'],
    [[{ headers: { version: 'one' }, method: 'PUT' }], 'v2'],
    [[{ path: '/path2', headers: { version: 'two' }, method: 'POST' }], 'v3'],
    [[{ path: '/path3', method: 'PATCH' }, { path: '/path4', headers: { version: 'three' }, method: 'DELETE' }], 'v1'],
    [[{ path: '/path5' }], 'v1'],
    [[{ method: 'PATCH' }], 'v2'],
    [[{ headers: { version: 'four' } }], 'v3'],
  ]);
  const cases: [string, string, Record<string, string>, string][] = [
    ['POST', '/', {}, 'v1'], ['GET', '/', {}, 'v2'], ['HEAD', '/', {}, '404'], ['GET', '/path1', {}, 'v1'],
    ['PUT', '/', { version: 'one' }, 'v2'], ['POST', '/path2', { version: 'two' }, 'v3'], ['PATCH', '/path3', {}, 'v1'],
    ['DELETE', '/path4', { version: 'three' }, 'v1'], ['PUT', '/', {}, '404'], ['DELETE', '/path4', {}, '404'],
    ['PATCH', '/path5', {}, 'v1'], ['PATCH', '/', { version: 'four' }, 'v2'],
  ];
  for (const [method, path, headers, want] of cases) t.equal(winner(tbl, path, { method, headers }), want, `${method} ${path}`);
});

t.test('mesh QueryParamMatching: exact values, first value of a repeat, case-sensitive names', async (t) => {
  const tbl = oneRoute([
    [[{ query: { animal: 'whale' } }], 'echo-v1'],
    [[{ query: { animal: 'dolphin' } }], 'echo-v2'],
    [[{ path: '/path1', query: { animal: 'whale' } }], 'echo-v1'],
    [[{ headers: { version: 'one' }, query: { animal: 'whale' } }], 'echo-v2'],
    [[{ path: '/path3', query: { animal: 'shark' } }, { path: '/path4', headers: { version: 'three' }, query: { animal: 'kraken' } }], 'echo-v1'],
    [[{ path: '/path5' }], 'echo-v1'],
    [[{ query: { animal: 'hydra' } }], 'echo-v2'],
  ]);
  const cases: [string, Record<string, string>, string][] = [
    ['/?animal=whale', {}, 'echo-v1'], ['/?animal=dolphin', {}, 'echo-v2'],
    ['/?animal=whale&otherparam=irrelevant', {}, 'echo-v1'], ['/?animal=dolphin&color=yellow', {}, 'echo-v2'],
    ['/?color=blue', {}, '404'], ['/?animal=dog', {}, '404'], ['/?animal=whaledolphin', {}, '404'], ['/', {}, '404'],
    ['/path1?animal=whale', {}, 'echo-v1'], ['/?animal=whale', { version: 'one' }, 'echo-v2'],
    ['/path3?animal=shark', {}, 'echo-v1'], ['/path4?animal=kraken', { version: 'three' }, 'echo-v1'],
    ['/?animal=shark', {}, '404'], ['/path4?animal=kraken', {}, '404'], ['/path5?animal=hydra', {}, 'echo-v1'],
  ];
  for (const [path, headers, want] of cases) t.equal(winner(tbl, path, { headers }), want, `${path} ${JSON.stringify(headers)}`);
  t.equal(winner(tbl, '/?animal=dolphin&animal=whale'), 'echo-v2', 'a repeated param is judged by its first value');
  t.equal(winner(tbl, '/?Animal=whale'), '404', 'query param names are case-sensitive');
  t.same([...parseQuery('a=1&b=x+y&a=%2F')], [['a', ['1', '/']], ['b', ['x y']]]);
});

t.test('across routes: same match strength → oldest route, then ns/name, then rule order, then match order', async (t) => {
  const mk = (name: string, created: string, b: string) => httpRoute(NS, name, [svcRef('echo')], [rule([{ path: '/x' }], [backend(b)])], created);
  t.equal(winner(table(mk('a', '2026-02-01T00:00:00Z', 'young'), mk('b', '2026-01-01T00:00:00Z', 'old')), '/x'), 'old');
  t.equal(winner(table(mk('b', '2026-01-01T00:00:00Z', 'b'), mk('a', '2026-01-01T00:00:00Z', 'a')), '/x'), 'a');
  // A stronger match in a younger route still wins: age only breaks ties.
  const strong = httpRoute(NS, 'z', [svcRef('echo')], [rule([{ path: '/x/y' }], [backend('strong')])], '2026-03-01T00:00:00Z');
  t.equal(winner(table(mk('a', '2026-01-01T00:00:00Z', 'weak'), strong), '/x/y'), 'strong');
  const twoRules = oneRoute([[[{ path: '/p' }], 'first'], [[{ path: '/p' }], 'second']]);
  const sel = selectRoute(twoRules, request('/p'));
  t.equal(sel?.ruleIndex, 0);
  t.equal(sel?.rule.backendRefs[0]?.name, 'first');
  const twoMatches = oneRoute([[[{ path: '/q', headers: { a: '1' } }, { path: '/q', headers: { b: '1' } }], 'm']]);
  t.equal(selectRoute(twoMatches, request('/q', { headers: { a: '1', b: '1' } }))?.matchIndex, 0);
  t.equal(selectRoute(twoMatches, request('/q', { headers: { b: '1' } }))?.matchIndex, 1);
});

t.test('an empty table selects nothing (the waypoint passes through); tables know their kind', async (t) => {
  const empty = table();
  t.equal(empty.kind, undefined);
  t.equal(selectRoute(empty, request('/')), undefined);
  t.equal(oneRoute([[undefined, 'x']]).kind, 'HTTPRoute');
});

t.test('GRPCRoute: service/method Exact and RegularExpression on the /service/method path, precedence by characters', async (t) => {
  t.same(splitGrpcPath('/grpc.health.v1.Health/Check'), { service: 'grpc.health.v1.Health', method: 'Check' });
  for (const bad of ['/', '//Check', '/svc/', '/svc', '/a/b/c', 'svc/m']) t.equal(splitGrpcPath(bad), undefined, bad);
  const r = grpcRoute(NS, 'g', [svcRef('echo')], [
    grpcRule([{ method: { type: 'Exact', service: 'echo.Echo' }, headers: [] }], ['svc-only']),
    grpcRule([{ method: { type: 'Exact', service: 'echo.Echo', method: 'Ping' }, headers: [] }], ['svc-and-method']),
    grpcRule([{ method: { type: 'Exact', method: 'Ping' }, headers: [] }], ['method-only']),
    grpcRule([{ method: { type: 'RegularExpression', service: 'admin\\..*', method: 'Get.*' }, headers: [] }], ['regex']),
    grpcRule([{ headers: [{ type: 'Exact', name: 'X-Canary', value: 'yes' }] }], ['header']),
    grpcRule([], ['default']),
  ]);
  const tbl = table(r);
  t.equal(tbl.kind, 'GRPCRoute');
  const grpc = (path: string, headers: Record<string, string> = {}) => {
    const sel = selectRoute(tbl, request(path, { method: 'POST', headers }));
    return sel === undefined ? '404' : sel.rule.backendRefs[0]!.name;
  };
  t.equal(grpc('/echo.Echo/Ping'), 'svc-and-method', 'service and method beat service alone');
  t.equal(grpc('/echo.Echo/Other'), 'svc-only');
  t.equal(grpc('/other.Svc/Ping'), 'method-only');
  t.equal(grpc('/admin.Users/GetUser'), 'regex');
  t.equal(grpc('/admin.Users/DeleteUser'), 'default');
  t.equal(grpc('/other.Svc/Call', { 'x-canary': 'yes' }), 'header');
  t.equal(grpc('/other.Svc/Call'), 'default', 'a rule without matches matches every request');
});

t.test('explainSelection: each entry before the winner with the condition it failed', async (t) => {
  const tbl = oneRoute([
    [[{ path: '/api', method: 'POST' }], 'post'],
    [[{ path: '/api', headers: { 'X-User': 'beta' } }], 'beta'],
    [[{ path: '/api', query: { v: '2' } }], 'v2'],
    [[{ path: '/other' }], 'other'],
    [[{ path: '/' }], 'default'],
  ]);
  const steps = explainSelection(tbl, request('/api/x', { headers: { 'x-user': 'alpha' }, query: 'v=3' }));
  t.same(steps.map((s) => [s.entry.rule.backendRefs[0]!.name, s.mismatch?.on ?? 'MATCH']),
    [['other', 'path'], ['post', 'method'], ['beta', 'header'], ['v2', 'queryParam'], ['default', 'MATCH']],
    'in precedence order: the longer prefix /other first');
  const header = steps[2]!.mismatch;
  t.equal(header && 'match' in header ? header.match.name : undefined, 'x-user', 'names the header that failed');
  t.equal(explainSelection(oneRoute([[[{ path: '/only' }], 'x']]), request('/no')).at(-1)?.mismatch?.on, 'path', 'no winner: every entry has a reason');
});
