// Pod-bound (workload) waypoints on the real lab (netns, iptables, real processes): a
// waypoint for workloads in demo, echo-2 bound to it by its own weft.io/use-waypoint
// label, Service demo/echo with no waypoint of its own. One lab bring-up:
// - traffic addressed to echo-2's pod IP goes through the waypoint (its
//   istio_requests_total rises by every request);
// - Service traffic balanced to echo-2 goes through it too (as Istio's ztunnel sends a
//   Service's chosen endpoint to that endpoint's workload waypoint), echo-1's share
//   goes direct;
// - with the waypoint stopped, echo-2's share is refused (NO_WAYPOINT), never answered
//   by echo-2 directly, while echo-1 keeps answering.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RequestSummary } from '../../src/lab/client';
import { defaultTopologyFile } from '../../src/lab/paths';
import { labSkipReason, startLab, type LabHandle } from './helpers/lab';

const WP = 'wl-waypoint';

/** The default topology, echo-2 bound by its own label to a waypoint for workloads. */
function topology(): string {
  const text = readFileSync(defaultTopologyFile(), 'utf8');
  const echo2 = 'name: echo-2, namespace: demo, node: node-2, serviceAccount: echo, labels: { app: echo, version: v2 }';
  if (!text.includes(echo2)) throw new Error('the default topology has no demo/echo-2 as expected any more');
  return `${text.replace(echo2, echo2.replace('version: v2 }', `version: v2, weft.io/use-waypoint: ${WP} }`))}`
    + `\nwaypoints:\n  - { name: ${WP}, namespace: demo, node: node-2, for: workload }\n`;
}

/** Sum of the waypoint's istio_requests_total with response_code 200, read in its own pod. */
async function waypointRequests(lab: LabHandle, ip: string): Promise<number> {
  const res = await lab.exec(`demo/${WP}`, ['weft', 'lab', 'request', `http://${ip}:15020/metrics`]);
  if (res.code !== 0) throw new Error(`metrics of the waypoint: ${res.stderr}`);
  let sum = 0;
  for (const m of res.stdout.matchAll(/^istio_requests_total\{([^}]*)\} (\d+)/gm)) {
    if (/reporter="waypoint"/.test(m[1]!) && /response_code="200"/.test(m[1]!)) sum += Number(m[2]);
  }
  return sum;
}

/** `fresh`: a new connection per request (the ztunnel balances connections, not requests). */
async function many(lab: LabHandle, url: string, count: number, fresh = false): Promise<RequestSummary> {
  const res = await lab.exec('demo/client', ['weft', 'lab', 'request', url, '--count', String(count), '--timeout', '3s',
    ...(fresh ? ['--header', 'connection: close'] : [])]);
  if (!res.stdout) throw new Error(`request --count from demo/client failed (${res.code}): ${res.stderr}`);
  return JSON.parse(res.stdout) as RequestSummary;
}

function run(): void {
  t.test('workload waypoint: pod-IP and Service traffic to a bound pod go through it; fail closed', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'weft-wp-workload-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'lab.yaml'), topology());
    const lab = await startLab(t, { topology: join(dir, 'lab.yaml') });
    const wp = lab.state()!.waypoints!.find((x) => x.uid === `demo/${WP}`)!;
    const echo2 = lab.state()!.plan.pods.find((p) => p.uid === 'demo/echo-2')!;

    await t.test('the waypoint is for workloads; explain shows Service traffic to echo-2 through it', async (t) => {
      const wps = await lab.weft(['waypoints', '-o', 'json']);
      t.equal(wps.code, 0, wps.stderr);
      t.match((JSON.parse(wps.stdout) as { items: { name: string; for: string; readyPods: number }[] }).items.find((x) => x.name === WP),
        { for: 'workload', readyPods: 1 });
      const e = await lab.weft(['explain', 'demo/client', 'echo.demo:80']);
      t.equal(e.code, 0, e.stderr);
      t.match(e.stdout, new RegExp(`CONNECT :authority ${echo2.ip.replace(/\./g, '\\.')}:8080 \\(the chosen endpoint's IP:target port: service demo/echo has no waypoint`));
    });

    await t.test('addressed to echo-2\'s pod IP: every request through the waypoint', async (t) => {
      const before = await waypointRequests(lab, wp.ip);
      const sum = await many(lab, `http://${echo2.ip}:8080/pod`, 40);
      t.same(sum.statuses, { 200: 40 }, 'every request answered');
      t.same(sum.pods, { 'echo-2': 40 }, 'by echo-2');
      const after = await waypointRequests(lab, wp.ip);
      t.comment(`waypoint istio_requests_total{response_code="200"}: ${before} → ${after}`);
      t.ok(after - before >= 40, `the waypoint counted the 40 requests (${after - before})`);
    });

    await t.test('Service traffic: echo-2\'s share through the waypoint, echo-1\'s direct', async (t) => {
      const before = await waypointRequests(lab, wp.ip);
      const sum = await many(lab, 'http://echo.demo/svc', 40, true);
      t.same(sum.statuses, { 200: 40 });
      const toEcho2 = sum.pods['echo-2'] ?? 0;
      t.comment(`split: echo-1 ${sum.pods['echo-1'] ?? 0}, echo-2 ${toEcho2}`);
      t.ok(toEcho2 > 0 && (sum.pods['echo-1'] ?? 0) > 0, 'both endpoints answered');
      const after = await waypointRequests(lab, wp.ip);
      t.comment(`waypoint istio_requests_total{response_code="200"}: ${before} → ${after}`);
      // Each connection carries one request: the waypoint counts echo-2's share, not echo-1's.
      t.ok(after - before >= toEcho2 && after - before < 40, `the waypoint counted echo-2's ${toEcho2} requests, not echo-1's (${after - before})`);
    });

    await t.test('waypoint stopped: echo-2\'s share is refused, never answered directly; echo-1 still answers', async (t) => {
      const stop = await lab.weft(['lab', 'waypoint', `demo/${WP}`, 'stop']);
      t.equal(stop.code, 0, stop.stderr);
      const log = join(lab.labDir, 'logs', 'ztunnel-node-1.log');
      let sawNoWaypoint = false;
      for (let i = 0; i < 20 && !sawNoWaypoint; i++) {
        const sum = await many(lab, 'http://echo.demo/closed', 10, true);
        t.equal(sum.pods['echo-2'], undefined, `try ${i + 1}: echo-2 never answers without its waypoint`);
        if (i === 0) t.comment(`statuses ${JSON.stringify(sum.statuses)}, errors ${JSON.stringify(sum.errors)}, pods ${JSON.stringify(sum.pods)}`);
        sawNoWaypoint = readFileSync(log, 'utf8').includes('"error":"NO_WAYPOINT"');
        if (!sawNoWaypoint) await new Promise((r) => setTimeout(r, 250));
      }
      t.ok(sawNoWaypoint, 'the source ztunnel refused with NO_WAYPOINT: no ready pod, no bypass');
      const last = await many(lab, 'http://echo.demo/closed', 10, true);
      t.ok((last.pods['echo-1'] ?? 0) > 0, 'echo-1 (not bound) keeps answering');
      t.equal(last.pods['echo-2'], undefined);
      const e = await lab.weft(['explain', 'demo/client', 'echo.demo:80']);
      t.match(e.stdout, /Refused \(NO_WAYPOINT\): service demo\/echo has no waypoint of its own; its endpoint .* was chosen and pod demo\/echo-2 is bound to waypoint demo\/wl-waypoint/);
    });
  });
}

const skip = labSkipReason();
if (skip) {
  t.plan(0, `lab e2e: ${skip}`);
} else {
  run();
}
