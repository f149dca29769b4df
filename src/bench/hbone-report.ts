/**
 * The tables `node dist/bench/hbone.js` prints at the end (bench/hbone.ts): throughput,
 * latency and proxy CPU per setup (medians over the interleaved rounds, each round's
 * p99 spread), then weft against HAProxy as ratios from the same run.
 */
import { median } from './stats';

export interface Latency { p50: number; p90: number; p99: number; p999: number; n: number }

/** CPU figures are per proxy process, source node's first; NaN where not measured. */
export interface Sample { gbps: number; cpuMsPerGiB: number[]; lat: Latency; vcpuPer1k: number[] }

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

export function report(names: string[], samples: Map<string, Sample[]>, o: { seconds: number; rate: number; repeat: number }): void {
  const f = (n: number) => n.toFixed(3).padStart(7);
  const med = (name: string, pick: (s: Sample) => number) => median(samples.get(name)!.map(pick));
  const direct = names[0]!;
  console.log(`\nmedian of ${o.repeat} interleaved runs. Throughput: one iperf3 stream, ${o.seconds} s; CPU: both proxy processes, ms per GiB.`);
  console.log(`Latency: 1 KiB echo round trips at ${o.rate}/s on one connection, ms; added = minus direct.\n`);
  console.log('setup'.padEnd(64) + ' Gbit/s (min-max)    vs direct  CPU ms/GiB    p50     p90     p99   p99.9  added p50  added p99');
  for (const name of names) {
    const g = samples.get(name)!.map((s) => s.gbps).filter(Number.isFinite);
    const range = (g.length ? `(${Math.min(...g).toFixed(1)}-${Math.max(...g).toFixed(1)})` : '(failed)').padEnd(12);
    const p = (k: keyof Latency) => med(name, (s) => s.lat[k]);
    console.log(`${name.padEnd(64)} ${med(name, (s) => s.gbps).toFixed(2).padStart(6)} ${range} ${(med(name, (s) => s.gbps) / med(direct, (s) => s.gbps)).toFixed(3).padStart(8)}` +
      `  ${med(name, (s) => sum(s.cpuMsPerGiB)).toFixed(0).padStart(9)}  ${f(p('p50'))} ${f(p('p90'))} ${f(p('p99'))} ${f(p('p999'))}  ${f(p('p50') - med(direct, (s) => s.lat.p50))}  ${f(p('p99') - med(direct, (s) => s.lat.p99))}`);
  }
  // The spread says what a difference of medians is worth: on a shared 2-core machine
  // the direct path's own p99 moves by more than the goal (0.5 ms) from round to round.
  console.log(`\np99 of each round, ms (min-max over ${o.repeat}): ` + names.map((n) => {
    const p99s = samples.get(n)!.map((s) => s.lat.p99).filter(Number.isFinite);
    return `${n.split(' (')[0]} ${p99s.length ? `${Math.min(...p99s).toFixed(3)}-${Math.max(...p99s).toFixed(3)}` : 'n/a'}`;
  }).join('; '));
  // Proxy CPU per unit of work: steadier than rates on a shared machine (issue 13's
  // "ztunnel CPU per 1,000 req/s" and CPU per byte), each proxy process and both summed.
  console.log(`\nProxy CPU (/proc utime+stime). Per GiB: over the iperf3 phase. Per 1,000 req/s: over the paced ${o.rate}/s 1 KiB phase (warm-up excluded), vCPU = CPU s per s.\n`);
  console.log('setup'.padEnd(64) + ' ms/GiB both  source  dest   vCPU/1k req/s both  source  dest');
  const proxied = names.filter((n) => samples.get(n)!.some((s) => s.cpuMsPerGiB.length > 0));
  for (const name of proxied) {
    const each = (pick: (s: Sample) => number[], i: number) => med(name, (s) => pick(s)[i] ?? NaN);
    console.log(`${name.padEnd(64)} ${med(name, (s) => sum(s.cpuMsPerGiB)).toFixed(0).padStart(12)} ${each((s) => s.cpuMsPerGiB, 0).toFixed(0).padStart(7)} ${each((s) => s.cpuMsPerGiB, 1).toFixed(0).padStart(6)}` +
      `   ${med(name, (s) => sum(s.vcpuPer1k)).toFixed(3).padStart(18)} ${each((s) => s.vcpuPer1k, 0).toFixed(3).padStart(7)} ${each((s) => s.vcpuPer1k, 1).toFixed(3).padStart(6)}`);
  }
  const ha = names.find((n) => n.startsWith('haproxy'));
  const weft = names.filter((n) => n.startsWith('weft'));
  if (ha) {
    console.log('');
    for (const w of weft) {
      const r = (pick: (s: Sample) => number) => (med(w, pick) / med(ha, pick)).toFixed(2);
      console.log(`${w} vs haproxy: ${r((s) => s.gbps)}x throughput, ${r((s) => sum(s.cpuMsPerGiB))}x CPU per byte, ` +
        `${r((s) => sum(s.vcpuPer1k))}x CPU per 1,000 req/s, added p99 ${(med(w, (s) => s.lat.p99) - med(direct, (s) => s.lat.p99)).toFixed(3)} ms ` +
        `(haproxy ${(med(ha, (s) => s.lat.p99) - med(direct, (s) => s.lat.p99)).toFixed(3)} ms)`);
    }
  }
}
