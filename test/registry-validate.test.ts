import t from 'tap';
import { validateRecord } from '../src/registry/validate';
import { isWeftError } from '../src/lib/errors';
import {
  ambientNamespace, httpRouteRecord, nodeRecord, peerAuthRecord, policyRecord, serviceRecord, trafficPolicyRecord, waypointRecord, workloadRecord,
} from '../src/registry/fixtures';
import type { Kind } from '../src/registry/types';

const good = {
  node: nodeRecord('node-1', '198.51.100.1', { podCidr: '10.1.0.0/24', labels: { zone: 'a' } }),
  namespace: ambientNamespace('demo'),
  workload: workloadRecord({ namespace: 'demo', name: 'echo-1', node: 'node-1', addresses: ['10.1.0.5', 'fd00::5'], ports: [8080], labels: { app: 'echo' } }),
  service: serviceRecord({ namespace: 'demo', name: 'echo', vips: ['10.96.0.1'], ports: [{ name: 'http', port: 80, targetPort: 8080, appProtocol: 'http' }], waypoint: 'wp', loadBalancing: 'LEAST_CONN' }),
  policy: policyRecord({
    namespace: 'demo', name: 'allow', scope: 'WORKLOAD_SELECTOR', selector: { app: 'echo' },
    rules: [{ clauses: [{ matches: [{
      namespaces: ['demo'], notNamespaces: ['x'], principals: ['spiffe://cluster.local/ns/demo/sa/web'], notPrincipals: ['spiffe://cluster.local/ns/demo/sa/bad'],
      serviceAccounts: ['demo/web'], notServiceAccounts: ['demo/bad'], sourceIps: ['10.0.0.0/8'], notSourceIps: ['10.0.0.1'],
      destinationIps: ['fd00::/64'], notDestinationIps: ['10.1.0.9'], destinationPorts: [8080], notDestinationPorts: [9090],
    }] }] }],
  }),
  peerauth: peerAuthRecord({ namespace: 'demo', name: 'strict', selector: { app: 'echo' } }),
  waypoint: waypointRecord({ namespace: 'demo', name: 'waypoint', serviceAccount: 'waypoint-sa' }),
  httproute: httpRouteRecord({ namespace: 'demo', name: 'canary' }, 'echo', [{ name: 'echo-v1', port: 8080, weight: 95 }, { name: 'echo-v2', port: 8080, weight: 5 }]),
  grpcroute: { name: 'grpc', namespace: 'demo', creationTimestamp: '2026-11-30T12:00:00.5+01:00',
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'echo' }], hostnames: [],
      rules: [{ matches: [{ method: { type: 'Exact', service: 'grpc.health.v1.Health', method: 'Check' }, headers: [] }], filters: [],
        backendRefs: [{ group: '', kind: 'Service', name: 'echo', port: 9000, weight: 1, filters: [] }] }] } },
  trafficpolicy: trafficPolicyRecord({ namespace: 'demo', name: 'echo' }, ['echo', 'echo-v2']),
};

t.test('valid records come back equal, as fresh objects', async (t) => {
  for (const kind of Object.keys(good) as Kind[]) {
    const v = good[kind];
    const out = validateRecord(kind, JSON.parse(JSON.stringify(v)), { unknownKeys: 'reject' });
    t.same(out, v, kind);
    t.not(out, v);
  }
});

t.test('readers drop unknown keys, writers reject them', async (t) => {
  const withExtra = { ...good.workload, futureField: 1, labels: { app: 'echo' } };
  const out = validateRecord('workload', withExtra);
  t.notOk('futureField' in out);
  t.throws(() => validateRecord('workload', withExtra, { unknownKeys: 'reject' }), { code: 'WEFT_REGISTRY_RECORD_INVALID', message: /workload demo\/echo-1: futureField is not a known field/ });
  const nested = { ...good.service, ports: [{ port: 80, targetPort: 8080, tagetPort: 1 }] };
  t.throws(() => validateRecord('service', nested, { unknownKeys: 'reject' }), { message: /ports\[0\]\.tagetPort is not a known field/ });
  t.same(validateRecord('service', nested).ports, [{ port: 80, targetPort: 8080 }]);
});

t.test('the stored key must match the record', async (t) => {
  t.throws(() => validateRecord('service', good.service, { key: 'demo/other' }), { message: /service demo\/other: \(key\) "demo\/other" does not match the record, which implies "demo\/echo"/ });
  t.same(validateRecord('service', good.service, { key: 'demo/echo' }), good.service);
});

// One rejection per rule: [kind, patch applied to a good record, expected message].
type Case = [Kind, (r: any) => unknown, RegExp];
const cases: Case[] = [
  ['node', () => 'a string', /node \(unknown\): \(record\) must be an object/],
  ['node', () => null, /must be an object, got null/],
  ['node', (r) => ({ ...r, name: undefined }), /node \?: name is required/],
  ['node', (r) => ({ ...r, name: 'Node_1' }), /node Node_1: name must be a DNS-1123 subdomain/],
  ['node', (r) => ({ ...r, address: '300.1.1.1' }), /node node-1: address must be an IPv4 or IPv6 address, got "300.1.1.1"/],
  ['node', (r) => ({ ...r, podCidr: '10.1.0.0/33' }), /podCidr must be a CIDR/],
  ['node', (r) => ({ ...r, podCidr: '10.1.0.0' }), /podCidr must be a CIDR/],
  ['node', (r) => ({ ...r, labels: [] }), /labels must be an object of string labels/],
  ['namespace', (r) => ({ ...r, name: 'a.b' }), /namespace a\.b: name must be a DNS-1123 label/],
  ['namespace', (r) => ({ ...r, name: 'x'.repeat(64) }), /name must be a DNS-1123 label/],
  ['namespace', (r) => ({ ...r, labels: undefined }), /labels is required/],
  ['namespace', (r) => ({ ...r, labels: { app: 1 } }), /labels\["app"\] must be a string, got 1/],
  ['namespace', (r) => ({ ...r, labels: { 'bad key!': 'x' } }), /labels\["bad key!"\] is not a valid label key/],
  ['namespace', (r) => ({ ...r, labels: { 'Bad_Prefix/x': 'x' } }), /is not a valid label key/],
  ['namespace', (r) => ({ ...r, labels: { app: 'has space' } }), /labels\["app"\] must be a label value/],
  ['namespace', (r) => ({ ...r, labels: { app: 'v'.repeat(64) } }), /must be a label value/],
  ['workload', (r) => ({ ...r, uid: 'has space' }), /uid must be 1-253 characters without spaces/],
  ['workload', (r) => ({ ...r, uid: '' }), /uid must be 1-253/],
  ['workload', (r) => ({ ...r, name: 'Echo' }), /name must be a DNS-1123 subdomain/],
  ['workload', (r) => ({ ...r, namespace: 'Demo' }), /namespace must be a DNS-1123 label/],
  ['workload', (r) => ({ ...r, node: '' }), /node must be a DNS-1123 subdomain/],
  ['workload', (r) => ({ ...r, addresses: '10.0.0.1' }), /workload demo\/echo-1: addresses must be an array/],
  ['workload', (r) => ({ ...r, addresses: ['10.0.0.1', '10.0.0'] }), /addresses\[1\] must be an IPv4 or IPv6 address/],
  ['workload', (r) => ({ ...r, serviceAccount: 'SA' }), /serviceAccount must be a DNS-1123 subdomain/],
  ['workload', (r) => ({ ...r, ports: [0] }), /ports\[0\] must be an integer 1-65535, got 0/],
  ['workload', (r) => ({ ...r, ports: [80.5] }), /ports\[0\] must be an integer 1-65535/],
  ['workload', (r) => ({ ...r, status: 'Ready' }), /status must be one of Healthy, Unhealthy, got "Ready"/],
  ['workload', (r) => ({ ...r, status: undefined }), /status is required/],
  ['service', (r) => ({ ...r, name: 'echo.v2' }), /service demo\/echo\.v2: name must be a DNS-1123 label/],
  ['service', (r) => ({ ...r, hostname: 'Echo..x' }), /hostname must be a DNS-1123 subdomain/],
  ['service', (r) => ({ ...r, vips: ['10.96.0.1/32'] }), /vips\[0\] must be an IPv4 or IPv6 address/],
  ['service', (r) => ({ ...r, ports: [{ port: 80, targetPort: 70000 }] }), /^service demo\/echo: ports\[0\]\.targetPort must be an integer 1-65535, got 70000/],
  ['service', (r) => ({ ...r, ports: [{ port: '80', targetPort: 80 }] }), /ports\[0\]\.port must be an integer 1-65535, got "80"/],
  ['service', (r) => ({ ...r, ports: [{ port: 80, targetPort: 1 }, { port: 80, targetPort: 2 }] }), /ports\[1\]\.port 80 duplicates ports\[0\]\.port/],
  ['service', (r) => ({ ...r, ports: [{ name: 'HTTP', port: 80, targetPort: 1 }] }), /ports\[0\]\.name must be a DNS-1123 label/],
  ['service', (r) => ({ ...r, ports: [{ appProtocol: 'h t', port: 80, targetPort: 1 }] }), /ports\[0\]\.appProtocol must be 1-253 characters/],
  ['service', (r) => ({ ...r, selector: 'app=echo' }), /selector must be an object of string labels/],
  ['service', (r) => ({ ...r, waypoint: '' }), /waypoint must be a DNS-1123 subdomain/],
  ['service', (r) => ({ ...r, loadBalancing: 'RANDOM' }), /loadBalancing must be one of ROUND_ROBIN, LEAST_CONN/],
  ['policy', (r) => ({ ...r, scope: 'CLUSTER' }), /policy demo\/allow: scope must be one of GLOBAL, NAMESPACE, WORKLOAD_SELECTOR/],
  ['policy', (r) => ({ ...r, scope: 'GLOBAL', selector: undefined }), /scope GLOBAL is only allowed for policies in the root namespace weft-system/],
  ['policy', (r) => ({ ...r, selector: {} }), /selector is required and must not be empty when scope is WORKLOAD_SELECTOR/],
  ['policy', (r) => ({ ...r, scope: 'NAMESPACE' }), /selector is only allowed when scope is WORKLOAD_SELECTOR/],
  ['policy', (r) => ({ ...r, action: 'CUSTOM' }), /action must be one of ALLOW, DENY, AUDIT/],
  ['policy', (r) => ({ ...r, action: 'AUDIT' }), /action AUDIT is enforced by waypoints only: bind the policy with targetRefs/],
  ['policy', (r) => ({ ...r, rules: [{ clauses: [{ matches: [{ paths: ['/admin'] }] }] }] }),
    /rules\[0\]\.clauses\[0\]\.matches\[0\]\.paths is an L7 attribute, which only a waypoint can check, and this policy has no targetRefs .*bind it to a Service or waypoint with targetRefs/],
  ['policy', (r) => ({ ...r, targetRefs: [{ kind: 'Service', name: 'echo' }] }), /scope must be NAMESPACE when targetRefs is set \(got WORKLOAD_SELECTOR\)/],
  ['policy', (r) => ({ ...r, scope: 'NAMESPACE', targetRefs: [{ kind: 'Service', name: 'echo' }] }), /selector is not allowed with targetRefs/],
  ['policy', (r) => ({ ...r, scope: 'NAMESPACE', selector: undefined, targetRefs: [] }), /targetRefs must list 1 to 16 targets, got 0/],
  ['policy', (r) => ({ ...r, scope: 'NAMESPACE', selector: undefined, targetRefs: [{ kind: 'Pod', name: 'x' }] }), /targetRefs\[0\]\.kind must be one of Service, Gateway/],
  ['policy', (r) => bound(r, { paths: ['admin'] }), /matches\[0\]\.paths\[0\] must start with \//],
  ['policy', (r) => bound(r, { paths: ['/a*b'] }), /paths\[0\] may hold `\*` only as its first or last character/],
  ['policy', (r) => bound(r, { methods: ['G ET'] }), /methods\[0\] must be 1-253 characters without spaces/],
  ['policy', (r) => bound(r, { requestHeaders: [{ name: 'X Team', values: ['a'] }] }), /requestHeaders\[0\]\.name must be a lower-case HTTP header name/],
  ['policy', (r) => bound(r, { notRequestHeaders: [{ name: 'x-team' }] }), /notRequestHeaders\[0\]\.values is required/],
  ['policy', (r) => ({ ...r, rules: {} }), /rules must be an array/],
  ['policy', (r) => ({ ...r, rules: [{}] }), /rules\[0\]\.clauses is required/],
  ['policy', (r) => ({ ...r, rules: [{ clauses: [{ matches: 'x' }] }] }), /rules\[0\]\.clauses\[0\]\.matches must be an array/],
  ['policy', (r) => ({ ...r, rules: [{ clauses: [{ matches: [{ namespaces: ['Demo'] }] }] }] }), /rules\[0\]\.clauses\[0\]\.matches\[0\]\.namespaces\[0\] must be a DNS-1123 label/],
  ['policy', (r) => ({ ...r, rules: [{ clauses: [{ matches: [{ principals: ['cluster.local/ns/demo/sa/web'] }] }] }] }), /principals\[0\] must be a spiffe:\/\/ URI/],
  ['policy', (r) => ({ ...r, rules: [{ clauses: [{ matches: [{ serviceAccounts: ['a b'] }] }] }] }), /serviceAccounts\[0\] must be 1-253 characters/],
  ['policy', (r) => ({ ...r, rules: [{ clauses: [{ matches: [{ sourceIps: ['10.0.0.0/40'] }] }] }] }), /sourceIps\[0\] must be an IP address or a CIDR/],
  ['policy', (r) => ({ ...r, rules: [{ clauses: [{ matches: [{ notDestinationIps: ['host'] }] }] }] }), /notDestinationIps\[0\] must be an IP address or a CIDR/],
  ['policy', (r) => ({ ...r, rules: [{ clauses: [{ matches: [{ destinationPorts: [65536] }] }] }] }), /destinationPorts\[0\] must be an integer 1-65535/],
  ['policy', (r) => ({ ...r, rules: [{ clauses: [{ matches: [{ notDestinationPorts: 80 }] }] }] }), /notDestinationPorts must be an array/],
  ['peerauth', (r) => ({ ...r, mode: 'DISABLE' }), /peerauth demo\/strict: mode must be one of STRICT, PERMISSIVE/],
  ['peerauth', (r) => ({ ...r, selector: { app: ['x'] } }), /selector\["app"\] must be a string/],
  ['peerauth', (r) => ({ ...r, namespace: undefined }), /peerauth \?\/strict: namespace is required/],
  ['waypoint', (r) => ({ ...r, for: 'pods' }), /waypoint demo\/waypoint: for must be one of service, workload, all, none/],
  ['waypoint', (r) => ({ ...r, serviceAccount: 'Bad SA' }), /serviceAccount must be a DNS-1123 subdomain/],
  ['httproute', (r) => ({ ...r, creationTimestamp: 'yesterday' }), /httproute demo\/canary: creationTimestamp must be an RFC 3339 time/],
  ['httproute', (r) => ({ ...r, spec: { ...r.spec, parentRefs: 'echo' } }), /httproute demo\/canary: spec.parentRefs/],
  ['grpcroute', (r) => ({ ...r, name: 'Bad' }), /grpcroute demo\/Bad: name must be a DNS-1123 subdomain/],
];

/** The policy made waypoint-bound (targetRefs to Service echo) with one match. */
function bound(r: Record<string, unknown>, match: Record<string, unknown>): Record<string, unknown> {
  return { ...r, scope: 'NAMESPACE', selector: undefined, targetRefs: [{ kind: 'Service', name: 'echo' }], rules: [{ clauses: [{ matches: [match] }] }] };
}

t.test('a waypoint-bound policy (targetRefs) with L7 fields and AUDIT comes back equal', async (t) => {
  const p = policyRecord({
    namespace: 'demo', name: 'l7', action: 'AUDIT', targetRefs: [{ kind: 'Service', name: 'echo' }, { kind: 'Gateway', name: 'waypoint' }],
    rules: [{ clauses: [{ matches: [{
      methods: ['GET'], notMethods: ['POST'], paths: ['/api/*', '*.png', '*'], notPaths: ['/admin'], hosts: ['echo.demo'], notHosts: ['*.evil'],
      requestHeaders: [{ name: 'x-team', values: ['blue', 'gr*'] }], notRequestHeaders: [{ name: 'x-debug', values: ['*'] }],
      principals: ['spiffe://cluster.local/ns/demo/sa/web'], sourceIps: ['10.0.0.0/8'],
    }] }] }],
  });
  t.same(validateRecord('policy', JSON.parse(JSON.stringify(p)), { unknownKeys: 'reject' }), p);
});

t.test('every rule rejects with a message naming kind, key and field', async (t) => {
  for (const [kind, patch, expected] of cases) {
    const value = patch(JSON.parse(JSON.stringify(good[kind])));
    try {
      validateRecord(kind, value);
      t.fail(`accepted: ${expected}`);
    } catch (err) {
      t.ok(isWeftError(err, 'WEFT_REGISTRY_RECORD_INVALID'), `code for ${expected}`);
      t.match((err as Error).message, expected);
      t.match((err as Error).message, /fix the writer/);
      t.equal((err as { details?: { kind?: string } }).details?.kind, kind);
    }
  }
});

t.test('accepted edge values', async (t) => {
  t.same(validateRecord('workload', { ...good.workload, addresses: [] }).addresses, [], 'a pending pod has no address yet');
  t.same(validateRecord('namespace', { name: 'x', labels: { 'weft.io/use-waypoint': '' } }).labels, { 'weft.io/use-waypoint': '' });
  t.equal(validateRecord('policy', policyRecord({ namespace: 'weft-system', name: 'g', scope: 'GLOBAL' })).scope, 'GLOBAL');
});
