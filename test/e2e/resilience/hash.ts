// The load-balancing section of test/e2e/resilience-endpoints.test.ts (on its lab, with
// four echo endpoints behind the demo waypoint, one of them (echo-4) slow: 50 ms service
// time). TrafficPolicy load balancing:
//  1. Round robin, least request and peak EWMA measured from demo/client with 8
//     concurrent keep-alive loops (src/bench/balance-load.ts): p50/p99 and the slow
//     endpoint's share per balancer, printed for docs/resilience.md; EWMA must send the
//     slow endpoint less than round robin.
//  2. Consistent hash on x-user: 200 users each stick to one endpoint; echo-4's app
//     stopped (it leaves the endpoints): at most ~25 % + eps of users move, and only
//     those that were on echo-4 (Ring). Its app runs again when the section ends.
import type { Test } from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { BatchAnswer } from '../../../src/lab/client-batch';
import { REPO_ROOT } from '../../../src/lab/paths';
import type { LoadSummary } from '../../../src/bench/balance-load';
import type { LabHandle } from '../helpers/lab';
import { run as runCmd } from '../../../src/lab/run';
import { sendBatch } from '../helpers/conformance';
import { waitFor } from '../../helpers/wait';
import { deleteFile, sectionDir, setApp, settle, SLOW_MS, workloadStatus, type ResilienceLab } from '../helpers/resilience-lab';

const USERS = 200;

function policy(loadBalancer: string): string {
  return `apiVersion: networking.weft.io/v1alpha1
kind: TrafficPolicy
metadata: { name: echo-balance, namespace: demo }
spec:
  targetRefs: [{ group: "", kind: Service, name: echo }]
  loadBalancer: ${loadBalancer}
`;
}

async function apply(t: Test, r: ResilienceLab, dir: string, loadBalancer: string): Promise<void> {
  const file = join(dir, 'policy.yaml');
  writeFileSync(file, policy(loadBalancer));
  const res = await r.lab.weft(['apply', '-f', file]);
  t.equal(res.code, 0, `apply loadBalancer ${loadBalancer}: ${res.stderr}`);
  // In force once the waypoint has applied the registry's revision (no assertion on it).
  await settle(r);
}

async function loadFromClient(lab: LabHandle, vip: string, requests: number): Promise<LoadSummary> {
  const p = lab.state()!.plan.pods.find((x) => x.uid === 'demo/client')!;
  const out = await runCmd('ip', ['netns', 'exec', p.netns, process.execPath, join(REPO_ROOT, 'dist', 'bench', 'balance-load.js'), `http://${vip}/`, '--concurrency', '8', '--requests', String(requests)], { allowFailure: true, env: lab.env });
  if (out.code !== 0) throw new Error(`balance-load in demo/client failed (${out.code}): ${out.stderr}`);
  return JSON.parse(out.stdout) as LoadSummary;
}

async function usersOnce(lab: LabHandle): Promise<Map<string, string>> {
  const answers = await sendBatch(lab, 'demo/client', Array.from({ length: USERS }, (_, i) => ({ url: 'http://echo.demo/hash', headers: { 'x-user': `user-${i}` } })));
  const out = new Map<string, string>();
  answers.forEach((a, i) => {
    const pod = (a as BatchAnswer).status === 200 ? ((a as BatchAnswer).body as { pod?: string })?.pod : undefined;
    out.set(`user-${i}`, pod ?? `error ${(a as BatchAnswer).status ?? (a as BatchAnswer).error}`);
  });
  return out;
}

/** Deletes its TrafficPolicy and starts echo-4's app again at the end. */
export function section(t: Test, r: ResilienceLab): Promise<unknown> {
  return t.test('TrafficPolicy load balancing through the waypoint', async (t) => {
    const { lab } = r;
    const dir = sectionDir(r, 'hash');
    const vip = lab.state()!.plan.services.find((s) => s.namespace === 'demo' && s.name === 'echo')!.vip;
    t.teardown(async () => {
      await deleteFile(r, join(dir, 'policy.yaml')).catch(() => undefined);
      await setApp(r, 'echo-4', 'start');
      await settle(r);
    });

    await t.test(`one slow endpoint (${SLOW_MS} ms of 4): round robin vs least request vs peak EWMA`, async (t) => {
      const figures: Record<string, LoadSummary> = {};
      for (const type of ['RoundRobin', 'LeastRequest', 'EWMA']) {
        await apply(t, r, dir, `{ type: ${type} }`);
        await loadFromClient(lab, vip, 200); // warm-up: connections, and the EWMA's first samples
        const s = await loadFromClient(lab, vip, 800);
        figures[type] = s;
        const slowShare = (s.pods['echo-4'] ?? 0) / s.requests;
        t.comment(`${type}: p50 ${s.p50} ms, p90 ${s.p90} ms, p99 ${s.p99} ms; echo-4 (slow) ${(slowShare * 100).toFixed(1)} % (${JSON.stringify(s.pods)})`);
        t.same(s.statuses, { 200: s.requests }, `${type}: every request answered 200`);
      }
      const share = (type: string) => (figures[type]!.pods['echo-4'] ?? 0) / figures[type]!.requests;
      t.ok(share('EWMA') < share('RoundRobin'), 'EWMA sends the slow endpoint less than round robin');
      t.ok(share('LeastRequest') < share('RoundRobin'), 'least request sends the slow endpoint less than round robin');
    });

    await t.test(`consistent hash on x-user: ${USERS} users stick; removing 1 of 4 endpoints remaps <= ~25 %`, async (t) => {
      await apply(t, r, dir, '{ type: ConsistentHash, consistentHash: { header: x-user } }');
      const first = await usersOnce(lab);
      const again = await usersOnce(lab);
      t.same([...again], [...first], 'every user answered by the same endpoint again');
      const spread = new Map<string, number>();
      for (const p of first.values()) spread.set(p, (spread.get(p) ?? 0) + 1);
      t.comment(`users per endpoint: ${JSON.stringify(Object.fromEntries([...spread].sort()))}`);
      t.same([...spread.keys()].sort(), ['echo-1', 'echo-2', 'echo-3', 'echo-4'], 'users spread over all four endpoints');

      const stop = await lab.weft(['lab', 'app', 'stop', 'demo/echo-4']);
      t.equal(stop.code, 0, stop.stderr);
      await waitFor('the prober marks echo-4 Unhealthy', async () => (await workloadStatus(lab, 'echo-4')) === 'Unhealthy', { timeoutMs: 20_000, intervalMs: 100 });
      // Until the waypoint has seen it, echo-4's users fail (refused): send until none does.
      let after = await usersOnce(lab);
      for (let i = 0; i < 20 && [...after.values()].some((p) => !p.startsWith('echo-') || p === 'echo-4'); i++) {
        await new Promise((r) => setTimeout(r, 250));
        after = await usersOnce(lab);
      }
      const moved = [...first].filter(([u, p]) => after.get(u) !== p);
      const movedOthers = moved.filter(([, p]) => p !== 'echo-4');
      const share = moved.length / USERS;
      t.comment(`echo-4 removed: ${moved.length}/${USERS} users (${(share * 100).toFixed(1)} %) remapped; echo-4 had ${spread.get('echo-4')}; users of other endpoints moved: ${movedOthers.length}`);
      t.ok([...after.values()].every((p) => ['echo-1', 'echo-2', 'echo-3'].includes(p)), 'every user answered by one of the three left');
      t.ok(share <= 0.25 + 0.1, `remapped ${(share * 100).toFixed(1)} % <= 25 % + 10 % (this sample's share of echo-4: ${spread.get('echo-4')}/${USERS})`);
      t.equal(movedOthers.length, 0, 'only users of the removed endpoint moved (Ring)');
      t.equal(moved.length, spread.get('echo-4'), 'exactly echo-4\'s users moved');
      const back = await lab.weft(['lab', 'app', 'start', 'demo/echo-4']);
      t.equal(back.code, 0, back.stderr);
    });
  });
}
