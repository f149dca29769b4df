/**
 * One open-loop phase, shared by the benches: sends scheduled `1000 / rate` ms apart
 * for `durationMs`, each on the first idle connection of `conns` (or the next to come
 * free). Latency counts from the scheduled time, or from the send when the timer fired
 * early, so a stalled proxy's queueing shows in the percentiles instead of slowing the
 * schedule down (no coordinated omission).
 */
export interface OpenLoopResult {
  /** Latency of each successful send, ms, sorted. */
  latencies: number[];
  errors: number;
  elapsedMs: number;
}

export async function openLoop<C>(conns: readonly C[], rate: number, durationMs: number, send: (c: C) => Promise<void>): Promise<OpenLoopResult> {
  const idle = [...conns];
  const waiting: Array<(c: C) => void> = [];
  const acquire = () => new Promise<C>((r) => { const c = idle.pop(); if (c !== undefined) r(c); else waiting.push(r); });
  const release = (c: C) => { const w = waiting.shift(); if (w) w(c); else idle.push(c); };
  const latencies: number[] = [];
  let errors = 0;
  const total = Math.floor((rate * durationMs) / 1000);
  const interval = 1000 / rate;
  const start = performance.now();
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const scheduled = start + i * interval;
    const delay = scheduled - performance.now();
    if (delay > 1) await new Promise((r) => setTimeout(r, delay));
    const base = Math.min(performance.now(), scheduled);
    inflight.push((async () => {
      const c = await acquire();
      try { await send(c); latencies.push(performance.now() - base); } catch { errors++; } finally { release(c); }
    })());
  }
  await Promise.all(inflight);
  const elapsedMs = performance.now() - start;
  latencies.sort((a, b) => a - b);
  return { latencies, errors, elapsedMs };
}
