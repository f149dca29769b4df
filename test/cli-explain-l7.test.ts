import t from 'tap';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { assertDistFresh, MAIN } from './helpers/built';
import { MeshState } from '../src/registry/state';
import { httpRouteRecord, serviceRecord, waypointPod, waypointRecord, workloadRecord } from '../src/registry/fixtures';
import { explainRequest, parseUrlDestination } from '../src/cli/explain-l7';
import explainCommand, { formatExplanation } from '../src/cli/commands/explain';
import type { Explanation } from '../src/cli/explain-model';
import type { HTTPRouteRecord } from '../src/registry/types';
import type { HTTPRouteRule } from '../src/gateway/types';
import { captureIo, demoMesh, startDemoRegistry } from './helpers/cli';
import type { Change } from '../src/registry/types';
import { recordKey } from '../src/registry/types';

const WP = waypointRecord({ namespace: 'demo', name: 'waypoint' });
const put = (kind: Change['kind'], record: unknown): Change => ({ op: 'put', kind, key: recordKey(kind, record as never), record } as Change);

/** echo-v1 / echo-v2 behind Service echo-v1/echo-v2 (port 80 → 8080), waypoint wp-1 on node-2. */
function extras(bound: boolean): Change[] {
  return [
    put('namespace', { name: 'demo', labels: { 'weft.io/dataplane-mode': 'ambient', ...(bound ? { 'weft.io/use-waypoint': 'waypoint' } : {}) } }),
    put('waypoint', WP),
    put('workload', waypointPod(WP, { uid: 'wp-1', name: 'wp-1', node: 'node-2', addresses: ['198.19.2.50'] })),
    put('workload', workloadRecord({ namespace: 'demo', name: 'echo-v1-a', node: 'node-1', addresses: ['198.19.1.31'], serviceAccount: 'echo', labels: { app: 'echo-v1' } })),
    put('workload', workloadRecord({ namespace: 'demo', name: 'echo-v2-a', node: 'node-2', addresses: ['198.19.2.31'], serviceAccount: 'echo', labels: { app: 'echo-v2' } })),
    put('service', serviceRecord({ namespace: 'demo', name: 'echo-v1', vips: ['198.18.128.31'] })),
    put('service', serviceRecord({ namespace: 'demo', name: 'echo-v2', vips: ['198.18.128.32'] })),
  ];
}

function state(routes: HTTPRouteRecord[], bound = true): MeshState {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const base = demoMesh().map((c) => (c.op === 'put' ? { ...c, key: recordKey(c.kind, c.record as never) } : c) as Change);
  s.applyChanges([...base, ...extras(bound), ...routes.map((r) => put('httproute', r))], 1);
  return s;
}

function route(name: string, rules: Partial<HTTPRouteRule>[], extra: Partial<HTTPRouteRecord> = {}): HTTPRouteRecord {
  const r = httpRouteRecord({ namespace: 'demo', name, ...extra }, 'echo');
  r.spec.rules = rules.map((x) => ({ ...r.spec.rules[0]!, ...x }));
  return r;
}

const backend = (name: string, weight = 1) => ({ group: '', kind: 'Service', name, port: 80, weight, filters: [] });

t.test('a URL destination resolves like host:port, default port 80 (443 for https)', async (t) => {
  t.match(parseUrlDestination('http://echo.demo/api?x=1'), { destination: 'echo.demo:80', authority: 'echo.demo', path: '/api', query: 'x=1' });
  t.match(parseUrlDestination('https://echo.demo:8443/'), { destination: 'echo.demo:8443', scheme: 'https', authority: 'echo.demo:8443' });
  t.equal(parseUrlDestination('echo.demo:80'), undefined);
});

t.test('canary weights: every backend with its share, endpoints of each', async (t) => {
  const e = explainRequest(state([httpRouteRecord({ namespace: 'demo', name: 'canary' }, 'echo', [{ name: 'echo-v1', port: 80, weight: 95 }, { name: 'echo-v2', port: 80, weight: 5 }])]),
    'demo/client', 'http://echo.demo/api');
  t.equal(e.l7?.outcome, 'forward');
  t.same(e.l7?.backends?.map((b) => `${b.backend} ${b.share}`), ['demo/echo-v1:80 95', 'demo/echo-v2:80 5']);
  t.same(e.paths.map((p) => p.endpoint), ['demo/echo-v1-a', 'demo/echo-v2-a'], 'the endpoints of both backends, not the Service\'s own');
  const text = formatExplanation(e);
  t.match(text, /weighted: 95 % echo-v1, 5 % echo-v2/);
  t.match(text, /Route demo\/canary \(HTTPRoute, producer\): producer route/);
  t.match(text, /demo\/canary rule 0 match 0 \(path PathPrefix \/\): MATCHED/);
});

t.test('header match with -H: the beta rule wins; without it, why it failed', async (t) => {
  const routes = [route('by-user', [
    { matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [{ type: 'Exact', name: 'x-user', value: 'beta' }], queryParams: [] }], backendRefs: [backend('echo-v2')] },
    { backendRefs: [backend('echo-v1')] },
  ])];
  const beta = explainRequest(state(routes), 'demo/client', 'http://echo.demo/api', { headers: ['X-User: beta'] });
  t.same(beta.l7?.backends?.map((b) => b.backend), ['demo/echo-v2:80']);
  t.equal(beta.l7?.rule, 0);
  const other = explainRequest(state(routes), 'demo/client', 'http://echo.demo/api', { headers: ['x-user: alpha'] });
  t.equal(other.l7?.rule, 1);
  t.match(other.l7?.selection, [{ rule: 0, result: 'header x-user: alpha does not match beta' }, { rule: 1, result: 'matched' }]);
  const none = explainRequest(state(routes), 'demo/client', 'http://echo.demo/api');
  t.match(none.l7?.selection?.[0], { result: 'no header x-user' });
});

t.test('path prefix: no match → 404 answered by the waypoint, exit as refused', async (t) => {
  const routes = [route('api-only', [{ matches: [{ path: { type: 'PathPrefix', value: '/api' }, headers: [], queryParams: [] }] }])];
  const e = explainRequest(state(routes), 'demo/client', 'http://echo.demo/apix');
  t.equal(e.l7?.outcome, 'no-route');
  t.equal(e.l7?.status, 404);
  t.match(e.l7?.selection, [{ result: 'path /apix does not match PathPrefix /api' }]);
  t.equal(e.verdict, 'refused');
  t.match(formatExplanation(e), /Answer \(HTTP 404\)/);
  const ok = explainRequest(state(routes), 'demo/client', 'echo.demo:80', { path: '/api/v2?x=1' });
  t.equal(ok.l7?.outcome, 'forward');
  t.match(ok.l7?.request, { path: '/api/v2', query: 'x=1' });
});

t.test('redirect: the Location, nothing sent upstream', async (t) => {
  const routes = [route('moved', [{ filters: [{ type: 'RequestRedirect', requestRedirect: { hostname: 'new.demo', statusCode: 301 } }], backendRefs: [] }])];
  const e = explainRequest(state(routes), 'demo/client', 'http://echo.demo/api?x=1');
  t.same(e.l7?.redirect, { statusCode: 301, location: 'http://new.demo/api?x=1' });
  t.equal(e.paths.length, 1);
  t.equal(e.paths[0]!.kind, 'answer');
  t.equal(e.verdict, 'allowed');
  t.match(formatExplanation(e), /Answer: 301 redirect, Location: http:\/\/new\.demo\/api\?x=1/);
});

t.test('a redirect on the only backendRef: the waypoint answers the redirect, not 500', async (t) => {
  const ref = { ...backend('echo'), filters: [{ type: 'RequestRedirect', requestRedirect: { hostname: 'new.demo', statusCode: 302 } }] };
  const e = explainRequest(state([route('moved', [{ backendRefs: [ref] as HTTPRouteRule['backendRefs'] }])]), 'demo/client', 'http://echo.demo/api');
  t.same(e.l7?.redirect, { statusCode: 302, location: 'http://new.demo/api' });
  t.equal(e.l7?.status, 302);
  t.equal(e.paths[0]!.kind, 'answer');
  t.match(formatExplanation(e), /Answer: 302 redirect, Location: http:\/\/new\.demo\/api/);
});

t.test('rewrite and header edits: the request as it leaves the waypoint; timeouts and retry', async (t) => {
  const routes = [route('rw', [{
    matches: [{ path: { type: 'PathPrefix', value: '/api' }, headers: [], queryParams: [] }],
    filters: [
      { type: 'URLRewrite', urlRewrite: { hostname: 'v1.internal', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v1' } } },
      { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'x-env', value: 'canary' }], add: [], remove: ['x-debug'] } },
    ],
    backendRefs: [backend('echo-v1')],
    timeouts: { request: '2s' },
    retry: { codes: [503], attempts: 2 },
  }])];
  const e = explainRequest(state(routes), 'demo/client', 'http://echo.demo/api/users');
  t.match(e.l7?.backends, [{ authority: 'v1.internal', path: '/v1/users', requestHeaders: { set: [{ name: 'x-env', value: 'canary' }], remove: ['x-debug'] } }]);
  t.match(e.l7?.timeouts, { requestMs: 2000 });
  t.match(e.l7?.retry, { codes: [503], attempts: 2 });
  const text = formatExplanation(e);
  t.match(text, /rewritten \(URLRewrite\): authority echo\.demo → v1\.internal, path \/api\/users → \/v1\/users/);
  t.match(text, /request headers: set x-env: canary, remove x-debug/);
  t.match(text, /Retry: up to 2 retries/);
});

t.test('no waypoint: routes not applied, attached routes warned about', async (t) => {
  const e = explainRequest(state([route('canary', [{}])], false), 'demo/client', 'http://echo.demo/');
  t.equal(e.waypoint, undefined);
  t.match(e.l7, { applied: false, note: /routes are not applied \(L4 only\)/, warning: /route demo\/canary attaches to demo\/echo but has no effect without a waypoint/ });
  t.match(formatExplanation(e), /Warning: route demo\/canary attaches/);
  const quiet = explainRequest(state([], false), 'demo/client', 'echo.demo:80');
  t.equal(quiet.l7?.warning, undefined);
});

t.test('weft explain against a real registry: URL, -H repeated, --method, -o json with l7', async (t) => {
  const { store, dir, contextFile } = await startDemoRegistry(t);
  const canary = httpRouteRecord({ namespace: 'demo', name: 'canary' }, 'echo', [{ name: 'echo-v1', port: 80, weight: 95 }, { name: 'echo-v2', port: 80, weight: 5 }]);
  await store.apply([...extras(true), put('httproute', canary)].map((c) => ({ op: 'put', kind: c.kind, record: (c as { record: unknown }).record }) as never));
  const run = async (argv: string[]) => {
    const cap = captureIo({ HOME: dir, WEFT_CONTEXT: contextFile });
    const code = await explainCommand.runWith(argv, cap.io);
    return { code, out: cap.stdout() };
  };
  const text = await run(['demo/client', 'http://echo.demo/api', '-H', 'x-user: beta', '-H', 'x-team: a', '--method', 'post']);
  t.equal(text.code, 0);
  t.match(text.out, /Request: POST echo\.demo\/api with x-user: beta; x-team: a \(caller namespace demo\)/);
  t.match(text.out, /weighted: 95 % echo-v1, 5 % echo-v2/);
  const json = await run(['demo/client', 'http://echo.demo/api', '-o', 'json']);
  const e = JSON.parse(json.out) as Explanation;
  t.equal(e.l7?.applied, true);
  t.equal(e.l7?.route, 'demo/canary');
  t.same(e.l7?.backends?.map((b) => b.share), [95, 5]);
});

t.test('an invalid backend keeps its share as 500; a consumer route replaces the producer route for its callers only', async (t) => {
  const half = httpRouteRecord({ namespace: 'demo', name: 'half' }, 'echo', [{ name: 'echo-v1', port: 80 }, { name: 'missing', port: 80 }]);
  const e = explainRequest(state([half]), 'demo/client', 'http://echo.demo/');
  t.match(e.l7?.backends, [{ backend: 'demo/echo-v1:80', share: 50, status: 'forward' }, { backend: 'demo/missing:80', share: 50, status: 500, reason: /does not exist/ }]);
  t.match(formatExplanation(e), /demo\/missing:80 weight 1 \(50 % of requests\): answered 500/);
  const consumer = httpRouteRecord({ namespace: 'legacy', name: 'mine', creationTimestamp: '2026-11-30T13:00:00Z' }, 'echo', [{ name: 'echo', port: 80 }]);
  consumer.spec.parentRefs = [{ group: '', kind: 'Service', name: 'echo', namespace: 'demo' }];
  consumer.spec.rules[0]!.backendRefs[0]!.namespace = 'demo';
  const s = state([half, consumer]);
  const fromDemo = explainRequest(s, 'demo/client', 'http://echo.demo/');
  t.match(fromDemo.l7?.routes, [{ route: 'demo/half', applied: true, role: 'producer' }, { route: 'legacy/mine', applied: false, role: 'other-namespace', why: /applies only to callers in legacy/ }]);
});

t.test('the built binary: weft explain <URL> -H ... against a real registry', async (t) => {
  assertDistFresh();
  const { store, dir, contextFile } = await startDemoRegistry(t);
  const canary = httpRouteRecord({ namespace: 'demo', name: 'canary' }, 'echo', [{ name: 'echo-v1', port: 80, weight: 95 }, { name: 'echo-v2', port: 80, weight: 5 }]);
  await store.apply([...extras(true), put('httproute', canary)].map((c) => ({ op: 'put', kind: c.kind, record: (c as { record: unknown }).record }) as never));
  const env = { PATH: process.env.PATH, HOME: dir, WEFT_CONTEXT: contextFile };
  const r = await promisify(execFile)(process.execPath, [MAIN, 'explain', 'demo/client', 'http://echo.demo/api', '-H', 'x-user: beta', '--method', 'GET'], { env, timeout: 30_000 });
  t.match(r.stdout, /Request: GET echo\.demo\/api with x-user: beta/);
  t.match(r.stdout, /weighted: 95 % echo-v1, 5 % echo-v2/);
  t.match(r.stdout, /Verdict: ALLOWED — through waypoint demo\/waypoint/);
});
