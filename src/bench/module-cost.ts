/**
 * What loading modules costs, in a fresh process with no other import (run it with
 * --expose-gc): `node --expose-gc dist/bench/module-cost.js <module>...` requires each
 * in turn (a package name, `node:x`, or a path under dist/ such as `ztunnel/app`),
 * runs a full GC after each and prints a Markdown row of what it added: time, RSS,
 * anonymous memory (smaps_rollup) and the V8 heap used and committed. Cumulative: what
 * a module shares with an earlier one is charged to the earlier.
 */
import { join } from 'node:path';
import { procBytes } from '../lib/proc';
import { inMiB, mdRow } from '../lib/markdown';

interface Reading { rss: number; anon: number; used: number; committed: number }

function read(): Reading {
  const { Rss, Anonymous } = procBytes('self', 'smaps_rollup', ['Rss', 'Anonymous']);
  const mu = process.memoryUsage();
  return { rss: Rss, anon: Anonymous, used: mu.heapUsed, committed: mu.heapTotal };
}

const row = (name: string, ms: string, now: Reading, from: Reading) =>
  console.log(mdRow([name, ms, inMiB(now.rss - from.rss), inMiB(now.anon - from.anon), inMiB(now.used - from.used), inMiB(now.committed - from.committed)]));

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run with --expose-gc');
gc();
const start = read();
console.log(mdRow([`node itself (RSS ${inMiB(start.rss)} MB, anonymous ${inMiB(start.anon)} MB)`, '', '', '', '', '']));
let last = start;
for (const m of process.argv.slice(2)) {
  const t0 = performance.now();
  const isPackage = m.startsWith('node:') || m.startsWith('@') || !m.includes('/');
  require(isPackage ? m : join(__dirname, '..', m));
  const ms = (performance.now() - t0).toFixed(0);
  gc();
  const now = read();
  row(m, ms, now, last);
  last = now;
}
row('**all**', '', last, start);
