// Gateway API conformance end to end on the lab, one lab for both profiles (bringing it
// up is the largest single cost): test/fixtures/gateway/lab.yaml has upstream's
// namespaces, Services and backends, a client pod and a waypoint per namespace.
//   - the mesh profile: the 23 cases of conformance/tests/mesh (helpers/conformance-mesh.ts);
//   - the gateway-profile HTTPRoute cases (matching, timeouts, retries, weights, mirrors,
//     invalid and omitted backendRefs) and WebSocket (helpers/conformance-routes.ts).
// Every request crosses client pod → source ztunnel → waypoint → destination ztunnel →
// echo pod; the tables are upstream's (test/helpers/conformance-cases.ts).
import t from 'tap';
import { CONFORMANCE_TOPOLOGY } from './helpers/conformance';
import { meshConformance } from './helpers/conformance-mesh';
import { routesConformance } from './helpers/conformance-routes';
import { labSkipReason, startLab } from './helpers/lab';

function run(): void {
  t.test('Gateway API conformance on the lab', async (t) => {
    const started = Date.now();
    const lab = await startLab(t, { topology: CONFORMANCE_TOPOLOGY });
    t.comment(`lab up in ${Date.now() - started} ms`);
    await t.test('mesh profile: the 23 mesh conformance cases', (t) => meshConformance(t, lab));
    await t.test('gateway profile: HTTPRoute cases and WebSocket, through the waypoint', (t) => routesConformance(t, lab));
    t.comment(`all in ${Date.now() - started} ms (incl. lab up)`);
  });
}

const skip = labSkipReason();
if (skip) {
  t.plan(0, `lab e2e: ${skip}`);
} else {
  run();
}
