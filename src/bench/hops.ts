/**
 * Where a round trip's time goes, hop by hop (`node dist/bench/hbone.js --hops`).
 *
 * The latency phase has one 1 KiB request in flight at a time, so every syscall that
 * moves it can be put in order: the client's write, each proxy's read and write, the
 * echo server's read and write, back. `perf record` on the syscall tracepoints (the
 * exit of read/recvfrom/readv/recvmsg with a byte count, the entry of
 * write/sendto/writev/sendmsg) timestamps them with far less disturbance than strace,
 * and the gaps are either a process's own work (its read to its write: the HTTP/2
 * framing, TLS, the JavaScript) or a hand-over (a write to the next process's read:
 * loopback TCP plus the wake-up and the wait for a CPU). The client and the echo
 * server are the bench process itself. Needs root (or perf_event_paranoid ≤ 1) and perf.
 */
import { spawn, spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { percentile } from './stats';

const EVENTS = ['sys_exit_read', 'sys_exit_recvfrom', 'sys_exit_readv', 'sys_exit_recvmsg',
  'sys_enter_write', 'sys_enter_sendto', 'sys_enter_writev', 'sys_enter_sendmsg'].map((e) => `syscalls:${e}`);

type Step = { pid: number; op: 'r' | 'w' };
interface Event extends Step { t: number }

/** Whether `perf record` may trace syscalls here. */
export function canTraceHops(): boolean {
  const r = spawnSync('perf', ['record', '-q', '-e', EVENTS[0]!, '-o', '/dev/null', '--', 'true'], { stdio: 'ignore' });
  return r.status === 0;
}

/** Records the syscalls of `pids` for `seconds`; the `perf script` text. */
export async function recordHops(pids: number[], seconds: number, dir: string): Promise<string> {
  const file = join(dir, `hops-${pids.join('-')}.data`);
  const args = ['record', '-q', ...EVENTS.flatMap((e) => ['-e', e]), '-p', pids.join(','), '-o', file, '--', 'sleep', String(seconds)];
  await new Promise<void>((resolve) => spawn('perf', args, { stdio: 'ignore' }).once('exit', () => resolve()));
  const out = spawnSync('perf', ['script', '-i', file, '-F', 'pid,time,event,trace'], { encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 });
  rmSync(file, { force: true });
  return out.stdout ?? '';
}

/**
 * The steps of one round trip: the client's write, each proxy's read and write in
 * `path` order (the same pid twice for a proxy that tunnels to itself), the echo's read
 * and write, the proxies back in reverse, the client's read.
 */
export function roundTripSteps(client: number, path: number[]): Step[] {
  const through = (ps: number[]) => ps.flatMap((pid): Step[] => [{ pid, op: 'r' }, { pid, op: 'w' }]);
  return [{ pid: client, op: 'w' }, ...through(path), { pid: client, op: 'r' }, { pid: client, op: 'w' }, ...through([...path].reverse()), { pid: client, op: 'r' }];
}

/** Names of the gaps between consecutive steps; `labels` name the proxies of `path`. */
export function gapNames(labels: string[]): string[] {
  const names: string[] = [];
  const leg = (from: string, ls: string[], to: string, dir: string) => {
    let prev = from;
    for (const l of ls) {
      names.push(`${prev} → ${l} (hand-over)`, `${l} (${dir})`);
      prev = l;
    }
    names.push(`${prev} → ${to} (hand-over)`);
  };
  leg('client', labels, 'echo', 'request');
  names.push('echo');
  leg('echo', [...labels].reverse(), 'client', 'response');
  return names;
}

/** Parses `perf script -F pid,time,event,trace` lines: reads that returned bytes, writes. */
export function parseEvents(text: string, pids: Set<number>): Event[] {
  const out: Event[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+)\s+([\d.]+):\s+syscalls:sys_(enter|exit)_\w+:\s*(\S*)/.exec(line);
    if (!m) continue;
    const pid = Number(m[1]);
    if (!pids.has(pid)) continue;
    if (m[3] === 'exit') {
      const ret = BigInt.asIntN(64, BigInt(m[4]!.startsWith('0x') ? m[4]! : `0x${m[4]}`));
      if (ret <= 0n) continue;
      out.push({ pid, op: 'r', t: Number(m[2]) * 1000 });
    } else {
      out.push({ pid, op: 'w', t: Number(m[2]) * 1000 });
    }
  }
  return out.sort((a, b) => a.t - b.t);
}

/** Each complete round trip's step times (ms), in order; incomplete ones (another syscall in the way, the trace's edges) are left out. */
export function matchRoundTrips(events: Event[], steps: Step[], maxMs = 50): number[][] {
  const trips: number[][] = [];
  const is = (e: Event, s: Step) => e.pid === s.pid && e.op === s.op;
  let i = 0;
  while (i < events.length) {
    if (!is(events[i]!, steps[0]!)) { i++; continue; }
    const ts = [events[i]!.t];
    let j = i + 1;
    while (j < events.length && ts.length < steps.length && events[j]!.t - ts[0]! < maxMs) {
      const e = events[j]!;
      if (is(e, steps[ts.length]!)) ts.push(e.t);
      else if (ts.length === 1 && is(e, steps[0]!)) ts[0] = e.t; // a write nobody read yet: start from the later one
      j++;
    }
    if (ts.length === steps.length) { trips.push(ts); i = j; } else i++;
  }
  return trips;
}

export interface GapStats { name: string; p50: number; p99: number; mean: number; tailMean: number }
export interface HopReport { trips: number; p50: number; p99: number; gaps: GapStats[] }

/** Per gap: p50, p99, mean over all round trips, and the mean over the slowest 1 % (where the tail's time goes). */
export function hopReport(trips: number[][], names: string[]): HopReport {
  const rtt = trips.map((t) => t[t.length - 1]! - t[0]!);
  const sorted = [...rtt].sort((a, b) => a - b);
  const cut = percentile(sorted, 99);
  const tail = trips.filter((_, k) => rtt[k]! >= cut);
  const gaps = names.map((name, g) => {
    const d = trips.map((t) => t[g + 1]! - t[g]!).sort((a, b) => a - b);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
    return { name, p50: percentile(d, 50), p99: percentile(d, 99), mean: mean(d), tailMean: mean(tail.map((t) => t[g + 1]! - t[g]!)) };
  });
  return { trips: trips.length, p50: percentile(sorted, 50), p99: cut, gaps };
}

export function printHopReport(setup: string, r: HopReport): void {
  const f = (n: number) => n.toFixed(3).padStart(7);
  console.log(`\n${setup}: ${r.trips} round trips traced, syscall to syscall p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms`);
  console.log(`${'gap (ms)'.padEnd(44)}     p50     p99    mean  mean in the slowest 1 %`);
  for (const g of r.gaps) console.log(`${g.name.padEnd(44)} ${f(g.p50)} ${f(g.p99)} ${f(g.mean)}  ${f(g.tailMean)}`);
  const own = r.gaps.filter((g) => !g.name.includes('hand-over') && g.name !== 'echo');
  const hand = r.gaps.filter((g) => g.name.includes('hand-over'));
  const s = (gs: GapStats[], k: 'mean' | 'tailMean') => gs.reduce((a, g) => a + g[k], 0).toFixed(3);
  console.log(`proxies' own work: mean ${s(own, 'mean')} ms, slowest 1 % ${s(own, 'tailMean')} ms; hand-overs (wake-up, CPU wait): mean ${s(hand, 'mean')} ms, slowest 1 % ${s(hand, 'tailMean')} ms`);
}
