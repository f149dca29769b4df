// The retry section of test/e2e/resilience.test.ts (on the shared resilience lab):
// retries beyond Gateway API, with Service demo/flaky (two echo pods, each
// failing 10 % of its requests with 503, independently: a transient failure) behind the
// namespace's waypoint. Without a retry about 10 % of requests fail; with a TrafficPolicy
// `retry: { attempts: 3 }` (Weft's defaults otherwise: gateway-error, exponential
// backoff with full jitter, the retry budget and the cross-hop cap) at least 99.8 % of
// requests succeed. Printed (t.comment) for docs/resilience.md: both success rates and the
// retries the budget let through.
import type { Test } from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BatchSummary } from '../../../src/lab/client-batch';
import { sendBatch } from '../helpers/conformance';
import type { LabHandle } from '../helpers/lab';
import { deleteFile, sectionDir, settle, waypointRevision, type ResilienceLab } from '../helpers/resilience-lab';

const REQUESTS = 2000;
const BASELINE_REQUESTS = 500;

const POLICY = `apiVersion: networking.weft.io/v1alpha1
kind: TrafficPolicy
metadata: { name: flaky, namespace: demo }
spec:
  targetRefs: [{ kind: Service, name: flaky }]
  retry:
    attempts: 3
`;

/** Attempts the waypoint made to Service flaky beyond the first (its access log's `attempts`, summed). */
function retriesLogged(lab: LabHandle): number {
  const log = readFileSync(join(lab.labDir, 'logs', 'waypoint-demo-waypoint.log'), 'utf8');
  let retries = 0;
  for (const line of log.split('\n')) {
    if (!line.includes('"msg":"access"') || !line.includes('flaky')) continue;
    const m = /"attempts":(\d+)/.exec(line);
    if (m) retries += Number(m[1]) - 1;
  }
  return retries;
}

/** Deletes its TrafficPolicy at the end. */
export function section(t: Test, r: ResilienceLab): Promise<unknown> {
  return t.test('a backend failing 10 % transiently: retries with 3 attempts make >= 99.8 % succeed', async (t) => {
    const { lab, store } = r;
    const dir = sectionDir(r, 'retry');
    const send = async (n: number) => {
      const [sum] = await sendBatch(lab, 'demo/client', [{ url: 'http://flaky.demo/', count: n, timeoutMs: 10_000 }]) as BatchSummary[];
      return sum!;
    };

    const base = await send(BASELINE_REQUESTS);
    const baseOk = (base.statuses['200'] ?? 0) / BASELINE_REQUESTS;
    t.comment(`without retries: ${base.statuses['200'] ?? 0} of ${BASELINE_REQUESTS} succeeded (${(baseOk * 100).toFixed(1)} %), ${JSON.stringify(base.statuses)}`);
    t.ok(baseOk < 0.97, 'the backend does fail without retries (about 10 %)');

    const file = join(dir, 'tp.yaml');
    writeFileSync(file, POLICY);
    t.teardown(async () => {
      await deleteFile(r, file).catch(() => undefined);
      await settle(r);
    });
    const res = await lab.weft(['apply', '-f', file]);
    t.equal(res.code, 0, res.stderr);
    const revision = await store.revision();
    for (let i = 0; i < 50 && (await waypointRevision(lab)) < revision; i++) await new Promise((r) => setTimeout(r, 100));
    t.ok((await waypointRevision(lab)) >= revision, 'the policy is in force at the waypoint');

    const before = retriesLogged(lab);
    const started = Date.now();
    const sum = await send(REQUESTS);
    const ms = Date.now() - started;
    const ok = (sum.statuses['200'] ?? 0) / REQUESTS;
    await new Promise((r) => setTimeout(r, 200));
    const retries = retriesLogged(lab) - before;
    t.comment(`with retry attempts 3: ${sum.statuses['200'] ?? 0} of ${REQUESTS} succeeded (${(ok * 100).toFixed(2)} %), ${JSON.stringify(sum.statuses)}; ${retries} retries (${(retries / REQUESTS * 100).toFixed(1)} % extra load, the budget allows 20 % + 2/s); ${ms} ms`);
    t.ok(ok >= 0.998, `${(ok * 100).toFixed(2)} % succeeded (>= 99.8 %)`);
    const view = await lab.exec('demo/waypoint', ['weft', 'lab', 'request', 'http://127.0.0.1:15000/retries']);
    const budget = (JSON.parse(view.stdout) as { name: string; available: number }[]).find((b) => b.name === 'flaky');
    t.ok(budget, 'the waypoint\'s admin view shows the budget of Service flaky');
    t.comment(`retry budget of flaky at the waypoint now: ${JSON.stringify(budget)}`);
    t.same(sum.errors, {}, 'no connection error');
  });
}
