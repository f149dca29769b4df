/**
 * `node dist/bench/connrate-builds.js <checkout> [<checkout> ...]`: the lab bench's
 * conn/s phase for several builds in one run, to find which change made new
 * connections dearer (a bisect, a before/after). Each argument is a built checkout
 * (its `dist/` and `native/build/`). Per round and per build: that build's `weft lab
 * up`, `--warmup` connections, then `--count` measured ones with this build's
 * `dist/bench/loadgen.js connrate` (8 loops of open / 64-byte exchange / close) from
 * `demo/client` to `demo/echo-2`, both ztunnels' CPU from `/proc/<pid>/stat` before and
 * after, that build's `weft lab down`. Rounds interleave the builds, every other one
 * backwards; medians. CPU per connection is the figure to compare: conn/s follows the
 * machine's load. Needs root (the lab); takes the lab lock.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { acquireLabLock } from '../lab/lock';
import { run } from '../lab/run';
import { cpuSeconds } from '../faults/observe';
import { optionsHelp, parse, parseOptions } from '../lib/options';
import { mdHeader, mdRow } from '../lib/markdown';
import { exitOnSignals } from './signals';
import { benchTempDir } from './temp-dir';
import { connrateArgv, type ConnrateResult } from './loadgen';
import { median } from './stats';


const specs = {
  help: { flag: 'help', boolean: true, default: false, description: 'print the flags', parse: parse.bool() },
  rounds: { flag: 'rounds', default: 3, description: 'interleaved rounds (medians printed)', parse: parse.int({ min: 1, max: 20 }) },
  count: { flag: 'count', default: 2000, description: 'measured connections per round', parse: parse.int({ min: 100 }) },
  warmup: { flag: 'warmup', default: 300, description: 'connections before the measured ones (JIT, pooled tunnel)', parse: parse.int({ min: 0 }) },
};

/** The ztunnel processes `checkout`'s CLI started (their command line names its dist/cli/main.js). */
function ztunnelPids(checkout: string): number[] {
  const main = join(checkout, 'dist', 'cli', 'main.js');
  const pids: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const argv = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (argv.includes(main) && argv.includes('ztunnel')) pids.push(Number(d));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

interface Sample { cps: number; usPerConn: number; load: string }

/** The checkout whose lab may be up, so a signal can take it down (its state is in a temp dir no one else knows). */
let labOf: string | undefined;

async function round(checkout: string, env: NodeJS.ProcessEnv, o: { count: number; warmup: number }): Promise<Sample> {
  const weft = (args: string[]) => run(process.execPath, [join(checkout, 'dist', 'cli', 'main.js'), ...args], { env, allowFailure: true });
  labOf = checkout;
  const up = await weft(['lab', 'up']);
  try {
    if (up.code !== 0) throw new Error(`${checkout}: lab up failed (${up.code}):\n${up.stdout}${up.stderr}`);
    const ctx = JSON.parse(readFileSync(env.WEFT_CONTEXT!, 'utf8')) as { pods: Array<{ uid: string; ip: string; netns: string }> };
    const pod = (uid: string) => ctx.pods.find((p) => p.uid === uid)!;
    const connrate = async (count: number) => {
      const r = JSON.parse((await run('ip', ['netns', 'exec', pod('demo/client').netns, process.execPath,
        ...connrateArgv(`${pod('demo/echo-2').ip}:9000`, count)])).stdout) as ConnrateResult;
      // A failed connection costs less CPU than a whole one: it would flatter the figure.
      if (r.errors > 0) throw new Error(`${checkout}: ${r.errors} of ${count} connections failed; the figures would not be comparable`);
      return r;
    };
    if (o.warmup > 0) await connrate(o.warmup);
    const pids = ztunnelPids(checkout);
    if (pids.length === 0) throw new Error(`${checkout}: no ztunnel process found`);
    const cpu = () => pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    const before = cpu();
    const r = await connrate(o.count);
    const usPerConn = ((cpu() - before) * 1e6) / r.connections;
    return { cps: r.perSecond, usPerConn, load: readFileSync('/proc/loadavg', 'utf8').split(' ')[0]! };
  } finally {
    const down = await weft(['lab', 'down']);
    if (down.code !== 0) process.stderr.write(`${checkout}: lab down failed (${down.code}): ${down.stderr.trim()}\n`);
    else labOf = undefined;
  }
}

async function main(): Promise<void> {
  const { values: o, positionals: positional } = parseOptions(specs, process.argv.slice(2), {});
  if (o.help || positional.length === 0) {
    console.log(`node dist/bench/connrate-builds.js [flags] <built checkout> [<built checkout> ...]\n${optionsHelp(specs)}`);
    return;
  }
  if (process.getuid?.() !== 0) throw new Error('the lab needs root (network namespaces)');
  const builds = positional.map((p) => resolve(p));
  const tmp = benchTempDir('connrate-builds');
  const env: NodeJS.ProcessEnv = { ...process.env, WEFT_LAB_DIR: join(tmp.path, 'lab'), WEFT_CONTEXT: join(tmp.path, 'context.json') };
  delete env.WEFT_ZTUNNEL_WORKERS;
  const samples = new Map<string, Sample[]>(builds.map((b) => [b, []]));
  const release = await acquireLabLock();
  exitOnSignals(() => {
    if (labOf) spawnSync(process.execPath, [join(labOf, 'dist', 'cli', 'main.js'), 'lab', 'down'], { env, stdio: 'inherit' });
    release();
    tmp.remove();
  });
  try {
    for (let i = 0; i < o.rounds; i++) {
      for (const b of i % 2 ? [...builds].reverse() : builds) {
        const s = await round(b, env, o);
        samples.get(b)!.push(s);
        process.stderr.write(`round ${i + 1}/${o.rounds} ${b}: ${s.cps} conn/s, ${s.usPerConn.toFixed(0)} µs ztunnel CPU per connection, load ${s.load}\n`);
      }
    }
  } finally {
    release();
    tmp.remove();
  }
  const first = median(samples.get(builds[0]!)!.map((s) => s.usPerConn));
  console.log(`\n${mdHeader(['build', 'µs CPU per connection, both ztunnels (rounds)', '× first', 'conn/s (rounds)'])}`);
  for (const b of builds) {
    const s = samples.get(b)!;
    const us = median(s.map((x) => x.usPerConn));
    console.log(mdRow([b, `${us.toFixed(0)} (${s.map((x) => x.usPerConn.toFixed(0)).join(', ')})`, (us / first).toFixed(2), `${median(s.map((x) => x.cps))} (${s.map((x) => x.cps).join(', ')})`]));
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`connrate-builds: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
