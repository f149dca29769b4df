/** Node authentication and authorization decisions (pure; the gRPC tests cover the wiring). */
import t from 'tap';
import { X509Certificate } from 'node:crypto';
import {
  authenticateNode, authorizeRequest, caIdentity, isValidNodeName, nodeIdentity, peerFacts, peerFactsFromTls, type NodeAuthorizer,
} from '../src/ca/authorize';
import { generateKeyAndCsr, generateRootCa, Issuer } from '../src/ca/issuer';
import { MeshState } from '../src/registry/state';
import { ambientNamespace, workloadRecord } from '../src/registry/fixtures';

const TD = 'cluster.local';
const NODE = nodeIdentity(TD);

t.test('system identities', async (t) => {
  t.equal(NODE, 'spiffe://cluster.local/ns/weft-system/sa/ztunnel');
  t.equal(caIdentity('example.org'), 'spiffe://example.org/ns/weft-system/sa/weft-ca');
  for (const ok of ['node-1', 'ip-10-0-0-1.ec2.internal', 'a']) t.ok(isValidNodeName(ok), ok);
  for (const bad of ['', 'Node-1', '-x', 'x-', 'a_b', 'a/b', 'x'.repeat(254)]) t.notOk(isValidNodeName(bad), JSON.stringify(bad));
});

t.test('peerFacts reads URI SANs and the CN from a certificate', async (t) => {
  const issuer = new Issuer(await generateRootCa({ trustDomain: TD }), { trustDomain: TD });
  const { csrPem } = await generateKeyAndCsr();
  const chain = issuer.signCsr(csrPem, { identity: NODE, ttlMs: 60e3, commonName: 'node-7', dnsNames: ['x.example'], ipAddresses: ['198.51.100.1'] });
  t.same(peerFacts(new X509Certificate(chain[0]!).raw), { uris: [NODE], commonName: 'node-7' });
  const noCn = issuer.signCsr(csrPem, { identity: NODE, ttlMs: 60e3 });
  t.same(peerFacts(new X509Certificate(noCn[0]!).raw), { uris: [NODE] });
  // The TLS layer's parsed view gives the same facts.
  t.same(peerFactsFromTls({ subjectaltname: `URI:${NODE}, DNS:x.example, IP Address:198.51.100.1`, subject: { CN: 'node-7' } }),
    { uris: [NODE], commonName: 'node-7' });
  t.same(peerFactsFromTls({ subjectaltname: `URI:${NODE}`, subject: { CN: ['a', 'b'] } }), { uris: [NODE] }, 'two CNs name no node');
  t.same(peerFactsFromTls({}), { uris: [] });
});

t.test('authenticateNode: exactly the node identity plus a node name', async (t) => {
  t.equal(authenticateNode({ uris: [NODE], commonName: 'node-1' }, TD), 'node-1');
  const refused: Array<[string, Parameters<typeof authenticateNode>[0]]> = [
    ['no certificate', undefined],
    ['workload identity', { uris: [`spiffe://${TD}/ns/demo/sa/a`], commonName: 'node-1' }],
    ['other trust domain', { uris: ['spiffe://other/ns/weft-system/sa/ztunnel'], commonName: 'node-1' }],
    ['two URIs', { uris: [NODE, `spiffe://${TD}/ns/demo/sa/a`], commonName: 'node-1' }],
    ['no CN', { uris: [NODE] }],
    ['bad CN', { uris: [NODE], commonName: 'Node One' }],
  ];
  for (const [name, peer] of refused) t.throws(() => authenticateNode(peer, TD), { code: 'WEFT_CA_UNAUTHENTICATED' }, name);
});

t.test('authorizeRequest: own node renewal, or a workload identity present on the node', async (t) => {
  const state = new MeshState({ trustDomain: TD });
  state.replaceAll({
    node: [], namespace: [ambientNamespace('demo')],
    workload: [workloadRecord({ namespace: 'demo', name: 'a', node: 'node-1', serviceAccount: 'a' })],
    service: [], policy: [], peerauth: [],
  }, 1);
  t.same(authorizeRequest('node-1', undefined, TD, state), { identity: NODE, node: 'node-1' });
  t.same(authorizeRequest('node-1', `spiffe://${TD}/ns/demo/sa/a`, TD, state), { identity: `spiffe://${TD}/ns/demo/sa/a` });
  const denied = [
    ['node-2', `spiffe://${TD}/ns/demo/sa/a`, /no workload.*on node node-2/],
    ['node-1', `spiffe://${TD}/ns/demo/sa/b`, /service account b/],
    ['node-1', `spiffe://${TD}/ns/other/sa/a`, /namespace other/],
    ['node-1', 'spiffe://evil.org/ns/demo/sa/a', /outside this mesh's trust domain/],
    ['node-1', 'not-a-uri', /not spiffe:/],
    ['node-1', NODE, /system identity/],
    ['node-1', caIdentity(TD), /system identity/],
  ] as const;
  for (const [node, id, msg] of denied) {
    t.throws(() => authorizeRequest(node, id, TD, state), { code: 'WEFT_CA_PERMISSION_DENIED', message: msg }, `${node} ${id}`);
  }
  // The decision follows the registry live: a workload moving away revokes the right.
  state.applyChanges([{ op: 'delete', kind: 'workload', key: 'demo/a' }], 2);
  t.throws(() => authorizeRequest('node-1', `spiffe://${TD}/ns/demo/sa/a`, TD, state), { code: 'WEFT_CA_PERMISSION_DENIED' });
  const yes: NodeAuthorizer = { hasIdentityOnNode: () => true };
  t.ok(authorizeRequest('node-9', `spiffe://${TD}/ns/x/sa/y`, TD, yes));
});
