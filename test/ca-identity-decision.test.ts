/**
 * The pure decisions behind single-identity callers (waypoints): reading a CSR's names
 * (ECDSA and RSA from our code, ECDSA from openssl), what may be issued for a granted identity,
 * and the TokenReview/pod steps of the cluster path. No network, no clock.
 */
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { generateKeyAndCsr } from '../src/ca/issuer';
import { csrSubjectAltNames } from '../src/ca/csr-names';
import { authorizeOwnIdentity, type GrantedIdentity } from '../src/ca/identity-grant';
import { GATEWAY_NAME_LABEL, reviewedWaypointToken, waypointKnown, waypointPodMay, type WaypointClaim } from '../src/ca/waypoint-sa';

const TD = 'cluster.local';
const ID = `spiffe://${TD}/ns/demo/sa/waypoint`;
const GRANT: GrantedIdentity = { namespace: 'demo', serviceAccount: 'waypoint', via: 'identityToken' };
const NODE_SA = { namespace: 'weft-system', serviceAccount: 'weft-ztunnel' };

function opensslCsr(san: string): string {
  return execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null',
    '-subj', '/CN=x', '-addext', `subjectAltName=${san}`, '-sha256'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
}

t.test('CSR names: ours and openssl\'s, every SAN kind', async (t) => {
  t.same(csrSubjectAltNames((await generateKeyAndCsr({ uri: ID })).csrPem), { uris: [ID], others: [] }, 'our ECDSA CSR with a URI');
  t.same(csrSubjectAltNames((await generateKeyAndCsr({ uri: ID, keyType: 'rsa' })).csrPem), { uris: [ID], others: [] }, 'our RSA CSR with a URI');
  t.same(csrSubjectAltNames((await generateKeyAndCsr()).csrPem), { uris: [], others: [] }, 'our node CSR names nothing');
  t.same(csrSubjectAltNames(opensslCsr(`URI:${ID},DNS:a.example,IP:10.0.0.1,email:a@b.c,URI:spiffe://x/y`)), {
    uris: [ID, 'spiffe://x/y'], others: ['DNS:a.example', 'IP:0a000001', 'email:a@b.c'],
  }, 'an ECDSA CSR from openssl, in order');
  t.throws(() => csrSubjectAltNames('garbage'), { code: 'WEFT_CA_CSR_INVALID' });
});

t.test('what a granted identity may get', async (t) => {
  const names = (uris: string[], others: string[] = []) => ({ uris, others });
  t.equal(authorizeOwnIdentity(GRANT, names([ID]), undefined, TD), ID, 'its own identity');
  t.equal(authorizeOwnIdentity(GRANT, names([ID]), ID, TD), ID, 'ImpersonatedIdentity naming itself is harmless');
  const refused: [string, () => unknown, string, RegExp][] = [
    ['another SA', () => authorizeOwnIdentity(GRANT, names([`spiffe://${TD}/ns/demo/sa/x`]), undefined, TD), 'identity', /credential is for/],
    ['another trust domain', () => authorizeOwnIdentity(GRANT, names(['spiffe://other/ns/demo/sa/waypoint']), undefined, TD), 'identity', /credential is for/],
    ['a DNS SAN', () => authorizeOwnIdentity(GRANT, names([ID], ['DNS:x']), undefined, TD), 'csr_names', /also asks for DNS:x/],
    ['two URIs', () => authorizeOwnIdentity(GRANT, names([ID, ID]), undefined, TD), 'csr_names', /2 URI names/],
    ['impersonating', () => authorizeOwnIdentity(GRANT, names([ID]), `spiffe://${TD}/ns/demo/sa/x`, TD), 'identity', /cannot act for others/],
    ['a system identity', () => authorizeOwnIdentity({ ...GRANT, namespace: 'weft-system', serviceAccount: 'ztunnel' },
      names([`spiffe://${TD}/ns/weft-system/sa/ztunnel`]), undefined, TD), 'system_identity', /system namespace/],
  ];
  for (const [name, fn, reason, says] of refused) {
    t.throws(fn, { code: 'WEFT_CA_IDENTITY_DENIED', details: { reason }, message: says }, name);
  }
});

t.test('the cluster path\'s steps', async (t) => {
  const bound = { 'authentication.kubernetes.io/pod-name': ['wp-1'], 'authentication.kubernetes.io/pod-uid': ['u1'] };
  const ok = reviewedWaypointToken({ authenticated: true, audiences: ['weft-ca'], user: { username: 'system:serviceaccount:demo:waypoint', extra: bound } }, 'weft-ca', NODE_SA);
  t.same(ok, { ok: true, value: { namespace: 'demo', serviceAccount: 'waypoint', pod: 'wp-1', uid: 'u1' } });
  const reason = (d: { ok: boolean; reason?: string }) => (d.ok ? 'ok' : d.reason);
  t.equal(reason(reviewedWaypointToken({ authenticated: false, error: 'expired' }, 'weft-ca', NODE_SA)), 'unauthenticated');
  t.equal(reason(reviewedWaypointToken({ authenticated: true, audiences: ['api'], user: { username: 'system:serviceaccount:demo:waypoint', extra: bound } }, 'weft-ca', NODE_SA)), 'audience');
  t.equal(reason(reviewedWaypointToken({ authenticated: true, audiences: ['weft-ca'], user: { username: 'alice', extra: bound } }, 'weft-ca', NODE_SA)), 'unauthenticated', 'a user, not a ServiceAccount');
  t.equal(reason(reviewedWaypointToken({ authenticated: true, audiences: ['weft-ca'], user: { username: 'system:serviceaccount:weft-system:weft-ztunnel', extra: bound } }, 'weft-ca', NODE_SA)), 'node_credential');
  t.equal(reason(reviewedWaypointToken({ authenticated: true, audiences: ['weft-ca'], user: { username: 'system:serviceaccount:demo:waypoint' } }, 'weft-ca', NODE_SA)), 'not_pod_bound');

  const claim: WaypointClaim = { namespace: 'demo', serviceAccount: 'waypoint', pod: 'wp-1', uid: 'u1' };
  const pod = (p: { uid?: string; sa?: string; label?: string | null; deleting?: boolean } = {}) => ({
    metadata: {
      uid: p.uid ?? 'u1', ...(p.deleting ? { deletionTimestamp: '2026-01-01T00:00:00Z' } : {}),
      labels: (p.label === null ? {} : { [GATEWAY_NAME_LABEL]: p.label ?? 'waypoint' }) as Record<string, string>,
    },
    spec: { serviceAccountName: p.sa ?? 'waypoint' },
  });
  t.same(waypointPodMay(pod(), claim), { ok: true, value: 'waypoint' });
  t.equal(reason(waypointPodMay(undefined, claim)), 'pod_missing');
  t.equal(reason(waypointPodMay(pod({ uid: 'u2' }), claim)), 'pod_uid');
  t.equal(reason(waypointPodMay(pod({ deleting: true }), claim)), 'pod_deleted');
  t.equal(reason(waypointPodMay(pod({ sa: 'other' }), claim)), 'pod_service_account');
  t.equal(reason(waypointPodMay(pod({ label: null }), claim)), 'not_waypoint');
  const lookup = { waypoint: (ns: string, name: string) => (ns === 'demo' && name === 'waypoint' ? { serviceAccount: 'waypoint' } : ns === 'demo' && name === 'x' ? { serviceAccount: 'x' } : undefined) };
  t.equal(reason(waypointKnown(lookup, claim, 'waypoint')), 'ok');
  t.equal(reason(waypointKnown(lookup, claim, 'nope')), 'waypoint_missing');
  t.equal(reason(waypointKnown(lookup, claim, 'x')), 'waypoint_service_account');
});
