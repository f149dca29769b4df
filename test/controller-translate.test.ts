import t from 'tap';
import { computeDesired } from '../src/controller/desired';
import type { K8sPod, K8sService } from '../src/controller/k8s-types';
import {
  isSkip, namespaceRecord, nodeRecord, notReadyPods, policyRecord, serviceRecord, workloadRecord,
} from '../src/controller/translate';
import { istioPolicyRecord, peerAuthRecord } from '../src/controller/translate-istio';
import { istioPolicyRules } from '../src/controller/translate-istio-rules';
import { authzPolicyObj, endpointSliceObj, namespaceObj, nodeObj, podObj, serviceObj } from './helpers/apiserver';

const withUid = <O extends { metadata: Record<string, unknown> }>(o: O, uid: string): O => ({ ...o, metadata: { ...o.metadata, uid } });

t.test('node: InternalIP and podCIDR; no InternalIP is skipped', async (t) => {
  t.same(nodeRecord(nodeObj('n1', '203.0.113.10', '10.244.1.0/24') as never), {
    name: 'n1', address: '203.0.113.10', podCidr: '10.244.1.0/24', labels: { 'kubernetes.io/hostname': 'n1' },
  });
  const bare = nodeObj('n2', '203.0.113.11');
  bare.status.addresses = [{ type: 'Hostname', address: 'n2' }];
  t.ok(isSkip(nodeRecord(bare as never)));
});

t.test('namespace: name and labels', async (t) => {
  t.same(namespaceRecord(namespaceObj('demo', { 'weft.io/dataplane-mode': 'ambient' }) as never), {
    name: 'demo', labels: { 'kubernetes.io/metadata.name': 'demo', 'weft.io/dataplane-mode': 'ambient' },
  });
});

t.test('pod: fields, health, and what is skipped', async (t) => {
  const p = withUid(podObj('demo', 'web-1', {
    node: 'n1', ip: '203.0.113.5', labels: { app: 'web' }, ports: [{ name: 'http', containerPort: 8080 }, { containerPort: 9090 }],
  }), 'uid-1') as K8sPod;
  t.same(workloadRecord(p), {
    uid: 'uid-1', name: 'web-1', namespace: 'demo', node: 'n1', addresses: ['203.0.113.5'], serviceAccount: 'default',
    labels: { app: 'web' }, status: 'Healthy', ports: [8080, 9090],
  });
  const sa = withUid(podObj('demo', 'x', { node: 'n1', ip: '203.0.113.6', sa: 'api' }), 'u') as K8sPod;
  t.equal((workloadRecord(sa) as { serviceAccount: string }).serviceAccount, 'api');
  t.equal((workloadRecord(withUid(podObj('demo', 'x', { node: 'n1', ip: '203.0.113.6', ready: false }), 'u') as K8sPod) as { status: string }).status, 'Unhealthy');
  t.equal((workloadRecord(withUid(podObj('demo', 'x', { node: 'n1', ip: '203.0.113.6', phase: 'Pending' }), 'u') as K8sPod) as { status: string }).status, 'Unhealthy');
  t.equal((workloadRecord(p, { notReady: true }) as { status: string }).status, 'Unhealthy', 'not-ready in a slice');
  t.ok(isSkip(workloadRecord(podObj('demo', 'x', { node: 'n1' }) as K8sPod)), 'no IP');
  t.ok(isSkip(workloadRecord(podObj('demo', 'x', { node: 'n1', ip: '203.0.113.7', hostNetwork: true }) as K8sPod)), 'hostNetwork');
  t.ok(isSkip(workloadRecord(podObj('demo', 'x', { node: 'n1', ip: '203.0.113.7', phase: 'Succeeded' }) as K8sPod)), 'terminated');
  t.ok(isSkip(workloadRecord(podObj('demo', 'x', { node: 'n1', ip: '203.0.113.7', phase: 'Failed' }) as K8sPod)), 'failed');
});

t.test('endpoint slices: pods listed not-ready', async (t) => {
  const a = withUid(podObj('demo', 'a', { node: 'n1', ip: '203.0.113.1' }), 'ua');
  const b = withUid(podObj('demo', 'b', { node: 'n1', ip: '203.0.113.2' }), 'ub');
  const slice = endpointSliceObj('demo', 'web-x', 'web', [{ ip: '203.0.113.1', pod: a, ready: true }, { ip: '203.0.113.2', pod: b, ready: false }]);
  t.same([...notReadyPods([slice as never])], ['ub']);
});

t.test('service: VIPs, ports, selector, hostname, waypoint; named targetPort resolved or skipped', async (t) => {
  const pods = [
    podObj('demo', 'a', { node: 'n1', ip: '203.0.113.1', labels: { app: 'web' }, ports: [{ name: 'http', containerPort: 8080 }] }),
    podObj('other', 'b', { node: 'n1', ip: '203.0.113.2', labels: { app: 'web' }, ports: [{ name: 'http', containerPort: 7000 }] }),
  ] as K8sPod[];
  const svc = serviceObj('demo', 'web', {
    clusterIP: '10.96.0.10', selector: { app: 'web' }, labels: { 'weft.io/use-waypoint': 'wp' },
    ports: [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'm', port: 9090 }, { name: 'g', port: 81, targetPort: 'grpc' },
      { name: 'dns', port: 53, targetPort: 53, protocol: 'UDP' }],
  }) as K8sService;
  const r = serviceRecord(svc, pods, 'cluster.local');
  t.same(r.record, {
    name: 'web', namespace: 'demo', hostname: 'web.demo.svc.cluster.local', vips: ['10.96.0.10'],
    ports: [{ name: 'http', port: 80, targetPort: 8080 }, { name: 'm', port: 9090, targetPort: 9090 }],
    selector: { app: 'web' }, waypoint: 'wp',
  });
  t.equal(r.warnings.length, 1);
  t.match(r.warnings[0], /targetPort "grpc" names no container port/);
  const headless = serviceObj('demo', 'h', { clusterIP: 'None', ports: [{ port: 80, targetPort: 8080 }] }) as K8sService;
  t.same(serviceRecord(headless, [], 'example.org').record?.vips, []);
  t.equal(serviceRecord(headless, [], 'example.org').record?.hostname, 'h.demo.svc.example.org');
  const ext = { metadata: { name: 'e', namespace: 'demo' }, spec: { type: 'ExternalName' } } as K8sService;
  t.ok(serviceRecord(ext, [], 'cluster.local').skip);
});

t.test('AuthorizationPolicy: valid ones become records, invalid ones name the field', async (t) => {
  const ok = policyRecord(authzPolicyObj('demo', 'allow-web', {
    action: 'ALLOW', selector: { matchLabels: { app: 'web' } },
    rules: [{ clauses: [{ matches: [{ principals: ['spiffe://cluster.local/ns/demo/sa/client'] }] }] }],
  }) as never);
  t.same(ok, { ok: true, record: {
    name: 'allow-web', namespace: 'demo', scope: 'WORKLOAD_SELECTOR', selector: { app: 'web' }, action: 'ALLOW',
    rules: [{ clauses: [{ matches: [{ principals: ['spiffe://cluster.local/ns/demo/sa/client'] }] }] }],
  } });
  const ns = policyRecord(authzPolicyObj('demo', 'deny-all', { action: 'DENY', rules: [] }) as never);
  t.equal(ns.ok && ns.record.scope, 'NAMESPACE');
  const global = policyRecord(authzPolicyObj('weft-system', 'g', { action: 'DENY', rules: [] }) as never);
  t.equal(global.ok && global.record.scope, 'GLOBAL');

  const badAction = policyRecord(authzPolicyObj('demo', 'x', { action: 'MAYBE', rules: [] }) as never);
  t.match(badAction, { ok: false, field: 'spec.action' });
  const badPort = policyRecord(authzPolicyObj('demo', 'x', { action: 'ALLOW', rules: [{ clauses: [{ matches: [{ destinationPorts: [70000] }] }] }] }) as never);
  t.match(badPort, { ok: false, field: /^spec\.rules\[0\]\.clauses\[0\]\.matches\[0\]\.destinationPorts/ });
  t.match((badPort as { message: string }).message, /spec\.rules\[0\]/);
  const unknown = policyRecord(authzPolicyObj('demo', 'x', { action: 'ALLOW', rules: [], from: [] }) as never);
  t.match(unknown, { ok: false, field: 'spec.from' });
  const globalElsewhere = policyRecord(authzPolicyObj('demo', 'x', { action: 'ALLOW', scope: 'GLOBAL', rules: [] }) as never);
  t.match(globalElsewhere, { ok: false, field: 'spec.scope' });
});

t.test('desired state: everything together, invalid records skipped with a warning (an invalid policy held fail-closed)', async (t) => {
  const a = withUid(podObj('demo', 'a', { node: 'n1', ip: '203.0.113.1', labels: { app: 'web' } }), 'ua');
  const d = computeDesired({
    nodes: [nodeObj('n1', '203.0.113.10')] as never,
    namespaces: [namespaceObj('demo')] as never,
    pods: [a, withUid(podObj('demo', 'BAD_NAME', { node: 'n1', ip: '203.0.113.9' }), 'ubad')] as never,
    services: [serviceObj('demo', 'web', { clusterIP: '10.96.0.10', selector: { app: 'web' }, ports: [{ port: 80, targetPort: 8080 }] })] as never,
    endpointSlices: [endpointSliceObj('demo', 'web-1', 'web', [{ ip: '203.0.113.1', pod: a, ready: false }])] as never,
    policies: [authzPolicyObj('demo', 'bad', { action: 'NOPE', rules: [] })] as never,
  }, { clusterDomain: 'cluster.local' });
  t.same([...d.records.values()].map((e) => `${e.kind}/${e.key}`).sort(), ['namespace/demo', 'node/n1', 'policy/demo/bad', 'service/demo/web', 'workload/ua']);
  t.equal((d.records.get('workload\0ua')!.record as { status: string }).status, 'Unhealthy');
  t.equal(d.warnings.length, 2);
  t.equal(d.policies.get('demo/bad')!.result.ok, false);
  t.equal(d.policies.get('demo/bad')!.held, 'FailClosed');
  // An unreadable action cannot be an ALLOW we could narrow: it denies its whole scope.
  t.match(d.records.get('policy\0demo/bad')!.record, { action: 'DENY', scope: 'NAMESPACE', rules: [{ clauses: [] }], invalid: { state: 'FailClosed' } });
  t.match(d.warnings.find((w) => w.includes('demo/bad')), /is invalid: .*enforced fail-closed as a DENY of every connection in its scope/);
});

t.test('an invalid selector-scoped policy is held fail-closed in its own scope, not namespace-wide', async (t) => {
  const desired = (spec: Record<string, unknown>) => computeDesired({
    nodes: [], namespaces: [namespaceObj('demo')] as never, pods: [], services: [], endpointSlices: [],
    policies: [authzPolicyObj('demo', 'deny-web', spec)] as never,
  }, { clusterDomain: 'cluster.local' }).records.get('policy\0demo/deny-web')!.record;
  const typo = desired({ action: 'DENY', selector: { matchLabels: { app: 'web' } }, rules: [], form: [] });
  t.match(typo, { action: 'DENY', scope: 'WORKLOAD_SELECTOR', selector: { app: 'web' }, rules: [{ clauses: [] }], invalid: { state: 'FailClosed' } },
    'an unknown field: the DENY covers only the selected workloads');
  const badSelector = desired({ action: 'DENY', selector: { matchLabels: { app: 'web' }, matchExpressions: [] }, rules: [] });
  t.match(badSelector, { action: 'DENY', scope: 'WORKLOAD_SELECTOR', selector: { app: 'web' }, invalid: { state: 'FailClosed' } },
    'a selector with an unsupported part: its matchLabels (a superset of the workloads meant) still scope the DENY');
  const audit = (spec: Record<string, unknown>) => computeDesired({
    nodes: [], namespaces: [namespaceObj('demo')] as never, pods: [], services: [], endpointSlices: [],
    policies: [authzPolicyObj('demo', 'audit-web', spec)] as never,
  }, { clusterDomain: 'cluster.local' });
  const auditBadRules = audit({ action: 'AUDIT', targetRefs: [{ kind: 'Service', name: 'web' }], rules: 'all' });
  t.match(auditBadRules.records.get('policy\0demo/audit-web')!.record, { action: 'AUDIT', rules: [], targetRefs: [{ kind: 'Service', name: 'web' }], invalid: { state: 'FailClosed' } },
    'an invalid AUDIT: an AUDIT matching nothing on its targets, never a DENY');
  const auditBadRef = audit({ action: 'AUDIT', targetRefs: [{ kind: 'Deployment', name: 'web' }], rules: [] });
  t.equal(auditBadRef.records.get('policy\0demo/audit-web'), undefined, 'an AUDIT whose targets cannot be read: nothing stands in (not a namespace-wide DENY)');
  t.match(auditBadRef.policies.get('demo/audit-web')?.enforced, /^AUDIT decides nothing, so nothing is enforced in its place until it is fixed$/);
  const explicit = desired({ action: 'ALLOW', scope: 'NAMESPACE', rules: [], extra: 1 });
  t.match(explicit, { action: 'ALLOW', scope: 'NAMESPACE', rules: [] }, 'an explicit scope is kept');
  const unreadable = desired({ action: 'DENY', selector: 'app=web', rules: [] });
  t.match(unreadable, { action: 'DENY', scope: 'NAMESPACE', invalid: { state: 'FailClosed' } }, 'an unreadable selector: the widest scope');
});

t.test('desired state with a memo: unchanged objects reuse their entry, changes and readiness flips do not', async (t) => {
  const memo = new WeakMap();
  const a = withUid(podObj('demo', 'a', { node: 'n1', ip: '203.0.113.1', labels: { app: 'web' } }), 'ua');
  const view = {
    nodes: [], namespaces: [namespaceObj('demo')], pods: [a], services: [], endpointSlices: [], policies: [],
  } as never as Parameters<typeof computeDesired>[0];
  const first = computeDesired(view, { clusterDomain: 'cluster.local', memo });
  const second = computeDesired(view, { clusterDomain: 'cluster.local', memo });
  t.equal(second.records.get('workload\0ua'), first.records.get('workload\0ua'), 'same entry object reused');
  const slice = endpointSliceObj('demo', 's', 'web', [{ ip: '203.0.113.1', pod: a, ready: false }]);
  const third = computeDesired({ ...view, endpointSlices: [slice] } as never, { clusterDomain: 'cluster.local', memo });
  t.equal((third.records.get('workload\0ua')!.record as { status: string }).status, 'Unhealthy');
  const changed = { ...a, metadata: { ...a.metadata, labels: { app: 'api' } } };
  const fourth = computeDesired({ ...view, pods: [changed] } as never, { clusterDomain: 'cluster.local', memo });
  t.same((fourth.records.get('workload\0ua')!.record as { labels: unknown }).labels, { app: 'api' });
  t.equal((fourth.records.get('workload\0ua')!.record as { status: string }).status, 'Healthy');
});

t.test('PeerAuthentication: selector and STRICT/PERMISSIVE; what Weft cannot honour is refused by field', async (t) => {
  const pa = (spec: Record<string, unknown>, namespace = 'demo') => peerAuthRecord({ apiVersion: 'security.istio.io/v1', kind: 'PeerAuthentication', metadata: { name: 'p', namespace }, spec } as never);
  t.same(pa({ mtls: { mode: 'STRICT' } }), { ok: true, record: { name: 'p', namespace: 'demo', mode: 'STRICT' } });
  t.same(pa({ selector: { matchLabels: { app: 'echo' } }, mtls: { mode: 'PERMISSIVE' } }),
    { ok: true, record: { name: 'p', namespace: 'demo', mode: 'PERMISSIVE', selector: { app: 'echo' } } });
  const refused = (spec: Record<string, unknown>, field: string, message: RegExp, namespace?: string) => {
    const r = pa(spec, namespace);
    t.equal(r.ok, false, JSON.stringify(spec));
    if (!r.ok) {
      t.equal(r.field, field);
      t.match(r.message, message);
    }
  };
  refused({ mtls: { mode: 'DISABLE' } }, 'spec.mtls.mode', /is "DISABLE"; Weft supports STRICT and PERMISSIVE/);
  refused({ mtls: { mode: 'UNSET' } }, 'spec.mtls.mode', /no UNSET inheritance/);
  refused({}, 'spec.mtls.mode', /is null/);
  refused({ mtls: { mode: 'STRICT' }, portLevelMtls: { 8080: { mode: 'DISABLE' } } }, 'spec.portLevelMtls', /not supported by Weft/);
  refused({ mtls: { mode: 'STRICT' }, extra: 1 }, 'spec.extra', /not a field of PeerAuthentication/);
  refused({ mtls: { mode: 'STRICT' }, selector: { matchExpressions: [] } }, 'spec.selector', /must be \{matchLabels/);
  refused({ mtls: { mode: 'STRICT' }, selector: { matchLabels: { 'bad key!': 'x' } } }, 'spec.selector.matchLabels["bad key!"]', /^spec\.selector\.matchLabels\["bad key!"\] is not a valid label key/);
  refused({ mtls: { mode: 'STRICT' } }, 'metadata.namespace', /metadata\.namespace/, 'Not_A_Label');
  // Istio's mesh-wide STRICT lives in istio-system; accepted there it would hold for that namespace only.
  refused({ mtls: { mode: 'STRICT' } }, 'metadata.namespace', /istio-system, Istio's root namespace.*not in force mesh-wide; move it to weft-system/, 'istio-system');
});

t.test("an Istio AuthorizationPolicy in Istio's root namespace is refused, never accepted for that namespace only", async (t) => {
  const ap = (namespace: string) => istioPolicyRecord({
    apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'deny-x', namespace },
    spec: { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['x'] } }] }] },
  } as never);
  t.equal(ap('demo').ok, true, 'elsewhere accepted');
  const r = ap('istio-system');
  t.equal(r.ok, false);
  if (!r.ok) {
    t.equal(r.field, 'metadata.namespace');
    t.match(r.message, /Istio's root namespace, where Istio applies this AuthorizationPolicy mesh-wide; Weft's root namespace is weft-system/);
    t.match(r.candidate, { name: 'deny-x', namespace: 'istio-system', action: 'DENY' }, 'the stand-in keeps its action');
  }
});

t.test("Istio rule syntax: from/to/when become clauses; what L4 cannot check is refused by field", async (t) => {
  t.same(istioPolicyRules([{
    from: [{ source: { principals: ['cluster.local/ns/a/sa/b'], notNamespaces: ['x'] } }],
    to: [{ operation: { ports: ['80', '443'], notPorts: ['8080'] } }],
    when: [{ key: 'source.ip', values: ['10.0.0.0/8'] }, { key: 'destination.port', notValues: ['9090'] }],
  }, {}]), {
    ok: true,
    rules: [{
      clauses: [
        { matches: [{ principals: ['spiffe://cluster.local/ns/a/sa/b'], notNamespaces: ['x'] }] },
        { matches: [{ destinationPorts: [80, 443], notDestinationPorts: [8080] }] },
        { matches: [{ sourceIps: ['10.0.0.0/8'] }] },
        { matches: [{ notDestinationPorts: [9090] }] },
      ],
    }, { clauses: [] }],
  }, 'an empty rule matches everything, as in Istio');
  t.same(istioPolicyRules(undefined), { ok: true, rules: [] });
  const refused = (rules: unknown, field: string, message: RegExp) => {
    const r = istioPolicyRules(rules);
    t.equal(r.ok, false, JSON.stringify(rules));
    if (!r.ok) {
      t.equal(r.field, field);
      t.match(r.message, message);
    }
  };
  refused([{ to: [{ operation: { paths: ['/admin'] } }] }], 'spec.rules[0].to[0].operation.paths', /L7 attribute/);
  refused([{ from: [{ source: { requestPrincipals: ['*'] } }] }], 'spec.rules[0].from[0].source.requestPrincipals', /request authentication \(JWT\)/);
  refused([{ from: [{ source: { principals: ['cluster.local/ns/a/sa/*'] } }] }], 'spec.rules[0].from[0].source.principals[0]', /wildcards are not supported/);
  refused([{ to: [{ operation: { ports: ['http'] } }] }], 'spec.rules[0].to[0].operation.ports[0]', /must be a port number/);
  refused([{ when: [{ key: 'request.headers[x]', values: ['a'] }] }], 'spec.rules[0].when[0].key', /L7 attribute; without targetRefs .* bind the policy with targetRefs/);
  refused([{ when: [{ key: 'request.auth.claims[iss]', values: ['a'] }] }], 'spec.rules[0].when[0].key', /Weft reads source\.ip/);
  refused([{ when: [{ key: 'source.ip' }] }], 'spec.rules[0].when[0]', /needs values or notValues/);
  refused([{ clauses: [] }], 'spec.rules[0].clauses', /not a field Weft reads here \(expected from, to, when\)/);
  refused({}, 'spec.rules', /must be a list/);
});

t.test('Istio AuthorizationPolicy bound with targetRefs: L7 rules become waypoint-bound records', async (t) => {
  const ap = (spec: Record<string, unknown>) => istioPolicyRecord({
    apiVersion: 'security.istio.io/v1', kind: 'AuthorizationPolicy', metadata: { name: 'echo-l7', namespace: 'demo' }, spec,
  } as never);
  const r = ap({
    targetRefs: [{ group: '', kind: 'Service', name: 'echo' }, { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint' }],
    action: 'DENY',
    rules: [{
      from: [{ source: { namespaces: ['other'], ipBlocks: ['198.19.0.0/16'] } }],
      to: [{ operation: { methods: ['POST'], paths: ['/admin/*'], notPaths: ['*.css'], hosts: ['echo.demo'], ports: ['80'] } }],
      when: [{ key: 'request.headers[X-Team]', values: ['red'], notValues: ['blue*'] }],
    }],
  });
  t.same(r, {
    ok: true,
    record: {
      name: 'echo-l7', namespace: 'demo', scope: 'NAMESPACE', action: 'DENY',
      targetRefs: [{ kind: 'Service', name: 'echo' }, { kind: 'Gateway', name: 'waypoint' }],
      rules: [{ clauses: [
        { matches: [{ namespaces: ['other'], sourceIps: ['198.19.0.0/16'] }] },
        { matches: [{ methods: ['POST'], paths: ['/admin/*'], notPaths: ['*.css'], hosts: ['echo.demo'], destinationPorts: [80] }] },
        { matches: [{ requestHeaders: [{ name: 'x-team', values: ['red'] }], notRequestHeaders: [{ name: 'x-team', values: ['blue*'] }] }] },
      ] }],
    },
  });
  const single = ap({ targetRef: { kind: 'Service', group: '', name: 'echo' }, action: 'AUDIT', rules: [{ to: [{ operation: { paths: ['/x'] } }] }] });
  t.match(single, { ok: true, record: { action: 'AUDIT', targetRefs: [{ kind: 'Service', name: 'echo' }] } }, 'the singular targetRef too; AUDIT');
  const refused = (spec: Record<string, unknown>, field: string, message: RegExp) => {
    const x = ap(spec);
    t.equal(x.ok, false, JSON.stringify(spec));
    if (!x.ok) {
      t.equal(x.field, field);
      t.match(x.message, message);
    }
    return x;
  };
  const custom = refused({ targetRefs: [{ kind: 'Service', name: 'echo' }], action: 'CUSTOM', provider: { name: 'ext' }, rules: [{}] }, 'spec.action',
    /CUSTOM delegates to an external authorizer.*Weft does not have; use ALLOW, DENY or AUDIT/);
  t.match(!custom.ok && custom.candidate, { action: 'DENY', targetRefs: [{ kind: 'Service', name: 'echo' }] }, 'its stand-in denies, at the waypoint only');
  refused({ targetRefs: [{ kind: 'Deployment', group: 'apps', name: 'x' }], rules: [] }, 'spec.targetRefs[0]', /Weft binds AuthorizationPolicy to a Service/);
  refused({ targetRefs: [{ kind: 'Service', name: 'echo', namespace: 'other' }] }, 'spec.targetRefs[0].namespace', /must be the policy's own namespace demo/);
  refused({ targetRefs: [{ kind: 'Service', name: 'echo' }], selector: { matchLabels: { app: 'echo' } } }, 'spec.selector', /bound either to workloads \(selector\) or to Services and waypoints \(targetRefs\)/);
  refused({ targetRefs: [] }, 'spec.targetRefs', /non-empty list/);
  refused({ targetRefs: [{ kind: 'Service', name: 'echo' }], rules: [{ to: [{ operation: { paths: ['/a*b'] } }] }] }, 'spec.rules[0].to[0].operation.paths[0]',
    /may hold `\*` only as its first or last character/);
  // The point of the refusal: an L7 rule on a selector policy would be enforced nowhere.
  const sel = refused({ selector: { matchLabels: { app: 'echo' } }, rules: [{ to: [{ operation: { methods: ['GET'] } }] }] }, 'spec.rules[0].to[0].operation.methods',
    /is an L7 attribute; without targetRefs this AuthorizationPolicy is enforced at L4 by the ztunnel, which cannot check it\. Put a waypoint in front of the workloads .*weft waypoint add .*bind the policy with targetRefs: \[\{group: "", kind: Service, name: <service>\}\] instead of selector/);
  t.match(!sel.ok && sel.candidate, { scope: 'WORKLOAD_SELECTOR', action: 'ALLOW', rules: [] }, 'its stand-in is an ALLOW matching nothing for those workloads (fail closed)');
});

t.test('security.weft.io AuthorizationPolicy with targetRefs: scope NAMESPACE derived, its stand-in stays bound', async (t) => {
  const wap = (spec: Record<string, unknown>) => policyRecord({
    apiVersion: 'security.weft.io/v1alpha1', kind: 'AuthorizationPolicy', metadata: { name: 'l7', namespace: 'demo' }, spec,
  } as never);
  t.same(wap({ action: 'DENY', targetRefs: [{ kind: 'Service', name: 'echo' }], rules: [{ clauses: [{ matches: [{ paths: ['/admin'] }] }] }] }), {
    ok: true,
    record: { name: 'l7', namespace: 'demo', scope: 'NAMESPACE', action: 'DENY', targetRefs: [{ kind: 'Service', name: 'echo' }], rules: [{ clauses: [{ matches: [{ paths: ['/admin'] }] }] }] },
  });
  const bad = wap({ action: 'DENY', targetRefs: [{ kind: 'Service', name: 'echo' }], rules: [{ clauses: [{ matches: [{ paths: ['admin'] }] }] }] });
  t.equal(bad.ok, false);
  t.match(!bad.ok && bad, { field: 'spec.rules[0].clauses[0].matches[0].paths[0]', candidate: { scope: 'NAMESPACE', targetRefs: [{ kind: 'Service', name: 'echo' }] } });
});
