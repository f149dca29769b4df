/**
 * What the metric series of a ztunnel and a waypoint cost in V8 heap, and that workload
 * churn does not grow them (issue 13, "metric series bounded"). In this process, with
 * the real metrics and a real MeshState (metric-churn.ts), after a full GC each time:
 *
 *   per series  N workloads in the registry, then one exchange with each (a connection
 *               through the ztunnel's Istio TCP counters, a request through the
 *               waypoint's counter and three histograms): heap growth / series
 *   churn       --churn workloads come, talk once and leave, --window at a time:
 *               series and heap at each tenth of the way (flat: the series of a
 *               workload that left are removed)
 *
 *   node dist/bench/metric-series.js [--workloads 10000] [--churn 10000] [--window 50]
 */
import { spawnSync } from 'node:child_process';
import { optionsHelp, parse, parseOptions } from '../lib/options';
import { inMiB, mdHeader, mdRow, mdTable, type MdCell } from '../lib/markdown';
import { churn, churnRig, type ChurnProxy } from './metric-churn';
import { runBench } from './signals';

const specs = {
  help: { flag: 'help', boolean: true, default: false, description: 'print the flags', parse: parse.bool() },
  workloads: { flag: 'workloads', default: 10_000, description: 'workloads with series for the per-series cost', parse: parse.int({ min: 1, max: 200_000 }) },
  churn: { flag: 'churn', default: 10_000, description: 'workloads that come and go in the churn', parse: parse.int({ min: 1, max: 1_000_000 }) },
  window: { flag: 'window', default: 50, description: 'workloads in the registry at a time during the churn', parse: parse.int({ min: 1 }) },
};

const gc = (globalThis as { gc?: () => void }).gc;

function heapUsed(): number {
  gc!();
  gc!();
  return process.memoryUsage().heapUsed;
}

const f = (n: number, d = 1) => n.toFixed(d);

async function perSeries(proxy: ChurnProxy, n: number): Promise<{ series: number; bytesPerSeries: number; bytesPerWorkload: number; bytesPerLabelSet: number }> {
  const rig = churnRig(proxy);
  const h0 = heapUsed();
  for (let i = 0; i < n; i++) rig.add(i);
  const h1 = heapUsed();
  for (let i = 0; i < n; i++) rig.exchange(i);
  const h2 = heapUsed();
  const series = await rig.series();
  rig.close();
  // One label set per workload (one client, one exchange each); `series` counts it once per metric family.
  return { series, bytesPerSeries: (h2 - h1) / series, bytesPerWorkload: (h1 - h0) / n, bytesPerLabelSet: (h2 - h1) / n };
}

async function main(): Promise<void> {
  const o = parseOptions(specs, process.argv.slice(2), {}).values;
  if (o.help) return void console.log(`node dist/bench/metric-series.js [flags]\n${optionsHelp(specs)}`);
  console.log(`metric series bench: real ztunnel and waypoint metrics following a real MeshState, in one process; node ${process.version}\n`);
  console.log(`## Heap per series (${o.workloads} workloads, one exchange each with one client; after full GCs)\n`);
  console.log(mdHeader(['proxy', 'series (label set × metric family)', 'heap per series bytes', 'heap per label set bytes', 'registry heap per workload bytes (for scale)']));
  for (const proxy of ['ztunnel', 'waypoint'] as ChurnProxy[]) {
    const r = await perSeries(proxy, o.workloads);
    console.log(mdRow([proxy, r.series, f(r.bytesPerSeries, 0), f(r.bytesPerLabelSet, 0), f(r.bytesPerWorkload, 0)]));
  }
  console.log(`\n## Churn: ${o.churn} workloads come, talk once and leave, ${o.window} at a time\n`);
  console.log(mdHeader(['proxy', 'workloads so far', 'series now', 'heap used MB']));
  const summary: MdCell[][] = [];
  for (const proxy of ['ztunnel', 'waypoint'] as ChurnProxy[]) {
    const rig = churnRig(proxy);
    const step = Math.max(1, Math.floor(o.churn / 10));
    console.log(mdRow([proxy, 0, await rig.series(), inMiB(heapUsed(), 2)]));
    // Series of one live workload (one exchange with the client): the bound is window × this.
    let perWorkload = 0;
    let firstHeap = NaN;
    let lastHeap = NaN;
    let most = 0;
    await churn(rig, o.churn, o.window, async (done) => {
      if (done === 1) perWorkload = await rig.series();
      if (done % step !== 0) return;
      const n = await rig.series();
      const h = heapUsed();
      most = Math.max(most, n);
      if (Number.isNaN(firstHeap)) firstHeap = h;
      lastHeap = h;
      console.log(mdRow([proxy, done, n, inMiB(h, 2)]));
    });
    rig.close();
    const bound = Math.min(o.window, o.churn) * perWorkload;
    summary.push([proxy, o.churn, most, bound, f(most / bound, 2), f(lastHeap / firstHeap, 2)]);
  }
  console.log(`\n## Summary: the series stay bounded by the live workloads'\n`);
  console.log(mdTable(['proxy', 'workloads churned', 'most series seen', 'live workloads\' series (window × per workload)', '×bound', 'heap at the end × at the first tenth'], summary));
}

if (require.main === module) {
  if (!gc) {
    // The heap figures need full collections on demand.
    const r = spawnSync(process.execPath, ['--expose-gc', __filename, ...process.argv.slice(2)], { stdio: 'inherit' });
    process.exit(r.status ?? 1);
  }
  runBench(main);
}
