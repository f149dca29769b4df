// `weft top` and `weft stat`'s tables (src/cli/commands/top.ts, src/cli/golden-tables.ts):
// the loop reads the proxies once per interval and prints rates against the previous
// reading, redrawn in place on a terminal and as blocks elsewhere, -o json as one object
// per line; --iterations bounds it. The proxies' scrapes are the lab recordings.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runTop, topScreen, type TopSource } from '../src/cli/commands/top';
import { percent, statReading } from '../src/cli/golden-tables';
import { parsePromText } from '../src/telemetry/prom-text';
import type { ProxyReading } from '../src/telemetry/golden-signals';
import type { ProxyTarget } from '../src/cli/proxy-targets';
import type { CliIo } from '../src/cli/io';
import { CLEAR_SCREEN } from '../src/cli/output';

const FIX = join(__dirname, 'fixtures', 'mesh-stats');
const TARGETS: ProxyTarget[] = [
  { kind: 'ztunnel', proxy: 'ztunnel node-1', baseUrl: 'http://198.19.0.1:15020' },
  { kind: 'ztunnel', proxy: 'ztunnel node-2', baseUrl: 'http://198.19.0.2:15020' },
  { kind: 'waypoint', proxy: 'waypoint demo/waypoint', pod: 'waypoint', baseUrl: 'http://198.19.2.12:15020' },
];
const FILES = ['ztunnel-node-1', 'ztunnel-node-2', 'waypoint'];

/** The first recording, then the second over and over (no traffic after it), 5 s apart. */
function source(): TopSource & { reads: number } {
  const s = {
    reads: 0,
    targets: async () => TARGETS,
    read: async (targets: readonly ProxyTarget[]): Promise<ProxyReading[]> => {
      const tag = s.reads === 0 ? 'a' : 'c';
      const atMs = s.reads++ * 5000;
      return targets.map((tg, i) => ({ kind: tg.kind, proxy: tg.proxy, ...(tg.pod ? { pod: tg.pod } : {}), atMs, scrape: parsePromText(readFileSync(join(FIX, `${FILES[i]}-${tag}.prom`), 'utf8')) }));
    },
  };
  return s;
}

function capture(tty: boolean): CliIo & { out: string[] } {
  const out: string[] = [];
  return { out, stdout: (x) => out.push(x), stderr: () => {}, env: {}, tty, signal: new AbortController().signal };
}

t.test('--iterations 2 on a pipe: two blocks, the first after one interval, each with edges by rps and the proxies', async (t) => {
  const io = capture(false);
  const src = source();
  t.equal(await runTop(src, { intervalMs: 1, iterations: 2, namespace: '', format: 'table' }, io), 0);
  t.equal(io.out.length, 2);
  t.equal(src.reads, 3, 'one reading before the first screen, then one per screen');
  const first = io.out[0]!;
  t.notOk(first.includes(CLEAR_SCREEN), 'no escape codes in a pipe');
  t.match(first, /^weft top: every 0.001 s, window 5 s, at /);
  t.match(first, /EDGES \(by requests per second\)\nSOURCE +DESTINATION +PROTOCOL +RPS +SUCCESS +P50 MS +P95 MS +P99 MS/);
  t.match(first, /demo\/client +demo\/frontend +http +12\.0 +100% +7\.1 +20\.7 +35\.0 +0\.4 +[\d.]+ KiB +yes/);
  t.match(first, /PROXIES\nPROXY +LOOP LAG P99 MS +MEMORY +CONNECTIONS +IN FLIGHT +PENDING\n/);
  t.match(first, /waypoint demo\/waypoint pod waypoint +[\d.]+ +\d+ MiB +- +- +0/, 'gauges the recorded waypoint did not have yet show as -');
  t.comment(first);
  t.match(io.out[1]!, /EDGES \(by requests per second\)\nNo traffic in the last 5 s/, 'the same scrape again: no traffic in that window');
});

t.test('on a terminal each screen clears and homes first; -o json is one object per line', async (t) => {
  const tty = capture(true);
  await runTop(source(), { intervalMs: 1, iterations: 1, namespace: '', format: 'table' }, tty);
  t.ok(tty.out[0]!.startsWith(CLEAR_SCREEN));
  const json = capture(true);
  await runTop(source(), { intervalMs: 1, iterations: 2, namespace: 'demo', format: 'json' }, json);
  t.equal(json.out.length, 2);
  const r = JSON.parse(json.out[0]!);
  t.equal(r.edges.length, 3);
  t.same(r.services.map((s: { destination: { name: string } }) => s.destination.name), ['echo', 'frontend']);
  t.ok(json.out.every((l) => l.endsWith('\n') && !l.slice(0, -1).includes('\n')));
});

t.test('a failing reading is shown and the loop goes on; an aborted signal ends it', async (t) => {
  const io = capture(false);
  let n = 0;
  const src = source();
  const flaky: TopSource = { targets: async () => { if (n++ === 1) throw new Error('registry gone'); return TARGETS; }, read: src.read };
  await runTop(flaky, { intervalMs: 1, iterations: 2, namespace: '', format: 'table' }, io);
  t.match(io.out[0], /^error: registry gone/);
  t.match(io.out[1], /^weft top/);
  const ac = new AbortController();
  ac.abort();
  const stopped = capture(false);
  await runTop(source(), { intervalMs: 1, iterations: 0, namespace: '', format: 'table' }, { ...stopped, signal: ac.signal });
  t.equal(stopped.out.length, 0);
});

t.test('stat reading and cells', async (t) => {
  const src = source();
  const before = await src.read(TARGETS);
  const r = statReading(TARGETS, before, await src.read(TARGETS), 'demo');
  t.equal(r.services.length, 2);
  t.equal(r.edges.length, 3);
  t.match(topScreen(r, { intervalMs: 2000, namespace: 'demo' }), /^weft top: every 2 s, namespace demo, window 5 s/);
  t.equal(percent(1), '100%');
  t.equal(percent(0.99512), '99.5%');
  t.equal(percent(null), '-');
});

t.test('bad flags are refused naming the flag, before anything is read', async (t) => {
  const stat = (await import('../src/cli/commands/stat')).default;
  const top = (await import('../src/cli/commands/top')).default;
  const io = capture(false);
  await t.rejects(async () => stat.runWith(['--window', 'soon'], io), { message: /--window.*expected a duration/ });
  await t.rejects(async () => stat.runWith(['--window', '50ms'], io), { message: /--window.*at least 100ms/ });
  await t.rejects(async () => stat.runWith(['-o', 'xml'], io), { message: /--output.*expected one of table, json, yaml/ });
  await t.rejects(async () => stat.runWith(['extra'], io), { message: /unexpected argument "extra"/ });
  await t.rejects(async () => top.runWith(['--interval', '20m'], io), { message: /--interval.*at most 10m/ });
  await t.rejects(async () => top.runWith(['--iterations', '-1'], io), { message: /--iterations.*at least 0/ });
  await t.rejects(async () => top.runWith(['-o', 'yaml'], io), { message: /--output.*expected one of table, json/ });
  t.same(io.out, []);
});
