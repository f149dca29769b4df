// `weft ztunnel --workers 2` on the lab: the two workers share the node's captured
// listeners and both move real traffic through real HBONE/mTLS; the primary's
// readiness and metrics speak for the node as a whole; a worker that dies is started
// again; a SIGTERM to the primary stops every worker.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { labSkipReason, startLab } from './helpers/lab';
import { cpuSeconds } from '../../src/faults/observe';
import { isAlive } from '../../src/lab/procs';
import type { ProcessResource } from '../../src/lab/state';
import { parsePromText } from '../../src/telemetry/prom-text';
import { waitFor } from '../helpers/wait';

const skip = labSkipReason();

/** The processes below `pid` (the primary's workers; `ip netns exec` execs, so the recorded PID is node's). */
function children(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

async function get(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
  return { status: res.status, body: await res.text() };
}

t.test('a ztunnel in two workers: shared listeners, one readiness, whole metrics, restarts', { skip }, async (t) => {
  const lab = await startLab(t, { env: { WEFT_ZTUNNEL_WORKERS: '2' } });
  const ctx = lab.context;
  const node1 = ctx.nodes.find((n) => n.name === 'node-1')!;
  const echo2 = ctx.pods.find((p) => p.uid === 'demo/echo-2')!;
  const primary = () => lab.state()!.resources.find((r): r is ProcessResource => r.type === 'process' && r.name === 'ztunnel/node-1')!;
  const metricsUrl = `http://${node1.address}:15020/metrics`;
  const readyUrl = `http://${node1.address}:15021/healthz/ready`;
  const workers = children(primary().pid!);
  t.equal(workers.length, 2, `node-1's ztunnel (pid ${primary().pid}) runs two workers: ${workers.join(', ')}`);

  await t.test('both workers carry traffic, bytes intact through HBONE', async (t) => {
    const before = workers.map(cpuSeconds);
    // All eight settle before the verdict, so a failure says how many failed and why (each with the ztunnels' lines).
    const settled = await Promise.allSettled(Array.from({ length: 8 }, () => lab.tcp('demo/client', `${echo2.ip}:9000`, 8_000_000)));
    const failed = settled.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
    const results = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    t.same(failed, [], `${failed.length} of 8 connections failed`);
    t.ok(results.length === 8 && results.every((r) => r.match && r.received === 8_000_000), '8 parallel connections demo/client → demo/echo-2 (node-2), 8 MB each, echoed intact');
    const used = workers.map((pid, i) => cpuSeconds(pid) - before[i]!);
    t.comment(`CPU per worker for 8 × 8 MB echoed: ${used.map((s) => `${(s * 1000).toFixed(0)} ms`).join(', ')}`);
    // Idle, a worker spends a few ms a second; each carried some of the 128 MB.
    t.ok(used.every((s) => s >= 0.05), 'each worker did part of the work (connections spread over both)');
  });

  await t.test('metrics: one scrape for the node, summed over the workers', async (t) => {
    const { status, body } = await get(metricsUrl);
    t.equal(status, 200);
    const scrape = parsePromText(body);
    const values = (name: string) => scrape.samples.filter((s) => s.name === name);
    t.same(values('weft_ztunnel_workers').map((s) => s.value), [2]);
    t.same(values('istio_build').map((s) => s.value), [1], 'one build, not one per worker');
    const opened = values('istio_tcp_connections_opened_total').filter((s) => s.labels.reporter === 'source' && s.labels.destination_workload === 'echo-2');
    const total = opened.reduce((n, s) => n + s.value, 0);
    t.ok(total >= 8, `istio_tcp_connections_opened_total (reporter=source, to echo-2) sums both workers: ${total}`);
    t.equal(new Set(values('weft_registry_revision').map((s) => s.value)).size, 1, 'one registry revision');
  });

  await t.test('a worker killed is started again, and readiness says so meanwhile', async (t) => {
    t.equal((await get(readyUrl)).status, 200);
    process.kill(workers[1]!, 'SIGKILL');
    await waitFor('a new worker', () => children(primary().pid!).length === 2 && !children(primary().pid!).includes(workers[1]!), { timeoutMs: 20_000 });
    await waitFor('node-1 ready again', async () => (await get(readyUrl)).status === 200, { timeoutMs: 30_000 });
    const scrape = parsePromText((await get(metricsUrl)).body);
    t.same(scrape.samples.filter((s) => s.name === 'weft_ztunnel_worker_restarts_total').map((s) => s.value), [1]);
    const r = await lab.tcp('demo/client', `${echo2.ip}:9000`, 100_000);
    t.ok(r.match, 'traffic flows after the restart');
    const log = readFileSync(primary().log!, 'utf8');
    t.match(log, /a ztunnel worker exited; starting it again/, 'the exit is logged');
  });

  await t.test('SIGTERM to the primary stops every worker; a start brings two back', async (t) => {
    const before = children(primary().pid!);
    t.equal((await lab.weft(['lab', 'ztunnel', 'node-1', 'stop'])).code, 0, 'weft lab ztunnel node-1 stop (SIGTERM, drain)');
    t.ok(before.every((pid) => !isAlive({ pid } as ProcessResource)), 'no worker outlives the primary');
    // With the lab's environment, so WEFT_ZTUNNEL_WORKERS=2 again.
    t.equal((await lab.weft(['lab', 'ztunnel', 'node-1', 'start'])).code, 0, 'weft lab ztunnel node-1 start');
    t.equal(children(primary().pid!).length, 2);
    const r = await lab.tcp('demo/client', `${echo2.ip}:9000`, 100_000);
    t.ok(r.match, 'traffic flows through the new ztunnel');
  });
});
