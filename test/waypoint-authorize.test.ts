// L7 authorization at the waypoint as pure logic (src/waypoint/authorize.ts and the
// shared matcher src/authz/match.ts): Istio's operation/source/when fields and their
// not* forms, string forms (exact, prefix*, *suffix, *), path normalisation, the order
// DENY → ALLOW (AUDIT beside it), TCP streams, and the denial's HTTP and gRPC answers.
// Then WaypointAuthorizer on a MeshState: which policies apply (targetRefs to the
// Service or to this waypoint; never the ztunnel's), refreshed per revision, counted
// and logged (rate-limited) with the policy's name.
import t from 'tap';
import pino from 'pino';
import { Registry } from 'prom-client';
import { normalizePath } from '../src/authz/match';
import { policyRecord as fixturePolicy, serviceRecord, workloadRecord } from '../src/registry/fixtures';
import { MeshState } from '../src/registry/state';
import type { AuthorizationPolicyRecord, PolicyMatch } from '../src/registry/types';
import { validateRecord } from '../src/registry/validate';
import { RBAC_DENIED, authorizeRequest, deniedAnswer, type L7AuthzRequest } from '../src/waypoint/authorize';
import { WaypointAuthorizer } from '../src/waypoint/authorizer';
import type { RequestFacts } from '../src/waypoint/types';
import { ManualClock } from './helpers/clock';
import { LogLines } from './helpers/log-lines';

const CLIENT = 'spiffe://cluster.local/ns/demo/sa/client';
const OTHER = 'spiffe://cluster.local/ns/other/sa/client';

function req(over: Partial<L7AuthzRequest['request']> & { identity?: string | null; ip?: string; port?: number } = {}): L7AuthzRequest {
  const { identity, ip, port, ...request } = over;
  return {
    source: { ...(identity === null ? {} : { identity: identity ?? CLIENT }), ip: ip ?? '198.19.1.2' },
    destination: { ip: '198.18.128.10', port: port ?? 80 },
    request: { method: 'GET', host: 'echo.demo', path: '/', headers: {}, ...request },
  };
}

/** A waypoint-bound policy with one rule whose clauses are the given matches (each clause one match). */
function policy(name: string, action: AuthorizationPolicyRecord['action'], ...clauses: PolicyMatch[]): AuthorizationPolicyRecord {
  return validateRecord('policy', fixturePolicy({
    namespace: 'demo', name, action, targetRefs: [{ kind: 'Service', name: 'echo' }],
    rules: [{ clauses: clauses.map((m) => ({ matches: [m] })) }],
  }), { unknownKeys: 'reject' });
}

const allowed = (r: L7AuthzRequest, ...ps: AuthorizationPolicyRecord[]) => authorizeRequest(r, ps).allowed;

t.test('to.operation: methods, paths (exact, prefix*, *suffix, *), hosts, ports and their not* forms', async (t) => {
  const cases: [string, PolicyMatch, L7AuthzRequest, boolean][] = [
    ['method listed', { methods: ['GET', 'HEAD'] }, req(), true],
    ['method not listed', { methods: ['GET'] }, req({ method: 'POST' }), false],
    ['notMethods', { notMethods: ['POST'] }, req({ method: 'POST' }), false],
    // HTTP/2 lets `:method: post` through, and an HTTP/1 upstream is sent POST.
    ['method, case-insensitive', { methods: ['POST'] }, req({ method: 'post' }), true],
    ['notMethods, case-insensitive', { notMethods: ['POST'] }, req({ method: 'post' }), false],
    ['method written in lower case', { methods: ['get'] }, req({ method: 'GET' }), true],
    ['path exact', { paths: ['/admin'] }, req({ path: '/admin' }), true],
    ['path exact is not a prefix', { paths: ['/admin'] }, req({ path: '/admin/x' }), false],
    ['path prefix*', { paths: ['/admin/*'] }, req({ path: '/admin/users' }), true],
    ['path prefix* needs the prefix', { paths: ['/admin/*'] }, req({ path: '/public' }), false],
    ['path *suffix', { paths: ['*.png'] }, req({ path: '/img/a.png' }), true],
    ['path * (any)', { paths: ['*'] }, req({ path: '/x' }), true],
    ['notPaths', { notPaths: ['/admin*'] }, req({ path: '/administrator' }), false],
    ['host, case-insensitive', { hosts: ['Echo.Demo'] }, req(), true],
    ['host without the port the request carries', { hosts: ['echo.demo'] }, req({ host: 'echo.demo:80' }), true],
    ['host *suffix', { hosts: ['*.demo'] }, req({ host: 'echo.demo' }), true],
    ['notHosts', { notHosts: ['echo.demo'] }, req(), false],
    ['port', { destinationPorts: [80] }, req(), true],
    ['notPorts', { notDestinationPorts: [80] }, req(), false],
  ];
  for (const [name, m, r, expected] of cases) t.equal(allowed(r, policy('p', 'ALLOW', m)), expected, name);
});

t.test('from.source is the original client (identity and address as received), and when on request headers', async (t) => {
  const cases: [string, PolicyMatch, L7AuthzRequest, boolean][] = [
    ['principal', { principals: [CLIENT] }, req(), true],
    ['another principal', { principals: [CLIENT] }, req({ identity: OTHER }), false],
    ['principal prefix*', { principals: ['spiffe://cluster.local/ns/demo/*'] }, req(), true],
    ['namespace', { namespaces: ['demo'] }, req(), true],
    ['notNamespaces', { notNamespaces: ['other'] }, req({ identity: OTHER }), false],
    ['a plaintext client has no namespace', { namespaces: ['demo'] }, req({ identity: null }), false],
    ['ipBlock', { sourceIps: ['198.19.1.0/24'] }, req(), true],
    ['notIpBlocks', { notSourceIps: ['198.19.1.2'] }, req(), false],
    ['header value', { requestHeaders: [{ name: 'x-team', values: ['blue'] }] }, req({ headers: { 'x-team': 'blue' } }), true],
    ['header value prefix*', { requestHeaders: [{ name: 'x-team', values: ['bl*'] }] }, req({ headers: { 'x-team': 'blue' } }), true],
    ['header absent', { requestHeaders: [{ name: 'x-team', values: ['*'] }] }, req(), false],
    ['repeated header: any value', { requestHeaders: [{ name: 'x-team', values: ['red'] }] }, req({ headers: { 'x-team': ['blue', 'red'] } }), true],
    ['notValues: matching value', { notRequestHeaders: [{ name: 'x-team', values: ['red'] }] }, req({ headers: { 'x-team': 'red' } }), false],
    ['notValues: absent header holds', { notRequestHeaders: [{ name: 'x-team', values: ['red'] }] }, req(), true],
    // The waypoint's header map has no host (HTTP/2 has none; HTTP/1's travels as the authority): request.headers[host] is the authority.
    ['header host is the authority', { requestHeaders: [{ name: 'host', values: ['echo.demo*'] }] }, req({ host: 'echo.demo:80' }), true],
    ['notValues on host', { notRequestHeaders: [{ name: 'host', values: ['echo.demo'] }] }, req(), false],
  ];
  for (const [name, m, r, expected] of cases) t.equal(allowed(r, policy('p', 'ALLOW', m)), expected, name);
  t.equal(allowed(req({ method: 'GET', path: '/x' }), policy('p', 'ALLOW', { methods: ['GET'] }, { paths: ['/admin'] })), false, 'clauses (from, to, when) are ANDed');
});

t.test("Istio's order: DENY before ALLOW; no ALLOW → allow; ALLOW unmatched → deny; AUDIT decides nothing", async (t) => {
  const denyAdmin = policy('deny-admin', 'DENY', { paths: ['/admin*'] });
  const allowGet = policy('allow-get', 'ALLOW', { methods: ['GET'] });
  const audit = policy('audit-all', 'AUDIT', { paths: ['*'] });
  let d = authorizeRequest(req({ path: '/admin' }), [allowGet, denyAdmin]);
  t.same([d.allowed, d.policy, d.action], [false, 'demo/deny-admin', 'DENY'], 'a DENY match wins over an ALLOW match, whatever the order');
  t.match(d.reason, /^DENY policy demo\/deny-admin matches GET echo\.demo\/admin from spiffe:\/\/cluster\.local\/ns\/demo\/sa\/client \(198\.19\.1\.2\) \(rule 1\)$/);
  d = authorizeRequest(req(), [denyAdmin]);
  t.same([d.allowed, d.policy], [true, undefined], 'only DENY policies: what they do not match is allowed');
  t.match(d.reason, /allowed by default/);
  d = authorizeRequest(req({ method: 'POST' }), [allowGet]);
  t.same([d.allowed, d.policy], [false, undefined], 'ALLOW policies deny what none of them matches');
  t.match(d.reason, /matches none of the ALLOW policies that apply \(demo\/allow-get\)/);
  d = authorizeRequest(req({ method: 'GET' }), [allowGet, audit]);
  t.same([d.allowed, d.policy, d.audited], [true, 'demo/allow-get', ['demo/audit-all']], 'AUDIT is reported beside the decision');
  d = authorizeRequest(req({ method: 'POST' }), [audit]);
  t.same([d.allowed, d.audited], [true, ['demo/audit-all']], 'an AUDIT policy alone is no ALLOW policy: allowed');
  t.same(authorizeRequest(req(), []).allowed, true, 'no policy: allowed');
});

t.test('paths are compared normalised: dot segments, repeated slashes and encoded letters cannot slip past a rule', async (t) => {
  const deny = policy('deny-admin', 'DENY', { paths: ['/admin', '/admin/*'] });
  for (const p of ['/admin', '//admin', '/./admin', '/public/../admin', '/%61dmin', '/%2e%2e/admin', '/admin/./x']) {
    t.equal(allowed(req({ path: p }), deny), false, `${p} is denied`);
  }
  t.equal(allowed(req({ path: '/administrator' }), deny), true, '/administrator is another path');
  t.equal(allowed(req({ method: 'post', path: '/admin' }), policy('deny-post', 'DENY', { methods: ['POST'] })), false, 'a DENY on POST catches `post`');
  // What a Node app (new URL) makes of them: /admin and /admin/x.
  for (const p of ['/admin#x', '/admin\\x', '/public/..\\admin', '/public\\..\\admin\\', '/admin#/../public']) {
    t.equal(allowed(req({ path: p }), deny), false, `${p} is denied (a fragment is cut, a backslash is a slash)`);
  }
  const allowPublic = policy('allow-public', 'ALLOW', { paths: ['/public/*'] });
  t.equal(allowed(req({ path: '/public/x#/../../admin' }), allowPublic), true, 'a fragment does not move the path');
  t.equal(allowed(req({ path: '/public\\..\\admin' }), allowPublic), false, 'backslash dot segments resolve before an ALLOW matches');
  t.equal(normalizePath('/a\\b#c/../d'), '/a/b');
  t.equal(normalizePath('/a//b/../c/'), '/a/c/');
  t.equal(normalizePath('/a/%2Fb'), '/a/%2Fb', 'an encoded slash stays encoded (not a segment boundary)');
  t.equal(normalizePath('/..'), '/');
  t.equal(normalizePath('/.well-known/x'), '/.well-known/x');
});

t.test('a stream that is not HTTP: ALLOW rules with HTTP conditions never match it, DENY rules drop them (deny more)', async (t) => {
  const tcp: L7AuthzRequest = { source: { identity: CLIENT, ip: '198.19.1.2' }, destination: { ip: '198.18.128.10', port: 9000 } };
  t.equal(authorizeRequest(tcp, [policy('allow-get', 'ALLOW', { methods: ['GET'] })]).allowed, false);
  t.equal(authorizeRequest(tcp, [policy('deny-post-other', 'DENY', { methods: ['POST'] }, { namespaces: ['other'] })]).allowed, true,
    'the DENY still needs its L4 conditions');
  const d = authorizeRequest(tcp, [policy('deny-post', 'DENY', { methods: ['POST'] }, { namespaces: ['demo'] })]);
  t.equal(d.allowed, false);
  t.match(d.reason, /a TCP stream to 198\.18\.128\.10:9000/);
  t.equal(authorizeRequest(tcp, [policy('allow-ns', 'ALLOW', { namespaces: ['demo'] })]).allowed, true, 'an L4-only ALLOW matches');
});

t.test("the denial: 403 'RBAC: access denied'; gRPC: trailers-only PERMISSION_DENIED (7)", async (t) => {
  t.same(deniedAnswer(false), { status: 403, headers: { 'content-type': 'text/plain' }, body: RBAC_DENIED });
  t.equal(RBAC_DENIED, 'RBAC: access denied');
  t.same(deniedAnswer(true), { status: 200, headers: { 'content-type': 'application/grpc', 'grpc-status': '7', 'grpc-message': 'RBAC: access denied' }, body: '' });
});

function facts(over: Partial<RequestFacts> = {}): RequestFacts {
  return {
    method: 'GET', authority: 'echo.demo', path: '/', query: '', headers: {}, protocol: 'http1',
    source: { address: '198.19.1.2', port: 40000, identity: CLIENT },
    destination: { address: '198.18.128.10', port: 80, service: { namespace: 'demo', name: 'echo' } },
    ...over,
  };
}

t.test('WaypointAuthorizer: the policies bound to the Service or to this waypoint apply; the ztunnel keeps its own', async (t) => {
  const state = new MeshState({ trustDomain: 'cluster.local' });
  const bound = (name: string, action: AuthorizationPolicyRecord['action'], kind: 'Service' | 'Gateway', target: string, m: PolicyMatch, ns = 'demo') =>
    validateRecord('policy', fixturePolicy({ namespace: ns, name, action, targetRefs: [{ kind, name: target }], rules: [{ clauses: [{ matches: [m] }] }] }), { unknownKeys: 'reject' });
  state.replaceAll({
    service: [serviceRecord({ namespace: 'demo', name: 'echo' }), serviceRecord({ namespace: 'demo', name: 'other' })],
    workload: [workloadRecord({ uid: 'demo/echo-1', namespace: 'demo', name: 'echo-1', node: 'node-1', labels: { app: 'echo' } })],
    policy: [
      bound('deny-admin', 'DENY', 'Service', 'echo', { paths: ['/admin*'] }),
      bound('deny-delete', 'DENY', 'Gateway', 'waypoint', { methods: ['DELETE'] }),
      bound('deny-elsewhere', 'DENY', 'Gateway', 'another-waypoint', { paths: ['*'] }),
      bound('deny-all-other-ns', 'DENY', 'Service', 'echo', { paths: ['*'] }, 'other'),
      fixturePolicy({ namespace: 'demo', name: 'l4-allow', action: 'ALLOW', rules: [{ clauses: [{ matches: [{ namespaces: ['demo'] }] }] }] }),
    ],
  }, 1);
  const log = new LogLines();
  const registry = new Registry();
  const clock = new ManualClock();
  const authz = new WaypointAuthorizer({ state, waypoint: { namespace: 'demo', name: 'waypoint' }, logger: pino({ level: 'debug' }, log), registry, clock });
  t.same(authz.policiesFor('echo').map((p) => p.name), ['deny-delete', 'deny-admin'], 'the Gateway-bound one, then the Service-bound one');
  t.same(authz.policiesFor('other').map((p) => p.name), ['deny-delete'], 'another Service: only the waypoint-wide one');
  t.same(authz.policiesFor(undefined).map((p) => p.name), ['deny-delete'], 'a pod addressed directly: the waypoint-wide one');
  t.same(state.policiesFor(state.workload('demo/echo-1')!).map((p) => p.name), ['l4-allow'], 'the ztunnel sees only the L4 policy');

  t.equal(authz.check(facts(), false), undefined, 'GET / passes');
  const denied = authz.check(facts({ path: '/admin/users' }), false);
  t.match(denied, { kind: 'respond', status: 403, body: 'RBAC: access denied', responseFlag: '-' });
  t.match(authz.check(facts({ method: 'POST', path: '/admin', headers: { 'content-type': 'application/grpc' } }), true), { status: 200, headers: { 'grpc-status': '7' } });
  t.match(authz.check(facts({ method: 'DELETE', destination: { address: '198.18.128.11', port: 80, service: { namespace: 'demo', name: 'other' } } }), false), { status: 403 });
  const lines = log.lines.filter((l) => l.msg === 'L7 authorization denied the request (403 RBAC: access denied)');
  t.equal(lines.length, 3);
  t.match(lines[0], { level: 40, policy: 'demo/deny-admin', method: 'GET', path: '/admin/users', source_identity: CLIENT, reason: /DENY policy demo\/deny-admin/ });
  const metrics = await registry.getMetricsAsJSON();
  const counter = metrics.find((m) => m.name === 'weft_waypoint_authz_decisions_total')!;
  const deny = (counter.values as { labels: Record<string, string>; value: number }[]).filter((v) => v.labels.decision === 'deny');
  t.same(deny.map((v) => [v.labels.destination_service_name, v.labels.policy, v.value]).sort(),
    [['echo', 'demo/deny-admin', 2], ['other', 'demo/deny-delete', 1]]);

  // Refusals are rate-limited per policy: a client cannot flood the log by being refused.
  for (let i = 0; i < 50; i++) authz.check(facts({ path: '/admin' }), false);
  t.equal(log.lines.filter((l) => l.policy === 'demo/deny-admin').length, 5, 'five lines per interval (the limiter burst)');
  clock.advance(10_000);
  authz.check(facts({ path: '/admin' }), false);
  t.match(log.lines.at(-1), { policy: 'demo/deny-admin', suppressed: 47 }, 'the next line says how many were left out');

  // A new revision is picked up on the next request.
  state.applyChanges([{ op: 'delete', kind: 'policy', key: 'demo/deny-admin' }], 2);
  t.equal(authz.check(facts({ path: '/admin' }), false), undefined, 'the deleted policy no longer applies');
});

t.test('AUDIT: logged and counted, the request goes on', async (t) => {
  const state = new MeshState({ trustDomain: 'cluster.local' });
  state.replaceAll({
    policy: [validateRecord('policy', fixturePolicy({
      namespace: 'demo', name: 'audit-admin', action: 'AUDIT', targetRefs: [{ kind: 'Service', name: 'echo' }],
      rules: [{ clauses: [{ matches: [{ paths: ['/admin*'] }] }] }],
    }), { unknownKeys: 'reject' })],
  }, 1);
  const log = new LogLines();
  const authz = new WaypointAuthorizer({ state, waypoint: { namespace: 'demo', name: 'waypoint' }, logger: pino({ level: 'debug' }, log) });
  t.equal(authz.check(facts({ path: '/admin' }), false), undefined);
  t.match(log.lines, [{ msg: 'L7 authorization: AUDIT policy matched', policy: 'demo/audit-admin', path: '/admin' }]);
  t.equal(authz.check(facts({ path: '/public' }), false), undefined);
  t.equal(log.lines.length, 1, 'not matched: not logged');
});
