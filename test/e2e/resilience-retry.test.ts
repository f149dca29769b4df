// Retries beyond Gateway API on the real lab: Service demo/flaky (two echo pods, each
// failing 10 % of its requests with 503, independently: a transient failure) behind the
// namespace's waypoint. Without a retry about 10 % of requests fail; with a TrafficPolicy
// `retry: { attempts: 3 }` (Weft's defaults otherwise: gateway-error, exponential
// backoff with full jitter, the retry budget and the cross-hop cap) at least 99.8 % of
// requests succeed. Printed (t.comment) for docs/resilience.md: both success rates and the
// retries the budget let through.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BatchSummary } from '../../src/lab/client-batch';
import { defaultTopologyFile } from '../../src/lab/paths';
import { RegistryStore } from '../../src/registry/store';
import { sendBatch } from './helpers/conformance';
import { labSkipReason, startLab, type LabHandle } from './helpers/lab';

const skip = labSkipReason();
if (skip) {
  t.plan(0, `lab e2e: ${skip}`);
} else {
  run();
}

const REQUESTS = 2000;
const BASELINE_REQUESTS = 500;

function topology(): string {
  const pod = (name: string, node: string) => `  - { name: ${name}, namespace: demo, node: ${node}, serviceAccount: flaky, labels: { app: flaky }, run: echo, echo: { failRatio: 0.1, failStatus: 503 } }\n`;
  let text = readFileSync(defaultTopologyFile(), 'utf8');
  text = text.replace(/\nservices:\n/, `\n${pod('flaky-1', 'node-1')}${pod('flaky-2', 'node-2')}\nservices:\n`);
  return `${text}  - name: flaky
    namespace: demo
    selector: { app: flaky }
    ports:
      - { name: http, port: 80, targetPort: 8080 }
waypoints:
  - { name: waypoint, namespace: demo, node: node-2 }
`;
}

const POLICY = `apiVersion: networking.weft.io/v1alpha1
kind: TrafficPolicy
metadata: { name: flaky, namespace: demo }
spec:
  targetRefs: [{ kind: Service, name: flaky }]
  retry:
    attempts: 3
`;

async function waypointRevision(lab: LabHandle): Promise<number> {
  const res = await lab.exec('demo/waypoint', ['weft', 'lab', 'request', 'http://127.0.0.1:15000/status']);
  return res.code === 0 ? (JSON.parse(res.stdout) as { registryRevision: number }).registryRevision : -1;
}

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

function run(): void {
  t.test('a backend failing 10 % transiently: retries with 3 attempts make >= 99.8 % succeed', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-retry-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'lab.yaml'), topology());
    const lab = await startLab(t, { topology: join(dir, 'lab.yaml') });
    t.equal((await lab.weft(['namespace', 'use-waypoint', 'demo', 'waypoint'])).code, 0);
    const store = RegistryStore.connect(lab.context.redisUrl);
    t.teardown(() => store.close());
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
