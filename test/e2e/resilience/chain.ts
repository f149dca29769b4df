// The chain section of test/e2e/resilience.test.ts (on the shared resilience lab): the
// cross-hop amplification cap, with a chain demo/client → frontend →
// middle → backend, every hop through the namespace's waypoint, each Service with a
// TrafficPolicy retry of 3 (4 tries a hop), the backend failing every request (503).
// The echo pods are the chain's apps (src/lab/echo-chain.ts: `?via=` passes the request
// on, propagating traceparent and x-weft-retry as a traced service would). The backend
// logs every request it receives carrying this run's tag, so its attempts per user
// request are counted where they land. Printed (t.comment) for docs/resilience.md, side
// by side: Weft's defaults (cap and budget on), the cap alone (budget off), and the
// naive chain (both off: 4 × 4 × 4 = 64).
// Asserted: ≤ 1.5 backend attempts per user request with the defaults; the naive figure
// is what the arithmetic says (64), so the comparison is real.
import type { Test } from 'tap';
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BatchSummary } from '../../../src/lab/client-batch';
import { REQUEST_ID_PARAM } from '../../../src/lab/echo';
import { sendBatch } from '../helpers/conformance';
import { deleteFile, sectionDir, settle, waypointRevision, type ResilienceLab } from '../helpers/resilience-lab';

/** User requests per measurement: the defaults' figure needs enough for the floors to be small beside the ratio. */
const DEFAULT_REQUESTS = 600;
const NAIVE_REQUESTS = 10;
const CAP_ONLY_REQUESTS = 30;

const policy = (retry: string) => `apiVersion: networking.weft.io/v1alpha1
kind: TrafficPolicy
metadata: { name: chain, namespace: demo }
spec:
  targetRefs: [{ kind: Service, name: frontend }, { kind: Service, name: middle }, { kind: Service, name: backend }]
  retry:
    attempts: 3
    backoff: { baseInterval: 1ms, maxInterval: 2ms }
${retry}`;

/** Deletes its TrafficPolicy at the end. */
export function section(t: Test, r: ResilienceLab): Promise<unknown> {
  return t.test('a failing backend three hops deep: attempts per user request with the cross-hop cap, and without', async (t) => {
    const { lab, store } = r;
    const dir = sectionDir(r, 'chain');
    const backendLog = join(lab.labDir, 'logs', 'app-demo-backend-1.log');
    const file = join(dir, 'tp.yaml');
    t.teardown(async () => {
      await deleteFile(r, file).catch(() => undefined);
      await settle(r);
    });

    /** Applies the policy and waits until the waypoint has applied that registry revision. */
    const apply = async (retry: string) => {
      writeFileSync(file, policy(retry));
      const res = await lab.weft(['apply', '-f', file]);
      t.equal(res.code, 0, res.stderr);
      const revision = await store.revision();
      for (let i = 0; i < 50 && (await waypointRevision(lab)) < revision; i++) await new Promise((r) => setTimeout(r, 100));
      t.ok((await waypointRevision(lab)) >= revision, `revision ${revision} in force at the waypoint`);
    };

    /** `n` user requests from demo/client down the chain; backend attempts per user request. */
    const measure = async (label: string, n: number): Promise<number> => {
      const tag = randomUUID();
      const url = `http://frontend.demo/chain?via=middle.demo,backend.demo&status=503&${REQUEST_ID_PARAM}=${tag}`;
      const started = Date.now();
      const [sum] = await sendBatch(lab, 'demo/client', [{ url, count: n, timeoutMs: 60_000 }]) as BatchSummary[];
      const ms = Date.now() - started;
      t.same(sum!.statuses, { 503: n }, `${label}: every user request failed as the backend does (503)`);
      // The backend logs before it answers, so every line is written by now.
      const attempts = readFileSync(backendLog, 'utf8').split('\n').filter((l) => l.includes(tag)).length;
      const perRequest = attempts / n;
      t.comment(`${label}: ${n} user requests, ${attempts} backend attempts = ${perRequest.toFixed(2)} per user request (${ms} ms)`);
      return perRequest;
    };

    // Warm the path (connections, waypoint pools) with a chain that succeeds.
    await apply('');
    const [warm] = await sendBatch(lab, 'demo/client', [{ url: 'http://frontend.demo/?via=middle.demo,backend.demo', count: 20 }]) as BatchSummary[];
    t.same(warm!.pods, { 'backend-1': 20 }, 'the chain works: the backend answers through three hops');

    const defaults = await measure('Weft defaults (cross-hop cap on, budget 20 % + 2/s)', DEFAULT_REQUESTS);
    t.ok(defaults <= 1.5, `with Weft's defaults ${defaults.toFixed(2)} backend attempts per user request (≤ 1.5)`);

    await apply('    budget: { enabled: false }\n');
    const capOnly = await measure('cross-hop cap alone (budget off)', CAP_ONLY_REQUESTS);
    t.ok(capOnly <= 10, `the cap alone: ${capOnly.toFixed(2)} per user request (tries add up across hops: 4 + 3 + 3 = 10, not 64)`);

    await apply('    budget: { enabled: false }\n    crossHopCap: false\n');
    const naive = await measure('naive (cap and budget off, as a mesh without them)', NAIVE_REQUESTS);
    t.equal(naive, 64, 'the naive chain: 4 tries at each of 3 hops = 4^3 backend attempts per user request');
    t.comment(`backend attempts per user request: Weft defaults ${defaults.toFixed(2)}, cap alone ${capOnly.toFixed(2)}, naive ${naive.toFixed(2)}`);
  });
}
