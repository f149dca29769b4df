/**
 * The ServiceAccount-token join decision as pure functions over TokenReview and Pod
 * answers, the wire codes each refusal becomes, and the flags that switch it on.
 */
import t from 'tap';
import {
  NODE_NAME_EXTRA, POD_NAME_EXTRA, POD_UID_EXTRA, SA_JOIN_REFUSALS,
  TokenReviewJoin, podMayJoin, refusalError, reviewedPod, type PodFacts, type SaJoinPolicy, type TokenReviewStatus,
} from '../src/ca/sa-token-join';
import type { KubeClient } from '../src/k8s/client';
import { ManualClock } from './helpers/clock';
import { caConfig, caSpecs } from '../src/ca/command';
import { loadZtunnelConfig } from '../src/ztunnel/config';
import { parseOptions } from '../src/lib/options';
import { isWeftError } from '../src/lib/errors';

const POLICY: SaJoinPolicy = { audience: 'weft-ca', namespace: 'weft-system', serviceAccount: 'weft-ztunnel' };
const good = (): TokenReviewStatus => ({
  authenticated: true, audiences: ['weft-ca'],
  user: {
    username: 'system:serviceaccount:weft-system:weft-ztunnel', uid: 'sa-uid', groups: ['system:serviceaccounts'],
    extra: { [POD_NAME_EXTRA]: ['weft-ztunnel-x1'], [POD_UID_EXTRA]: ['pod-uid-1'] },
  },
});
const pod = (over: { uid?: string; node?: string; deleting?: string } = {}): PodFacts => ({
  metadata: { name: 'weft-ztunnel-x1', namespace: 'weft-system', uid: over.uid ?? 'pod-uid-1', ...(over.deleting ? { deletionTimestamp: over.deleting } : {}) },
  spec: { nodeName: over.node ?? 'node-1', serviceAccountName: 'weft-ztunnel' },
});

t.test('reviewedPod: an authenticated, pod-bound token of the join SA for our audience passes', async (t) => {
  t.same(reviewedPod(good(), POLICY, 'node-1'), { ok: true, value: { name: 'weft-ztunnel-x1', uid: 'pod-uid-1' } });
  const withNode = good();
  withNode.user!.extra![NODE_NAME_EXTRA] = ['node-1'];
  t.same(reviewedPod(withNode, POLICY, 'node-1'), { ok: true, value: { name: 'weft-ztunnel-x1', uid: 'pod-uid-1', node: 'node-1' } });
  t.ok(reviewedPod({ ...good(), audiences: ['other', 'weft-ca'] }, POLICY, 'node-1').ok, 'our audience among others');
});

t.test('reviewedPod: every other answer is refused with its reason', async (t) => {
  const cases: Array<[string, TokenReviewStatus | undefined, string, RegExp]> = [
    ['no status at all', undefined, 'unauthenticated', /no reason given/],
    ['not authenticated', { authenticated: false, error: '[invalid bearer token, token expired]' }, 'unauthenticated', /token expired/],
    ['other audience (API server error)', { authenticated: false, error: 'token audiences ["api"] is invalid for the target audiences ["weft-ca"]' }, 'audience', /audience: weft-ca/],
    ['audiences not confirmed', { ...good(), audiences: undefined }, 'audience', /did not confirm audience weft-ca/],
    ['other audiences confirmed', { ...good(), audiences: ['api'] }, 'audience', /confirmed \["api"\]/],
    ['another ServiceAccount', { ...good(), user: { ...good().user, username: 'system:serviceaccount:weft-system:default' } }, 'service_account', /not to system:serviceaccount:weft-system:weft-ztunnel/],
    ['same name, other namespace', { ...good(), user: { ...good().user, username: 'system:serviceaccount:evil:weft-ztunnel' } }, 'service_account', /--join-sa/],
    ['a user, not a ServiceAccount', { ...good(), user: { username: 'admin' } }, 'service_account', /"admin"/],
    ['no pod extra', { ...good(), user: { ...good().user, extra: {} } }, 'not_pod_bound', /projected serviceAccountToken/],
    ['pod name without uid', { ...good(), user: { ...good().user, extra: { [POD_NAME_EXTRA]: ['p'] } } }, 'not_pod_bound', /not bound to a pod/],
    ['two pod names', { ...good(), user: { ...good().user, extra: { [POD_NAME_EXTRA]: ['p', 'q'], [POD_UID_EXTRA]: ['u'] } } }, 'not_pod_bound', /not bound/],
    ['node claim of another node', { ...good(), user: { ...good().user, extra: { ...good().user!.extra, [NODE_NAME_EXTRA]: ['node-2'] } } }, 'node_claim', /on node node-2, not on node-1/],
    ['empty node claim', { ...good(), user: { ...good().user, extra: { ...good().user!.extra, [NODE_NAME_EXTRA]: [] } } }, 'node_claim', /not a single node name/],
  ];
  for (const [name, status, reason, says] of cases) {
    const d = reviewedPod(status, POLICY, 'node-1');
    t.equal(d.ok, false, `${name}: refused`);
    if (!d.ok) {
      t.equal(d.reason, reason, `${name}: ${reason}`);
      t.match(d.why, says, `${name}: says why`);
      t.ok(SA_JOIN_REFUSALS.includes(d.reason), `${name}: a known metric label`);
    }
  }
});

t.test('podMayJoin: the bound pod, same uid, alive, on the node', async (t) => {
  const claim = { name: 'weft-ztunnel-x1', uid: 'pod-uid-1' };
  t.same(podMayJoin(pod(), claim, POLICY, 'node-1'), { ok: true, value: claim });
  const cases: Array<[string, PodFacts | undefined, string, RegExp]> = [
    ['missing', undefined, 'pod_missing', /weft-system\/weft-ztunnel-x1, to which the token is bound, does not exist/],
    ['re-created', pod({ uid: 'pod-uid-2' }), 'pod_uid', /now has uid pod-uid-2.*uid pod-uid-1/],
    ['terminating', pod({ deleting: '2026-01-01T00:00:00Z' }), 'pod_deleted', /being deleted/],
    ['other node', pod({ node: 'node-2' }), 'pod_node', /scheduled on node node-2, not on node-1/],
    ['not scheduled', { ...pod(), spec: {} }, 'pod_node', /scheduled on no node yet/],
  ];
  for (const [name, p, reason, says] of cases) {
    const d = podMayJoin(p, claim, POLICY, 'node-1');
    t.equal(d.ok, false, `${name}: refused`);
    if (!d.ok) {
      t.equal(d.reason, reason, `${name}: ${reason}`);
      t.match(d.why, says, `${name}: says why`);
    }
  }
});

t.test('refusalError: codes by kind, reason kept for the metric', async (t) => {
  const want: Record<string, string> = {
    disabled: 'WEFT_CA_SA_JOIN_DISABLED', unauthenticated: 'WEFT_CA_SA_TOKEN_INVALID', audience: 'WEFT_CA_SA_TOKEN_INVALID',
    not_pod_bound: 'WEFT_CA_SA_TOKEN_INVALID', service_account: 'WEFT_CA_SA_TOKEN_DENIED', node_claim: 'WEFT_CA_SA_TOKEN_DENIED',
    pod_missing: 'WEFT_CA_SA_TOKEN_DENIED', pod_deleted: 'WEFT_CA_SA_TOKEN_DENIED', pod_uid: 'WEFT_CA_SA_TOKEN_DENIED',
    pod_node: 'WEFT_CA_SA_TOKEN_DENIED', api_error: 'WEFT_CA_SA_TOKEN_DENIED',
    node_missing: 'WEFT_CA_SA_TOKEN_DENIED', node_deleted: 'WEFT_CA_SA_TOKEN_DENIED', missing: 'WEFT_CA_SA_TOKEN_INVALID',
  };
  for (const reason of SA_JOIN_REFUSALS) {
    const err = refusalError(reason, 'because', 'node-1');
    t.ok(isWeftError(err));
    if (reason !== 'api_error') t.equal(err.code, want[reason], reason);
    t.equal(err.details?.reason, reason);
    t.equal(err.message, 'ServiceAccount token join as node "node-1" refused: because');
  }
});

/** An API stand-in whose TokenReviews the test answers by hand; the pod and node exist. */
function heldReviews(): { kube: Pick<KubeClient, 'create' | 'get'>; answer(i: number, status: TokenReviewStatus): void; readonly count: number } {
  const held: Array<(status: TokenReviewStatus) => void> = [];
  const kube = {
    create: <T>() => new Promise<T>((resolve) => held.push((status) => resolve({ status } as T))),
    get: async <T>(path: string) => (path.includes('/pods/') ? pod() : { metadata: { name: 'node-1' } }) as T,
  } as unknown as Pick<KubeClient, 'create' | 'get'>;
  return { kube, answer: (i, status) => held[i]!(status), get count() { return held.length; } };
}

t.test('TokenReviewJoin: concurrent checks share one review, each refusal names its own call, a refused Join drops the cached answer', async (t) => {
  const api = heldReviews();
  const join = new TokenReviewJoin({ kube: api.kube, policy: POLICY, clock: new ManualClock(1_000_000) });
  const csr = () => join.verify('node-1', 'tok', { cached: true, what: 'CreateCertificate' });
  const joined = join.verify('node-1', 'tok');
  const csrs = [csr(), csr(), csr()];
  t.equal(api.count, 1, 'a Join and three CSR re-checks under way: one TokenReview');
  api.answer(0, good());
  const want = { namespace: 'weft-system', pod: 'weft-ztunnel-x1', uid: 'pod-uid-1' };
  t.same(await joined, want);
  t.same(await Promise.all(csrs), [want, want, want]);
  t.same(await csr(), want);
  t.equal(api.count, 1, 'and the answer stands for the next CSR');

  // A Join always asks; refused, its answer reaches the CSR sharing it, each worded for its call.
  const rejoin = join.verify('node-1', 'tok');
  const during = csr();
  t.equal(api.count, 2, 'a Join does not take the cached answer');
  api.answer(1, { authenticated: false, error: 'token expired' });
  await t.rejects(rejoin, { code: 'WEFT_CA_SA_TOKEN_INVALID', message: /^ServiceAccount token join as node "node-1" refused: .*token expired/ });
  await t.rejects(during, { code: 'WEFT_CA_SA_TOKEN_INVALID', message: /^CreateCertificate as node "node-1" refused: .*token expired/ });
  const after = csr();
  t.equal(api.count, 3, 'the earlier positive answer is not served after a refused Join');
  api.answer(2, { authenticated: false, error: 'token expired' });
  await t.rejects(after, { code: 'WEFT_CA_SA_TOKEN_INVALID' });
});

t.test('weft ca flags: --kube-token-review and its settings', async (t) => {
  const cfg = (argv: string[]) => caConfig(parseOptions(caSpecs, ['--root-dir=/r', ...argv], {}).values);
  t.equal(cfg([]).tokenReview, undefined, 'off by default');
  t.same(cfg(['--kube-token-review']).tokenReview, {
    kubeconfig: '', policy: { audience: 'weft-ca', namespace: 'weft-system', serviceAccount: 'weft-ztunnel' },
  }, 'in-cluster, weft-system/weft-ztunnel, audience weft-ca');
  t.same(cfg(['--kube-token-review', '--kubeconfig=/k', '--join-sa=mesh/ztunnel', '--join-audience=mesh-ca']).tokenReview, {
    kubeconfig: '/k', policy: { audience: 'mesh-ca', namespace: 'mesh', serviceAccount: 'ztunnel' },
  });
  t.same(caConfig(parseOptions(caSpecs, [], { WEFT_CA_KUBE_TOKEN_REVIEW: 'true', WEFT_CA_JOIN_SA: 'a/b', WEFT_CA_ROOT_DIR: '/r' }).values).tokenReview?.policy.namespace, 'a', 'from the environment');
  for (const bad of ['weft-ztunnel', 'a/b/c', '/b', 'A/b', 'a/']) {
    t.throws(() => cfg(['--kube-token-review', `--join-sa=${bad}`]), { code: 'WEFT_CONFIG_INVALID', message: /--join-sa=.*<namespace>\/<service account>/ }, `--join-sa=${bad}`);
  }
  t.throws(() => cfg(['--kube-token-review', '--join-audience=two words']), { code: 'WEFT_CONFIG_INVALID', message: /--join-audience/ });
  t.throws(() => cfg(['--kubeconfig=/k']), { code: 'WEFT_CONFIG_INVALID', message: /--kubeconfig without --kube-token-review/ });
});

t.test('weft ztunnel: --join-sa-token-file / WEFT_JOIN_SA_TOKEN_FILE', async (t) => {
  const base = { WEFT_NODE_NAME: 'node-1', WEFT_NODE_ADDRESS: '203.0.113.7', WEFT_TRUST_ANCHOR_FILE: '/etc/weft/trust-anchors/root-cert.pem' };
  t.equal(loadZtunnelConfig([], base).joinSaTokenFile, '', 'off by default');
  t.equal(loadZtunnelConfig(['--join-sa-token-file=/var/run/secrets/weft/ca-token/token'], base).joinSaTokenFile, '/var/run/secrets/weft/ca-token/token');
  t.equal(loadZtunnelConfig([], { ...base, WEFT_JOIN_SA_TOKEN_FILE: '/t' }).joinSaTokenFile, '/t');
});

t.test('weft ztunnel: the trust anchor comes from a file, which is required (no Redis fallback)', async (t) => {
  const base = { WEFT_NODE_NAME: 'node-1', WEFT_NODE_ADDRESS: '203.0.113.7' };
  t.throws(() => loadZtunnelConfig([], base), { code: 'WEFT_CONFIG_INVALID', message: /--trust-anchor-file.*WEFT_TRUST_ANCHOR_FILE/ });
  t.equal(loadZtunnelConfig(['--trust-anchor-file=/a.pem'], base).trustAnchorFile, '/a.pem');
  t.equal(loadZtunnelConfig([], { ...base, WEFT_TRUST_ANCHOR_FILE: '/b.pem' }).trustAnchorFile, '/b.pem');
});
