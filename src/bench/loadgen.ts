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
import { openLoop } from './open-loop';
import { percentile } from './stats';

interface Target { host: string; port: number }

/** What the connection-rate phase answers (one JSON line). */
export interface ConnrateResult { perSecond: number; connections: number; errors: number }

/**
 * The argv after `node` of the lab bench's connection-rate phase: lab.js and
 * connrate-builds.js run this one, so their figures stay comparable.
 */
export function connrateArgv(target: string, count: number): string[] {
  return [__filename, 'connrate', '--target', target, '--count', String(count), '--concurrency', '8', '--size', '64'];
}

function parseArgs(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--')) { out[a.slice(2)] = argv[i + 1] ?? ''; i++; } else out._ = a;
  }
  return out;
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
  const all: Socket[] = [];
  for (let i = 0; i < conns; i++) all.push(await open(target));
  // Warm up each connection (tunnel set-up, TLS) outside the measured window.
  for (const s of all) { s.write(payload); await readExactly(s, size); }
  const { latencies, errors, elapsedMs: elapsed } = await openLoop(all, rate, durationMs, async (s) => {
    s.write(payload);
    await readExactly(s, size);
  });
  for (const s of all) s.destroy();
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
