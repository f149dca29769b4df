// The canary section of test/e2e/resilience.test.ts (on the shared resilience lab):
// canary 95/5, then a blue-green flip 0/100, by `weft apply` of an HTTPRoute, with
// traffic running through TWO waypoints the whole time: Service demo/echo goes through
// demo/waypoint (node-2, the namespace's binding) and Service demo/echo-b through
// demo/waypoint-b (node-1, the Service's own binding); one route attaches to both, so one
// apply changes both waypoints. Measured and printed (t.comment) for docs/resilience.md:
// - the split over 1,000 requests per waypoint after the canary is applied (within ±5 %);
// - how long after the registry commit of the flip each waypoint answered only from v2
//   (the commit time is the change-stream entry's id, stamped by redis-server on this host;
//   the requests are stamped by a client in demo/client on the same clock);
// - that no request failed during either change (every answer 200, no connection error).
// Then a TrafficPolicy by `weft apply` shows up at both waypoints (admin view), and a
// refused edit leaves it there. At the end the route, the policy and echo-b's binding go.
// The timings are printed, not asserted (a loaded machine must not fail the test); what is
// asserted is that the flip is total (not one v1 answer after it at either waypoint).
import type { Test } from 'tap';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Redis } from 'ioredis';
import type { LabHandle } from '../helpers/lab';
import { deleteFile, sectionDir, settle, type ResilienceLab } from '../helpers/resilience-lab';

const SPLIT_REQUESTS = 1000;

const route = (v1: number, v2: number) => `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: canary, namespace: demo }
spec:
  parentRefs:
    - { group: "", kind: Service, name: echo, port: 80 }
    - { group: "", kind: Service, name: echo-b, port: 80 }
  rules:
    - backendRefs:
        - { name: echo-v1, port: 80, weight: ${v1} }
        - { name: echo-v2, port: 80, weight: ${v2} }
`;

/**
 * The load: one sequential keep-alive loop per target in one process in demo/client,
 * one JSON line per request (loop, start and end ms, status or 0, echo pod or error
 * code). Stops when its stdin closes, or after 120 s whatever happens (bounded).
 */
const LOAD = `
const http = require('node:http');
const targets = [];
for (let i = 1; i + 1 < process.argv.length; i += 2) targets.push([process.argv[i], process.argv[i + 1]]);
let stop = false;
process.stdin.on('end', () => { stop = true; }).resume();
const deadline = Date.now() + 120000;
async function loop([label, url]) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  while (!stop && Date.now() < deadline) {
    const s = Date.now();
    const r = await new Promise((resolve) => {
      const req = http.get(url, { agent, timeout: 5000 }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          let pod = '';
          try { pod = JSON.parse(Buffer.concat(chunks).toString()).pod || ''; } catch {}
          resolve({ c: res.statusCode, p: pod });
        });
        res.on('error', (e) => resolve({ c: 0, p: e.code || e.message }));
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
      req.on('error', (e) => resolve({ c: 0, p: e.code || e.message }));
    });
    process.stdout.write(JSON.stringify({ l: label, s, e: Date.now(), ...r }) + '\\n');
  }
  agent.destroy();
}
Promise.all(targets.map(loop)).then(() => process.exit(0));
`;

interface Answer { l: string; s: number; e: number; c: number; p: string }

class Load {
  readonly answers: Answer[] = [];
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly done: Promise<void>;

  constructor(netns: string, targets: [string, string][]) {
    this.child = spawn('ip', ['netns', 'exec', netns, process.execPath, '-e', LOAD, ...targets.flat()], { stdio: 'pipe' });
    createInterface({ input: this.child.stdout }).on('line', (line) => this.answers.push(JSON.parse(line) as Answer));
    this.done = new Promise((resolve) => this.child.once('exit', () => resolve()));
  }

  of(label: string, since = 0): Answer[] {
    return this.answers.filter((a) => a.l === label && a.s >= since);
  }

  /** Until every loop has `n` answers to requests started at or after `since` (bounded: 60 s). */
  async until(labels: string[], since: number, n: number): Promise<void> {
    for (let i = 0; i < 1200; i++) {
      if (labels.every((l) => this.of(l, since).length >= n)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`the load did not reach ${n} answers per loop since ${since}: ${labels.map((l) => `${l} ${this.of(l, since).length}`).join(', ')}`);
  }

  async stop(): Promise<void> {
    this.child.stdin.end();
    await this.done;
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

/** When redis-server committed the newest registry change touching `key` of `kind` (the stream id's ms). */
async function commitMs(redis: Redis, kind: string, key: string): Promise<number> {
  const entries = await redis.xrevrange('weft:changes', '+', '-', 'COUNT', 50);
  for (const [id, fields] of entries) {
    const changes = fields[fields.indexOf('changes') + 1] ?? '[]';
    if ((JSON.parse(changes) as { kind: string; key: string }[]).some((c) => c.kind === kind && c.key === key)) return Number(id.split('-')[0]);
  }
  throw new Error(`no change of ${kind} ${key} in the last 50 stream entries`);
}

/** Requests served by a waypoint to Service `service` (its istio_requests_total), read in its own pod. */
async function servedBy(lab: LabHandle, waypoint: string, ip: string, service: string): Promise<number> {
  const res = await lab.exec(waypoint, ['weft', 'lab', 'request', `http://${ip}:15020/metrics`]);
  if (res.code !== 0) throw new Error(`metrics of ${waypoint}: ${res.stderr}`);
  let sum = 0;
  for (const m of res.stdout.matchAll(/^istio_requests_total\{([^}]*)\} (\d+)/gm)) {
    if (m[1]!.includes(`destination_service_name="${service}"`)) sum += Number(m[2]);
  }
  return sum;
}

const policy = (extra: string) => `apiVersion: networking.weft.io/v1alpha1
kind: TrafficPolicy
metadata: { name: resilient, namespace: demo }
spec:
  targetRefs: [{ kind: Service, name: echo }, { kind: Service, name: echo-b }, { kind: Service, name: gone }]
${extra}`;

const share = (as: Answer[], pod: string) => as.filter((a) => a.p === pod).length / as.length;
const pct = (x: number) => `${(x * 100).toFixed(1)} %`;

export function section(t: Test, r: ResilienceLab): Promise<unknown> {
  return t.test('canary 95/5 then blue-green flip 0/100 by weft apply, through two waypoints, no failed request', async (t) => {
    const { lab, store } = r;
    const dir = sectionDir(r, 'canary');
    const file = join(dir, 'route.yaml');
    const redis = new Redis(lab.context.redisUrl, { lazyConnect: true, maxRetriesPerRequest: 2 });
    t.teardown(() => redis.quit());
    await redis.connect();
    const state = lab.state()!;
    const wpA = state.waypoints!.find((w) => w.uid === 'demo/waypoint')!;
    const wpB = state.waypoints!.find((w) => w.uid === 'demo/waypoint-b')!;
    const client = state.plan.pods.find((p) => p.uid === 'demo/client')!;

    // Bindings: the namespace to waypoint (the lab's); echo-b by its own label to waypoint-b
    // (a Service's own label wins; the lab has no CLI for it, so the record is written here).
    const echoB = (await store.get('service', 'demo/echo-b'))!;
    const tpFile = join(dir, 'tp.yaml');
    t.teardown(async () => {
      // The lab as found: no route, no policy, echo-b without a waypoint of its own.
      await deleteFile(r, file).catch(() => undefined);
      writeFileSync(tpFile, policy(''));
      await deleteFile(r, tpFile).catch(() => undefined);
      await store.apply([{ op: 'put', kind: 'service', record: echoB }]);
      await settle(r);
    });
    await store.apply([{ op: 'put', kind: 'service', record: { ...echoB, waypoint: 'waypoint-b' } }]);
    const apply = async (v1: number, v2: number) => {
      writeFileSync(file, route(v1, v2));
      const started = Date.now();
      const res = await lab.weft(['apply', '-f', file]);
      t.equal(res.code, 0, res.stderr);
      return { started, returned: Date.now(), commit: await commitMs(redis, 'httproute', 'demo/canary') };
    };

    // Blue: everything to v1, in force at both waypoints before the load starts.
    await apply(100, 0);
    for (let i = 0; i < 40; i++) {
      const [a, b] = await Promise.all([lab.request('demo/client', 'http://echo.demo/'), lab.request('demo/client', 'http://echo-b.demo/')]);
      if (a.pod === 'echo-1' && b.pod === 'echo-1') break;
      await new Promise((r) => setTimeout(r, 250));
    }
    const baseA = await servedBy(lab, 'demo/waypoint', wpA.ip, 'echo');
    const baseB = await servedBy(lab, 'demo/waypoint-b', wpB.ip, 'echo-b');

    const load = new Load(client.netns, [['a', 'http://echo.demo/'], ['b', 'http://echo-b.demo/']]);
    t.teardown(() => load.kill());
    await load.until(['a', 'b'], 0, 200);
    t.same([...new Set(load.answers.map((a) => a.p))], ['echo-1'], 'blue: only v1 answers before the canary');

    // Canary 95/5. The split is counted over the next 1,000 requests of each loop that
    // started 1 s after the commit (the bound the flip is held to below).
    const canary = await apply(95, 5);
    const from = canary.commit + 1000;
    await load.until(['a', 'b'], from, SPLIT_REQUESTS);
    for (const [label, wp] of [['a', 'waypoint'], ['b', 'waypoint-b']] as const) {
      const window = load.of(label, from).slice(0, SPLIT_REQUESTS);
      const v2 = share(window, 'echo-2');
      t.comment(`canary at ${wp}: ${window.length} requests, echo-1 ${window.filter((a) => a.p === 'echo-1').length}, echo-2 ${window.filter((a) => a.p === 'echo-2').length} (${pct(v2)})`);
      t.equal(window.filter((a) => a.p === 'echo-1' || a.p === 'echo-2').length, SPLIT_REQUESTS, `${wp}: every answer from echo-1 or echo-2`);
      t.ok(v2 >= 0 && v2 <= 0.10, `${wp}: echo-2 share ${pct(v2)} is 5 % ± 5 %`);
      t.ok(v2 > 0, `${wp}: the canary got traffic`);
    }

    // Blue-green flip: 0/100.
    const flip = await apply(0, 100);
    t.comment(`flip: weft apply took ${flip.returned - flip.started} ms (process start included); registry commit ${flip.commit - flip.started} ms after its start`);
    await load.until(['a', 'b'], flip.returned + 1000, SPLIT_REQUESTS);
    await load.stop();
    for (const [label, wp] of [['a', 'waypoint'], ['b', 'waypoint-b']] as const) {
      const all = load.of(label);
      const lastV1 = all.map((a) => a.p).lastIndexOf('echo-1');
      const next = all[lastV1 + 1]!;
      // The flip took effect at this waypoint no later than the end of the first request
      // after the last v1 answer: an upper bound, from the commit.
      t.comment(`flip at ${wp}: last v1 answer to a request started ${all[lastV1]!.s - flip.commit} ms after the commit; all v2 from the request started ${next.s - flip.commit} ms after it (in force at most ${next.e - flip.commit} ms after the commit)`);
      const after = all.slice(lastV1 + 1);
      t.ok(after.length >= SPLIT_REQUESTS, `${wp}: ${after.length} requests after the flip`);
      t.same([...new Set(after.map((a) => a.p))], ['echo-2'], `${wp}: only v2 once flipped`);
    }

    // Not one failure during either change, at either waypoint.
    const failed = load.answers.filter((a) => a.c !== 200);
    t.comment(`load: ${load.of('a').length} requests through waypoint, ${load.of('b').length} through waypoint-b, ${failed.length} not 200`);
    t.same(failed.slice(0, 5), [], 'no failed request (status and connection errors)');
    const [a, b] = [await servedBy(lab, 'demo/waypoint', wpA.ip, 'echo'), await servedBy(lab, 'demo/waypoint-b', wpB.ip, 'echo-b')];
    t.ok(a - baseA >= load.of('a').length, `waypoint served the echo loop (${a - baseA})`);
    t.ok(b - baseB >= load.of('b').length, `waypoint-b served the echo-b loop (${b - baseB})`);

    // A TrafficPolicy by `weft apply` reaches both waypoints (their admin view); a bad
    // edit is refused naming the field, and the good version stays at both.
    writeFileSync(tpFile, policy(''));
    const created = await lab.weft(['apply', '-f', tpFile]);
    t.equal(created.stdout, 'trafficpolicy.networking.weft.io/resilient created\n', created.stderr);
    const adminView = async (pod: string) => {
      const res = await lab.exec(pod, ['weft', 'lab', 'request', 'http://127.0.0.1:15000/trafficpolicies']);
      return res.code === 0 ? (JSON.parse(res.stdout) as { name: string; targets: { ref: { name: string }; state: string }[] }[]) : [];
    };
    const states = (view: Awaited<ReturnType<typeof adminView>>) => view.find((p) => p.name === 'resilient')?.targets.map((x) => `${x.ref.name}=${x.state}`);
    const want = ['echo=Accepted', 'echo-b=Accepted', 'gone=TargetNotFound'];
    for (const pod of ['demo/waypoint', 'demo/waypoint-b']) {
      let got: string[] | undefined;
      for (let i = 0; i < 20 && got?.join() !== want.join(); i++) {
        got = states(await adminView(pod));
        if (got?.join() !== want.join()) await new Promise((r) => setTimeout(r, 250));
      }
      t.same(got, want, `${pod} holds the policy, with the missing Service reported`);
    }
    writeFileSync(tpFile, policy('  retires: { attempts: 3 }\n'));
    const refused = await lab.weft(['apply', '-f', tpFile]);
    t.not(refused.code, 0);
    t.match(refused.stderr, /spec\.retires is not a known field/);
    const listed = await lab.weft(['trafficpolicies', '-n', 'demo']);
    t.comment(`weft trafficpolicies -n demo after the refused edit:\n${listed.stdout.trimEnd()}`);
    t.match(listed.stdout, /resilient\s+echo,echo-b,gone \(TargetNotFound\)\s+\(defaults\)\s+TargetNotFound/);
    for (const pod of ['demo/waypoint', 'demo/waypoint-b']) t.same(states(await adminView(pod)), want, `${pod}: the last good policy stays`);
  });
}

