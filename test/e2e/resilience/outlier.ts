// The outlier-detection section of test/e2e/resilience-endpoints.test.ts (on its lab):
// Service demo/echo has three endpoints behind the namespace's waypoint (the lab's
// fourth, echo-4, has its app stopped for the section), one of them (echo-3) made to fail
// every request with 503 (its readiness probe still passes: the lab prober is answered as
// is, so the registry keeps it Ready and only the waypoint can take it out). With a
// TrafficPolicy of consecutive5xxErrors 3, RoundRobin, baseEjectionTime 10s and maxEjectionPercent 50:
// - it is ejected after exactly 3 errors, and its share of the next requests is 0;
// - healed, it is back after its ejection time (a probe, then the rotation);
// - with two endpoints failing, only one is ejected (50 % of 3 allows one).
// Figures printed (t.comment) for docs/resilience.md; the waits are bounded, not asserted.
// At the end every echo pod serves normally again, echo-4's app runs, the policy is gone.
import type { Test } from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { RequestSummary } from '../../../src/lab/client';
import type { OutlierServiceView } from '../../../src/waypoint/outlier-detectors';
import type { LabHandle } from '../helpers/lab';
import { deleteFile, sectionDir, setApp, setBehaviour, settle, type ResilienceLab } from '../helpers/resilience-lab';

const POLICY = `apiVersion: networking.weft.io/v1alpha1
kind: TrafficPolicy
metadata: { name: echo, namespace: demo }
spec:
  targetRefs: [{ group: "", kind: Service, name: echo }]
  loadBalancer: { type: RoundRobin }
  outlierDetection: { consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 10s, maxEjectionPercent: 50 }
`;

async function burst(lab: LabHandle, n: number): Promise<RequestSummary> {
  const res = await lab.exec('demo/client', ['weft', 'lab', 'request', 'http://echo.demo/', '--count', String(n)]);
  if (!res.stdout.trim()) throw new Error(`no summary from the client: ${res.stderr}`);
  return JSON.parse(res.stdout) as RequestSummary;
}

async function admin<T>(lab: LabHandle, path: string): Promise<T> {
  const res = await lab.exec('demo/waypoint', ['weft', 'lab', 'request', `http://127.0.0.1:15000${path}`]);
  if (res.code !== 0) throw new Error(`waypoint admin ${path}: ${res.stderr}`);
  return JSON.parse(res.stdout) as T;
}

const share = (s: RequestSummary, pod: string) => (s.pods[pod] ?? 0) / s.requests;
const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

export function section(t: Test, r: ResilienceLab): Promise<unknown> {
  return t.test('one of 3 endpoints failing: ejected after 3 errors, share 0, back after its ejection time; max ejection percent holds', async (t) => {
    const { lab } = r;
    const dir = sectionDir(r, 'outlier');
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    t.teardown(async () => {
      for (const pod of ['demo/echo-1', 'demo/echo-3']) await setBehaviour(lab, pod, 'failRatio=0');
      await deleteFile(r, join(dir, 'policy.yaml')).catch(() => undefined);
      await setApp(r, 'echo-4', 'start');
      await settle(r);
    });
    // Three endpoints (echo-4 out: Unhealthy, and the waypoint has that), echo-3 failing.
    await setApp(r, 'echo-4', 'stop');
    await setBehaviour(lab, 'demo/echo-3', 'failRatio=1&failStatus=503');
    const applied = await lab.weft(['apply', '-f', join(dir, 'policy.yaml')]);
    t.equal(applied.code, 0, applied.stderr);
    // In force at the waypoint once its admin view lists it (bounded: 20 s).
    for (let i = 0; i < 80; i++) {
      const views = await admin<{ namespace: string; name: string }[]>(lab, '/trafficpolicies');
      if (views.some((v) => v.name === 'echo')) break;
      await new Promise((r) => setTimeout(r, 250));
    }

    const first = await burst(lab, 60);
    t.comment(`first 60 requests: ${JSON.stringify(first.statuses)}, pods ${JSON.stringify(first.pods)}`);
    t.equal(first.statuses['503'], 3, 'exactly consecutive5xxErrors (3) failures reached the client before the ejection');
    t.equal(first.pods['echo-3'], 3, 'all three from echo-3');
    const [view] = await admin<OutlierServiceView[]>(lab, '/outliers');
    // The view lists every endpoint the detector tracks (the healthy ones too, in address
    // order): the ejected one is looked up, not taken by its position.
    const firstOut = view?.endpoints.filter((e) => e.state === 'ejected') ?? [];
    // When the waypoint ejected it: its probe time less the ejection time (same host clock).
    const ejectedAt = Date.parse(firstOut[0]?.until ?? '') - 10_000;
    t.match(view, { namespace: 'demo', name: 'echo', ejected: 1 });
    t.equal(firstOut.length, 1, 'one endpoint ejected');
    t.match(firstOut[0], { state: 'ejected', reason: 'consecutive-5xx', ejections: 1 });

    const during = await burst(lab, 60);
    t.comment(`next 60 requests while ejected: ${JSON.stringify(during.statuses)}, echo-3 share ${pct(share(during, 'echo-3'))} (was ${pct(1 / 3)} by round robin)`);
    t.equal(during.pods['echo-3'] ?? 0, 0, 'its share is 0 while ejected');
    t.same(during.statuses, { 200: 60 }, 'every request answered 200 by the two others');

    const cli = await lab.weft(['outliers']);
    t.equal(cli.code, 0, cli.stderr);
    t.comment(`weft outliers:\n${cli.stdout.trimEnd()}`);
    t.match(cli.stdout, /demo\/echo\s+198\.19\.\d+\.\d+\s+ejected\s+1\s+consecutive-5xx/, 'weft outliers shows the ejection');

    await setBehaviour(lab, 'demo/echo-3', 'failRatio=0');
    let back = 0;
    for (let i = 0; i < 80 && !back; i++) {
      const s = await burst(lab, 6);
      if ((s.pods['echo-3'] ?? 0) > 0) back = Date.now();
      else await new Promise((r) => setTimeout(r, 250));
    }
    t.ok(back, 'echo-3 came back (bounded wait: 80 rounds)');
    t.comment(`echo-3 back ${((back - ejectedAt) / 1000).toFixed(1)} s after its ejection (baseEjectionTime 10 s, one probe first)`);
    const after = await burst(lab, 60);
    t.comment(`60 requests after its return: pods ${JSON.stringify(after.pods)}, echo-3 share ${pct(share(after, 'echo-3'))}`);
    t.same(after.statuses, { 200: 60 });
    t.ok((after.pods['echo-3'] ?? 0) >= 15, 'back in the rotation (a third of round robin)');

    // Two failing of three: maxEjectionPercent 50 lets one go (1.5 of 3), never two.
    await setBehaviour(lab, 'demo/echo-1', 'failRatio=1');
    await setBehaviour(lab, 'demo/echo-3', 'failRatio=1');
    const two = await burst(lab, 90);
    const [cap] = await admin<OutlierServiceView[]>(lab, '/outliers');
    const out = cap!.endpoints.filter((e) => e.state !== 'active');
    t.comment(`two failing, 90 requests: ${JSON.stringify(two.statuses)}, pods ${JSON.stringify(two.pods)}; ejected now: ${out.map((e) => e.endpoint).join(', ')}`);
    t.equal(cap!.ejected, 1, 'only one of the two failing endpoints is ejected (50 % of 3)');
    t.ok((two.statuses['503'] ?? 0) > 3, 'the other failing endpoint kept receiving traffic');

    const metrics = await lab.exec('demo/waypoint', ['weft', 'lab', 'request', `http://${lab.state()!.waypoints!.find((w) => w.uid === 'demo/waypoint')!.ip}:15020/metrics`]);
    const ejections = [...metrics.stdout.matchAll(/^weft_waypoint_outlier_ejections_total\{[^}]*destination_service_name="echo"[^}]*\} (\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0);
    t.comment(`weft_waypoint_outlier_ejections_total for demo/echo: ${ejections}`);
    t.ok(ejections >= 2, 'each ejection counted');
  });
}

