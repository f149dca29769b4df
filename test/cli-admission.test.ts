// `weft admission` (src/cli/commands/admission.ts): asks every ready waypoint pod's
// /admission view (real HTTP servers on loopback standing in for the pods' metrics ports)
// and shows one row per Service and pod; a silent pod is a warning. The views come from a
// real Admission after real decisions.
import t from 'tap';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { MeshState } from '../src/registry/state';
import { ambientNamespace, waypointPod, waypointRecord } from '../src/registry/fixtures';
import { recordKey, type Change, type Kind, type RecordsByKind } from '../src/registry/types';
import { admissionFrame } from '../src/cli/commands/admission';
import { Admission } from '../src/waypoint/admission';
import { validateRateLimit } from '../src/resilience/rate-limit-spec';
import { validateLoadShedding } from '../src/resilience/shedding-spec';
import type { TrafficPolicySpec } from '../src/resilience/spec';
import type { RequestFacts } from '../src/waypoint/types';
import { ManualClock } from './helpers/clock';

function put<K extends Kind>(kind: K, record: RecordsByKind[K]): Change {
  return { op: 'put', kind, key: recordKey(kind, record), record } as Change;
}

const facts: RequestFacts = {
  method: 'GET', authority: 'echo', path: '/', query: '', headers: {}, protocol: 'http1',
  source: { address: '10.0.0.1', port: 1 }, destination: { address: '10.96.0.1', port: 80 },
};

t.test('a row per Service and pod with counts, buckets and the concurrency limit; a silent pod is a warning', async (t) => {
  const spec: TrafficPolicySpec = {
    targetRefs: [{ group: '', kind: 'Service', name: 'echo' }],
    rateLimit: validateRateLimit({ requestsPerSecond: 1, burst: 1 }, 'r', 'reject'),
    loadShedding: validateLoadShedding({ algorithm: 'AIMD', minLimit: 5, maxLimit: 5, aimd: { latencyTarget: '1s' } }, 's', 'reject'),
  };
  const admission = new Admission({ policies: { forService: (ns, name) => (ns === 'demo' && name === 'echo' ? spec : undefined) }, clock: new ManualClock() });
  const gate = admission.gate({ namespace: 'demo', name: 'echo' })!;
  const gone = new AbortController().signal;
  const first = await admission.admit(gate, facts, false, gone);
  const second = await admission.admit(gate, facts, false, gone);
  t.match([first.kind, second.kind], ['admit', 'refuse']);
  const server = http.createServer((req, res) => {
    if (req.url !== '/admission') { res.writeHead(404); return void res.end(); }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(admission.views()));
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
  ], 1);
  const frame = await admissionFrame(state, { namespace: '' }, port);
  t.same(frame.table!.rows, [['demo/echo', 'rateLimit,loadShedding', '0', '0', '1', '0', '1', '1/5', '-', 'demo/waypoint/waypoint']],
    'one rate limited, one holding a slot of 5');
  t.equal(frame.exitCode, 0);
  t.same((await admissionFrame(state, { namespace: 'other' }, port)).table!.rows, [], 'filtered by namespace');

  const other = http.createServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"unexpected":true}'); });
  await new Promise<void>((r) => other.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => other.close());
  const odd = await admissionFrame(state, { namespace: 'demo' }, (other.address() as AddressInfo).port);
  t.match(odd.warnings, [/waypoint demo\/waypoint pod waypoint \(127\.0\.0\.1:\d+\): answered \/admission in another shape \(expected a list of .*\); is that pod running another Weft version\?/],
    'an answer of another shape is told apart from no answer');
  t.equal(odd.exitCode, 1);

  server.close();
  await new Promise((r) => setTimeout(r, 10));
  const silent = await admissionFrame(state, { namespace: 'demo' }, port);
  t.match(silent.warnings, [/waypoint demo\/waypoint pod waypoint \(127\.0\.0\.1:\d+\): not answering/]);
  t.equal(silent.exitCode, 1);
  t.match(silent.empty, /^No waypoint pod in namespace demo gave its admission state \(see the warnings\)/, 'not "no Service has had a request": nobody was asked successfully');
  t.match(await admissionFrame(new MeshState({ trustDomain: 'cluster.local' }), { namespace: '' }, port), { empty: /No ready waypoint pods/ });
});
