// `weft outliers` (src/cli/commands/outliers.ts): asks every ready waypoint pod's
// /outliers view (here: real HTTP servers on loopback standing in for the pods'
// metrics ports) and shows one row per remembered endpoint; a pod that does not
// answer is a warning, and an unready one is not asked.
import t from 'tap';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { MeshState } from '../src/registry/state';
import { ambientNamespace, waypointPod, waypointRecord } from '../src/registry/fixtures';
import { recordKey, type Change, type Kind, type RecordsByKind } from '../src/registry/types';
import { outliersFrame } from '../src/cli/commands/outliers';
import type { OutlierServiceView } from '../src/waypoint/outlier-detectors';

function put<K extends Kind>(kind: K, record: RecordsByKind[K]): Change {
  return { op: 'put', kind, key: recordKey(kind, record), record } as Change;
}

const VIEW: OutlierServiceView[] = [{
  namespace: 'demo', name: 'echo', ejected: 1,
  endpoints: [{ endpoint: '10.1.2.3', state: 'ejected', ejections: 2, consecutive5xx: 0, consecutiveGatewayErrors: 0, until: '2026-11-30T21:00:06.000Z', reason: 'consecutive-5xx' }],
}];

t.test('one row per endpoint from each ready waypoint pod; a silent pod is a warning', async (t) => {
  const server = http.createServer((req, res) => {
    if (req.url !== '/outliers') { res.writeHead(404); return void res.end(); }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(VIEW));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const port = (server.address() as AddressInfo).port;
  const wp = waypointRecord({ namespace: 'demo', name: 'waypoint' });
  const state = new MeshState({ trustDomain: 'cluster.local' });
  state.applyChanges([
    put('namespace', ambientNamespace('demo')),
    put('waypoint', wp),
    put('workload', waypointPod(wp, { name: 'waypoint', node: 'node-2', addresses: ['127.0.0.1'] })),
    put('workload', waypointPod(wp, { name: 'waypoint-2', node: 'node-1', addresses: ['127.0.0.2'], status: 'Unhealthy' })),
  ], 1);
  const frame = await outliersFrame(state, { namespace: '' }, port);
  t.same(frame.table!.rows, [['demo/echo', '10.1.2.3', 'ejected', '2', 'consecutive-5xx', '2026-11-30T21:00:06.000Z', '0/0', 'demo/waypoint/waypoint']]);
  t.same(frame.warnings, [], 'the unready pod is not asked');
  t.equal(frame.exitCode, 0);

  server.close();
  await new Promise((r) => setTimeout(r, 10));
  const silent = await outliersFrame(state, { namespace: 'demo' }, port);
  t.match(silent.warnings, [/waypoint demo\/waypoint pod waypoint \(127\.0\.0\.1:\d+\): not answering/]);
  t.equal(silent.exitCode, 1, 'no pod answered');
  t.match(await outliersFrame(new MeshState({ trustDomain: 'cluster.local' }), { namespace: '' }, port), { empty: /No ready waypoint pods/ });
});
