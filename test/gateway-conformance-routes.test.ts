/**
 * The upstream mesh conformance manifests (test/fixtures/gateway, validated by
 * src/gateway/validate.ts exactly as `weft apply` does) run through decideRoute with
 * the conformance request tables (test/helpers/conformance-cases.ts, judged by
 * test/helpers/conformance-judge.ts): proves the validator's shapes and the route logic
 * agree, before any socket is involved. test/e2e/gateway-conformance.test.ts
 * sends the same table through the lab.
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
import type { BatchAnswer } from '../src/lab/client-batch';
import { MESH_GRPC_WEIGHT, MESH_HTTP_TESTS, MESH_HTTP_WEIGHT, type MeshCase } from './helpers/conformance-cases';
import { judge } from './helpers/conformance-judge';

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

/**
 * A case's request as decideRoute sees it: the Service and port come from the name
 * dialled (`echo-v1.gateway-conformance-mesh:8080`), the authority from a `host`
 * header if the case sends one.
 */
function decide(file: string, c: MeshCase): RouteOutcome {
  const [name, port] = (c.host ?? 'echo').split(':') as [string, string | undefined];
  const { host, ...headers } = Object.fromEntries(Object.entries(c.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  return ask(file, c.path ?? '/', {
    svc: name.split('.')[0], port: port ? Number(port) : 80, caller: c.from === 'consumer' ? CONSUMER : MESH,
    headers, method: c.method ?? 'GET', host: host ?? c.host ?? 'echo',
  });
}

/** The outcome in the shape of an answer from the lab: the backend Service stands for the pod that answers. */
function asAnswer(target: string, out: RouteOutcome): BatchAnswer {
  switch (out.kind) {
    case 'passthrough': return { status: 200, headers: {}, body: { pod: target } };
    case 'no-route': return { status: 404, headers: {} };
    case 'error': return { status: out.status, headers: {} };
    case 'redirect': return { status: out.redirect.statusCode, headers: { location: out.redirect.location } };
    case 'forward': {
      const resp = modifyResponseHeaders(new Map(), out.responseHeaders);
      return {
        status: 200, headers: Object.fromEntries([...resp].map(([k, v]) => [k, v.join(',')])),
        body: { pod: out.backend.name, path: out.request.path + (out.request.query ? `?${out.request.query}` : ''), headers: Object.fromEntries([...out.request.headers].map(([k, v]) => [k, v.join(',')])) },
      };
    }
  }
}

for (const test of MESH_HTTP_TESTS) {
  // MeshBasic applies nothing; a request to a pod address never meets a route (the
  // ztunnel sends it straight to the pod): neither is decideRoute's to answer.
  const cases = test.cases.filter((c) => c.podAddress === undefined);
  if (!test.manifest || cases.length === 0) continue;
  t.test(`${test.name}: upstream's table through decideRoute`, async (t) => {
    cases.forEach((c, i) => {
      const { path: _p, host: _h, method: _m, headers: _hd, from: _f, podAddress: _a, ...want } = c;
      t.same(judge(want, asAnswer((c.host ?? 'echo').split(/[.:]/)[0]!, decide(test.manifest!, c))), [], `#${i} ${c.method ?? 'GET'} ${c.host ?? 'echo'}${c.path ?? '/'} ${JSON.stringify(c.headers ?? {})}`);
    });
  });
}

t.test('named rules are reported; weights (incl. weight 0) for HTTP and gRPC', async (t) => {
  const named = ask('mesh/httproute-named-rule.yaml', '/named');
  t.equal(named.kind === 'forward' && named.by.ruleName, 'named-rule');
  const count = (file: string, port: number, p: string, method = 'GET') => {
    const c: Record<string, number> = {};
    for (let i = 0; i < 100; i++) { const k = backendOf(ask(file, p, { port, method, random: i / 100 })); c[k] = (c[k] ?? 0) + 1; }
    return c;
  };
  const pct = (w: Record<string, number>) => Object.fromEntries(Object.entries(w).map(([k, v]) => [k, Math.round(v * 100)]));
  t.same(count(MESH_HTTP_WEIGHT.manifest, 80, '/'), pct(MESH_HTTP_WEIGHT.weights));
  t.same(count(MESH_GRPC_WEIGHT.manifest, 7070, '/grpc.Echo/Ping', 'POST'), pct(MESH_GRPC_WEIGHT.weights), 'echo-v3 has weight 0');
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
