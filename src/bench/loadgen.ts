/**
 * A small load generator run inside a lab pod (`ip netns exec ... node loadgen.js`),
 * against a TCP echo server. It prints one JSON line.
 *
 * latency:  open-loop at a fixed rate over a few persistent connections; each request
 *           writes `size` bytes and waits for `size` bytes back. Latency is measured
 *           from the *scheduled* send time so a stalled proxy cannot hide its queueing
 *           (coordinated omission).
 * connrate: open, exchange `size` bytes, close; `concurrency` loops; connections/s.
 */
import { connect, type Socket } from 'node:net';

interface Target { host: string; port: number }

function parseArgs(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--')) { out[a.slice(2)] = argv[i + 1] ?? ''; i++; } else out._ = a;
  }
  return out;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function open(target: Target): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: target.host, port: target.port, noDelay: true });
    s.once('connect', () => { s.off('error', reject); resolve(s); });
    s.once('error', reject);
  });
}

/** Waits until `size` bytes arrived on the socket. */
function readExactly(s: Socket, size: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const onData = (b: Buffer) => {
      got += b.length;
      if (got >= size) { cleanup(); resolve(); }
    };
    const onEnd = () => { cleanup(); reject(new Error('closed early')); };
    const cleanup = () => { s.off('data', onData); s.off('error', onEnd); s.off('close', onEnd); };
    s.on('data', onData);
    s.once('error', onEnd);
    s.once('close', onEnd);
  });
}

async function latency(target: Target, rate: number, durationMs: number, size: number, conns: number): Promise<object> {
  const payload = Buffer.alloc(size, 0x61);
  const idle: Socket[] = [];
  for (let i = 0; i < conns; i++) idle.push(await open(target));
  const all = [...idle];
  // Warm up each connection (tunnel set-up, TLS) outside the measured window.
  for (const s of all) { s.write(payload); await readExactly(s, size); }
  const latencies: number[] = [];
  let errors = 0;
  const waiting: Array<(s: Socket) => void> = [];
  const release = (s: Socket) => { const w = waiting.shift(); if (w) w(s); else idle.push(s); };
  const acquire = () => new Promise<Socket>((r) => { const s = idle.pop(); if (s) r(s); else waiting.push(r); });
  const total = Math.floor((rate * durationMs) / 1000);
  const interval = 1000 / rate;
  const start = performance.now();
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const scheduled = start + i * interval;
    const delay = scheduled - performance.now();
    if (delay > 1) await new Promise((r) => setTimeout(r, delay));
    // Early sends (timer slack) count from when they were sent, late ones from when
    // they were due, so a stalled proxy's queueing shows up in the percentiles.
    const base = Math.min(performance.now(), scheduled);
    inflight.push((async () => {
      const s = await acquire();
      try {
        s.write(payload);
        await readExactly(s, size);
        latencies.push(performance.now() - base);
      } catch { errors++; } finally { release(s); }
    })());
  }
  await Promise.all(inflight);
  const elapsed = performance.now() - start;
  for (const s of all) s.destroy();
  latencies.sort((a, b) => a - b);
  return { mode: 'latency', requests: latencies.length, errors, achievedRps: Math.round((latencies.length / elapsed) * 1000),
    p50Ms: percentile(latencies, 50), p90Ms: percentile(latencies, 90), p99Ms: percentile(latencies, 99) };
}

async function connrate(target: Target, count: number, concurrency: number, size: number): Promise<object> {
  const payload = Buffer.alloc(size, 0x62);
  let next = 0;
  let errors = 0;
  const start = performance.now();
  const worker = async () => {
    while (next < count) {
      next++;
      try {
        const s = await open(target);
        s.write(payload);
        await readExactly(s, size);
        s.end();
        await new Promise<void>((r) => { s.once('close', () => r()); s.resume(); });
      } catch { errors++; }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = performance.now() - start;
  return { mode: 'connrate', connections: count - errors, errors, perSecond: Math.round(((count - errors) / elapsed) * 1000) };
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const [host, port] = (a.target ?? '').split(':');
  if (!host || !port) throw new Error('usage: loadgen latency|connrate --target host:port [...]');
  const target = { host, port: Number(port) };
  const size = Number(a.size ?? 1024);
  const result = a._ === 'connrate'
    ? await connrate(target, Number(a.count ?? 2000), Number(a.concurrency ?? 8), size)
    : await latency(target, Number(a.rate ?? 1000), Number(a.duration ?? 5000), size, Number(a.connections ?? 8));
  process.stdout.write(JSON.stringify(result) + '\n');
}

if (require.main === module) {
  main().catch((err: unknown) => { process.stderr.write(`loadgen: ${String(err)}\n`); process.exit(1); });
}
