import t, { type Test } from 'tap';
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import pino from 'pino';
import { freePort, startRedis, type TestRedis } from './helpers/redis';
import { RegistryStore } from '../src/registry/store';
import { DEFAULT_MAX_BACKOFF_MS, RegistryFollower, reconnectDelay } from '../src/registry/follower';
import { MeshState } from '../src/registry/state';
import { namespaceRecord, workloadRecord } from '../src/registry/fixtures';
import { isWeftError } from '../src/lib/errors';
import { waitFor, metricValue as metric } from './helpers/wait';

function capturingLogger(lines: { level: string; msg: string }[]) {
  const dest = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l));
      cb();
    },
  });
  return pino({ level: 'info', formatters: { level: (label) => ({ level: label }) } }, dest);
}

const fast = { blockMs: 200, timeoutMs: 500, maxBackoffMs: 300 };

/**
 * The two ways Redis goes away, each test below runs with both. Refusing: the server
 * stops (connections are refused) and a new, empty one starts on the same port: a new
 * registry, which the follower must reload. Frozen: SIGSTOP, calls hang past their
 * timeout, then it resumes with its data: the follower goes on from its position.
 */
interface Outage {
  name: string;
  /** What Redis holds when it answers again. */
  comesBack: 'empty' | 'as it was';
  begin(t: Test, redis: TestRedis): Promise<void>;
  /** Ends the outage; resolves with the server that answers now. */
  end(redis: TestRedis): Promise<TestRedis>;
  /** Reconnect attempts to wait for in run `run` of the default-backoff test: enough for the backoff to reach its cap. */
  attempts(run: number): number;
  /** Follower options besides the defaults in the default-backoff test. */
  options: { timeoutMs?: number };
}

const OUTAGES: Outage[] = [
  {
    name: 'refusing (stopped, restarted on the same port)',
    comesBack: 'empty',
    begin: (_t, redis) => redis.stop(),
    end: (redis) => startRedis({ port: redis.port }),
    // Refused at once: the backoff alone spaces attempts (100+200+400+800 ms steps, then the cap).
    attempts: (run) => 6 + run,
    options: {},
  },
  {
    name: 'frozen (SIGSTOP)',
    comesBack: 'as it was',
    begin: async (t, redis) => { redis.pause(); t.teardown(() => redis.resume()); },
    end: async (redis) => { redis.resume(); return redis; },
    // Each attempt first waits out the call timeout.
    attempts: (run) => 3 + run,
    options: { timeoutMs: 500 },
  },
];

for (const outage of OUTAGES) {
  t.test(`Redis ${outage.name}: last state served while stale, then recovery`, async (t) => {
    let redis = await startRedis();
    t.teardown(() => redis.stop());
    const store = RegistryStore.connect(redis.url);
    t.teardown(() => store.close());
    await store.apply([
      { op: 'put', kind: 'namespace', record: namespaceRecord('demo') },
      { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'a', node: 'n1', addresses: ['10.0.0.1'] }) },
    ]);
    const lines: { level: string; msg: string }[] = [];
    const state = new MeshState({ trustDomain: 'cluster.local' });
    const metrics = new Registry();
    const follower = new RegistryFollower({ url: redis.url, state, metrics, logger: capturingLogger(lines), ...fast });
    t.teardown(() => follower.stop());
    const revisions: number[] = [];
    state.on('change', (_c, rev) => revisions.push(rev));
    await follower.start();
    const syncedBefore = follower.lastSyncAt!;
    const revisionBefore = state.revision;

    const stale = new Promise((r) => follower.once('stale', r));
    await outage.begin(t, redis);
    await stale;
    t.equal(follower.status, 'disconnected');
    t.equal(state.workloadByAddress('10.0.0.1')?.record.uid, 'demo/a', 'last known state still served');
    const s1 = await metric(metrics, 'weft_registry_staleness_seconds');
    await waitFor('staleness to grow', async () => (await metric(metrics, 'weft_registry_staleness_seconds')) > s1);
    t.ok(lines.some((l) => l.level === 'warn' && /registry unreachable; serving the last known state/.test(l.msg)), 'logged going stale');
    // A frozen server keeps this write in the store's queue until it runs again.
    const write = outage.comesBack === 'as it was' ? store.put('namespace', namespaceRecord('during')) : undefined;

    const recovered = new Promise<number>((r) => follower.once('recovered', r));
    redis = await outage.end(redis);
    t.ok((await recovered) > 0, 'recovered, reporting the downtime');
    t.ok(follower.lastSyncAt! > syncedBefore);
    t.ok(lines.some((l) => l.level === 'info' && /registry reachable again/.test(l.msg)), 'logged recovery');
    if (outage.comesBack === 'empty') {
      // The restarted server is empty (a new registry): the follower must reload, not keep ghosts.
      await waitFor('reload of the new, empty registry', () => state.list('workload').length === 0);
      t.ok((await metric(metrics, 'weft_registry_reloads_total')) >= 1);
    } else {
      await write;
      await waitFor('the queued write', () => state.get('namespace', 'during') !== undefined);
      t.same(revisions, [revisionBefore + 1], 'the next revision applied once: resumed from its position');
      t.equal(await metric(metrics, 'weft_registry_reloads_total'), 0, 'no reload');
    }
    await store.put('namespace', namespaceRecord('fresh'));
    await waitFor('follows the registry', () => state.get('namespace', 'fresh') !== undefined);
    t.equal(state.revision, await store.revision());
    t.ok((await metric(metrics, 'weft_registry_staleness_seconds')) < s1 + 5);
  });
}

t.test('stop() before the first snapshot rejects start()', async (t) => {
  const port = await freePort();
  const follower = new RegistryFollower({ url: `redis://127.0.0.1:${port}`, state: new MeshState({ trustDomain: 'cluster.local' }), ...fast });
  const started = follower.start();
  await waitFor('a failed attempt', () => follower.status === 'disconnected');
  await follower.stop();
  try {
    await started;
    t.fail('start() should reject');
  } catch (err) {
    t.ok(isWeftError(err, 'WEFT_REGISTRY_UNREACHABLE'));
    t.match((err as Error).message, new RegExp(`127\\.0\\.0\\.1:${port}`));
  }
});

t.test('reconnect backoff: 100 ms doubling to a 1 s cap, jittered below the step', async (t) => {
  // The cap bounds how long after Redis' return the follower resyncs (goal: 2 s).
  t.equal(DEFAULT_MAX_BACKOFF_MS, 1000);
  for (let n = 1; n <= 60; n++) {
    const step = Math.min(1000, 100 * 2 ** (n - 1));
    t.equal(reconnectDelay(n, undefined, () => 1), step, `failure ${n}: at most the step`);
    t.equal(reconnectDelay(n, undefined, () => 0), Math.round(step / 2), `failure ${n}: at least half the step`);
  }
  const atCap = new Set(Array.from({ length: 50 }, () => reconnectDelay(20)));
  t.ok(atCap.size > 10, 'retries at the cap spread out (no stampede on Redis)');
  t.ok([...atCap].every((d) => d >= 500 && d <= 1000));
  t.equal(reconnectDelay(5, 300, () => 1), 300, 'a smaller cap is honoured');
});

/** Most attempts a follower may make in `elapsedMs`: each sleep is at least half its step. */
function maxAttempts(elapsedMs: number): number {
  let attempts = 1;
  let slept = 0;
  while (slept + reconnectDelay(attempts, undefined, () => 0) <= elapsedMs) slept += reconnectDelay(attempts++, undefined, () => 0);
  return attempts;
}

for (const outage of OUTAGES) {
  t.test(`Redis ${outage.name} with the default backoff: attempts bounded and backed off, resync after its return`, async (t) => {
    let redis = await startRedis();
    t.teardown(() => redis.stop());
    const store = RegistryStore.connect(redis.url);
    t.teardown(() => store.close());
    const state = new MeshState({ trustDomain: 'cluster.local' });
    const follower = new RegistryFollower({ url: redis.url, state, ...outage.options });
    t.teardown(() => follower.stop());
    let attempts = 0;
    follower.on('status', (s) => { if (s === 'connecting') attempts++; });
    await follower.start();
    const measured: number[] = [];
    for (let run = 0; run < 3; run++) {
      const stale = new Promise((r) => follower.once('stale', r));
      await outage.begin(t, redis);
      await stale;
      const downAt = Date.now();
      const before = attempts;
      await waitFor(`run ${run}: reconnect attempts up to the cap`, () => attempts - before >= outage.attempts(run));
      const made = attempts - before;
      t.ok(made <= maxAttempts(Date.now() - downAt), `run ${run}: ${made} attempts, no more than the backoff allows`);
      // A frozen server keeps this write in the store's queue until it runs again.
      const write = outage.comesBack === 'as it was' ? store.put('namespace', namespaceRecord(`during-${run}`)) : undefined;
      const recovered = new Promise<number>((r) => follower.once('recovered', r));
      redis = await outage.end(redis);
      const back = Date.now();
      await recovered;
      measured.push(Date.now() - back);
      await waitFor(`run ${run}: following again after Redis' return`, () => follower.status === 'following');
      if (write) {
        await write;
        await waitFor(`run ${run}: the write made during the outage`, () => state.get('namespace', `during-${run}`) !== undefined);
      }
    }
    t.comment(`resync after Redis answered again (${outage.name}): ${measured.join(' / ')} ms`);
  });
}
