// After a burst of connections is gone the ztunnel gives the memory back: the trigger
// logic with an injected clock, and the real thing on the loopback mesh (a memory
// bound, not a timing).
import t from 'tap';
import pino from 'pino';
import type * as net from 'node:net';
import { giveMemoryBack, loadNativeMemory, MemoryReclaimer, type MemoryReclaimOptions, type NativeMemory } from '../src/ztunnel/memory-reclaim';
import { startDemoMesh, IP } from '../src/ztunnel/testing/demo-mesh';
import { until } from '../src/ztunnel/testing/sockets';
import { ManualClock } from './helpers/clock';

const silent = pino({ level: 'silent' });

function fakeNative(): NativeMemory & { calls: number } {
  const n = { calls: 0, lowMemoryNotification: () => { n.calls++; }, mallocTrim: () => true };
  return n;
}

/** A started reclaimer on a manual clock with a counting native helper; `opts` override the defaults (no connections, RSS 0). */
function onManualClock(opts: Partial<MemoryReclaimOptions> = {}) {
  const clock = new ManualClock();
  const native = fakeNative();
  const r = new MemoryReclaimer({ live: () => 0, logger: silent, native, clock, rss: () => 0, ...opts }).start();
  return { clock, native, r };
}

t.test('giveMemoryBack: the full collection, then malloc_trim, each timed', async (t) => {
  const order: string[] = [];
  const took = giveMemoryBack({ lowMemoryNotification: () => { order.push('gc'); }, mallocTrim: () => { order.push('trim'); return true; } });
  t.same(order, ['gc', 'trim'], 'trimmed after the collection freed the pages');
  t.ok(took.gcMs >= 0 && took.trimMs >= 0, 'both durations in ms');
});

t.test('reclaims once a large burst is over, not while it closes, not again within the interval', async (t) => {
  let live = 0;
  const { clock, native, r } = onManualClock({ live: () => live, checkEveryMs: 5000, minDrop: 1000, maxRemainingFraction: 0.5, minIntervalMs: 60_000 });
  live = 10_000; clock.advance(5000);
  t.equal(native.calls, 0, 'not while connections are held');
  live = 4000; clock.advance(5000);
  t.equal(native.calls, 0, 'not while the count is still falling');
  live = 10; clock.advance(5000);
  t.equal(native.calls, 0, 'still falling');
  clock.advance(5000);
  t.equal(native.calls, 1, 'once the count stopped falling');
  clock.advance(30_000);
  t.equal(native.calls, 1, 'not again without a new burst');
  live = 3000; clock.advance(5000);
  live = 0; clock.advance(5000); clock.advance(5000);
  t.equal(native.calls, 1, 'a second burst within the interval waits');
  clock.advance(60_000);
  t.equal(native.calls, 2, 'and is reclaimed after it');
  live = 500; clock.advance(5000); live = 0; clock.advance(10_000); clock.advance(120_000);
  t.equal(native.calls, 2, 'a burst smaller than minDrop is not worth a pause');
  r.stop();
  t.equal(clock.pending, 0, 'stop disarms');
});

t.test('afterStartMs: one reclaim that long after start, with no burst; a burst soon after still reclaims; stop disarms it', async (t) => {
  const { clock, native, r } = onManualClock({ checkEveryMs: 5000, afterStartMs: 10_000 });
  clock.advance(9000);
  t.equal(native.calls, 0, 'not before');
  clock.advance(1000);
  t.equal(native.calls, 1, 'once, at afterStartMs');
  clock.advance(600_000);
  t.equal(native.calls, 1, 'never again without a burst');
  t.equal(r.stats.reclaims, 1);
  r.stop();
  let live = 0;
  const burst = new MemoryReclaimer({ live: () => live, logger: silent, native, clock, checkEveryMs: 5000, afterStartMs: 10_000, rss: () => 0 }).start();
  clock.advance(10_000);
  t.equal(native.calls, 2, 'the start-up reclaim');
  live = 5000; clock.advance(5000);
  live = 0; clock.advance(5000); clock.advance(5000);
  t.equal(native.calls, 3, 'a burst right after it is reclaimed without waiting out minIntervalMs');
  burst.stop();
  t.equal(clock.pending, 0, 'stop disarms');
  const early = new MemoryReclaimer({ live: () => 0, logger: silent, native, clock, afterStartMs: 10_000, rss: () => 0 }).start();
  early.stop();
  t.equal(clock.pending, 0, 'stop before it fired disarms it too');
  clock.advance(20_000);
  t.equal(native.calls, 3, 'and it never runs');
  // A burst under way when the start-up reclaim runs keeps its peak: its own reclaim
  // still comes once it is over (resetting the peak to the live count lost it).
  live = 0;
  const during = new MemoryReclaimer({ live: () => live, logger: silent, native, clock, checkEveryMs: 5000, afterStartMs: 12_000, rss: () => 0 }).start();
  live = 1500; clock.advance(5000);
  live = 800; clock.advance(5000);
  clock.advance(2000);
  t.equal(native.calls, 4, 'the start-up reclaim, mid-burst');
  live = 0; clock.advance(3000); clock.advance(5000);
  t.equal(native.calls, 5, 'the burst (1,500 -> 0) is reclaimed once over, though only 800 were left at the start-up reclaim');
  during.stop();
});

t.test('a small drop relative to the peak does not reclaim', async (t) => {
  const native = fakeNative();
  let live = 20_000;
  const r = new MemoryReclaimer({ live: () => live, logger: silent, native, clock: new ManualClock(), rss: () => 0 });
  r.check();
  live = 18_000; r.check(); r.check();
  t.equal(native.calls, 0, '18,000 of 20,000 still live');
  live = 9000; r.check(); r.check();
  t.equal(native.calls, 1);
});

t.test('the idle tunnels a burst left, closed later by the pool, reclaim again', async (t) => {
  let live = 0;
  let tunnels = 0;
  const { clock, native } = onManualClock({ live: () => live, tunnels: () => tunnels, checkEveryMs: 5000, minTunnelDrop: 20 });
  live = 10_000; tunnels = 100; clock.advance(5000);
  live = 0; clock.advance(5000); clock.advance(5000);
  t.equal(native.calls, 1, 'the burst of connections');
  clock.advance(240_000);
  t.equal(native.calls, 1, 'tunnels still pooled');
  tunnels = 0; clock.advance(5000); clock.advance(5000);
  t.equal(native.calls, 2, 'the pool closed them: reclaimed again');
  tunnels = 10; clock.advance(5000); tunnels = 0; clock.advance(120_000);
  t.equal(native.calls, 2, 'fewer than minTunnelDrop is not worth a pause');
});

t.test('a registry snapshot loaded again reclaims at the next look, within the interval, once', async (t) => {
  const { clock, native, r } = onManualClock({ live: () => 3, checkEveryMs: 2000, minIntervalMs: 60_000 });
  clock.advance(10_000);
  t.equal(native.calls, 0, 'nothing to give back: no burst, no reload');
  r.registryReloaded();
  clock.advance(2000);
  t.equal(native.calls, 1, 'the reload is reclaimed at the next look');
  clock.advance(20_000);
  t.equal(native.calls, 1, 'once');
  r.registryReloaded();
  clock.advance(2000);
  t.equal(native.calls, 1, 'a second reload within the interval waits for it');
  clock.advance(40_000);
  t.equal(native.calls, 2, 'then reclaims');
  r.stop();
});

t.test('a registry reload during start-up is one reclaim with the start-up one, whichever comes first', async (t) => {
  const early = onManualClock({ checkEveryMs: 2000, afterStartMs: 10_000 });
  early.clock.advance(3000);
  early.r.registryReloaded();
  early.clock.advance(1000);
  t.equal(early.native.calls, 1, 'the reload is reclaimed at the next look');
  early.clock.advance(60_000);
  t.equal(early.native.calls, 1, 'and the start-up reclaim is not done again after it');
  early.r.stop();
  const late = onManualClock({ checkEveryMs: 5000, afterStartMs: 10_000 });
  late.clock.advance(9000);
  late.r.registryReloaded();
  late.clock.advance(60_000);
  t.equal(late.native.calls, 1, 'a reload just before the start-up reclaim: one reclaim for both');
  late.r.registryReloaded();
  late.clock.advance(5000);
  t.equal(late.native.calls, 2, 'a reload after it still reclaims');
  late.r.stop();
});

t.test('without the native helper it never arms a timer', async (t) => {
  const clock = new ManualClock();
  const r = new MemoryReclaimer({ live: () => 0, logger: silent, native: null, clock }).start();
  t.equal(r.available, false);
  t.equal(clock.pending, 0);
});

// 2,000 tunnelled connections through both nodes in this process, held, closed; then
// one reclaim. Without it the dead connections' heap stays committed (measured: V8
// heap 117 MiB, RSS 200+ MiB, for a baseline of 18 / 67 MiB).
t.test('after 2,000 tunnelled connections close, a reclaim brings the heap and RSS back down', { timeout: 180_000 }, async (t) => {
  const native = loadNativeMemory();
  if (!native) { t.fail('native/build/weft_memory.node is not built: run npm run build (needs a C++ compiler and Node headers)'); return; }
  const demo = await startDemoMesh();
  t.teardown(() => demo.close());
  const a = demo.mesh.node('node-a');
  const b = demo.mesh.node('node-b');
  const open = async (): Promise<net.Socket> => {
    const s = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo2, port: demo.ports.echo });
    await new Promise<void>((resolve, reject) => {
      let got = 0;
      s.once('error', reject);
      s.on('data', (d: Buffer) => { got += d.length; if (got >= 64) { s.removeAllListeners('data'); resolve(); } });
      s.write(Buffer.alloc(64, 1));
    });
    return s;
  };
  for (let i = 0; i < 20; i++) (await open()).end();
  await until(() => a.connections.size === 0 && b.connections.size === 0, 10_000, 'warm-up to finish');
  native.lowMemoryNotification();
  const base = { heap: process.memoryUsage().heapTotal, rss: process.memoryUsage.rss() };
  const n = 2000;
  const socks: net.Socket[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: 50 }, async () => { while (next < n) { next++; socks.push(await open()); } }));
  const peak = { heap: process.memoryUsage().heapTotal, rss: process.memoryUsage.rss() };
  t.equal(a.connections.size + b.connections.size >= 2 * n, true, 'all held through both nodes');
  let live = a.connections.size + b.connections.size;
  const r = new MemoryReclaimer({ live: () => live, logger: silent, native, clock: new ManualClock(), minDrop: 1000 });
  r.check();
  for (const s of socks) s.end();
  socks.length = 0;
  await until(() => a.connections.size === 0 && b.connections.size === 0, 60_000, 'every connection to close');
  live = 0;
  t.equal(r.check(), false, 'still falling at this look');
  t.equal(r.check(), true, 'the burst is over: reclaimed');
  const after = { heap: process.memoryUsage().heapTotal, rss: process.memoryUsage.rss() };
  const MiB = (x: number) => (x / 1048576).toFixed(0);
  t.comment(`heap ${MiB(base.heap)} → ${MiB(peak.heap)} → ${MiB(after.heap)} MiB; RSS ${MiB(base.rss)} → ${MiB(peak.rss)} → ${MiB(after.rss)} MiB; pause ${r.stats.lastPauseMs.toFixed(0)} ms`);
  t.ok(peak.heap - base.heap > 20 * 1048576, 'the burst grew the heap (else this test proves nothing)');
  t.ok(after.heap <= base.heap + 0.25 * (peak.heap - base.heap), 'V8 heap back within a quarter of the growth');
  t.ok(after.rss <= base.rss + 0.5 * (peak.rss - base.rss), 'RSS back within half of the growth');
});
