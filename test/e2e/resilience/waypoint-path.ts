// The waypoint-path section of test/e2e/resilience.test.ts (on the shared resilience lab:
// netns, iptables, real processes): the waypoint data path, with a waypoint for namespace
// demo, bound with `weft namespace use-waypoint`, a 95/5 canary HTTPRoute
// applied with `weft apply -f`; 500 requests from demo/client split within ±5 % and all
// pass through the waypoint (its istio_requests_total rises by them); with the waypoint
// stopped the source ztunnel fails closed (echo never answers directly), and once it is
// started again requests succeed with nothing else touched. The route goes at the end.
import type { Test } from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RequestSummary } from '../../../src/lab/client';
import type { LabHandle } from '../helpers/lab';
import { deleteFile, sectionDir, settle, type ResilienceLab } from '../helpers/resilience-lab';

const REQUESTS = 500;

const canary = `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: echo-canary, namespace: demo }
spec:
  parentRefs: [{ group: "", kind: Service, name: echo, port: 80 }]
  rules:
    - backendRefs:
        - { name: echo-v1, port: 80, weight: 95 }
        - { name: echo-v2, port: 80, weight: 5 }
`;

/** Sum of the waypoint's istio_requests_total with response_code 200, read in its own pod. */
async function waypointRequests(lab: LabHandle, ip: string): Promise<number> {
  const res = await lab.exec('demo/waypoint', ['weft', 'lab', 'request', `http://${ip}:15020/metrics`]);
  if (res.code !== 0) throw new Error(`metrics of the waypoint: ${res.stderr}`);
  let sum = 0;
  for (const m of res.stdout.matchAll(/^istio_requests_total\{([^}]*)\} (\d+)/gm)) {
    if (/reporter="waypoint"/.test(m[1]!) && /response_code="200"/.test(m[1]!)) sum += Number(m[2]);
  }
  return sum;
}

async function many(lab: LabHandle, url: string, count: number): Promise<RequestSummary> {
  const res = await lab.exec('demo/client', ['weft', 'lab', 'request', url, '--count', String(count)]);
  if (!res.stdout) throw new Error(`request --count from demo/client failed (${res.code}): ${res.stderr}`);
  return JSON.parse(res.stdout) as RequestSummary;
}

/** Deletes its route at the end (the waypoint it stops is started again by the section itself). */
export function section(t: Test, r: ResilienceLab): Promise<unknown> {
  return t.test('waypoint path: 95/5 canary through the waypoint, fail closed, recovery', async (t) => {
    const { lab } = r;
    const dir = sectionDir(r, 'waypoint-path');
    writeFileSync(join(dir, 'canary.yaml'), canary);
    const wp = lab.state()!.waypoints!.find((x) => x.uid === 'demo/waypoint')!;
    t.teardown(async () => {
      await lab.weft(['lab', 'waypoint', 'demo/waypoint', 'start']); // running already unless a step failed
      await deleteFile(r, join(dir, 'canary.yaml')).catch(() => undefined);
      await settle(r);
    });

    await t.test('the topology waypoint is ready; namespace demo uses it; the canary route is applied', async (t) => {
      const wps = await lab.weft(['waypoints', '-o', 'json']);
      t.equal(wps.code, 0, wps.stderr);
      const item = (JSON.parse(wps.stdout) as { items: { name: string; readyPods: number }[] }).items.find((x) => x.name === 'waypoint');
      t.equal(item?.readyPods, 1, 'lab up waited until its pod is Healthy');
      const use = await lab.weft(['namespace', 'use-waypoint', 'demo', 'waypoint']);
      t.equal(use.code, 0, use.stderr);
      const apply = await lab.weft(['apply', '-f', join(dir, 'canary.yaml')]);
      t.equal(apply.code, 0, apply.stderr);
      t.match(apply.stdout, /^httproute\.gateway\.networking\.k8s\.io\/echo-canary created$/m);
      const routes = await lab.weft(['routes', '-n', 'demo']);
      t.equal(routes.code, 0, routes.stderr);
      t.match(routes.stdout, /echo-canary/);
    });

    await t.test(`${REQUESTS} requests from demo/client: 95/5 within ±5 %, every one through the waypoint`, async (t) => {
      const before = await waypointRequests(lab, wp.ip);
      const started = Date.now();
      const sum = await many(lab, 'http://echo.demo/canary', REQUESTS);
      const ms = Date.now() - started;
      t.same(sum.statuses, { 200: REQUESTS }, 'every request answered 200');
      t.same(sum.errors, {});
      const v2 = sum.pods['echo-2'] ?? 0;
      const share = v2 / REQUESTS;
      t.comment(`split: echo-1 ${sum.pods['echo-1'] ?? 0}, echo-2 ${v2} (${(share * 100).toFixed(1)} %); ${REQUESTS} requests in ${sum.ms} ms in the client, ${ms} ms with lab exec`);
      t.equal((sum.pods['echo-1'] ?? 0) + v2, REQUESTS, 'only the two echo pods answered');
      t.ok(share >= 0 && share <= 0.10, `echo-2 share ${(share * 100).toFixed(1)} % within 5 % ± 5 %`);
      t.ok(v2 > 0, 'the canary got some traffic');
      const after = await waypointRequests(lab, wp.ip);
      t.comment(`waypoint istio_requests_total{response_code="200"}: ${before} → ${after}`);
      t.ok(after - before >= REQUESTS, `the waypoint counted at least the ${REQUESTS} requests (${after - before})`);
    });

    await t.test('waypoint stopped: the source ztunnel refuses, echo never answers directly; started: works again', async (t) => {
      const stop = await lab.weft(['lab', 'waypoint', 'demo/waypoint', 'stop']);
      t.equal(stop.code, 0, stop.stderr);
      // Until the source ztunnel has seen the pod Unhealthy it dials the dead pod and fails
      // that way; once it has, it refuses up front (NO_WAYPOINT). Every try must fail, and a
      // bounded number of tries must reach the up-front refusal.
      const log = join(lab.labDir, 'logs', 'ztunnel-node-1.log');
      let sawNoWaypoint = false;
      for (let i = 0; i < 20 && !sawNoWaypoint; i++) {
        const refused = await lab.exec('demo/client', ['weft', 'lab', 'request', 'http://echo.demo/', '--timeout', '3s']);
        t.not(refused.code, 0, `try ${i + 1}: the request fails`);
        t.notMatch(refused.stdout, /"pod"/, `try ${i + 1}: no echo pod answered`);
        if (i === 0) t.comment(`refused: ${refused.stderr.trim()}`);
        sawNoWaypoint = readFileSync(log, 'utf8').includes('"error":"NO_WAYPOINT"');
        if (!sawNoWaypoint) await new Promise((r) => setTimeout(r, 250));
      }
      t.ok(sawNoWaypoint, 'the source ztunnel refused with NO_WAYPOINT: no ready pod, no bypass');

      const start = await lab.weft(['lab', 'waypoint', 'demo/waypoint', 'start']);
      t.equal(start.code, 0, start.stderr);
      // The source ztunnel learns the pod is Healthy again from the registry: allow it a
      // bounded number of tries (not a timing assertion).
      let sum: RequestSummary | undefined;
      for (let i = 0; i < 20; i++) {
        sum = await many(lab, 'http://echo.demo/after', 20);
        if (sum.statuses['200'] === 20) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      t.same(sum?.statuses, { 200: 20 }, 'requests succeed again');
      const through = await waypointRequests(lab, wp.ip);
      t.ok(through >= 20, 'through the restarted waypoint');
    });
  });
}

