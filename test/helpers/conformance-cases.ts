/**
 * The Gateway API mesh conformance cases (kubernetes-sigs/gateway-api
 * conformance/tests/mesh/*.go at the commit test/fixtures/gateway/README.md names) as
 * data: for each test its manifest and its request → expectation table, as upstream
 * states them. test/e2e/gateway-conformance.test.ts sends them through the lab;
 * keep them here, in one place, rather than copied into each runner.
 *
 * Requests go from a client pod in gateway-conformance-mesh (upstream: the echo-v1 pod)
 * unless `from` says otherwise; `host` is the name[:port] dialled (upstream's Host,
 * default `echo`); a `host` entry in `headers` overrides the Host header only.
 */

import type { Expect } from './conformance-judge';

export const MESH_NS = 'gateway-conformance-mesh';
export const CONSUMER_NS = 'gateway-conformance-mesh-consumer';

/** A request and, from Expect (the judge's terms), what its answer must show. */
export interface MeshCase extends Expect {
  /** Path and query. Default `/`. */
  path?: string;
  host?: string;
  method?: string;
  headers?: Record<string, string>;
  from?: 'mesh' | 'consumer';
  /** Send to this echo pod's address on :8080 instead of a Service name (MeshFrontend). */
  podAddress?: 'echo-v2';
}

export interface MeshTest {
  /** Upstream's ShortName. */
  name: string;
  /** Under test/fixtures/gateway; none for MeshBasic. */
  manifest?: string;
  cases: MeshCase[];
}

const v1 = 'echo-v1';
const v2 = 'echo-v2';

/** Upstream's shared RequestHeaderModifier table (MeshHTTPRouteRequestHeaderModifier and its backend-level twin). */
const requestHeaderModifierCases: MeshCase[] = [
  { path: '/set', headers: { 'Some-Other-Header': 'val' }, backend: v1, seenPath: '/set', seenHeaders: { 'Some-Other-Header': 'val', 'X-Header-Set': 'set-overwrites-values' } },
  { path: '/set', headers: { 'Some-Other-Header': 'val', 'X-Header-Set': 'some-other-value' }, backend: v1, seenHeaders: { 'Some-Other-Header': 'val', 'X-Header-Set': 'set-overwrites-values' } },
  { path: '/add', headers: { 'Some-Other-Header': 'val' }, backend: v1, seenHeaders: { 'Some-Other-Header': 'val', 'X-Header-Add': 'add-appends-values' } },
  { path: '/add', headers: { 'Some-Other-Header': 'val', 'X-Header-Add': 'some-other-value' }, backend: v1, seenHeaders: { 'Some-Other-Header': 'val', 'X-Header-Add': 'some-other-value,add-appends-values' } },
  { path: '/remove', headers: { 'X-Header-Remove': 'val' }, backend: v1, seenPath: '/remove', absentSeenHeaders: ['X-Header-Remove'] },
  {
    path: '/multiple', headers: { 'X-Header-Set-2': 'set-val-2', 'X-Header-Add-2': 'add-val-2', 'X-Header-Remove-2': 'remove-val-2', 'Another-Header': 'another-header-val' },
    backend: v1, seenPath: '/multiple',
    seenHeaders: { 'X-Header-Set-1': 'header-set-1', 'X-Header-Set-2': 'header-set-2', 'X-Header-Add-1': 'header-add-1', 'X-Header-Add-2': 'add-val-2,header-add-2', 'X-Header-Add-3': 'header-add-3', 'Another-Header': 'another-header-val' },
    absentSeenHeaders: ['X-Header-Remove-1', 'X-Header-Remove-2'],
  },
  {
    path: '/case-insensitivity', headers: { 'x-header-set': 'original-val-set', 'x-header-add': 'original-val-add', 'x-header-remove': 'original-val-remove', 'Another-Header': 'another-header-val' },
    backend: v1, seenHeaders: { 'X-Header-Set': 'header-set', 'X-Header-Add': 'original-val-add,header-add', 'Another-Header': 'another-header-val' },
    absentSeenHeaders: ['x-header-remove'],
  },
];

const redirect = (path: string, status: number, r: MeshCase['redirect']): MeshCase => ({ path, status, redirect: r });

/**
 * The HTTP cases. MeshGRPCRouteRequestHeaderModifier and MeshGRPCRouteWeight are in
 * MESH_GRPC_TESTS: they need a gRPC client.
 */
export const MESH_HTTP_TESTS: MeshTest[] = [
  { name: 'MeshBasic', cases: [{ host: 'echo' }] },
  { name: 'MeshHTTPRouteSimpleSameNamespace', manifest: 'mesh/httproute-simple-same-namespace.yaml', cases: [{ backend: v1 }] },
  {
    name: 'MeshTrafficSplit', manifest: 'mesh/mesh-split.yaml',
    cases: [{ path: '/v1', backend: v1 }, { path: '/v2', backend: v2 }],
  },
  {
    name: 'MeshPorts', manifest: 'mesh/mesh-ports.yaml',
    cases: [
      { host: 'echo-v1', backend: v1, responseHeaders: { 'X-Header-Set': 'v1' } },
      { host: 'echo-v1:8080', backend: v1, absentResponseHeaders: ['X-Header-Set'] },
      { host: 'echo-v2', backend: v2, responseHeaders: { 'X-Header-Set': 'v2' } },
      { host: 'echo-v2:8080', backend: v2, responseHeaders: { 'X-Header-Set': 'v2' } },
    ],
  },
  {
    name: 'MeshConsumerRoute', manifest: 'mesh/mesh-consumer-route.yaml',
    cases: [
      { from: 'consumer', host: `echo-v1.${MESH_NS}`, backend: v1, responseHeaders: { 'X-Header-Set': 'set' } },
      { from: 'mesh', host: `echo-v1.${MESH_NS}`, backend: v1, absentResponseHeaders: ['X-Header-Set'] },
    ],
  },
  {
    name: 'MeshFrontend', manifest: 'mesh/mesh-frontend.yaml',
    cases: [
      { host: 'echo-v2', backend: v2, responseHeaders: { 'X-Header-Set': 'set' } },
      { podAddress: 'echo-v2', backend: v2, absentResponseHeaders: ['X-Header-Set'] },
    ],
  },
  {
    name: 'MeshFrontendHostname', manifest: 'mesh/mesh-frontend.yaml',
    cases: [
      { host: 'echo-v2', headers: { host: 'echo-v1' }, backend: v2, responseHeaders: { 'X-Header-Set': 'set' } },
      { host: 'echo-v1', headers: { host: 'echo-v2' }, backend: v1, absentResponseHeaders: ['X-Header-Set'] },
    ],
  },
  {
    name: 'MeshHTTPRouteMatching', manifest: 'mesh/httproute-matching.yaml',
    cases: [
      { path: '/', backend: v1 }, { path: '/example', backend: v1 }, { path: '/', headers: { Version: 'one' }, backend: v1 },
      { path: '/v2', backend: v2 }, { path: '/v2/example', backend: v2 }, { path: '/', headers: { Version: 'two' }, backend: v2 },
      { path: '/v2/', backend: v2 }, { path: '/v2example', backend: v1 }, { path: '/foo/v2/example', backend: v1 },
    ],
  },
  {
    name: 'MeshHTTPRouteQueryParamMatching', manifest: 'mesh/httproute-query-param-matching.yaml',
    cases: [
      { path: '/?animal=whale', backend: v1 }, { path: '/?animal=dolphin', backend: v2 },
      { path: '/?animal=whale&otherparam=irrelevant', backend: v1 }, { path: '/?animal=dolphin&color=yellow', backend: v2 },
      { path: '/?color=blue', status: 404 }, { path: '/?animal=dog', status: 404 }, { path: '/?animal=whaledolphin', status: 404 }, { path: '/', status: 404 },
      { path: '/path1?animal=whale', backend: v1 }, { path: '/?animal=whale', headers: { version: 'one' }, backend: v2 },
      { path: '/path3?animal=shark', backend: v1 }, { path: '/path4?animal=kraken', headers: { version: 'three' }, backend: v1 },
      { path: '/?animal=shark', status: 404 }, { path: '/path4?animal=kraken', status: 404 },
      { path: '/path5?animal=hydra', backend: v1 },
    ],
  },
  { name: 'MeshHTTPRouteNamedRule', manifest: 'mesh/httproute-named-rule.yaml', cases: [{ path: '/named', backend: v1, seenPath: '/named' }, { path: '/unnamed', backend: v2, seenPath: '/unnamed' }] },
  { name: 'MeshHTTPRouteRequestHeaderModifier', manifest: 'mesh/httproute-request-header-modifier.yaml', cases: requestHeaderModifierCases },
  { name: 'MeshHTTPRouteBackendRequestHeaderModifier', manifest: 'mesh/httproute-request-header-modifier-backend.yaml', cases: requestHeaderModifierCases },
  {
    name: 'MeshHTTPRouteRewritePath', manifest: 'mesh/httproute-rewrite-path.yaml',
    cases: [
      { path: '/prefix/one/two', backend: v1, seenPath: '/one/two' },
      { path: '/strip-prefix/three', backend: v1, seenPath: '/three' },
      { path: '/strip-prefix', backend: v1, seenPath: '/' },
      { path: '/full/one/two', backend: v1, seenPath: '/one' },
      {
        path: '/full/rewrite-path-and-modify-headers/test', headers: { 'X-Header-Remove': 'remove-val', 'X-Header-Add-Append': 'append-val-1', 'X-Header-Set': 'set-val' },
        backend: v1, seenPath: '/test', seenHeaders: { 'X-Header-Add': 'header-val-1', 'X-Header-Add-Append': 'append-val-1,header-val-2', 'X-Header-Set': 'set-overwrites-values' }, absentSeenHeaders: ['X-Header-Remove'],
      },
      {
        path: '/prefix/rewrite-path-and-modify-headers/one', headers: { 'X-Header-Remove': 'remove-val', 'X-Header-Add-Append': 'append-val-1', 'X-Header-Set': 'set-val' },
        backend: v1, seenPath: '/prefix/one', seenHeaders: { 'X-Header-Add': 'header-val-1', 'X-Header-Add-Append': 'append-val-1,header-val-2', 'X-Header-Set': 'set-overwrites-values' }, absentSeenHeaders: ['X-Header-Remove'],
      },
    ],
  },
  { name: 'MeshHTTPRoute303Redirect', manifest: 'mesh/httproute-303-redirect.yaml', cases: [redirect('/redirect', 303, { path: '/redirect' })] },
  { name: 'MeshHTTPRoute307Redirect', manifest: 'mesh/httproute-307-redirect.yaml', cases: [redirect('/temporary', 307, { path: '/temporary' })] },
  { name: 'MeshHTTPRoute308Redirect', manifest: 'mesh/httproute-308-redirect.yaml', cases: [redirect('/permanent', 308, { path: '/permanent' })] },
  {
    name: 'MeshHTTPRouteRedirectHostAndStatus', manifest: 'mesh/httproute-redirect-host-and-status.yaml',
    cases: [redirect('/hostname-redirect', 302, { host: 'example.org' }), redirect('/host-and-status', 301, { host: 'example.org' })],
  },
  {
    name: 'MeshHTTPRouteRedirectPath', manifest: 'mesh/httproute-redirect-path.yaml',
    cases: [
      redirect('/original-prefix/lemon', 302, { path: '/replacement-prefix/lemon' }),
      redirect('/full/path/original', 302, { path: '/full-path-replacement' }),
      redirect('/path-and-host', 302, { host: 'example.org', path: '/replacement-prefix' }),
      redirect('/path-and-status', 301, { path: '/replacement-prefix' }),
      redirect('/full-path-and-host', 302, { host: 'example.org', path: '/replacement-full' }),
      redirect('/full-path-and-status', 301, { path: '/replacement-full' }),
    ],
  },
  {
    name: 'MeshHTTPRouteRedirectPort', manifest: 'mesh/httproute-redirect-port.yaml',
    cases: [
      redirect('/port', 302, { port: '8083' }), redirect('/port-and-host', 302, { host: 'example.org', port: '8083' }),
      redirect('/port-and-status', 301, { port: '8083' }), redirect('/port-and-host-and-status', 302, { host: 'example.org', port: '8083' }),
    ],
  },
  {
    name: 'MeshHTTPRouteSchemeRedirect', manifest: 'mesh/httproute-redirect-scheme.yaml',
    cases: [
      redirect('/scheme', 302, { scheme: 'https' }), redirect('/scheme-and-host', 302, { scheme: 'https', host: 'example.org' }),
      redirect('/scheme-and-status', 301, { scheme: 'https' }), redirect('/scheme-and-host-and-status', 302, { scheme: 'https', host: 'example.org' }),
    ],
  },
];

/** MeshHTTPRouteWeight: 70/30 between echo-v1 and echo-v2. */
export const MESH_HTTP_WEIGHT = { name: 'MeshHTTPRouteWeight', manifest: 'mesh/httproute-weight.yaml', weights: { 'echo-v1': 0.7, 'echo-v2': 0.3 } };
/** MeshGRPCRouteWeight: 70/30, and echo-v3 (weight 0, no such Service) never chosen. */
export const MESH_GRPC_WEIGHT = { name: 'MeshGRPCRouteWeight', manifest: 'mesh/grpcroute-weight.yaml', weights: { 'echo-v1': 0.7, 'echo-v2': 0.3 } };

export interface GrpcCase {
  /** Request metadata (upstream adds x-test-case: match). */
  metadata: Record<string, string>;
  backend: string;
  /** Metadata the backend saw (several values joined with ","). */
  seen: Record<string, string>;
  absent?: string[];
}

/** MeshGRPCRouteRequestHeaderModifier, sent to echo:7070. */
export const MESH_GRPC_HEADER_MODIFIER = {
  name: 'MeshGRPCRouteRequestHeaderModifier', manifest: 'mesh/grpcroute-request-header-modifier.yaml',
  cases: [
    {
      metadata: { 'x-test-case': 'set', 'some-other-header': 'this-header-should-be-set', 'x-header-set': 'this-value-should-be-overwritten' }, backend: v1,
      seen: { 'x-test-case': 'set', 'some-other-header': 'this-header-should-be-set', 'x-header-set': 'set-overwrites-values' },
    },
    { metadata: { 'x-test-case': 'add', 'x-header-add': 'this-value-should-be-appended' }, backend: v1, seen: { 'x-test-case': 'add', 'x-header-add': 'this-value-should-be-appended,add-appends-values' } },
    { metadata: { 'x-test-case': 'remove', 'x-header-remove': 'this-should-be-removed' }, backend: v1, seen: { 'x-test-case': 'remove' }, absent: ['x-header-remove'] },
    {
      metadata: { 'x-test-case': 'multi', 'x-header-set-2': 'set-header-2', 'x-header-add-2': 'add-header-2', 'x-header-remove-2': 'should-be-removed-2' }, backend: v2,
      seen: { 'x-test-case': 'multi', 'x-header-set-1': 'header-set-1', 'x-header-set-2': 'header-set-2', 'x-header-add-1': 'header-add-1', 'x-header-add-2': 'add-header-2,header-add-2' },
      absent: ['x-header-remove-1', 'x-header-remove-2'],
    },
  ] as GrpcCase[],
};

/**
 * Gateway-profile HTTPRoute cases (kubernetes-sigs/gateway-api conformance/tests/
 * httproute-*.go) in gateway-conformance-infra. Upstream sends them to a Gateway; the
 * e2e test re-attaches each route to the Service `same-namespace` and sends them to it
 * through the namespace's waypoint, so `host` defaults to `same-namespace`.
 */
export const INFRA_NS = 'gateway-conformance-infra';

export interface GatewayCase extends Omit<MeshCase, 'status' | 'from' | 'podAddress'> {
  /** Expected status, or any of several (upstream's StatusCodes). Default 200. */
  status?: number | number[];
  /** Gateway API's retry simulation: `?uuid=<fresh>&…` added to the path on every send. */
  retry?: { succeedAfter: number; responseCode?: number; delayRetry?: string };
}

export interface GatewayTest {
  name: string;
  manifest: string;
  cases: GatewayCase[];
}

const b1 = 'infra-backend-v1';
const b2 = 'infra-backend-v2';
const b3 = 'infra-backend-v3';

export const GATEWAY_HTTP_TESTS: GatewayTest[] = [
  {
    name: 'HTTPRouteMethodMatching', manifest: 'gateway/httproute-method-matching.yaml',
    cases: [
      { method: 'POST', backend: b1 }, { method: 'GET', backend: b2 }, { method: 'HEAD', status: 404 },
      { path: '/path1', method: 'GET', backend: b1 }, { method: 'PUT', headers: { version: 'one' }, backend: b2 },
      { path: '/path2', method: 'POST', headers: { version: 'two' }, backend: b3 },
      { path: '/path3', method: 'PATCH', backend: b1 }, { path: '/path4', method: 'DELETE', headers: { version: 'three' }, backend: b1 },
      { method: 'PUT', status: 404 }, { path: '/path4', method: 'DELETE', status: 404 },
      { path: '/path5', method: 'PATCH', backend: b1 }, { method: 'PATCH', headers: { version: 'four' }, backend: b2 },
    ],
  },
  {
    name: 'HTTPRoutePathMatchOrder', manifest: 'gateway/httproute-path-match-order.yaml',
    cases: [
      { path: '/match/exact/one', backend: b3 }, { path: '/match/exact', backend: b2 }, { path: '/match', backend: b1 },
      { path: '/match/prefix/one/any', backend: b2 }, { path: '/match/prefix/any', backend: b1 }, { path: '/match/any', backend: b3 },
    ],
  },
  {
    name: 'HTTPRouteHeaderMatching', manifest: 'gateway/httproute-header-matching.yaml',
    cases: [
      { headers: { Version: 'one' }, backend: b1 }, { headers: { Version: 'two' }, backend: b2 },
      { headers: { Version: 'two', Color: 'orange' }, backend: b1 }, { headers: { Version: 'two', Color: 'blue' }, backend: b2 },
      { headers: { Color: 'orange' }, status: 404 }, { headers: { 'Some-Other-Header': 'one' }, status: 404 },
      { headers: { Color: 'blue' }, backend: b1 }, { headers: { Color: 'green' }, backend: b1 },
      { headers: { Color: 'red' }, backend: b2 }, { headers: { Color: 'yellow' }, backend: b2 }, { headers: { Color: 'purple' }, status: 404 },
    ],
  },
  {
    name: 'HTTPRouteQueryParamMatching', manifest: 'gateway/httproute-query-param-matching.yaml',
    cases: [
      { path: '/?animal=whale', backend: b1 }, { path: '/?animal=dolphin', backend: b2 }, { path: '/?animal=dolphin&color=blue', backend: b3 },
      { path: '/?ANIMAL=Whale', backend: b3 }, { path: '/?animal=whale&otherparam=irrelevant', backend: b1 },
      { path: '/?animal=dolphin&color=yellow', backend: b2 }, { path: '/?color=blue', status: 404 }, { path: '/?animal=dog', status: 404 },
      { path: '/?animal=whaledolphin', status: 404 }, { path: '/', status: 404 },
      { path: '/path1?animal=whale', backend: b1 }, { path: '/?animal=whale', headers: { version: 'one' }, backend: b2 },
      { path: '/path2?animal=whale', headers: { version: 'two' }, backend: b3 },
      { path: '/path3?animal=shark', backend: b1 }, { path: '/path4?animal=kraken', headers: { version: 'three' }, backend: b1 },
      { path: '/?animal=shark', status: 404 }, { path: '/path4?animal=kraken', status: 404 },
      { path: '/path5?animal=hydra', backend: b1 }, { path: '/?animal=hydra', headers: { version: 'four' }, backend: b3 },
    ],
  },
  {
    name: 'HTTPRouteTimeoutRequest', manifest: 'gateway/httproute-timeout-request.yaml',
    cases: [{ path: '/request-timeout', backend: b1 }, { path: '/request-timeout?delay=1s', status: 504 }, { path: '/disable-request-timeout?delay=1s', backend: b1 }],
  },
  {
    name: 'HTTPRouteTimeoutBackendRequest', manifest: 'gateway/httproute-timeout-backend-request.yaml',
    cases: [{ path: '/backend-timeout', backend: b1 }, { path: '/backend-timeout?delay=1s', status: 504 }, { path: '/disable-backend-timeout?delay=1s', backend: b1 }],
  },
  {
    name: 'HTTPRouteRetry', manifest: 'gateway/httproute-retry.yaml',
    cases: [
      { path: '/retry/code-500-attempts-3', retry: { responseCode: 500, succeedAfter: 2 }, status: 200, backend: b3 },
      { path: '/retry/code-500-attempts-3', retry: { responseCode: 500, succeedAfter: 4 }, status: 500, backend: b3 },
      { path: '/retry/code-500-attempts-3', retry: { responseCode: 503, succeedAfter: 2 }, status: 503, backend: b3 },
      ...[500, 502, 503, 504].flatMap((code): GatewayCase[] => [
        { path: '/retry/code-all-attempts-2', retry: { responseCode: code, succeedAfter: 1 }, status: 200, backend: b3 },
        { path: '/retry/code-all-attempts-2', retry: { responseCode: code, succeedAfter: 3 }, status: code, backend: b3 },
      ]),
    ],
  },
  {
    name: 'HTTPRouteRetryWithTimeouts', manifest: 'gateway/httproute-retry-with-timeouts.yaml',
    cases: [
      { path: '/retry/backend-request-timeout-200ms', retry: { responseCode: 500, succeedAfter: 2, delayRetry: '300ms' }, status: 200, backend: b3 },
      { path: '/retry/backend-request-timeout-200ms', retry: { responseCode: 500, succeedAfter: 3, delayRetry: '300ms' }, status: 504 },
      { path: '/retry/request-timeout-200ms', retry: { responseCode: 500, succeedAfter: 1 }, status: 200, backend: b3 },
      { path: '/retry/request-timeout-200ms', retry: { responseCode: 500, succeedAfter: 4, delayRetry: '100ms' }, status: 504 },
    ],
  },
  {
    name: 'HTTPRouteRetryConnectionError', manifest: 'gateway/httproute-retry-connection-error.yaml',
    cases: [
      { path: '/retry/no-status-code-attempts-3', retry: { succeedAfter: 2 }, status: 200, backend: b3 },
      { path: '/retry/no-status-code-attempts-3', retry: { succeedAfter: 4 }, status: [500, 503] },
    ],
  },
  { name: 'HTTPRouteInvalidBackendRefUnknownKind', manifest: 'gateway/httproute-invalid-backendref-unknown-kind.yaml', cases: [{ path: '/v2', status: 500 }] },
  { name: 'HTTPRouteInvalidNonExistentBackendRef', manifest: 'gateway/httproute-invalid-nonexistent-backendref.yaml', cases: [{ path: '/', status: 500 }] },
];

/** HTTPRouteWeight: 70/30 and infra-backend-v3 (weight 0) never. */
export const GATEWAY_WEIGHT = { name: 'HTTPRouteWeight', manifest: 'gateway/httproute-weight.yaml', weights: { [b1]: 0.7, [b2]: 0.3 } };

/** HTTPRouteRequestMultipleMirrors: every request answered by v1 and mirrored to v2 and v3. */
export const GATEWAY_MULTIPLE_MIRRORS = {
  name: 'HTTPRouteRequestMultipleMirrors', manifest: 'gateway/httproute-request-multiple-mirrors.yaml', mirrors: [b2, b3],
  cases: [
    { path: '/multi-mirror', backend: b1 },
    {
      path: '/multi-mirror-and-modify-request-headers', headers: { 'X-Header-Remove': 'remove-val', 'X-Header-Add-Append': 'append-val-1' }, backend: b1,
      seenHeaders: { 'X-Header-Add': 'header-val-1', 'X-Header-Add-Append': 'append-val-1,header-val-2', 'X-Header-Set': 'set-overwrites-values' }, absentSeenHeaders: ['X-Header-Remove'],
    },
  ] as GatewayCase[],
};

/** HTTPRouteRequestPercentageMirror: answered by v1, mirrored to v2 for this share of requests. */
export const GATEWAY_PERCENTAGE_MIRROR = {
  name: 'HTTPRouteRequestPercentageMirror', manifest: 'gateway/httproute-request-percentage-mirror.yaml', mirror: b2,
  cases: [
    { share: 0.2, case: { path: '/percent-mirror', backend: b1 } as GatewayCase },
    { share: 0.5, case: { path: '/percent-mirror-fraction', backend: b1 } as GatewayCase },
    {
      share: 0.35, case: {
        path: '/percent-mirror-and-modify-headers', headers: { 'X-Header-Remove': 'remove-val', 'X-Header-Add-Append': 'append-val-1' }, backend: b1,
        seenHeaders: { 'X-Header-Add': 'header-val-1', 'X-Header-Add-Append': 'append-val-1,header-val-2', 'X-Header-Set': 'set-overwrites-values' }, absentSeenHeaders: ['X-Header-Remove'],
      } as GatewayCase,
    },
  ],
};
