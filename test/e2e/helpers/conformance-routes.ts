/**
 * Gateway API gateway-profile HTTPRoute conformance cases end to end on the lab: method
 * matching, path match order, header and query matching, request and backend timeouts,
 * retries (status codes, with timeouts, connection errors), weights with a weight-0
 * backend, multiple and percentage mirrors, invalid backendRefs (unknown kind,
 * nonexistent) and a rule without backendRefs; plus WebSocket through the waypoint.
 * Upstream's manifests (test/fixtures/gateway/gateway) attach to a Gateway; the lab has
 * no ingress, so each is re-expressed with its parentRef replaced by the Service
 * `same-namespace` (port 80) in gateway-conformance-infra, whose waypoint applies it.
 * Requests go from gateway-conformance-infra/client through the real path; the tables
 * are upstream's (test/helpers/conformance-cases.ts).
 */
import type { Test } from 'tap';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import type { BatchAnswer, BatchRequest, BatchSummary } from '../../../src/lab/client-batch';
import type { WsResult } from '../../../src/lab/client-ws';
import { REQUEST_ID_PARAM } from '../../../src/lab/echo';
import {
  GATEWAY_HTTP_TESTS, GATEWAY_MULTIPLE_MIRRORS, GATEWAY_PERCENTAGE_MIRROR, GATEWAY_WEIGHT, INFRA_NS, type GatewayCase,
} from '../../helpers/conformance-cases';
import { applyText, expectCases, FIXTURES, judge, labInPod, sendBatch, type Case } from './conformance';
import type { LabHandle } from './lab';

const CLIENT = `${INFRA_NS}/client`;
const FRONTEND = 'same-namespace';
/** Weight check: 70/30 within ±10 points over 300 requests fails about once in 10^4. */
const WEIGHT_REQUESTS = 300;
/** Percentage mirrors: requests per rule, and the tolerance in standard deviations (upstream's approach). */
const MIRROR_REQUESTS = 100;
const MIRROR_SIGMAS = 4;

/** Upstream's manifest with its Gateway parentRef replaced by the Service same-namespace:80. */
function reexpressed(manifest: string): string {
  return parseAllDocuments(readFileSync(join(FIXTURES, manifest), 'utf8')).map((d) => {
    const o = d.toJS() as { spec: { parentRefs: unknown[] } };
    o.spec.parentRefs = [{ group: '', kind: 'Service', name: FRONTEND, port: 80 }];
    return stringify(o);
  }).join('---\n');
}

function withQuery(path: string, params: Record<string, string>): string {
  return `${path}${path.includes('?') ? '&' : '?'}${new URLSearchParams(params).toString()}`;
}

function caseOf(test: string, c: GatewayCase, i: number): Case {
  const { path = '/', host = FRONTEND, method = 'GET', headers = {}, retry, ...want } = c;
  const make = (): BatchRequest => {
    const p = retry ? withQuery(path, {
      uuid: randomUUID(), succeedAfter: String(retry.succeedAfter),
      ...(retry.responseCode ? { responseCode: String(retry.responseCode) } : {}), ...(retry.delayRetry ? { delayRetry: retry.delayRetry } : {}),
    }) : path;
    return { url: `http://${host}${p}`, method, headers };
  };
  return { name: `${test} #${i} ${method} ${path} ${JSON.stringify(headers)}${retry ? ` ${JSON.stringify(retry)}` : ''}`, pod: CLIENT, request: retry ? make : make(), want };
}

/** Lines of a pod's echo log that name this request id. */
function logged(lab: LabHandle, pod: string, id: string): number {
  const text = readFileSync(join(lab.labDir, 'logs', `app-${INFRA_NS}-${pod}.log`), 'utf8');
  return text.split('\n').filter((l) => l.includes(id)).length;
}

/** Reads a mirror's count until it stops changing (mirrors are sent after the answer), a bounded number of times. */
async function settledCount(lab: LabHandle, pod: string, id: string, atLeast: number): Promise<number> {
  let last = -1;
  for (let i = 0; i < 30; i++) {
    const n = logged(lab, pod, id);
    if (n >= atLeast && n === last) return n;
    last = n;
    await new Promise((r) => setTimeout(r, 100));
  }
  return last;
}

async function routeConditions(lab: LabHandle, name: string): Promise<{ accepted: { status: string }; resolvedRefs: { status: string; reason: string } } | undefined> {
  const res = await lab.weft(['routes', '-n', INFRA_NS, '-o', 'json']);
  if (res.code !== 0) throw new Error(`weft routes failed: ${res.stderr}`);
  const items = (JSON.parse(res.stdout) as { items: { name: string; accepted: { status: string }; resolvedRefs: { status: string; reason: string } }[] }).items;
  return items.find((x) => x.name === name);
}

export async function routesConformance(t: Test, lab: LabHandle): Promise<void> {
  const started = Date.now();
  const use = await lab.weft(['namespace', 'use-waypoint', INFRA_NS, 'waypoint']);
  t.equal(use.code, 0, use.stderr);
  let previous: string | undefined;
  /** Applies `next` (YAML) and deletes the previous manifest, both at once (upstream's route names differ). */
  const switchTo = async (next: string | undefined) => {
    await Promise.all([next && applyText(lab, 'apply', next), previous && applyText(lab, 'delete', previous)]);
    previous = next;
  };

  for (const test of GATEWAY_HTTP_TESTS) {
    await t.test(test.name, async (t) => {
      const at = Date.now();
      await switchTo(reexpressed(test.manifest));
      const tries = await expectCases(t, lab, test.cases.map((c, i) => caseOf(test.name, c, i)));
      t.comment(`${test.cases.length} requests, ${tries} batch(es), ${Date.now() - at} ms`);
      if (test.name === 'HTTPRouteInvalidBackendRefUnknownKind' || test.name === 'HTTPRouteInvalidNonExistentBackendRef') {
        const name = (parseAllDocuments(previous!)[0]!.toJS() as { metadata: { name: string } }).metadata.name;
        const c = await routeConditions(lab, name);
        t.equal(c?.accepted.status, 'True', 'Accepted');
        t.same([c?.resolvedRefs.status, c?.resolvedRefs.reason], ['False', test.name.endsWith('UnknownKind') ? 'InvalidKind' : 'BackendNotFound'], 'ResolvedRefs');
      }
    });
  }

  await t.test(GATEWAY_WEIGHT.name, async (t) => {
    // Nothing one request shows tells the weighted route from the Service's own pod, so
    // apply it first, then delete the previous manifest (all answers 500): once `/`
    // answers 200 the deletion and so the older apply are in force.
    const before = previous;
    await applyText(lab, 'apply', reexpressed(GATEWAY_WEIGHT.manifest));
    await applyText(lab, 'delete', before!);
    previous = reexpressed(GATEWAY_WEIGHT.manifest);
    await expectCases(t, lab, [{ name: 'the previous route (all 500) is gone', pod: CLIENT, request: { url: `http://${FRONTEND}/` }, want: { status: 200 } }]);
    const [sum] = await sendBatch(lab, CLIENT, [{ url: `http://${FRONTEND}/`, count: WEIGHT_REQUESTS }]) as BatchSummary[];
    t.same(sum!.statuses, { 200: WEIGHT_REQUESTS });
    t.same(Object.keys(sum!.pods).sort(), Object.keys(GATEWAY_WEIGHT.weights).sort(), `weight 0: infra-backend-v3 never answered (${JSON.stringify(sum!.pods)})`);
    for (const [pod, w] of Object.entries(GATEWAY_WEIGHT.weights)) {
      const share = (sum!.pods[pod] ?? 0) / WEIGHT_REQUESTS;
      t.ok(Math.abs(share - w) <= 0.1, `${pod}: ${(share * 100).toFixed(1)} % of ${WEIGHT_REQUESTS}, want ${w * 100} % ± 10`);
    }
  });

  await t.test(GATEWAY_MULTIPLE_MIRRORS.name, async (t) => {
    await switchTo(reexpressed(GATEWAY_MULTIPLE_MIRRORS.manifest));
    const cases = GATEWAY_MULTIPLE_MIRRORS.cases.map((c, i) => caseOf(GATEWAY_MULTIPLE_MIRRORS.name, c, i));
    await expectCases(t, lab, cases);
    // Now tagged: one request per case, answered by v1, its copy logged once by each mirror.
    for (const c of cases) {
      const id = randomUUID();
      const req = c.request as BatchRequest;
      const [answer] = await sendBatch(lab, CLIENT, [{ ...req, url: `http://${FRONTEND}${withQuery(new URL(req.url).pathname, { [REQUEST_ID_PARAM]: id })}` }]) as BatchAnswer[];
      t.same(judge(c.want, answer!), [], `${c.name}: tagged request`);
      for (const pod of GATEWAY_MULTIPLE_MIRRORS.mirrors) t.equal(await settledCount(lab, pod, id, 1), 1, `${c.name}: mirrored once to ${pod}`);
      t.equal(logged(lab, 'infra-backend-v1', id), 1, `${c.name}: answered once by infra-backend-v1`);
    }
  });

  await t.test(GATEWAY_PERCENTAGE_MIRROR.name, async (t) => {
    await switchTo(reexpressed(GATEWAY_PERCENTAGE_MIRROR.manifest));
    const cases = GATEWAY_PERCENTAGE_MIRROR.cases.map((x, i) => caseOf(GATEWAY_PERCENTAGE_MIRROR.name, x.case, i));
    await expectCases(t, lab, cases);
    const ids = cases.map(() => randomUUID());
    const sums = await sendBatch(lab, CLIENT, cases.map((c, i) => {
      const req = c.request as BatchRequest;
      return { ...req, url: `http://${FRONTEND}${withQuery(new URL(req.url).pathname, { [REQUEST_ID_PARAM]: ids[i]! })}`, count: MIRROR_REQUESTS };
    })) as BatchSummary[];
    for (const [i, x] of GATEWAY_PERCENTAGE_MIRROR.cases.entries()) {
      t.same(sums[i]!.pods, { 'infra-backend-v1': MIRROR_REQUESTS }, `${x.case.path}: every request answered by infra-backend-v1`);
      const expected = MIRROR_REQUESTS * x.share;
      const margin = MIRROR_SIGMAS * Math.sqrt(MIRROR_REQUESTS * x.share * (1 - x.share));
      const n = await settledCount(lab, GATEWAY_PERCENTAGE_MIRROR.mirror, ids[i]!, Math.ceil(expected - margin));
      t.ok(Math.abs(n - expected) <= margin, `${x.case.path}: ${n} of ${MIRROR_REQUESTS} mirrored to infra-backend-v2, want ${expected} ± ${margin.toFixed(1)}`);
    }
  });

  await t.test('a rule without backendRefs answers 500; WebSocket through the waypoint, bytes both ways', async (t) => {
    await switchTo(`apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: ws-and-no-backends, namespace: ${INFRA_NS} }
spec:
  parentRefs: [{ group: "", kind: Service, name: ${FRONTEND}, port: 80 }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /ws } }]
      backendRefs: [{ name: infra-backend-v2, port: 8080 }]
    - matches: [{ path: { type: PathPrefix, value: /no-backends } }]
`);
    await expectCases(t, lab, [
      { name: 'no backendRefs: 500', pod: CLIENT, request: { url: `http://${FRONTEND}/no-backends` }, want: { status: 500 } },
      { name: '/ws goes to infra-backend-v2 (the Service itself selects only v1)', pod: CLIENT, request: { url: `http://${FRONTEND}/ws` }, want: { backend: 'infra-backend-v2' } },
    ]);
    const res = await labInPod(lab, CLIENT, ['ws', `http://${FRONTEND}/ws`, '--bytes', '1000000']);
    t.equal(res.code, 0, res.stderr);
    const ws = JSON.parse(res.stdout) as WsResult;
    t.same({ status: ws.status, pod: ws.pod, sent: ws.sent, received: ws.received, match: ws.match, closeCode: ws.closeCode },
      { status: 101, pod: 'infra-backend-v2', sent: 1_000_000, received: 1_000_000, match: true, closeCode: 1000 },
      'upgraded by the routed backend; a megabyte each way, byte-exact; clean close');
    t.comment(`websocket: 1 MB each way in ${ws.ms} ms`);
  });

  await switchTo(undefined);
  t.comment(`${GATEWAY_HTTP_TESTS.length + 3} gateway-profile tests and WebSocket in ${Date.now() - started} ms`);
}
