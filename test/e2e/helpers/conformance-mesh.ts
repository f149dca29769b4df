/**
 * The Gateway API mesh conformance suite (23 cases, test/helpers/conformance-cases.ts)
 * end to end on the lab: upstream's manifests (test/fixtures/gateway/mesh) applied with
 * `weft apply -f`, each case's request sent from a client pod in
 * gateway-conformance-mesh (or -consumer) through its source ztunnel, the namespace's
 * waypoint and the destination ztunnel to the echo pods, and judged as upstream does:
 * the pod that answered, the status, redirect Locations, the path and headers the
 * backend saw, the response headers. Each manifest is deleted before the next one.
 * Weights are counted over a bounded number of requests against a tolerance.
 */
import type { Test } from 'tap';
import type { BatchRequest, BatchSummary } from '../../../src/lab/client-batch';
import type { GrpcCallResult, GrpcSummary } from '../../../src/lab/client-grpc';
import {
  CONSUMER_NS, MESH_GRPC_HEADER_MODIFIER, MESH_GRPC_WEIGHT, MESH_HTTP_TESTS, MESH_HTTP_WEIGHT, MESH_NS, type MeshCase,
} from '../../helpers/conformance-cases';
import { applyFixture, expectCases, joined, labInPod, sendBatch, switchFixture, type Case } from './conformance';
import type { LabHandle } from './lab';

const MESH_CLIENT = `${MESH_NS}/client`;
/** Requests per weight check: 70/30 within ±10 points over 300 fails about once in 10^4. */
const WEIGHT_REQUESTS = 300;
const WEIGHT_TOLERANCE = 0.1;

function caseOf(lab: LabHandle, test: string, c: MeshCase, i: number): Case {
  const host = c.podAddress ? `${lab.state()!.plan.pods.find((p) => p.uid === `${MESH_NS}/${c.podAddress}`)!.ip}:8080` : c.host ?? 'echo';
  const path = c.path ?? '/';
  const request: BatchRequest = { url: `http://${host}${path}`, method: c.method ?? 'GET', headers: c.headers ?? {} };
  const { path: _p, host: _h, method: _m, headers: _hd, from: _f, podAddress: _a, ...want } = c;
  return { name: `${test} #${i} ${c.from === 'consumer' ? `from ${CONSUMER_NS} ` : ''}${request.method} ${host}${path} ${JSON.stringify(c.headers ?? {})}`, pod: c.from === 'consumer' ? `${CONSUMER_NS}/client` : MESH_CLIENT, request, want };
}

/** gRPC calls from the mesh client with `weft lab grpc`, in its netns. */
async function grpc(lab: LabHandle, args: string[]): Promise<{ code: number; out: string; err: string }> {
  const res = await labInPod(lab, MESH_CLIENT, ['grpc', 'echo:7070', ...args]);
  return { code: res.code, out: res.stdout, err: res.stderr };
}

function shareOk(t: Test, counts: Record<string, number>, weights: Record<string, number>, total: number): void {
  t.same(Object.keys(counts).sort(), Object.keys(weights).sort(), `only ${Object.keys(weights).join(', ')} answered: ${JSON.stringify(counts)}`);
  for (const [pod, w] of Object.entries(weights)) {
    const share = (counts[pod] ?? 0) / total;
    t.ok(Math.abs(share - w) <= WEIGHT_TOLERANCE, `${pod}: ${(share * 100).toFixed(1)} % of ${total}, want ${w * 100} % ± ${WEIGHT_TOLERANCE * 100}`);
  }
}

export async function meshConformance(t: Test, lab: LabHandle): Promise<void> {
  const started = Date.now();
  const use = await lab.weft(['namespace', 'use-waypoint', MESH_NS, 'waypoint']);
  t.equal(use.code, 0, use.stderr);
  let previous: string | undefined;
  let requests = 0;

  for (const test of MESH_HTTP_TESTS) {
    await t.test(test.name, async (t) => {
      const at = Date.now();
      // The batch below is sent again until the waypoint has seen the switch.
      await switchFixture(lab, previous, test.manifest);
      previous = test.manifest;
      const tries = await expectCases(t, lab, test.cases.map((c, i) => caseOf(lab, test.name, c, i)));
      requests += test.cases.length;
      t.comment(`${test.cases.length} requests, ${tries} batch(es), ${Date.now() - at} ms`);
    });
  }

  // The weight manifests have nothing a single request could tell apart from the
  // Service's own spread over both pods, so each one is applied first and the previous
  // manifest deleted after it; once a request shows the deletion, the apply (an older
  // registry revision) is in force too, and the counting starts.
  await t.test(MESH_HTTP_WEIGHT.name, async (t) => {
    await applyFixture(lab, 'apply', MESH_HTTP_WEIGHT.manifest);
    await applyFixture(lab, 'delete', previous!);
    previous = MESH_HTTP_WEIGHT.manifest;
    await expectCases(t, lab, [{ name: 'the scheme redirect of the previous manifest is gone', pod: MESH_CLIENT, request: { url: 'http://echo/scheme' }, want: { status: 200 } }]);
    const [sum] = await sendBatch(lab, MESH_CLIENT, [{ url: 'http://echo/', count: WEIGHT_REQUESTS }]) as BatchSummary[];
    t.same(sum!.statuses, { 200: WEIGHT_REQUESTS });
    shareOk(t, sum!.pods, MESH_HTTP_WEIGHT.weights, WEIGHT_REQUESTS);
    requests += WEIGHT_REQUESTS;
  });

  await t.test(MESH_GRPC_HEADER_MODIFIER.name, async (t) => {
    await switchFixture(lab, previous, MESH_GRPC_HEADER_MODIFIER.manifest);
    previous = MESH_GRPC_HEADER_MODIFIER.manifest;
    for (const c of MESH_GRPC_HEADER_MODIFIER.cases) {
      const args = Object.entries(c.metadata).flatMap(([k, v]) => ['-H', `${k}: ${v}`]);
      let res: GrpcCallResult | undefined;
      for (let i = 0; i < 40; i++) {
        res = JSON.parse((await grpc(lab, args)).out) as GrpcCallResult;
        if (res.code === 0 && res.answer?.pod.startsWith(c.backend) && Object.keys(c.seen).every((k) => joined(res!.answer!.metadata[k]) === c.seen[k])) break;
        await new Promise((r) => setTimeout(r, 150));
      }
      const name = `x-test-case: ${c.metadata['x-test-case']}`;
      t.equal(res?.code, 0, `${name}: status OK`);
      t.equal(res?.trailers['x-echo-trailer'], res?.answer?.pod, `${name}: the backend's trailers arrived`);
      t.ok(res?.answer?.pod.startsWith(c.backend), `${name}: answered by ${res?.answer?.pod}, want ${c.backend}`);
      t.equal(res?.answer?.authority, 'echo:7070', `${name}: authority as sent`);
      for (const [k, v] of Object.entries(c.seen)) t.equal(joined(res?.answer?.metadata[k]), v, `${name}: backend saw ${k}`);
      for (const k of c.absent ?? []) t.equal(res?.answer?.metadata[k], undefined, `${name}: ${k} removed`);
    }
    // Errors without a message, both ways a server sends them, through the route like
    // the others: Trailers-Only (grpc-status in the one HEADERS frame), and headers then
    // trailers (which the waypoint once lost when both arrived in one read).
    for (const only of [true, false]) {
      const failed = JSON.parse((await grpc(lab, ['-H', 'x-test-case: set', '-H', 'x-echo-grpc-status: 5', ...(only ? ['-H', 'x-echo-trailers-only: 1'] : [])])).out) as GrpcCallResult;
      t.same([failed.code, failed.details, failed.trailers['x-echo-trailer']], [5, 'asked for status 5', 'echo-v1'],
        `an error ${only ? 'as Trailers-Only' : 'after the headers'}: status, message and trailers cross the waypoint`);
    }
    requests += MESH_GRPC_HEADER_MODIFIER.cases.length + 2;
  });

  await t.test(MESH_GRPC_WEIGHT.name, async (t) => {
    await applyFixture(lab, 'apply', MESH_GRPC_WEIGHT.manifest);
    await applyFixture(lab, 'delete', previous!);
    previous = MESH_GRPC_WEIGHT.manifest;
    let gone = false;
    for (let i = 0; i < 40 && !gone; i++) {
      const r = JSON.parse((await grpc(lab, ['-H', 'x-test-case: set', '-H', 'x-header-set: mine'])).out) as GrpcCallResult;
      gone = r.code === 0 && r.answer?.metadata['x-header-set'] === 'mine';
      if (!gone) await new Promise((r) => setTimeout(r, 150));
    }
    t.ok(gone, 'the header modifier of the previous manifest is gone');
    const sum = JSON.parse((await grpc(lab, ['--count', String(WEIGHT_REQUESTS)])).out) as GrpcSummary;
    t.same(sum.codes, { 0: WEIGHT_REQUESTS }, 'every call ended with status OK (echo-v3, weight 0, never chosen)');
    shareOk(t, sum.pods, MESH_GRPC_WEIGHT.weights, WEIGHT_REQUESTS);
    requests += WEIGHT_REQUESTS;
  });

  await applyFixture(lab, 'delete', previous!);
  t.comment(`${MESH_HTTP_TESTS.length + 3} mesh conformance tests, ${requests} judged requests, in ${Date.now() - started} ms`);
}
