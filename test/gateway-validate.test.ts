// Edge validation of Gateway API objects (src/gateway/validate*.ts): the upstream
// conformance manifests pass, every default is filled in, every rule refuses with the
// full field path, and unknown fields are refused for writers and dropped for readers.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import t, { type Test } from 'tap';
import { parseAllDocuments } from 'yaml';
import { FieldError } from '../src/registry/checks';
import {
  validateGRPCRoute,
  validateGRPCRouteSpec,
  validateGatewayAPIObject,
  validateHTTPRoute,
  validateHTTPRouteSpec,
  validateWaypointGateway,
} from '../src/gateway/validate';

const FIXTURES = path.join(__dirname, 'fixtures', 'gateway');

const httpRoute = (spec: unknown, metadata: Record<string, unknown> = {}) => ({
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'HTTPRoute', metadata: { name: 'r', namespace: 'demo', ...metadata }, spec,
});
const grpcRoute = (spec: unknown) => ({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GRPCRoute', metadata: { name: 'g', namespace: 'demo' }, spec });
const waypoint = (extra: { spec?: Record<string, unknown>; metadata?: Record<string, unknown> } = {}) => ({
  apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway',
  metadata: { name: 'waypoint', namespace: 'demo', ...extra.metadata },
  spec: { gatewayClassName: 'weft-waypoint', ...extra.spec },
});
const svc = { group: '', kind: 'Service', name: 'echo', port: 80 };
const backend = { name: 'echo-v1', port: 8080 };

/** Runs `fn`, expecting a FieldError on exactly `field` whose message matches `message`. */
function refuses(t: Test, fn: () => unknown, field: string, message: RegExp, name = field): void {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  if (!(err instanceof FieldError)) {
    t.fail(`${name}: expected a FieldError, got ${err === undefined ? 'no error' : String(err)}`);
    return;
  }
  t.equal(err.field, field, `${name}: names the field`);
  t.match(err.message, message, `${name}: says why`);
}

t.test('every HTTPRoute and GRPCRoute of the upstream conformance manifests is accepted', async (t) => {
  let http = 0;
  let grpc = 0;
  for (const dir of ['mesh', 'gateway']) {
    for (const file of readdirSync(path.join(FIXTURES, dir)).filter((f) => f.endsWith('.yaml'))) {
      for (const doc of parseAllDocuments(readFileSync(path.join(FIXTURES, dir, file), 'utf8'))) {
        const obj = doc.toJS() as { kind?: string };
        if (obj.kind === 'HTTPRoute') {
          t.doesNotThrow(() => validateHTTPRoute(obj, { unknownKeys: 'reject' }), `${dir}/${file}`);
          http++;
        } else if (obj.kind === 'GRPCRoute') {
          t.doesNotThrow(() => validateGRPCRoute(obj, { unknownKeys: 'reject' }), `${dir}/${file}`);
          grpc++;
        }
      }
    }
  }
  t.equal(http, 34, `${http} HTTPRoutes`);
  t.equal(grpc, 2, `${grpc} GRPCRoutes`);
});

t.test('conformance values come through with their defaults', async (t) => {
  const load = (f: string) => parseAllDocuments(readFileSync(path.join(FIXTURES, f), 'utf8')).map((d) => d.toJS());
  const ports = load('mesh/mesh-ports.yaml').map((o) => validateHTTPRoute(o));
  t.same(ports[0]!.spec.parentRefs, [{ group: '', kind: 'Service', name: 'echo-v1', port: 80 }]);
  t.same(ports[1]!.spec.parentRefs, [{ group: '', kind: 'Service', name: 'echo-v2' }], 'no port: the whole Service');
  t.same(ports[0]!.spec.rules[0]!.matches, [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }], 'the default match');
  const weights = validateGRPCRoute(load('mesh/grpcroute-weight.yaml')[0]).spec.rules[0]!.backendRefs.map((b) => b.weight);
  t.same(weights, [70, 30, 0], 'weight 0 kept as 0');
  const redirect = validateHTTPRoute(load('mesh/httproute-redirect-path.yaml')[0]).spec.rules[0]!.filters[0]!;
  t.same(redirect, { type: 'RequestRedirect', requestRedirect: { statusCode: 302, path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/replacement-prefix' } } });
  const matching = validateHTTPRoute(load('mesh/httproute-matching.yaml')[0]).spec.rules[0]!.matches[1]!;
  t.same(matching, { path: { type: 'PathPrefix', value: '/' }, headers: [{ type: 'Exact', name: 'version', value: 'one' }], queryParams: [] });
  const gatewayRef = validateHTTPRoute(load('gateway/httproute-weight.yaml')[0]).spec.parentRefs[0]!;
  t.same(gatewayRef, { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'same-namespace' }, 'parentRef defaults are the Gateway API ones');
});

t.test('every default is filled in', async (t) => {
  t.same(validateHTTPRoute(httpRoute({ parentRefs: [svc] })), {
    name: 'r', namespace: 'demo',
    spec: { parentRefs: [svc], hostnames: [], rules: [{ matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }], filters: [], backendRefs: [] }] },
  }, 'no rules: one rule with the default match');
  const full = validateHTTPRouteSpec({
    rules: [{
      matches: [{ path: { value: '/api' }, headers: [{ name: 'x', value: 'y' }], queryParams: [{ name: 'q', value: '1' }] }, { path: { type: 'Exact' } }],
      filters: [
        { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'a', value: 'b' }] } },
        { type: 'RequestMirror', requestMirror: { backendRef: { name: 'm', port: 80 }, fraction: { numerator: 1 } } },
      ],
      backendRefs: [{ name: 'b', port: 80, filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: {} }] }],
      retry: {},
    }],
  }, 'spec', 'reject');
  t.same(full.rules[0], {
    matches: [
      { path: { type: 'PathPrefix', value: '/api' }, headers: [{ type: 'Exact', name: 'x', value: 'y' }], queryParams: [{ type: 'Exact', name: 'q', value: '1' }] },
      { path: { type: 'Exact', value: '/' }, headers: [], queryParams: [] },
    ],
    filters: [
      { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'a', value: 'b' }], add: [], remove: [] } },
      { type: 'RequestMirror', requestMirror: { backendRef: { group: '', kind: 'Service', name: 'm', port: 80 }, fraction: { numerator: 1, denominator: 100 } } },
    ],
    backendRefs: [{ group: '', kind: 'Service', name: 'b', port: 80, weight: 1, filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { set: [], add: [], remove: [] } }] }],
    retry: { codes: [] },
  });
  t.same(validateHTTPRouteSpec({ rules: [{ matches: [] }] }, 'spec', 'reject').rules[0]!.matches, [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }], 'matches: [] is the default match too');
  t.same(validateGRPCRoute(grpcRoute({ rules: [{ matches: [{ method: { service: 'a.B' } }], backendRefs: [backend] }] })).spec, {
    parentRefs: [], hostnames: [],
    rules: [{ matches: [{ method: { type: 'Exact', service: 'a.B' }, headers: [] }], filters: [], backendRefs: [{ group: '', kind: 'Service', name: 'echo-v1', port: 8080, weight: 1, filters: [] }] }],
  });
  t.same(validateGRPCRoute({ ...grpcRoute(undefined), spec: undefined }).spec, { parentRefs: [], hostnames: [], rules: [] }, 'a GRPCRoute without spec');
});

/** [name, spec mutation, field, message]. Each spec is otherwise valid. */
type Case = [string, unknown, string, RegExp];
const rule0 = (r: Record<string, unknown>) => ({ parentRefs: [svc], rules: [{ backendRefs: [backend], ...r }] });
const many = (n: number, f: (i: number) => unknown) => Array.from({ length: n }, (_, i) => f(i));
const HTTP_CASES: Case[] = [
  ['33 parentRefs', { parentRefs: many(33, (i) => ({ ...svc, port: i + 1 })) }, 'spec.parentRefs', /at most 32 items, got 33/],
  ['same parent twice without port', { parentRefs: [{ ...svc, port: undefined }, { ...svc, port: undefined }] }, 'spec.parentRefs[1]', /repeats the parent/],
  ['same parent, port on one only', { parentRefs: [svc, { ...svc, port: undefined }] }, 'spec.parentRefs[1]', /set sectionName or port alike/],
  ['parentRef port 0', { parentRefs: [{ ...svc, port: 0 }] }, 'spec.parentRefs[0].port', /1-65535/],
  ['parentRef bad namespace', { parentRefs: [{ ...svc, namespace: 'Demo' }] }, 'spec.parentRefs[0].namespace', /DNS-1123 label/],
  ['parentRef bad kind', { parentRefs: [{ ...svc, kind: '1Service' }] }, 'spec.parentRefs[0].kind', /a Kind/],
  ['parentRef without name', { parentRefs: [{ group: '', kind: 'Service' }] }, 'spec.parentRefs[0].name', /is required/],
  ['17 hostnames', { hostnames: many(17, (i) => `h${i}.example.com`) }, 'spec.hostnames', /at most 16 items/],
  ['bad hostname', { hostnames: ['Foo.example.com'] }, 'spec.hostnames[0]', /hostname/],
  ['rules: []', { rules: [] }, 'spec.rules', /at least one rule/],
  ['17 rules', { rules: many(17, () => ({})) }, 'spec.rules', /at most 16 items, got 17/],
  ['65 matches', rule0({ matches: many(65, () => ({})) }), 'spec.rules[0].matches', /at most 64 items/],
  ['129 matches in all', { rules: many(3, () => ({ matches: many(43, () => ({})) })) }, 'spec.rules', /at most 128 matches across all rules, got 129/],
  ['duplicate rule names', { rules: [{ name: 'a' }, { name: 'a' }] }, 'spec.rules[1]', /repeats the rule name "a"/],
  ['bad rule name', { rules: [{ name: 'A_b' }] }, 'spec.rules[0].name', /section name/],
  ['path without /', rule0({ matches: [{ path: { type: 'PathPrefix', value: 'api' } }] }), 'spec.rules[0].matches[0].path.value', /must start with "\/"/],
  ['path //', rule0({ matches: [{ path: { value: '/a//b' } }] }), 'spec.rules[0].matches[0].path.value', /must not contain "\/\/"/],
  ['path /./', rule0({ matches: [{ path: { type: 'Exact', value: '/a/./b' } }] }), 'spec.rules[0].matches[0].path.value', /must not contain "\/\.\/"/],
  ['path /../', rule0({ matches: [{ path: { value: '/a/../b' } }] }), 'spec.rules[0].matches[0].path.value', /must not contain "\/\.\.\/"/],
  ['path %2F', rule0({ matches: [{ path: { value: '/a%2Fb' } }] }), 'spec.rules[0].matches[0].path.value', /%2F/],
  ['path #', rule0({ matches: [{ path: { value: '/a#b' } }] }), 'spec.rules[0].matches[0].path.value', /"#"/],
  ['path ending /..', rule0({ matches: [{ path: { value: '/a/..' } }] }), 'spec.rules[0].matches[0].path.value', /must not end with/],
  ['path with a space', rule0({ matches: [{ path: { value: '/a b' } }] }), 'spec.rules[0].matches[0].path.value', /URI path characters/],
  ['path too long', rule0({ matches: [{ path: { value: `/${'a'.repeat(1024)}` } }] }), 'spec.rules[0].matches[0].path.value', /at most 1024/],
  ['bad path type', rule0({ matches: [{ path: { type: 'Prefix', value: '/' } }] }), 'spec.rules[0].matches[0].path.type', /one of Exact, PathPrefix, RegularExpression/],
  ['unsafe path regex', { rules: [{}, { matches: [{}, { path: { type: 'RegularExpression', value: '/(a)\\1' } }] }] }, 'spec.rules[1].matches[1].path.value', /not an accepted regular expression: backreferences/],
  ['header regex too repetitive', rule0({ matches: [{ headers: [{ type: 'RegularExpression', name: 'x', value: 'a{1000}' }] }] }), 'spec.rules[0].matches[0].headers[0].value', /exceeds the limit of 100/],
  ['query regex with lookahead', rule0({ matches: [{ queryParams: [{ type: 'RegularExpression', name: 'q', value: '(?=a)' }] }] }), 'spec.rules[0].matches[0].queryParams[0].value', /lookahead/],
  ['17 header matches', rule0({ matches: [{ headers: many(17, (i) => ({ name: `h${i}`, value: 'v' })) }] }), 'spec.rules[0].matches[0].headers', /at most 16 items/],
  ['17 query matches', rule0({ matches: [{ queryParams: many(17, (i) => ({ name: `q${i}`, value: 'v' })) }] }), 'spec.rules[0].matches[0].queryParams', /at most 16 items/],
  ['header name not a token', rule0({ matches: [{ headers: [{ name: 'x y', value: 'v' }] }] }), 'spec.rules[0].matches[0].headers[0].name', /RFC 7230 token/],
  ['header name with colon', rule0({ matches: [{ headers: [{ name: ':path', value: 'v' }] }] }), 'spec.rules[0].matches[0].headers[0].name', /RFC 7230 token/],
  ['header match empty value', rule0({ matches: [{ headers: [{ name: 'x', value: '' }] }] }), 'spec.rules[0].matches[0].headers[0].value', /1-4096/],
  ['query value too long', rule0({ matches: [{ queryParams: [{ name: 'q', value: 'v'.repeat(1025) }] }] }), 'spec.rules[0].matches[0].queryParams[0].value', /1-1024/],
  ['duplicate header match', rule0({ matches: [{ headers: [{ name: 'x', value: '1' }, { name: 'x', value: '2' }] }] }), 'spec.rules[0].matches[0].headers[1]', /repeats the name "x"/],
  ['bad method', rule0({ matches: [{ method: 'get' }] }), 'spec.rules[0].matches[0].method', /one of GET, HEAD/],
  ['redirect and rewrite', rule0({ backendRefs: [], filters: [{ type: 'RequestRedirect', requestRedirect: {} }, { type: 'URLRewrite', urlRewrite: {} }] }), 'spec.rules[0].filters[1]', /URLRewrite must not be used together with RequestRedirect/],
  ['redirect with backendRefs', rule0({ filters: [{ type: 'RequestRedirect', requestRedirect: {} }] }), 'spec.rules[0].backendRefs', /must be empty when the rule has a RequestRedirect/],
  ['rewrite ReplacePrefixMatch on Exact', rule0({ matches: [{ path: { type: 'Exact', value: '/a' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/b' } } }] }), 'spec.rules[0].matches', /exactly one PathPrefix match/],
  ['redirect ReplacePrefixMatch with two matches', rule0({ backendRefs: [], matches: [{}, { path: { value: '/x' } }], filters: [{ type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/b' } } }] }), 'spec.rules[0].matches', /exactly one PathPrefix match/],
  ['backendRef-level rewrite ReplacePrefixMatch on regex', rule0({ matches: [{ path: { type: 'RegularExpression', value: '/a.*' } }], backendRefs: [{ ...backend, filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/b' } } }] }] }), 'spec.rules[0].matches', /exactly one PathPrefix/],
  ['two RequestHeaderModifiers', rule0({ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: {} }, { type: 'RequestHeaderModifier', requestHeaderModifier: {} }] }), 'spec.rules[0].filters[1]', /repeats a RequestHeaderModifier filter/],
  ['filter field missing', rule0({ filters: [{ type: 'URLRewrite' }] }), 'spec.rules[0].filters[0].urlRewrite', /is required when type is URLRewrite/],
  ['filter field of another type', rule0({ filters: [{ type: 'URLRewrite', urlRewrite: {}, requestRedirect: {} }] }), 'spec.rules[0].filters[0].requestRedirect', /must not be set when type is URLRewrite/],
  ['unsupported filter type', rule0({ filters: [{ type: 'ExtensionRef', extensionRef: { group: 'x', kind: 'Y', name: 'z' } }] }), 'spec.rules[0].filters[0].type', /ExtensionRef is not supported by Weft/],
  ['17 filters', rule0({ filters: many(17, () => ({ type: 'RequestMirror', requestMirror: { backendRef: backend } })) }), 'spec.rules[0].filters', /at most 16 items/],
  ['redirect bad status', rule0({ backendRefs: [], filters: [{ type: 'RequestRedirect', requestRedirect: { statusCode: 304 } }] }), 'spec.rules[0].filters[0].requestRedirect.statusCode', /one of 301, 302, 303, 307, 308/],
  ['redirect bad scheme', rule0({ backendRefs: [], filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'ftp' } }] }), 'spec.rules[0].filters[0].requestRedirect.scheme', /http, https/],
  ['redirect wildcard hostname', rule0({ backendRefs: [], filters: [{ type: 'RequestRedirect', requestRedirect: { hostname: '*.example.com' } }] }), 'spec.rules[0].filters[0].requestRedirect.hostname', /no wildcard/],
  ['redirect port 0', rule0({ backendRefs: [], filters: [{ type: 'RequestRedirect', requestRedirect: { port: 0 } }] }), 'spec.rules[0].filters[0].requestRedirect.port', /1-65535/],
  ['path modifier without its value', rule0({ filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath' } } }] }), 'spec.rules[0].filters[0].urlRewrite.path.replaceFullPath', /is required when type is ReplaceFullPath/],
  ['path modifier with the other value', rule0({ filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplaceFullPath', replaceFullPath: '/a', replacePrefixMatch: '/b' } } }] }), 'spec.rules[0].filters[0].urlRewrite.path.replacePrefixMatch', /must not be set/],
  ['header set twice', rule0({ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'a', value: '1' }, { name: 'a', value: '2' }] } }] }), 'spec.rules[0].filters[0].requestHeaderModifier.set[1]', /repeats the header "a"/],
  ['a header value with a line break', rule0({ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'a', value: 'x\r\nevil: 1' }] } }] }), 'spec.rules[0].filters[0].requestHeaderModifier.set[0].value', /must not contain control characters/],
  ['a header value with a NUL', rule0({ filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'a', value: 'x\u0000' }] } }] }), 'spec.rules[0].filters[0].responseHeaderModifier.add[0].value', /must not contain control characters/],
  ['17 header sets', rule0({ filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { add: many(17, (i) => ({ name: `h${i}`, value: 'v' })) } }] }), 'spec.rules[0].filters[0].requestHeaderModifier.add', /at most 16/],
  ['remove a non-token', rule0({ filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { remove: ['a b'] } }] }), 'spec.rules[0].filters[0].responseHeaderModifier.remove[0]', /RFC 7230 token/],
  ['mirror percent and fraction', rule0({ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: backend, percent: 5, fraction: { numerator: 1 } } }] }), 'spec.rules[0].filters[0].requestMirror.fraction', /not be set together with percent/],
  ['mirror percent 101', rule0({ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: backend, percent: 101 } }] }), 'spec.rules[0].filters[0].requestMirror.percent', /0-100/],
  ['mirror fraction above 1', rule0({ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: backend, fraction: { numerator: 3, denominator: 2 } } }] }), 'spec.rules[0].filters[0].requestMirror.fraction.numerator', /at most the denominator/],
  ['mirror denominator 0', rule0({ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: backend, fraction: { numerator: 0, denominator: 0 } } }] }), 'spec.rules[0].filters[0].requestMirror.fraction.denominator', /1-/],
  ['mirror Service without port', rule0({ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: { name: 'm' } } }] }), 'spec.rules[0].filters[0].requestMirror.backendRef.port', /required for a Service backend/],
  ['backendRef Service without port', rule0({ backendRefs: [{ name: 'echo' }] }), 'spec.rules[0].backendRefs[0].port', /required for a Service backend/],
  ['backendRef weight above 1,000,000', rule0({ backendRefs: [{ ...backend, weight: 1_000_001 }] }), 'spec.rules[0].backendRefs[0].weight', /0-1000000/],
  ['backendRef negative weight', rule0({ backendRefs: [{ ...backend, weight: -1 }] }), 'spec.rules[0].backendRefs[0].weight', /0-1000000/],
  ['backendRef fractional weight', rule0({ backendRefs: [{ ...backend, weight: 0.5 }] }), 'spec.rules[0].backendRefs[0].weight', /integer/],
  ['17 backendRefs', rule0({ backendRefs: many(17, (i) => ({ name: `b${i}`, port: 80 })) }), 'spec.rules[0].backendRefs', /at most 16/],
  ['backendRef filter redirect and rewrite', rule0({ backendRefs: [{ ...backend, filters: [{ type: 'RequestRedirect', requestRedirect: {} }, { type: 'URLRewrite', urlRewrite: {} }] }] }), 'spec.rules[0].backendRefs[0].filters[1]', /URLRewrite must not be used together with RequestRedirect/],
  ['retry code 399', rule0({ retry: { codes: [500, 399] } }), 'spec.rules[0].retry.codes[1]', /400-599/],
  ['retry code 600', rule0({ retry: { codes: [600] } }), 'spec.rules[0].retry.codes[0]', /400-599/],
  ['retry code twice', rule0({ retry: { codes: [503, 503] } }), 'spec.rules[0].retry.codes[1]', /repeats the code "503"/],
  ['retry attempts 0', rule0({ retry: { attempts: 0 } }), 'spec.rules[0].retry.attempts', /integer 1-/],
  ['retry bad backoff', rule0({ retry: { backoff: '1.5s' } }), 'spec.rules[0].retry.backoff', /Gateway API duration/],
  ['bad request timeout', rule0({ timeouts: { request: '10' } }), 'spec.rules[0].timeouts.request', /GEP-2257/],
  ['bad backendRequest timeout', rule0({ timeouts: { backendRequest: '1d' } }), 'spec.rules[0].timeouts.backendRequest', /GEP-2257/],
  ['backendRequest longer than request', rule0({ timeouts: { request: '1s', backendRequest: '1500ms' } }), 'spec.rules[0].timeouts.backendRequest', /must not be longer than request \(1s\)/],
];

t.test('HTTPRoute: each rule refuses, naming the field', async (t) => {
  for (const [name, spec, field, message] of HTTP_CASES) {
    refuses(t, () => validateHTTPRoute(httpRoute({ parentRefs: [svc], ...(spec as object) })), field, message, name);
  }
});

t.test('HTTPRoute: what is accepted at the edges of those rules', async (t) => {
  const ok = (spec: unknown) => validateHTTPRouteSpec({ parentRefs: [svc], ...(spec as object) }, 'spec', 'reject');
  t.doesNotThrow(() => ok({ parentRefs: [svc, { ...svc, port: 81 }] }), 'same Service, two ports');
  t.doesNotThrow(() => ok({ rules: many(16, () => ({ matches: many(8, () => ({})) })) }), '16 rules of 8 matches (128)');
  t.doesNotThrow(() => ok(rule0({ timeouts: { request: '0s', backendRequest: '10s' } })), 'request 0s disables the timeout, so any backendRequest');
  t.doesNotThrow(() => ok(rule0({ timeouts: { request: '1s', backendRequest: '1000ms' } })), 'equal timeouts');
  t.doesNotThrow(() => ok(rule0({ matches: [{ path: { type: 'RegularExpression', value: '/a//b/../(x|y)+' } }] })), 'a regex path is not held to the literal path rules');
  t.doesNotThrow(() => ok(rule0({ matches: [{ path: { value: '/a%20b/~c' } }] })), '%-escapes and unreserved characters');
  t.doesNotThrow(() => ok(rule0({ backendRefs: [{ group: 'example.com', kind: 'Backend', name: 'x' }] })), 'a non-Service backend needs no port (status says InvalidKind)');
  t.doesNotThrow(() => ok(rule0({ backendRefs: [{ ...backend, weight: 0 }, { ...backend, name: 'b', weight: 1_000_000 }] })), 'weights 0 and 1,000,000');
  t.doesNotThrow(() => ok(rule0({ retry: { codes: [400, 599], attempts: 3, backoff: '100ms' } })));
  t.doesNotThrow(() => ok(rule0({ filters: [{ type: 'RequestMirror', requestMirror: { backendRef: backend } }, { type: 'RequestMirror', requestMirror: { backendRef: { ...backend, name: 'm2' } } }] })), 'several mirrors');
  t.same(ok(rule0({ matches: [{ headers: [{ name: 'X', value: '1' }, { name: 'x', value: '2' }] }] })).rules[0]!.matches[0]!.headers.length, 2,
    'header names differing in case are not duplicates to the API server; the route logic uses the first');
});

t.test('GRPCRoute: each rule refuses, naming the field', async (t) => {
  const r = (x: Record<string, unknown>) => ({ parentRefs: [svc], rules: [{ backendRefs: [backend], ...x }] });
  const cases: Case[] = [
    ['method without service or method', r({ matches: [{ method: { type: 'Exact' } }] }), 'spec.rules[0].matches[0].method', /must set service or method/],
    ['bad service name', r({ matches: [{ method: { service: 'a..b' } }] }), 'spec.rules[0].matches[0].method.service', /gRPC service name/],
    ['bad method name', r({ matches: [{ method: { method: 'Get-It' } }] }), 'spec.rules[0].matches[0].method.method', /gRPC method name/],
    ['unsafe method regex', r({ matches: [{ method: { type: 'RegularExpression', method: '(?<!x)y' } }] }), 'spec.rules[0].matches[0].method.method', /lookbehind/],
    ['17 rules', { rules: many(17, () => ({})) }, 'spec.rules', /at most 16/],
    ['65 matches', r({ matches: many(65, () => ({})) }), 'spec.rules[0].matches', /at most 64/],
    ['URLRewrite is HTTP only', r({ filters: [{ type: 'URLRewrite', urlRewrite: {} }] }), 'spec.rules[0].filters[0].urlRewrite', /is not a known field/],
    ['header regex', r({ matches: [{ headers: [{ type: 'RegularExpression', name: 'x', value: '(' }] }] }), 'spec.rules[0].matches[0].headers[0].value', /missing "\)"/],
    ['backendRef without port', r({ backendRefs: [{ name: 'x' }] }), 'spec.rules[0].backendRefs[0].port', /required/],
    ['duplicate rule name', { rules: [{ name: 'a' }, { name: 'a' }] }, 'spec.rules[1]', /repeats the rule name/],
  ];
  for (const [name, spec, field, message] of cases) refuses(t, () => validateGRPCRoute(grpcRoute(spec)), field, message, name);
  t.doesNotThrow(() => validateGRPCRouteSpec({ rules: [{ matches: [{ method: { type: 'RegularExpression', service: 'grpc\\..*', method: 'Ch.*' } }] }] }, 'spec', 'reject'));
});

t.test('unknown fields: refused with reject, dropped with drop', async (t) => {
  const inner = { parentRefs: [{ ...svc, color: 'red' }], rules: [{ matches: [{ path: { value: '/', extra: 1 } }], sessionPersistence: {} }] };
  const spec = { ...inner, useDefaultGateways: 'All' };
  refuses(t, () => validateHTTPRoute(httpRoute(inner), { unknownKeys: 'reject' }), 'spec.parentRefs[0].color', /is not a known field/);
  refuses(t, () => validateHTTPRoute(httpRoute({ ...spec, parentRefs: [svc] })), 'spec.useDefaultGateways', /is not a known field/, 'reject is the default');
  refuses(t, () => validateHTTPRouteSpec({ rules: [{ sessionPersistence: {} }] }, 'spec', 'reject'), 'spec.rules[0].sessionPersistence', /is not a known field/);
  const dropped = validateHTTPRoute(httpRoute(spec), { unknownKeys: 'drop' });
  t.same(dropped.spec.parentRefs, [svc]);
  t.same(dropped.spec.rules[0], { matches: [{ path: { type: 'PathPrefix', value: '/' }, headers: [], queryParams: [] }], filters: [], backendRefs: [] });
  t.notOk('useDefaultGateways' in dropped.spec);
  const g = validateGRPCRouteSpec({ rules: [{ matches: [{ method: { service: 'a', x: 1 } }] }], y: 2 }, 'spec', 'drop');
  t.same(g.rules[0]!.matches[0]!.method, { type: 'Exact', service: 'a' });
  refuses(t, () => validateGRPCRouteSpec({ y: 2 }, 'spec', 'reject'), 'spec.y', /is not a known field/);
});

t.test('the object envelope: kind, apiVersion, metadata', async (t) => {
  const r = httpRoute({ parentRefs: [svc] });
  refuses(t, () => validateHTTPRoute({ ...r, kind: 'GRPCRoute' }), 'kind', /must be HTTPRoute/);
  refuses(t, () => validateHTTPRoute({ ...r, apiVersion: 'gateway.networking.k8s.io/v1alpha2' }), 'apiVersion', /must be gateway.networking.k8s.io\/v1 or/);
  refuses(t, () => validateHTTPRoute({ ...r, metadata: { name: 'r' } }), 'metadata.namespace', /is required/);
  t.equal(validateHTTPRoute({ ...r, metadata: { name: 'r' } }, { namespace: 'ns1' }).namespace, 'ns1', 'a default namespace');
  t.equal(validateHTTPRoute(r, { namespace: 'ns1' }).namespace, 'demo', 'metadata wins over the default');
  refuses(t, () => validateHTTPRoute({ ...r, metadata: { name: 'R', namespace: 'demo' } }), 'metadata.name', /DNS-1123 subdomain/);
  refuses(t, () => validateHTTPRoute({ ...r, metadata: { name: 'r', namespace: 'demo', colour: 1 } }), 'metadata.colour', /is not a known field/);
  refuses(t, () => validateHTTPRoute({ ...r, metadata: { name: 'r', namespace: 'demo', creationTimestamp: 'yesterday' } }), 'metadata.creationTimestamp', /RFC 3339/);
  refuses(t, () => validateHTTPRoute({ ...r, spec: undefined }), 'spec', /must be an object/);
  const fromServer = validateHTTPRoute({
    ...r, status: { parents: [] },
    metadata: { name: 'r', namespace: 'demo', uid: 'u', resourceVersion: '7', generation: 2, managedFields: [], creationTimestamp: '2024-05-01T12:00:00Z', labels: { a: 'b' }, annotations: { 'x/y': 'z' } },
  });
  t.same(fromServer, { name: 'r', namespace: 'demo', creationTimestamp: '2024-05-01T12:00:00.000Z', spec: validateHTTPRoute(r).spec }, 'kubectl get -o yaml output applies');
  t.equal(validateHTTPRoute({ ...r, apiVersion: 'gateway.networking.k8s.io/v1beta1' }).name, 'r', 'v1beta1 HTTPRoute');
  t.equal(validateGatewayAPIObject(r).kind, 'HTTPRoute');
  t.equal(validateGatewayAPIObject(grpcRoute({})).kind, 'GRPCRoute');
  t.same(validateGatewayAPIObject(waypoint()), { kind: 'Gateway', value: { name: 'waypoint', namespace: 'demo', serviceAccount: 'waypoint', for: 'service' } });
  refuses(t, () => validateGatewayAPIObject({ ...r, kind: 'Ingress' }), 'kind', /must be HTTPRoute, GRPCRoute or Gateway/);
});

t.test('waypoint Gateway: record, defaults, overrides and refusals', async (t) => {
  t.same(validateWaypointGateway(waypoint()), { name: 'waypoint', namespace: 'demo', serviceAccount: 'waypoint', for: 'service' }, 'defaults: SA = name, for = service');
  t.same(validateWaypointGateway(waypoint({ spec: { listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] } })).serviceAccount, 'waypoint', 'the Istio-style listener');
  t.same(validateWaypointGateway(waypoint({ metadata: { labels: { 'weft.io/waypoint-for': 'all' }, annotations: { 'weft.io/service-account': 'wp-sa' } } })),
    { name: 'waypoint', namespace: 'demo', serviceAccount: 'wp-sa', for: 'all' });
  const cases: Array<[string, unknown, string, RegExp]> = [
    ['other class', waypoint({ spec: { gatewayClassName: 'istio-waypoint' } }), 'spec.gatewayClassName', /must be weft-waypoint/],
    ['no class', { ...waypoint(), spec: {} }, 'spec.gatewayClassName', /is required/],
    ['listener port', waypoint({ spec: { listeners: [{ name: 'mesh', port: 8080, protocol: 'HBONE' }] } }), 'spec.listeners[0].port', /must be 15008/],
    ['listener protocol', waypoint({ spec: { listeners: [{ name: 'mesh', port: 15008, protocol: 'HTTP' }] } }), 'spec.listeners[0].protocol', /must be HBONE/],
    ['two listeners', waypoint({ spec: { listeners: [{ name: 'a', port: 15008, protocol: 'HBONE' }, { name: 'b', port: 15008, protocol: 'HBONE' }] } }), 'spec.listeners', /the one HBONE listener/],
    ['no listeners', waypoint({ spec: { listeners: [] } }), 'spec.listeners', /the one HBONE listener/],
    ['listener extra field', waypoint({ spec: { listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE', tls: {} }] } }), 'spec.listeners[0].tls', /not a known field/],
    ['bad waypoint-for', waypoint({ metadata: { labels: { 'weft.io/waypoint-for': 'everything' } } }), 'metadata.labels["weft.io/waypoint-for"]', /one of service, workload, all, none/],
    ['bad service account', waypoint({ metadata: { annotations: { 'weft.io/service-account': 'Bad SA' } } }), 'metadata.annotations["weft.io/service-account"]', /DNS-1123 subdomain/],
    ['name not a DNS label', waypoint({ metadata: { name: 'way.point' } }), 'metadata.name', /DNS-1123 label/],
    ['kind', { ...waypoint(), kind: 'HTTPRoute' }, 'kind', /must be Gateway/],
    ['unknown spec field', waypoint({ spec: { addresses: [] } }), 'spec.addresses', /not a known field/],
  ];
  for (const [name, obj, field, message] of cases) refuses(t, () => validateWaypointGateway(obj), field, message, name);
  t.same(validateWaypointGateway(waypoint({ spec: { addresses: [] } }), { unknownKeys: 'drop' }).name, 'waypoint', 'dropped for readers');
});
