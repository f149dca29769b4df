/**
 * The upstream mesh conformance manifests (test/fixtures/gateway, validated by
 * src/gateway/validate.ts exactly as `weft apply` does) run through decideRoute with
 * the conformance request tables: proves the validator's shapes and the route logic
 * agree, before any socket is involved. The e2e tests replay the same cases on the lab.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { parseAllDocuments } from 'yaml';
import { validateGRPCRoute, validateHTTPRoute } from '../src/gateway/validate';
import { decideRoute, RouteConfig, type RouteInput, type RouteOutcome } from '../src/gateway/decide';
import { headerMap, modifyResponseHeaders } from '../src/gateway/filters';
import { routeStatus } from '../src/gateway/status';
import type { RouteRecord } from '../src/gateway/attach';
import type { BackendState, ServiceView } from '../src/gateway/backend';

const MESH = 'gateway-conformance-mesh';
const CONSUMER = 'gateway-conformance-mesh-consumer';
const FIXTURES = path.join(__dirname, 'fixtures', 'gateway');

/** The conformance mesh Services (conformance/base/mesh): echo, echo-v1, echo-v2, ports 80, 8080, 7070 (grpc). */
const state: BackendState = {
  service: (ns, name): ServiceView | undefined => (ns === MESH && ['echo', 'echo-v1', 'echo-v2', 'echo-v3'].includes(name)
    ? { ports: [{ port: 80, name: 'http' }, { port: 8080, name: 'http-alt' }, { port: 7070, name: 'grpc' }] } : undefined),
  hasReadyEndpoints: () => true,
};

function load(file: string): RouteRecord[] {
  const out: RouteRecord[] = [];
  for (const doc of parseAllDocuments(readFileSync(path.join(FIXTURES, file), 'utf8'))) {
    const obj = doc.toJS() as { kind?: string };
    const creationTimestamp = '2026-01-01T00:00:00Z';
    if (obj.kind === 'HTTPRoute') out.push({ kind: 'HTTPRoute', creationTimestamp, ...validateHTTPRoute(obj) });
    else if (obj.kind === 'GRPCRoute') out.push({ kind: 'GRPCRoute', creationTimestamp, ...validateGRPCRoute(obj) });
  }
  return out;
}

function ask(file: string, p: string, o: { svc?: string; port?: number; caller?: string; headers?: Record<string, string>; method?: string; host?: string; random?: number } = {}): RouteOutcome {
  const [pathOnly, query] = p.split('?', 2) as [string, string | undefined];
  const input: RouteInput = {
    target: { namespace: MESH, name: o.svc ?? 'echo', port: o.port ?? 80 }, callerNamespace: o.caller ?? MESH,
    method: o.method ?? 'GET', authority: o.host ?? 'echo', path: pathOnly, query: query ?? '', headers: headerMap(o.headers ?? {}),
  };
  return decideRoute(new RouteConfig(load(file)), state, input, () => o.random ?? 0);
}

const backendOf = (out: RouteOutcome) => (out.kind === 'forward' ? out.backend.name : out.kind === 'no-route' ? '404' : out.kind);

t.test('MeshSplit, MeshPorts, MeshConsumerRoute, MeshFrontend', async (t) => {
  t.equal(backendOf(ask('mesh/mesh-split.yaml', '/v1')), 'echo-v1');
  t.equal(backendOf(ask('mesh/mesh-split.yaml', '/v2')), 'echo-v2');
  t.equal(backendOf(ask('mesh/mesh-split.yaml', '/v3')), '404');
  t.equal(backendOf(ask('mesh/mesh-ports.yaml', '/', { svc: 'echo-v1' })), 'echo-v1');
  t.equal(backendOf(ask('mesh/mesh-ports.yaml', '/', { svc: 'echo-v1', port: 8080 })), 'passthrough');
  t.equal(backendOf(ask('mesh/mesh-ports.yaml', '/', { svc: 'echo-v2', port: 8080 })), 'echo-v2');
  const consumer = ask('mesh/mesh-consumer-route.yaml', '/', { svc: 'echo-v1', caller: CONSUMER });
  if (consumer.kind !== 'forward') throw new Error(consumer.kind);
  t.same(modifyResponseHeaders(new Map(), consumer.responseHeaders).get('x-header-set'), ['set']);
  t.equal(backendOf(ask('mesh/mesh-consumer-route.yaml', '/', { svc: 'echo-v1', caller: MESH })), 'passthrough');
  t.equal(backendOf(ask('mesh/mesh-frontend.yaml', '/', { svc: 'echo-v2' })), 'echo-v2');
});

t.test('MeshHTTPRouteMatching and QueryParamMatching from the manifests', async (t) => {
  const m = 'mesh/httproute-matching.yaml';
  for (const [p, h, want] of [['/', {}, 'echo-v1'], ['/v2/example', {}, 'echo-v2'], ['/', { Version: 'two' }, 'echo-v2'], ['/v2example', {}, 'echo-v1']] as const) {
    t.equal(backendOf(ask(m, p, { headers: h })), want, `${p} ${JSON.stringify(h)}`);
  }
  const q = 'mesh/httproute-query-param-matching.yaml';
  for (const [p, want] of [['/?animal=whale', 'echo-v1'], ['/?animal=dolphin', 'echo-v2'], ['/?animal=dog', '404'], ['/path5?animal=hydra', 'echo-v1']] as const) {
    t.equal(backendOf(ask(q, p)), want, p);
  }
});

t.test('MeshHTTPRouteRewritePath and the redirect manifests', async (t) => {
  const rw = (p: string) => { const o = ask('mesh/httproute-rewrite-path.yaml', p); return o.kind === 'forward' ? o.request.path : o.kind; };
  t.equal(rw('/prefix/one/two'), '/one/two');
  t.equal(rw('/strip-prefix/three'), '/three');
  t.equal(rw('/strip-prefix'), '/');
  t.equal(rw('/full/one/two'), '/one');
  t.equal(rw('/prefix/rewrite-path-and-modify-headers/one'), '/prefix/one');
  const loc = (file: string, p: string) => { const o = ask(`mesh/${file}`, p); return o.kind === 'redirect' ? `${o.redirect.statusCode} ${o.redirect.location}` : o.kind; };
  t.equal(loc('httproute-redirect-path.yaml', '/original-prefix/lemon'), '302 http://echo/replacement-prefix/lemon');
  t.equal(loc('httproute-redirect-path.yaml', '/full/path/original'), '302 http://echo/full-path-replacement');
  t.equal(loc('httproute-redirect-path.yaml', '/path-and-status'), '301 http://echo/replacement-prefix');
  t.equal(loc('httproute-redirect-port.yaml', '/port-and-host-and-status'), '302 http://example.org:8083/port-and-host-and-status');
  t.equal(loc('httproute-redirect-scheme.yaml', '/scheme-and-host'), '302 https://example.org/scheme-and-host');
  t.equal(loc('httproute-redirect-host-and-status.yaml', '/host-and-status'), '301 http://example.org/host-and-status');
  for (const [code, p] of [['303', '/redirect'], ['307', '/temporary'], ['308', '/permanent']]) {
    t.equal(loc(`httproute-${code}-redirect.yaml`, p!), `${code} http://echo${p}`, `${code} redirect`);
  }
});

t.test('backendRef-level RequestHeaderModifier, named rules, weights (incl. weight 0) for HTTP and gRPC', async (t) => {
  const set = ask('mesh/httproute-request-header-modifier-backend.yaml', '/set', { headers: { 'X-Header-Set': 'some-other-value' } });
  t.same(set.kind === 'forward' && set.request.headers.get('x-header-set'), ['set-overwrites-values']);
  const named = ask('mesh/httproute-named-rule.yaml', '/named');
  t.equal(named.kind === 'forward' && named.by.ruleName, 'named-rule');
  const count = (file: string, port: number, p: string, method = 'GET') => {
    const c: Record<string, number> = {};
    for (let i = 0; i < 100; i++) { const k = backendOf(ask(file, p, { port, method, random: i / 100 })); c[k] = (c[k] ?? 0) + 1; }
    return c;
  };
  t.same(count('mesh/httproute-weight.yaml', 80, '/'), { 'echo-v1': 70, 'echo-v2': 30 });
  t.same(count('mesh/grpcroute-weight.yaml', 7070, '/grpc.Echo/Ping', 'POST'), { 'echo-v1': 70, 'echo-v2': 30 }, 'echo-v3 has weight 0');
});

t.test('status of the manifests: all Accepted and ResolvedRefs on the conformance Services', async (t) => {
  for (const file of ['mesh/mesh-split.yaml', 'mesh/mesh-ports.yaml', 'mesh/mesh-consumer-route.yaml', 'mesh/httproute-weight.yaml']) {
    for (const r of load(file)) {
      for (const s of routeStatus(r, state)) {
        t.same(s.conditions.map((c) => `${c.type}=${c.status}`), ['Accepted=True', 'ResolvedRefs=True'], `${file} ${r.name}`);
      }
    }
  }
});
