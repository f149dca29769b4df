// What the HBONE server believes of a peer's CONNECT: the target, and the `forwarded`
// client address only when it is an address of the peer's own identity.
import t from 'tap';
import { MeshState } from '../src/registry/state';
import { clientAddress, connectTarget, MAX_AUTHORITY_LENGTH } from '../src/hbone/request';
import { ambientNamespace, nodeRecord, workloadRecord } from '../src/ztunnel/testing/records';

const CLIENT = 'spiffe://cluster.local/ns/demo/sa/client';
const state = new MeshState({ trustDomain: 'cluster.local' });
state.replaceAll({
  node: [nodeRecord('node-a', '10.0.0.1')],
  namespace: [ambientNamespace('demo')],
  workload: [
    workloadRecord({ name: 'client', namespace: 'demo', node: 'node-a', ip: '10.1.0.1' }),
    workloadRecord({ name: 'db', namespace: 'demo', node: 'node-a', ip: '10.1.0.2', sa: 'db' }),
  ],
  service: [], policy: [], peerauth: [],
}, 1);
const peer = { ip: '10.0.0.1', port: 40000 };
const ownWorkload = state.workloadByAddress('10.1.0.1');

t.test('forwarded is believed only for an address of the peer\'s identity', async (t) => {
  t.same(clientAddress(state, 'for="10.1.0.1:5555"', CLIENT, peer), { ip: '10.1.0.1', port: 5555, workload: ownWorkload }, 'own workload (and the workload, so the caller does not look it up again)');
  t.same(clientAddress(state, 'for="10.1.0.2:5555"', CLIENT, peer), { ...peer, ignored: 'other_identity' }, 'another identity\'s workload');
  t.same(clientAddress(state, 'for="10.9.9.9:5555"', CLIENT, peer), { ...peer, ignored: 'unknown_workload' }, 'not a workload');
  t.same(clientAddress(state, 'for=nonsense', CLIENT, peer), { ...peer, ignored: 'malformed' }, 'not an address');
  t.same(clientAddress(state, `for="10.1.0.1:1"${' '.repeat(300)}`, CLIENT, peer), { ...peer, ignored: 'malformed' }, 'oversized header is not parsed');
  t.same(clientAddress(state, undefined, CLIENT, peer), peer, 'no header: the peer address, nothing ignored');
  t.same(clientAddress(state, ['for="10.1.0.1:7"', 'for="10.1.0.2:7"'], CLIENT, peer), { ip: '10.1.0.1', port: 7, workload: ownWorkload }, 'first header counts');
  t.equal(ownWorkload?.identity, CLIENT);
});

t.test('CONNECT target: method, authority form and size', async (t) => {
  t.same(connectTarget({ ':method': 'CONNECT', ':authority': '10.1.0.1:80' }), { ok: true, target: { ip: '10.1.0.1', port: 80 } });
  t.match(connectTarget({ ':method': 'GET', ':authority': '10.1.0.1:80' }), { ok: false, status: 400, reason: /not CONNECT/ });
  t.match(connectTarget({ ':method': 'CONNECT', ':authority': 'echo:80' }), { ok: false, status: 400, reason: /not <ip>:<port>/ });
  const huge = connectTarget({ ':method': 'CONNECT', ':authority': `${'a'.repeat(65536)}:80` });
  t.match(huge, { ok: false, status: 400, reason: /65539 characters long/ });
  t.ok(!huge.ok && huge.reason.length < 200, 'the refusal does not carry the authority itself');
  t.ok(connectTarget({ ':method': 'CONNECT', ':authority': `[${'f'.repeat(4)}:${'0:'.repeat(6)}1]:65535` }).ok, 'a long IPv6 authority fits');
  t.equal(MAX_AUTHORITY_LENGTH, 64);
});
