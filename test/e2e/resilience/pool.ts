// The pool section of test/e2e/resilience.test.ts (on the shared resilience lab):
// bulkheads, with Service demo/slow (one pod answering after 1 s) behind the
// namespace's waypoint with a TrafficPolicy connectionPool of 4 requests in flight and
// 4 pending. Waves of 40 concurrent requests from demo/client:
// - the overflow is answered 503 with response flag UO, fast (the latency of the 503s is
//   printed beside the 1 s of the served ones), and the pod never serves more than 4 at
//   once (its own peak, read from it: nothing queued past the limit reached it);
// - meanwhile Service demo/echo through the same waypoint keeps its latency: a
//   sequential loop to it before and during the saturation, p50/p99 printed, every
//   answer 200 and none refused.
// Figures printed (t.comment) for docs/resilience.md; timings are printed, not asserted.
import type { Test } from 'tap';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { LabHandle } from '../helpers/lab';
import { deleteFile, sectionDir, settle, type ResilienceLab } from '../helpers/resilience-lab';

const run = promisify(execFile);
const WAVES = 3;
const WAVE = 40;

const POLICY = `apiVersion: networking.weft.io/v1alpha1
kind: TrafficPolicy
metadata: { name: slow, namespace: demo }
spec:
  targetRefs: [{ group: "", kind: Service, name: slow }]
  connectionPool: { maxConcurrentRequests: 4, maxPendingRequests: 4 }
`;

/**
 * In demo/client: a sequential loop to echo (label "echo") for the whole run, and after
 * 1 s, WAVES waves of WAVE concurrent requests to slow, each on its own connection.
 * Prints one JSON line: every answer { l, c (status, 0 = no answer), ms, phase }.
 */
const LOAD = `
const http = require('node:http');
const [waves, wave] = [Number(process.argv[1]), Number(process.argv[2])];
const out = [];
let phase = 'before';
function get(url, label) {
  const s = Date.now();
  return new Promise((resolve) => {
    const req = http.get(url, { agent: false, timeout: 10000 }, (res) => {
      res.resume();
      res.on('end', () => { out.push({ l: label, c: res.statusCode, ms: Date.now() - s, phase }); resolve(); });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => { out.push({ l: label, c: 0, ms: Date.now() - s, phase }); resolve(); });
  });
}
let stop = false;
(async () => {
  const loop = (async () => { while (!stop) await get('http://echo.demo/', 'echo'); })();
  await new Promise((r) => setTimeout(r, 1500));
  phase = 'during';
  for (let w = 0; w < waves; w++) {
    await Promise.all(Array.from({ length: wave }, () => get('http://slow.demo/', 'slow')));
  }
  stop = true;
  await loop;
  process.stdout.write(JSON.stringify(out) + '\\n');
})();
setTimeout(() => process.exit(2), 60000).unref();
`;

interface Answer { l: string; c: number; ms: number; phase: 'before' | 'during' }

function pctl(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! : NaN;
}

async function waypointMetrics(lab: LabHandle): Promise<string> {
  const ip = lab.state()!.waypoints!.find((w) => w.uid === 'demo/waypoint')!.ip;
  const res = await lab.exec('demo/waypoint', ['weft', 'lab', 'request', `http://${ip}:15020/metrics`]);
  if (res.code !== 0) throw new Error(`waypoint metrics: ${res.stderr}`);
  return res.stdout;
}

/** Deletes its TrafficPolicy at the end. */
export function section(t: Test, r: ResilienceLab): Promise<unknown> {
  return t.test('pending-request limit: overflow gets a fast 503 UO, nothing queues past it; another Service keeps its latency', async (t) => {
    const { lab } = r;
    const dir = sectionDir(r, 'pool');
    writeFileSync(join(dir, 'policy.yaml'), POLICY);
    t.teardown(async () => {
      await deleteFile(r, join(dir, 'policy.yaml')).catch(() => undefined);
      await settle(r);
    });
    const applied = await lab.weft(['apply', '-f', join(dir, 'policy.yaml')]);
    t.equal(applied.code, 0, applied.stderr);
    // In force once the waypoint lists the Service's bulkhead (it is made by the first request after the policy).
    for (let i = 0; i < 80; i++) {
      await lab.exec('demo/client', ['weft', 'lab', 'request', 'http://slow.demo/']);
      const res = await lab.exec('demo/waypoint', ['weft', 'lab', 'request', 'http://127.0.0.1:15000/pools']);
      if (res.code === 0 && (JSON.parse(res.stdout) as { name: string }[]).some((v) => v.name === 'slow')) break;
      await new Promise((r) => setTimeout(r, 250));
    }

    const client = lab.state()!.plan.pods.find((p) => p.uid === 'demo/client')!;
    const { stdout } = await run('ip', ['netns', 'exec', client.netns, process.execPath, '-e', LOAD, String(WAVES), String(WAVE)], { maxBuffer: 64 * 1024 * 1024, timeout: 90_000 });
    const answers = JSON.parse(stdout) as Answer[];
    const slow = answers.filter((a) => a.l === 'slow');
    const ok = slow.filter((a) => a.c === 200);
    const refused = slow.filter((a) => a.c === 503);
    t.equal(slow.length, WAVES * WAVE);
    t.equal(ok.length + refused.length, slow.length, 'every request to slow answered 200 or 503 (no connection error, no timeout)');
    t.ok(refused.length > 0, 'the overflow was refused');
    t.comment(`slow: ${WAVES} waves of ${WAVE} concurrent; ${ok.length} served (limit 4 in flight + 4 pending per wave), ${refused.length} refused 503`);
    t.comment(`slow latency: served p50 ${pctl(ok.map((a) => a.ms), 50)} ms / p99 ${pctl(ok.map((a) => a.ms), 99)} ms (service time 1000 ms); refused p50 ${pctl(refused.map((a) => a.ms), 50)} ms / p99 ${pctl(refused.map((a) => a.ms), 99)} ms`);

    const behaviour = await lab.exec('demo/slow-1', ['weft', 'lab', 'request', 'http://127.0.0.1:8080/_echo/behaviour']);
    const peak = (JSON.parse(behaviour.stdout) as { peakActive: number }).peakActive;
    t.comment(`slow-1 served at most ${peak} requests at once (maxConcurrentRequests 4)`);
    t.ok(peak <= 4, 'the pod never had more than maxConcurrentRequests in flight: nothing queued past the limit reached it');

    const metrics = await waypointMetrics(lab);
    const uo = [...metrics.matchAll(/^istio_requests_total\{([^}]*)\} (\d+)/gm)]
      .filter((m) => m[1]!.includes('destination_service_name="slow"') && m[1]!.includes('response_flags="UO"'))
      .reduce((a, m) => a + Number(m[2]), 0);
    t.equal(uo, refused.length, 'each 503 counted with response flag UO');

    const echo = (phase: string) => answers.filter((a) => a.l === 'echo' && a.phase === phase);
    const before = echo('before');
    const during = echo('during');
    t.ok(before.length > 0 && during.length > 0);
    t.ok([...before, ...during].every((a) => a.c === 200), 'every request to echo answered 200 while slow was saturated');
    t.comment(`echo (same waypoint) latency before: p50 ${pctl(before.map((a) => a.ms), 50)} ms / p99 ${pctl(before.map((a) => a.ms), 99)} ms over ${before.length}; during slow's saturation: p50 ${pctl(during.map((a) => a.ms), 50)} ms / p99 ${pctl(during.map((a) => a.ms), 99)} ms over ${during.length}`);
  });
}

