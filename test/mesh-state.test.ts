import t from 'tap';
import { MeshState, type RegistrySnapshot } from '../src/registry/state';
import {
  ambientNamespace, namespaceRecord, nodeRecord, peerAuthRecord, policyRecord, serviceRecord, workloadRecord,
} from '../src/registry/fixtures';
import type { Change, Kind, RecordsByKind } from '../src/registry/types';
import { KINDS, recordKey } from '../src/registry/types';

function put<K extends Kind>(kind: K, record: RecordsByKind[K]): Change {
  return { op: 'put', kind, key: recordKey(kind, record), record } as Change;
}
const del = (kind: Kind, key: string): Change => ({ op: 'delete', kind, key });

function emptySnapshot(): RegistrySnapshot {
  return { node: [], namespace: [], workload: [], service: [], policy: [], peerauth: [], waypoint: [], httproute: [], grpcroute: [], trafficpolicy: [] };
}

const uids = (vs: { record: { uid: string } }[]) => vs.map((v) => v.record.uid).sort();

t.test('workload indexes follow puts and deletes', async (t) => {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const a = workloadRecord({ namespace: 'demo', name: 'a', node: 'n1', addresses: ['10.0.0.1'], serviceAccount: 'sa' });
  const b = workloadRecord({ namespace: 'demo', name: 'b', node: 'n2', addresses: ['10.0.0.2'], serviceAccount: 'sa' });
  s.applyChanges([put('node', nodeRecord('n1', '192.0.2.1')), put('workload', a), put('workload', b)], 1);
  t.equal(s.revision, 1);
  t.equal(s.workloadByAddress('10.0.0.1')?.record.uid, 'demo/a');
  t.same(uids(s.workloadsOnNode('n1')), ['demo/a']);
  t.ok(s.hasIdentityOnNode('n1', 'demo', 'sa'));
  t.notOk(s.hasIdentityOnNode('n1', 'demo', 'other'));
  t.equal(s.node('n1')?.address, '192.0.2.1');

  // a moves to n2 and changes address: old entries must go.
  s.applyChanges([put('workload', { ...a, node: 'n2', addresses: ['10.0.0.3'] })], 2);
  t.equal(s.workloadByAddress('10.0.0.1'), undefined);
  t.equal(s.workloadByAddress('10.0.0.3')?.record.uid, 'demo/a');
  t.same(s.workloadsOnNode('n1'), []);
  t.same(uids(s.workloadsOnNode('n2')), ['demo/a', 'demo/b']);
  t.notOk(s.hasIdentityOnNode('n1', 'demo', 'sa'), 'identity left n1 with the workload');
  t.ok(s.hasIdentityOnNode('n2', 'demo', 'sa'));

  s.applyChanges([del('workload', 'demo/b')], 3);
  t.ok(s.hasIdentityOnNode('n2', 'demo', 'sa'), 'a still runs as sa on n2');
  s.applyChanges([del('workload', 'demo/a'), del('workload', 'demo/missing')], 4);
  t.notOk(s.hasIdentityOnNode('n2', 'demo', 'sa'));
  t.equal(s.list('workload').length, 0);
});

t.test('a reused pod IP belongs to the newest claimant, and falls back when it goes', async (t) => {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const old = workloadRecord({ namespace: 'demo', name: 'old', node: 'n1', addresses: ['10.0.0.9'] });
  const young = workloadRecord({ namespace: 'demo', name: 'young', node: 'n1', addresses: ['10.0.0.9'] });
  s.applyChanges([put('workload', old), put('workload', young)], 1);
  t.equal(s.workloadByAddress('10.0.0.9')?.record.uid, 'demo/young');
  s.applyChanges([del('workload', 'demo/old')], 2);
  t.equal(s.workloadByAddress('10.0.0.9')?.record.uid, 'demo/young', 'late delete of the old pod keeps the new owner');
  s.applyChanges([put('workload', old), del('workload', 'demo/young')], 3);
  t.equal(s.workloadByAddress('10.0.0.9')?.record.uid, 'demo/old');
});

t.test('namespace relabel re-derives its workloads and reports them', async (t) => {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const a = workloadRecord({ namespace: 'demo', name: 'a', node: 'n1' });
  const out = workloadRecord({ namespace: 'demo', name: 'out', node: 'n1', labels: { 'weft.io/dataplane-mode': 'none' } });
  const other = workloadRecord({ namespace: 'other', name: 'c', node: 'n1' });
  s.applyChanges([put('namespace', namespaceRecord('demo')), put('workload', a), put('workload', out), put('workload', other)], 1);
  t.equal(s.workload('demo/a')?.protocol, 'TCP');

  const events: [Change[], number, string[]][] = [];
  s.on('change', (c, r, affected) => events.push([c, r, affected]));
  const before = s.workload('demo/a');
  s.applyChanges([put('namespace', ambientNamespace('demo'))], 2);
  t.equal(events.length, 1);
  t.same(events[0]![2], ['demo/a'], 'only the workload whose view changed is reported');
  t.equal(events[0]![1], 2);
  const after = s.workload('demo/a')!;
  t.equal(after.enrolled, true);
  t.equal(after.protocol, 'HBONE');
  t.equal(before?.enrolled, false, 'views are replaced, not mutated: holders of the old view can compare');
  t.equal(s.workload('demo/out')?.enrolled, false);
  t.equal(s.workload('other/c')?.enrolled, false);
  t.equal(s.workloadByAddress('nothing'), undefined);

  s.applyChanges([put('namespace', ambientNamespace('demo', { 'weft.io/use-waypoint': 'wp' }))], 3);
  t.equal(s.workload('demo/a')?.waypoint, 'wp');
  t.same(events[1]![2], ['demo/a']);

  s.applyChanges([put('namespace', ambientNamespace('demo', { 'weft.io/use-waypoint': 'wp', unrelated: 'x' }))], 4);
  t.same(events[2]![2], [], 'an unrelated label changes no view');

  s.applyChanges([del('namespace', 'demo')], 5);
  t.equal(s.workload('demo/a')?.enrolled, false, 'deleting the namespace releases its workloads');
  t.same(events[3]![2], ['demo/a']);

  // A workload arriving after its namespace is derived against it.
  s.applyChanges([put('namespace', ambientNamespace('demo')), put('workload', { ...a, name: 'z', uid: 'demo/z' })], 6);
  t.equal(s.workload('demo/z')?.enrolled, true);
});

t.test('services: VIP and hostname lookups, endpoints by selector', async (t) => {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const svc = serviceRecord({ namespace: 'demo', name: 'echo', vips: ['10.96.0.10'], selector: { app: 'echo', tier: 'be' } });
  s.applyChanges([
    put('service', svc),
    put('workload', workloadRecord({ namespace: 'demo', name: 'e1', node: 'n1', labels: { app: 'echo', tier: 'be' } })),
    put('workload', workloadRecord({ namespace: 'demo', name: 'e2', node: 'n2', labels: { app: 'echo', tier: 'be', x: 'y' } })),
    put('workload', workloadRecord({ namespace: 'demo', name: 'e3', node: 'n2', labels: { app: 'echo', tier: 'fe' } })),
    put('workload', workloadRecord({ namespace: 'other', name: 'e4', node: 'n2', labels: { app: 'echo', tier: 'be' } })),
  ], 1);
  t.equal(s.serviceByVip('10.96.0.10'), svc);
  t.equal(s.serviceByHostname('echo.demo.svc.cluster.local'), svc);
  t.same(uids(s.endpoints(svc)), ['demo/e1', 'demo/e2'], 'same namespace, all selector labels');

  s.applyChanges([put('workload', workloadRecord({ namespace: 'demo', name: 'e1', node: 'n1', labels: { app: 'echo' } }))], 2);
  t.same(uids(s.endpoints(svc)), ['demo/e2'], 'relabelled workload leaves the endpoints');

  const moved = { ...svc, vips: ['10.96.0.11'], hostname: 'echo2.demo.svc.cluster.local' };
  s.applyChanges([put('service', moved)], 3);
  t.equal(s.serviceByVip('10.96.0.10'), undefined);
  t.equal(s.serviceByHostname('echo.demo.svc.cluster.local'), undefined);
  t.equal(s.serviceByVip('10.96.0.11'), moved);
  t.same(s.endpoints({ ...moved, selector: {} }), [], 'empty selector selects nothing');
  t.same(s.endpoints({ ...moved, selector: { app: 'nope' } }), []);
  s.applyChanges([del('service', 'demo/echo')], 4);
  t.equal(s.serviceByVip('10.96.0.11'), undefined);
  t.equal(s.get('service', 'demo/echo'), undefined);
});

t.test('policiesFor: global, namespace, selector (own and root namespace)', async (t) => {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const w = workloadRecord({ namespace: 'demo', name: 'a', node: 'n1', labels: { app: 'a' } });
  s.applyChanges([
    put('workload', w),
    put('policy', policyRecord({ namespace: 'weft-system', name: 'global', scope: 'GLOBAL', action: 'DENY' })),
    put('policy', policyRecord({ namespace: 'weft-system', name: 'root-ns', scope: 'NAMESPACE' })),
    put('policy', policyRecord({ namespace: 'weft-system', name: 'root-sel', scope: 'WORKLOAD_SELECTOR', selector: { app: 'a' } })),
    put('policy', policyRecord({ namespace: 'demo', name: 'ns', scope: 'NAMESPACE' })),
    put('policy', policyRecord({ namespace: 'demo', name: 'sel', scope: 'WORKLOAD_SELECTOR', selector: { app: 'a' } })),
    put('policy', policyRecord({ namespace: 'demo', name: 'sel-other', scope: 'WORKLOAD_SELECTOR', selector: { app: 'b' } })),
    put('policy', policyRecord({ namespace: 'demo', name: 'sel-empty', scope: 'WORKLOAD_SELECTOR', selector: {} })),
    put('policy', policyRecord({ namespace: 'other', name: 'ns', scope: 'NAMESPACE' })),
  ], 1);
  const names = () => s.policiesFor(s.workload('demo/a')!).map((p) => `${p.namespace}/${p.name}`);
  t.same(names(), ['demo/ns', 'demo/sel', 'weft-system/global', 'weft-system/root-sel']);
  s.applyChanges([del('policy', 'demo/sel'), put('policy', policyRecord({ namespace: 'demo', name: 'ns', scope: 'WORKLOAD_SELECTOR', selector: { app: 'b' } }))], 2);
  t.same(names(), ['weft-system/global', 'weft-system/root-sel'], 'a policy put replaces the old one');
});

t.test('peerAuthModeFor: selector > namespace > mesh, PERMISSIVE by default', async (t) => {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  s.applyChanges([
    put('workload', workloadRecord({ namespace: 'demo', name: 'a', node: 'n1', labels: { app: 'a' } })),
    put('workload', workloadRecord({ namespace: 'demo', name: 'b', node: 'n1', labels: { app: 'b' } })),
  ], 1);
  const a = () => s.peerAuthModeFor(s.workload('demo/a')!);
  const b = () => s.peerAuthModeFor(s.workload('demo/b')!);
  t.equal(a(), 'PERMISSIVE');
  s.applyChanges([put('peerauth', peerAuthRecord({ namespace: 'weft-system', name: 'mesh', mode: 'STRICT' }))], 2);
  t.equal(a(), 'STRICT', 'mesh-wide');
  s.applyChanges([put('peerauth', peerAuthRecord({ namespace: 'demo', name: 'ns', mode: 'PERMISSIVE' }))], 3);
  t.equal(a(), 'PERMISSIVE', 'namespace beats mesh');
  s.applyChanges([put('peerauth', peerAuthRecord({ namespace: 'demo', name: 'sel', mode: 'STRICT', selector: { app: 'a' } }))], 4);
  t.equal(a(), 'STRICT', 'selector beats namespace');
  t.equal(b(), 'PERMISSIVE');
  s.applyChanges([put('peerauth', peerAuthRecord({ namespace: 'demo', name: 'sel2', mode: 'PERMISSIVE', selector: { app: 'a' } }))], 5);
  t.equal(a(), 'STRICT', 'a conflict at one level resolves to STRICT');
  s.applyChanges([put('peerauth', peerAuthRecord({ namespace: 'weft-system', name: 'sel', mode: 'STRICT', selector: { app: 'b' } }))], 6);
  t.equal(b(), 'PERMISSIVE', 'a selector in the root namespace does not reach other namespaces');
  s.applyChanges([del('peerauth', 'demo/ns')], 7);
  t.equal(b(), 'STRICT', 'back to mesh-wide');
});

// Model check: any sequence of changes must leave the same answers as loading the
// final records from scratch. This is what catches an index that forgets to unindex.
t.test('incremental indexes agree with a fresh replaceAll after random changes', async (t) => {
  let seed = 42;
  const rand = (n: number) => { seed = (Math.imul(seed, 1103515245) + 12345) & 0x7fffffff; return (seed >>> 8) % n; };
  const nss = ['a', 'b', 'c'];
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const truth = new Map<string, Change>();
  for (let rev = 1; rev <= 400; rev++) {
    const batch: Change[] = [];
    for (let i = 0; i < 1 + rand(4); i++) {
      const pick = rand(10);
      const ns = nss[rand(3)]!;
      let c: Change;
      if (pick < 5) {
        const w = workloadRecord({
          namespace: ns, name: `w${rand(30)}`, node: `n${rand(3)}`, addresses: [`10.0.${rand(4)}.${rand(20)}`],
          serviceAccount: `sa${rand(3)}`, labels: { app: `app${rand(3)}`, ...(rand(5) === 0 ? { 'weft.io/dataplane-mode': 'none' } : {}) },
        });
        c = rand(4) === 0 ? del('workload', w.uid) : put('workload', w);
      } else if (pick < 7) {
        c = rand(3) === 0 ? del('namespace', ns) : put('namespace', rand(2) ? ambientNamespace(ns) : namespaceRecord(ns));
      } else if (pick < 9) {
        const svc = serviceRecord({ namespace: ns, name: `s${rand(5)}`, vips: [`10.96.0.${rand(8)}`], selector: { app: `app${rand(3)}` } });
        c = rand(4) === 0 ? del('service', `${ns}/${svc.name}`) : put('service', svc);
      } else {
        const p = peerAuthRecord({ namespace: rand(2) ? ns : 'weft-system', name: `p${rand(3)}`, mode: rand(2) ? 'STRICT' : 'PERMISSIVE' });
        c = rand(3) === 0 ? del('peerauth', `${p.namespace}/${p.name}`) : put('peerauth', p);
      }
      batch.push(c);
      truth.set(`${c.kind}\u0000${c.key}`, c);
    }
    s.applyChanges(batch, rev);
  }
  const snap = emptySnapshot();
  for (const c of truth.values()) if (c.op === 'put') (snap[c.kind] as unknown[]).push(c.record);
  const fresh = new MeshState({ trustDomain: 'cluster.local' });
  fresh.replaceAll(snap, 400);

  for (const kind of KINDS) t.equal(s.list(kind).length, fresh.list(kind).length, `${kind} count`);
  for (const w of fresh.list('workload')) t.same(s.workload(w.uid), fresh.workload(w.uid));
  for (let i = 0; i < 4; i++) for (let j = 0; j < 20; j++) {
    // An IP claimed twice may resolve to either claimant depending on order; both must agree it exists.
    const ip = `10.0.${i}.${j}`;
    t.equal(s.workloadByAddress(ip) === undefined, fresh.workloadByAddress(ip) === undefined, ip);
  }
  for (let n = 0; n < 3; n++) t.same(uids(s.workloadsOnNode(`n${n}`)), uids(fresh.workloadsOnNode(`n${n}`)));
  for (const svc of fresh.list('service')) t.same(uids(s.endpoints(svc)), uids(fresh.endpoints(svc)));
  for (const w of fresh.workloads()) t.equal(s.peerAuthModeFor(w), fresh.peerAuthModeFor(w));
  for (const ns of nss) for (let n = 0; n < 3; n++) for (let a = 0; a < 3; a++) {
    t.equal(s.hasIdentityOnNode(`n${n}`, ns, `sa${a}`), fresh.hasIdentityOnNode(`n${n}`, ns, `sa${a}`));
  }
});

t.test('replaceAll drops what the snapshot does not hold and emits snapshot', async (t) => {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  s.applyChanges([put('workload', workloadRecord({ namespace: 'demo', name: 'gone', node: 'n1', addresses: ['10.0.0.1'] }))], 1);
  let got = -1;
  s.on('snapshot', (r) => { got = r; });
  const snap = emptySnapshot();
  snap.namespace.push(ambientNamespace('demo'));
  snap.workload.push(workloadRecord({ namespace: 'demo', name: 'kept', node: 'n1', addresses: ['10.0.0.2'] }));
  s.replaceAll(snap, 9);
  t.equal(got, 9);
  t.equal(s.revision, 9);
  t.equal(s.workloadByAddress('10.0.0.1'), undefined);
  t.equal(s.workloadByAddress('10.0.0.2')?.enrolled, true);
  t.same(uids(s.workloadsOnNode('n1')), ['demo/kept']);
});

t.test('10,000 workloads: a namespace relabel touches only that namespace', async (t) => {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  const snap = emptySnapshot();
  for (let n = 0; n < 100; n++) snap.namespace.push(namespaceRecord(`ns${n}`));
  for (let i = 0; i < 10_000; i++) {
    snap.workload.push(workloadRecord({
      namespace: `ns${i % 100}`, name: `w${i}`, node: `node-${i % 50}`,
      addresses: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`], labels: { app: `app${i % 10}` },
    }));
  }
  s.replaceAll(snap, 1);
  let affected: string[] = [];
  s.on('change', (_c, _r, a) => { affected = a; });
  s.applyChanges([put('namespace', ambientNamespace('ns7'))], 2);
  t.equal(affected.length, 100);
  t.ok(affected.every((uid) => uid.startsWith('ns7/')));
  t.equal(s.workloadByAddress('10.0.0.7')?.enrolled, true);
  t.equal(s.workloadByAddress('10.0.0.8')?.enrolled, false);
  t.equal(s.workloadsOnNode('node-7').length, 200);
});

t.test('identity strings: shared per identity, right after relabels, and the table stays bounded under churn', async (t) => {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  s.applyChanges([put('namespace', ambientNamespace('demo'))], 1);
  let rev = 1;
  for (let i = 0; i < 3000; i++) {
    const w = workloadRecord({ namespace: 'demo', name: `p${i}`, node: 'n1', serviceAccount: `sa-${i}` });
    s.applyChanges([put('workload', w)], ++rev);
    if (i >= 10) s.applyChanges([del('workload', `demo/p${i - 10}`)], ++rev);
  }
  t.equal(s.workloads().length, 10);
  t.ok(s.identityTableSize() <= 10 + 1024, `identity table holds ${s.identityTableSize()} entries for 10 live workloads after 3,000 service accounts came and went`);
  for (const v of s.workloads()) t.equal(v.identity, `spiffe://cluster.local/ns/demo/sa/${v.record.serviceAccount}`);

  // Two pods of one service account, then the namespace relabelled: identities stay right.
  s.applyChanges([
    put('workload', workloadRecord({ namespace: 'demo', name: 'x', node: 'n1', serviceAccount: 'shared' })),
    put('workload', workloadRecord({ namespace: 'demo', name: 'y', node: 'n2', serviceAccount: 'shared' })),
    put('namespace', namespaceRecord('demo', { team: 'a' })),
  ], ++rev);
  t.equal(s.workload('demo/x')?.identity, 'spiffe://cluster.local/ns/demo/sa/shared');
  t.equal(s.workload('demo/y')?.identity, 'spiffe://cluster.local/ns/demo/sa/shared');
  t.equal(s.workload('demo/x')?.enrolled, false, 'the relabel released the namespace');
  s.replaceAll({ ...emptySnapshot(), namespace: [ambientNamespace('demo')], workload: [workloadRecord({ namespace: 'demo', name: 'z', node: 'n1', serviceAccount: 'shared' })] }, ++rev);
  t.equal(s.identityTableSize(), 1, 'a snapshot starts the table afresh');
  t.equal(s.workload('demo/z')?.identity, 'spiffe://cluster.local/ns/demo/sa/shared');
});
