import t from 'tap';
import { authorize, matchPolicy, stringMatches, type AuthzRequest } from '../src/ztunnel/authorization';
import { cidrContains } from '../src/authz/cidr';
import { deriveWorkloadView } from '../src/registry/enrolment';
import type { AuthorizationPolicyRecord, PolicyMatch } from '../src/registry/types';
import { ambientNamespace, workloadRecord } from '../src/ztunnel/testing/records';

const echo = deriveWorkloadView(
  workloadRecord({ name: 'echo-1', namespace: 'demo', node: 'n1', ip: '10.0.1.5', sa: 'echo', labels: { app: 'echo' } }),
  ambientNamespace('demo'), 'cluster.local');

const CLIENT = 'spiffe://cluster.local/ns/demo/sa/client';
const OTHER = 'spiffe://cluster.local/ns/other/sa/web';

function req(identity: string | undefined, srcIp = '10.0.2.7', port = 8080): AuthzRequest {
  const r: AuthzRequest = { source: { ip: srcIp }, destination: { workload: echo, ip: '10.0.1.5', port } };
  if (identity) r.source.identity = identity;
  return r;
}

function policy(name: string, action: 'ALLOW' | 'DENY', matches: PolicyMatch[][] | null, ns = 'demo'): AuthorizationPolicyRecord {
  return {
    name, namespace: ns, scope: 'NAMESPACE', action,
    rules: matches === null ? [] : [{ clauses: matches.map((m) => ({ matches: m })) }],
  };
}

t.test('evaluation order (reference §5)', async (t) => {
  const allowClient = policy('allow-client', 'ALLOW', [[{ principals: [CLIENT] }]]);
  const denyPort = policy('deny-9000', 'DENY', [[{ destinationPorts: [9000] }]]);
  const cases: Array<[string, AuthzRequest, AuthorizationPolicyRecord[], 'STRICT' | 'PERMISSIVE', boolean, string | undefined]> = [
    ['no policy → allow', req(CLIENT), [], 'PERMISSIVE', true, undefined],
    ['no policy, plaintext, PERMISSIVE → allow', req(undefined), [], 'PERMISSIVE', true, undefined],
    ['STRICT, plaintext → deny before any policy', req(undefined), [allowClient], 'STRICT', false, undefined],
    ['STRICT, with identity, no policy → allow', req(CLIENT), [], 'STRICT', true, undefined],
    ['ALLOW matches → allow', req(CLIENT), [allowClient], 'PERMISSIVE', true, 'demo/allow-client'],
    ['ALLOW exists, no match → deny', req(OTHER), [allowClient], 'PERMISSIVE', false, undefined],
    ['DENY matches → deny even if ALLOW matches', req(CLIENT, undefined, 9000), [allowClient, denyPort], 'PERMISSIVE', false, 'demo/deny-9000'],
    ['DENY not matching, no ALLOW → allow', req(OTHER), [denyPort], 'PERMISSIVE', true, undefined],
    ['DENY not matching, ALLOW matching → allow', req(CLIENT), [denyPort, allowClient], 'PERMISSIVE', true, 'demo/allow-client'],
  ];
  for (const [name, r, ps, mode, allowed, decidedBy] of cases) {
    const d = authorize(r, ps, mode);
    t.equal(d.allowed, allowed, name);
    t.equal(d.policy, decidedBy, `${name}: deciding policy`);
    t.ok(d.reason.length > 20, `${name}: has a reason`);
  }
});

t.test('reasons are readable and name what decided', async (t) => {
  const strict = authorize(req(undefined), [], 'STRICT');
  t.match(strict.reason, /STRICT.*demo\/echo-1.*no peer identity/);
  const deny = authorize(req(CLIENT), [policy('block', 'DENY', [[{ namespaces: ['demo'] }]])], 'PERMISSIVE');
  t.match(deny.reason, /DENY policy demo\/block matches spiffe:\/\/cluster.local\/ns\/demo\/sa\/client from 10.0.2.7 to 10.0.1.5:8080 \(rule 1\)/);
  const none = authorize(req(OTHER), [policy('a', 'ALLOW', [[{ namespaces: ['demo'] }]]), policy('b', 'ALLOW', [[{ namespaces: ['x'] }]])], 'PERMISSIVE');
  t.match(none.reason, /matches none of the ALLOW policies .*demo\/a, demo\/b/);
  const dflt = authorize(req(CLIENT), [], 'PERMISSIVE');
  t.match(dflt.reason, /allowed by default/);
});

t.test('match fields, positive and negative, one at a time', async (t) => {
  // [match, request, expected]
  const cases: Array<[string, PolicyMatch, AuthzRequest, boolean]> = [
    ['namespace hit', { namespaces: ['demo'] }, req(CLIENT), true],
    ['namespace miss', { namespaces: ['other'] }, req(CLIENT), false],
    ['namespace any-of', { namespaces: ['x', 'demo'] }, req(CLIENT), true],
    ['namespace needs identity', { namespaces: ['demo'] }, req(undefined), false],
    ['notNamespaces excludes', { notNamespaces: ['demo'] }, req(CLIENT), false],
    ['notNamespaces passes others', { notNamespaces: ['demo'] }, req(OTHER), true],
    ['notNamespaces passes plaintext', { notNamespaces: ['demo'] }, req(undefined), true],
    ['principal exact', { principals: [CLIENT] }, req(CLIENT), true],
    ['principal prefix', { principals: ['spiffe://cluster.local/ns/demo/*'] }, req(CLIENT), true],
    ['principal prefix miss', { principals: ['spiffe://cluster.local/ns/prod/*'] }, req(CLIENT), false],
    ['principal suffix', { principals: ['*/sa/client'] }, req(CLIENT), true],
    ['principal presence', { principals: ['*'] }, req(CLIENT), true],
    ['principal presence, plaintext', { principals: ['*'] }, req(undefined), false],
    ['notPrincipals * = plaintext only', { notPrincipals: ['*'] }, req(undefined), true],
    ['notPrincipals * excludes mTLS', { notPrincipals: ['*'] }, req(CLIENT), false],
    ['serviceAccounts ns/sa', { serviceAccounts: ['demo/client'] }, req(CLIENT), true],
    ['serviceAccounts ns/sa miss', { serviceAccounts: ['other/client'] }, req(CLIENT), false],
    ['serviceAccounts bare = policy namespace', { serviceAccounts: ['client'] }, req(CLIENT), true],
    ['serviceAccounts bare, other namespace', { serviceAccounts: ['web'] }, req(OTHER), false],
    ['notServiceAccounts', { notServiceAccounts: ['demo/client'] }, req(CLIENT), false],
    ['sourceIps CIDR', { sourceIps: ['10.0.2.0/24'] }, req(CLIENT), true],
    ['sourceIps single IP', { sourceIps: ['10.0.2.7'] }, req(CLIENT), true],
    ['sourceIps miss', { sourceIps: ['10.0.3.0/24'] }, req(CLIENT), false],
    ['notSourceIps', { notSourceIps: ['10.0.0.0/16'] }, req(CLIENT), false],
    ['destinationIps', { destinationIps: ['10.0.1.0/28'] }, req(CLIENT), true],
    ['notDestinationIps', { notDestinationIps: ['10.0.1.5'] }, req(CLIENT), false],
    ['destinationPorts', { destinationPorts: [80, 8080] }, req(CLIENT), true],
    ['destinationPorts miss', { destinationPorts: [80] }, req(CLIENT), false],
    ['notDestinationPorts', { notDestinationPorts: [8080] }, req(CLIENT), false],
    ['fields AND: all hold', { namespaces: ['demo'], destinationPorts: [8080], sourceIps: ['10.0.0.0/8'] }, req(CLIENT), true],
    ['fields AND: one fails', { namespaces: ['demo'], destinationPorts: [9090] }, req(CLIENT), false],
    ['positive and negative together', { namespaces: ['demo'], notPrincipals: [CLIENT] }, req(CLIENT), false],
    ['an invalid CIDR matches nothing', { sourceIps: ['not-a-cidr'] }, req(CLIENT), false],
  ];
  for (const [name, m, r, expected] of cases) {
    t.equal(matchPolicy(policy('p', 'ALLOW', [[m]]), r).matched, expected, name);
  }
});

t.test('rules, clauses and matches combine as in ztunnel', async (t) => {
  const r = req(CLIENT);
  const p = (rules: AuthorizationPolicyRecord['rules']): AuthorizationPolicyRecord => ({ name: 'p', namespace: 'demo', scope: 'NAMESPACE', action: 'ALLOW', rules });
  t.equal(matchPolicy(p([]), r).matched, false, 'no rules: matches nothing');
  t.equal(matchPolicy(p([{ clauses: [] }]), r).matched, true, 'a rule without clauses matches everything');
  t.equal(matchPolicy(p([{ clauses: [{ matches: [] }] }]), r).matched, true, 'a clause without matches holds');
  t.equal(matchPolicy(p([{ clauses: [{ matches: [{}] }] }]), r).matched, false, 'an empty match is ignored');
  t.equal(matchPolicy(p([{ clauses: [{ matches: [{}, { namespaces: ['demo'] }] }] }]), r).matched, true, 'empty match skipped, next one holds');
  const twoClauses = p([{ clauses: [{ matches: [{ namespaces: ['demo'] }] }, { matches: [{ destinationPorts: [9999] }] }] }]);
  t.equal(matchPolicy(twoClauses, r).matched, false, 'clauses are ANDed');
  const anyMatch = p([{ clauses: [{ matches: [{ namespaces: ['x'] }, { destinationPorts: [8080] }] }] }]);
  t.equal(matchPolicy(anyMatch, r).matched, true, 'matches within a clause are ORed');
  const second = p([{ clauses: [{ matches: [{ namespaces: ['x'] }] }] }, { clauses: [{ matches: [{ namespaces: ['demo'] }] }] }]);
  t.same(matchPolicy(second, r), { matched: true, rule: 2 }, 'rules are ORed; the matching rule is reported');
  t.equal(authorize(r, [{ ...p([]), action: 'DENY' }], 'PERMISSIVE').allowed, true, 'an empty DENY policy denies nothing');
  t.equal(authorize(r, [p([])], 'PERMISSIVE').allowed, false, 'an empty ALLOW policy allows no one');
});

t.test('an identity of another shape is a principal but has no namespace', async (t) => {
  const weird = 'spiffe://cluster.local/something/else';
  t.equal(matchPolicy(policy('p', 'ALLOW', [[{ principals: [weird] }]]), req(weird)).matched, true);
  t.equal(matchPolicy(policy('p', 'ALLOW', [[{ namespaces: ['something'] }]]), req(weird)).matched, false);
});

t.test('string and CIDR helpers', async (t) => {
  t.equal(stringMatches('abc', 'abc'), true);
  t.equal(stringMatches('ab*', 'abc'), true);
  t.equal(stringMatches('*bc', 'abc'), true);
  t.equal(stringMatches('*', ''), false);
  t.equal(stringMatches('a*', 'b'), false);
  t.equal(cidrContains('10.0.0.0/8', '10.255.1.1'), true);
  t.equal(cidrContains('10.0.0.0/8', '11.0.0.1'), false);
  t.equal(cidrContains('0.0.0.0/0', '192.0.2.1'), true);
  t.equal(cidrContains('10.0.0.1', '::ffff:10.0.0.1'), true, 'IPv4-mapped IPv6 is normalized');
  t.equal(cidrContains('fd00::/8', 'fd00::1'), true);
  t.equal(cidrContains('fd00::/8', '10.0.0.1'), false, 'families never mix');
  t.equal(cidrContains('10.0.0.0/33', '10.0.0.1'), false, 'invalid prefix length');
  t.equal(cidrContains('10.0.0.0/x', '10.0.0.1'), false);
  t.equal(cidrContains('garbage', '10.0.0.1'), false);
});
