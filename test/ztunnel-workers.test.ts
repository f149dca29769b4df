// `weft ztunnel --workers N|auto`: the flag checked at the edge, and the built CLI run
// as a primary with two real workers against a real Redis and a real CA: each worker
// joins and fetches the node's certificates over the CA's TLS, the primary is ready
// only when both are, its scrape combines them, a killed worker comes back, and a
// SIGTERM stops them all. (Traffic through the workers needs the capture rules:
// test/e2e/ztunnel-workers.test.ts moves it on the lab.)
import t from 'tap';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { generateRootCa, Issuer } from '../src/ca/issuer';
import { CaServer } from '../src/ca/server';
import { RedisJoinTokens, createJoinToken } from '../src/ca/join-tokens';
import { silentLogger } from '../src/lib/log';
import { MeshState } from '../src/registry/state';
import { RegistryStore } from '../src/registry/store';
import { ambientNamespace, nodeRecord, workloadRecord } from '../src/registry/fixtures';
import { parsePromText } from '../src/telemetry/prom-text';
import { loadZtunnelConfig } from '../src/ztunnel/config';
import { NodeScrape, type SeriesJson } from '../src/ztunnel/cluster-metrics';
import { WorkerQuestions } from '../src/ztunnel/cluster-questions';
import type { WorkerQuestion } from '../src/ztunnel/cluster-worker';
import type { Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import { ManualClock } from './helpers/clock';
import { AUTO_WORKERS_CAP, MAX_WORKERS, cgroupCpuLimit, parseWorkers, usableCpus, workerShare } from '../src/ztunnel/workers';
import { DEFAULT_HBONE_LIMITS } from '../src/hbone/limits';
import { assertDistFresh, MAIN } from './helpers/built';
import { tempDir } from './helpers/cli';
import { freePort, redisFixture } from './helpers/redis';
import { waitFor } from './helpers/wait';

t.test('--workers: a count or auto, checked at the edge', async (t) => {
  t.equal(parseWorkers('1'), 1);
  t.equal(parseWorkers('4'), 4);
  t.equal(parseWorkers(String(MAX_WORKERS)), MAX_WORKERS);
  t.equal(parseWorkers('auto', () => 2), 2, 'auto: one per CPU');
  t.equal(parseWorkers('auto', () => 64), AUTO_WORKERS_CAP, 'auto is capped');
  t.equal(parseWorkers('auto', () => 0), 1, 'at least one');
  const files = (f: Record<string, string>) => (path: string) => f[path];
  t.equal(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu.max': '200000 100000\n' })), 2, 'cgroup v2: the container\'s CPU limit');
  t.equal(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu.max': 'max 100000\n' })), undefined, 'v2 without a limit');
  t.equal(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '150000\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' })), 1.5, 'cgroup v1');
  t.equal(cgroupCpuLimit(files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' })), undefined, 'v1 without a limit');
  t.equal(cgroupCpuLimit(files({})), undefined, 'no cgroup files');
  t.equal(usableCpus(2, 16), 2, 'the DaemonSet\'s 2-CPU limit on a 16-CPU node: 2, not 8');
  t.equal(usableCpus(1.5, 16), 2, 'a fraction of a CPU rounds up');
  t.equal(usableCpus(undefined, 16), 16, 'no limit: the CPUs it may run on');
  t.equal(usableCpus(32, 4), 4, 'a limit above the CPUs there are');
  t.equal(parseWorkers('auto', () => usableCpus(2, 16)), 2);
  for (const bad of ['0', String(MAX_WORKERS + 1), '-1', '2.5', 'two', '', 'AUTO']) {
    t.throws(() => parseWorkers(bad, () => 2), /expected/, JSON.stringify(bad));
  }
  const base = ['--node', 'node-1', '--address', '10.0.0.1', '--ca-address', '127.0.0.1:1', '--trust-anchor-file', '/x'];
  t.equal(loadZtunnelConfig(base, {}).workers, 1, 'default: one process');
  t.equal(loadZtunnelConfig([...base, '--workers', '3'], {}).workers, 3);
  t.equal(loadZtunnelConfig(base, { WEFT_ZTUNNEL_WORKERS: '2' }).workers, 2, 'or from WEFT_ZTUNNEL_WORKERS');
  t.throws(() => loadZtunnelConfig([...base, '--workers', '0'], {}), { code: 'WEFT_CONFIG_INVALID', message: /--workers/ }, 'a bad value names the flag');
});

t.test('each worker holds its share of every node-wide HBONE limit, so the node\'s bound holds', async (t) => {
  const node = { ...DEFAULT_HBONE_LIMITS, maxHandshakes: 255, maxSessionsPerPeer: 7 };
  t.same(workerShare(node, 1), {
    nodeBufferBytes: node.nodeBufferBytes, maxPendingDials: node.maxPendingDials,
    maxPendingDialsPerIdentity: node.maxPendingDialsPerIdentity, maxHandshakes: 255, maxSessionsPerPeer: 7,
  }, 'one process: the flags as given');
  const share = workerShare(node, 2);
  t.same(share, {
    nodeBufferBytes: node.nodeBufferBytes / 2, maxPendingDials: node.maxPendingDials / 2,
    maxPendingDialsPerIdentity: node.maxPendingDialsPerIdentity / 2, maxHandshakes: 128, maxSessionsPerPeer: 4,
  }, 'two workers: half each, rounded up');
  t.same(Object.values(workerShare({ ...node, maxSessionsPerPeer: 1 }, 16)).map((v) => v >= 1), [true, true, true, true, true], 'never below one');
});

t.test('the node\'s counters never fall when a worker exits: its last counts stay in the sums, its gauges do not', async (t) => {
  const worker = () => {
    const registry = new Registry();
    const requests = new Counter({ name: 'x_requests_total', help: 'h', labelNames: ['code'], registers: [registry] });
    const sizes = new Histogram({ name: 'x_bytes', help: 'h', buckets: [10], registers: [registry] });
    const open = new Gauge({ name: 'x_open', help: 'h', registers: [registry] });
    return { registry, requests, sizes, open, json: async () => await registry.getMetricsAsJSON() as SeriesJson };
  };
  const value = async (r: Registry, name: string, labels: Record<string, string> = {}) =>
    parsePromText(await r.metrics()).samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;
  const scrapes = new NodeScrape();
  const [a, b] = [worker(), worker()];
  a.requests.inc({ code: '200' }, 3); b.requests.inc({ code: '200' }, 4); b.requests.inc({ code: '503' }, 1);
  a.sizes.observe(5); b.sizes.observe(50); a.open.set(2); b.open.set(5);
  let node = scrapes.combine(new Map([[0, await a.json()], [1, await b.json()]]), []);
  t.equal(await value(node, 'x_requests_total', { code: '200' }), 7, 'summed');
  t.equal(await value(node, 'x_open'), 7);

  scrapes.retire(1);
  const b2 = worker();
  b2.requests.inc({ code: '200' }, 1);
  node = scrapes.combine(new Map([[0, await a.json()], [1, await b2.json()]]), []);
  t.equal(await value(node, 'x_requests_total', { code: '200' }), 8, 'worker 1 restarted from 0: 3 + 4 (its last answer) + 1, not 4');
  t.equal(await value(node, 'x_requests_total', { code: '503' }), 1, 'a series only the exited worker had stays');
  t.equal(await value(node, 'x_bytes_count'), 2, 'histograms too');
  t.equal(await value(node, 'x_open'), 2, 'a gauge is the running workers\' only');

  // Exits again and again: each adds its last counts once (retired parts compacted meanwhile).
  for (let i = 0; i < 3; i++) {
    scrapes.retire(1);
    await new Promise((r) => setImmediate(r));
    const again = worker();
    again.requests.inc({ code: '200' }, 2);
    node = scrapes.combine(new Map([[0, await a.json()], [1, await again.json()]]), []);
  }
  t.equal(await value(node, 'x_requests_total', { code: '200' }), 3 + 4 + 1 + 2 + 2 + 2, 'every exited worker counted once');
  scrapes.retire(7);
  t.pass('a worker never scraped leaves nothing');

  // Several exits within one compaction: each one's counts stay, in the sums and once compacted.
  const many = Array.from({ length: 5 }, () => worker());
  many.forEach((w, i) => w.requests.inc({ code: '200' }, 10 + i));
  node = scrapes.combine(new Map(await Promise.all(many.map(async (w, i) => [10 + i, await w.json()] as const))), []);
  for (let i = 0; i < 5; i++) scrapes.retire(10 + i);
  // The exited workers' counts only (no running worker answers below): b 4, b2 1, two restarts 2 + 2, then the five.
  const total = 4 + 1 + 2 + 2 + 10 + 11 + 12 + 13 + 14;
  node = scrapes.combine(new Map(), []);
  t.equal(await value(node, 'x_requests_total', { code: '200' }), total, 'summed while compacting');
  await scrapes.settled();
  node = scrapes.combine(new Map(), []);
  t.equal(await value(node, 'x_requests_total', { code: '200' }), total, 'and once compacted: none dropped');
});

t.test('a question to a worker ends with its answer, or undefined when it cannot answer: gone, exiting, silent', async (t) => {
  const clock = new ManualClock();
  const questions = new WorkerQuestions(2000, clock);
  class FakeWorker extends EventEmitter {
    connected = true;
    sent: WorkerQuestion[] = [];
    isConnected() { return this.connected; }
    send(q: WorkerQuestion, cb: (err: Error | null) => void) { this.sent.push(q); cb(null); return true; }
  }
  const w = new FakeWorker();
  const asked = (p: Promise<unknown>) => { let v: unknown = 'pending'; void p.then((x) => { v = x; }); return async () => { await new Promise((r) => setImmediate(r)); return v; }; };

  const answered = asked(questions.ask(w as unknown as Worker, 'status'));
  questions.answered({ weft: 'answer', id: w.sent[0]!.id, value: { ready: true } });
  t.same(await answered(), { ready: true }, 'the answer');
  t.equal(w.listenerCount('exit'), 0, 'no exit listener left behind');

  const exiting = asked(questions.ask(w as unknown as Worker, 'metrics'));
  t.equal(await exiting(), 'pending');
  w.emit('exit', null, 'SIGKILL');
  t.equal(await exiting(), undefined, 'the worker exited: undefined at once, without waiting out the timeout');
  t.equal(clock.pending, 0, 'its timer cleared');
  questions.answered({ weft: 'answer', id: w.sent[1]!.id, value: [] });
  t.equal(await exiting(), undefined, 'a late answer is dropped');

  const silent = asked(questions.ask(w as unknown as Worker, 'traces', '?since=5m'));
  t.same(w.sent[2], { weft: 'ask', id: w.sent[2]!.id, what: 'traces', query: '?since=5m' });
  clock.advance(1999);
  t.equal(await silent(), 'pending');
  clock.advance(1);
  t.equal(await silent(), undefined, 'no answer within the timeout');
  t.equal(w.listenerCount('exit'), 0);

  w.connected = false;
  t.equal(await questions.ask(w as unknown as Worker, 'status'), undefined, 'a worker whose channel is gone is not asked');
  t.equal(w.sent.length, 3);
});

const TD = 'cluster.local';
const fx = redisFixture(t);

t.test('the built ztunnel with two workers: joined, ready together, one scrape, restarts, stops', async (t) => {
  assertDistFresh();
  const tmp = tempDir('weft-workers-');
  t.teardown(() => tmp.remove());
  const root = await generateRootCa({ trustDomain: TD });
  const anchors = join(tmp.dir, 'root.pem');
  writeFileSync(anchors, root.certPem);
  const records = [
    { op: 'put', kind: 'node', record: nodeRecord('node-1', '127.0.0.41') },
    { op: 'put', kind: 'namespace', record: ambientNamespace('demo') },
    { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'a', node: 'node-1', serviceAccount: 'sa-a', addresses: ['127.0.2.41'] }) },
  ] as const;
  const store = RegistryStore.connect(fx.redis.url);
  t.teardown(() => store.close());
  await store.apply([...records]);
  const state = new MeshState({ trustDomain: TD });
  state.replaceAll({ node: [records[0].record], namespace: [records[1].record], workload: [records[2].record], service: [], policy: [], peerauth: [] }, 1);
  const caMetrics = new Registry();
  const ca = new CaServer({
    issuer: new Issuer(root, { trustDomain: TD }), trustDomain: TD, authorizer: state, joinTokens: new RedisJoinTokens(fx.client),
    logger: silentLogger(), metrics: caMetrics, minCertTtlMs: 1000,
  });
  const caPort = await ca.start({ host: '127.0.0.1', port: 0 });
  t.teardown(() => ca.stop(100));
  const token = (await createJoinToken(fx.client, 'node-1', 3600e3)).token;

  const [metricsPort, readinessPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const log = join(tmp.dir, 'ztunnel.log');
  const out: Buffer[] = [];
  const child = spawn(process.execPath, [MAIN, 'ztunnel', '--workers', '2', '--node', 'node-1', '--address', '127.0.0.41',
    '--ca-address', `127.0.0.1:${caPort}`, '--ca-server-name', 'localhost', '--trust-anchor-file', anchors,
    '--metrics-port', String(metricsPort), '--readiness-port', String(readinessPort), '--admin-port', String(adminPort), '--drain-timeout', '1s'],
  // Its own process group: the stop below signals the group, as a terminal's Ctrl-C or systemd does.
  { env: { ...process.env, WEFT_REDIS_URL: fx.redis.url, WEFT_JOIN_TOKEN: token }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => out.push(d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); writeFileSync(log, Buffer.concat(out)); });
  const workers = () => readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  const get = async (port: number, path: string) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
    return { status: res.status, body: await res.text() };
  };
  const series = async (name: string) => parsePromText((await get(metricsPort, '/metrics')).body).samples.filter((s) => s.name === name);

  await waitFor('the primary ready (both workers joined and hold demo/a\'s certificate)',
    async () => (await get(readinessPort, '/healthz/ready')).status === 200, { timeoutMs: 30_000, ignoreErrors: true });
  const first = workers();
  t.equal(first.length, 2, `two workers: ${first.join(', ')}`);
  const joins = (await caMetrics.getSingleMetricAsString('weft_ca_requests_total')).match(/method="Join",result="ok"\} (\d+)/);
  t.equal(Number(joins?.[1]), 2, 'each worker joined the CA with the node\'s token');

  t.same((await series('weft_ztunnel_workers')).map((s) => s.value), [2]);
  t.same((await series('istio_build')).map((s) => s.value), [1], 'one build, not one per worker');
  const certs = await series('weft_certs');
  t.same(certs.filter((s) => s.labels.state === 'Ready').map((s) => s.value), [2],
    'the node\'s certificate and demo/a\'s, each counted once, not once per worker');
  // Per-node gauges combine as their definitions say (aggregator), not summed.
  const expiry = await series('weft_cert_expiry_seconds');
  t.equal(expiry.length, 2, 'an expiry per identity');
  t.ok(expiry.every((s) => s.value > 0 && s.value <= 24 * 3600), `the soonest expiry, within the 24 h lifetime, not a sum: ${expiry.map((s) => s.value.toFixed(0)).join(', ')}`);
  t.same((await series('weft_registry_revision')).map((s) => s.value), [await store.revision()], 'the registry revision once, not summed');
  const rss = (await series('process_resident_memory_bytes'))[0]!.value;
  const vmRss = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
  t.comment(`resident memory of the primary and both workers: ${(rss / 1048576).toFixed(1)} MiB `
    + `(primary ${vmRss(child.pid!).toFixed(1)} MiB, workers ${first.map((pid) => vmRss(pid).toFixed(1)).join(' and ')} MiB)`);
  t.ok(rss > 3 * 20 * 1048576, 'process memory is summed over the three processes');
  const traces = await get(metricsPort, '/debug/traces?since=5m');
  t.equal(traces.status, 200, 'weft traces is answered for the node (every worker\'s spans), not 404');
  t.ok(Array.isArray(JSON.parse(traces.body)), 'a list of spans, as a single ztunnel answers');
  const tap = await get(metricsPort, '/debug/tap');
  t.equal(tap.status, 501, 'the live tap is not relayed from the workers');
  t.match(JSON.parse(tap.body).error, /--workers 2.*run it with --workers 1/, 'and weft tap is told why and what to do, not a bare 404');

  const fetches = async () => (await series('weft_cert_fetches_total')).reduce((n, s) => n + s.value, 0);
  const fetchedBefore = await fetches();
  process.kill(first[0]!, 'SIGKILL');
  await waitFor('worker 0 started again', () => workers().length === 2 && !workers().includes(first[0]!), { timeoutMs: 20_000 });
  await waitFor('ready again', async () => (await get(readinessPort, '/healthz/ready')).status === 200, { timeoutMs: 30_000, ignoreErrors: true });
  t.same((await series('weft_ztunnel_worker_restarts_total')).map((s) => s.value), [1]);
  const fetchedAfter = await fetches();
  t.ok(fetchedAfter > fetchedBefore, `the node's certificate fetches did not fall with the killed worker (${fetchedBefore} -> ${fetchedAfter}): its counts stay, the new worker's add`);
  t.match(Buffer.concat(out).toString(), /a ztunnel worker exited; starting it again/);

  const last = workers();
  // SIGTERM to the group: each worker gets its own and the primary's stop; the second must not cut its drain short.
  process.kill(-child.pid!, 'SIGTERM');
  t.equal(await exited, 0, 'the primary exits 0 after its workers drained');
  for (const pid of last) t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `worker ${pid} is gone`);
  // The primary logs each worker's exit: code 0, not ended by a signal (a second SIGTERM would kill it undrained).
  const stopped = Buffer.concat(out).toString().split('\n').filter((l) => l.includes('"a ztunnel worker stopped"')).map((l) => JSON.parse(l) as { code: unknown; signal: unknown });
  t.same(stopped.map((w) => [w.code, w.signal]), [[0, null], [0, null]], 'both workers ended their shutdown themselves (exit 0), none was killed undrained by a second signal');
});
