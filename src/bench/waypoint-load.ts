/**
 * The waypoint bench's load generator (waypoint.ts): keep-alive HTTP/1.1 client
 * connections over any byte stream (an HBONE stream, TLS, TCP), one request at a time,
 * driven closed loop (max req/s) or open loop at a fixed rate with the proxy's CPU and
 * RSS read from /proc.
 */
import type { Duplex } from 'node:stream';
import { cpuSeconds, rssBytes } from '../faults/observe';
import { openLoop } from './open-loop';
import { percentile } from './stats';

const SIZE = 1024;
/** A 1 KiB POST. */
export const REQUEST = Buffer.concat([Buffer.from(`POST /bench HTTP/1.1\r\nHost: echo.demo\r\nContent-Type: application/octet-stream\r\nContent-Length: ${SIZE}\r\n\r\n`), Buffer.alloc(SIZE, 0x61)]);
const REQUEST_TIMEOUT_MS = 5000;

/** One keep-alive HTTP/1.1 client connection over any byte stream: one request at a time. */
export class Conn {
  private buf: Buffer = Buffer.alloc(0);
  private pending: { resolve(): void; reject(e: Error): void; timer: NodeJS.Timeout } | undefined;

  constructor(private readonly s: Duplex) {
    s.on('data', (d: Buffer) => { this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d; this.parse(); });
    const fail = () => this.settle(new Error('connection closed'));
    s.on('error', fail);
    s.on('close', fail);
  }

  request(): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.settle(new Error('no answer within 5 s')), REQUEST_TIMEOUT_MS);
      this.pending = { resolve, reject, timer };
      this.s.write(REQUEST);
    });
  }

  close(): void { this.s.destroy(); }

  private settle(err?: Error): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    clearTimeout(p.timer);
    if (err) p.reject(err); else p.resolve();
  }

  /** Content-Length or chunked answers (the body is 'b's, so the chunked terminator cannot occur inside it). */
  private parse(): void {
    const end = this.buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.buf.subarray(0, end).toString('latin1');
    const status = Number(head.slice(9, 12));
    const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    let total: number;
    if (cl) total = end + 4 + Number(cl[1]);
    else {
      const t = this.buf.indexOf('\r\n0\r\n\r\n', end);
      if (t < 0) return;
      total = t + 7;
    }
    if (this.buf.length < total) return;
    this.buf = this.buf.subarray(total);
    this.settle(status === 200 ? undefined : new Error(`status ${status}`));
  }
}

export type Dial = () => Promise<Duplex>;
export interface Path { name: string; dial: Dial; proxyPids: () => number[] }

async function openConns(dial: Dial, n: number): Promise<Conn[]> {
  const conns: Conn[] = [];
  for (let i = 0; i < n; i++) conns.push(new Conn(await dial()));
  return conns;
}

/** Closed loop: every connection sends its next request when the last one is answered. */
export async function maxRate(dial: Dial, connections: number, seconds: number): Promise<{ rps: number; errors: number; done: number }> {
  const conns = await openConns(dial, connections);
  let done = 0;
  let errors = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  await Promise.all(conns.map(async (c) => {
    while (performance.now() < deadline) {
      try { await c.request(); done++; } catch { errors++; break; }
    }
  }));
  const elapsed = performance.now() - start;
  for (const c of conns) c.close();
  return { rps: (done / elapsed) * 1000, errors, done };
}

export interface Fixed { p50: number; p99: number; achieved: number; errors: number; cpu: number; rssMb: number }

/** Open loop at `rate`/s over 8 connections; latency from the scheduled send time (no coordinated omission). */
export async function fixedRate(dial: Dial, rate: number, seconds: number, pids: number[]): Promise<Fixed> {
  const conns = await openConns(dial, 8);
  for (const c of conns) await c.request();
  const cpu0 = pids.reduce((a, p) => a + cpuSeconds(p), 0);
  const { latencies: lat, errors, elapsedMs } = await openLoop(conns, rate, seconds * 1000, (c) => c.request());
  const elapsed = elapsedMs / 1000;
  const cpu = pids.reduce((a, p) => a + cpuSeconds(p), 0) - cpu0;
  const rssMb = pids.reduce((a, p) => a + rssBytes(p), 0) / 2 ** 20;
  for (const c of conns) c.close();
  const achieved = lat.length / elapsed;
  // vCPU used per 1000 req/s actually served.
  return { p50: percentile(lat, 50), p99: percentile(lat, 99), achieved, errors, cpu: (cpu / elapsed) / (achieved / 1000), rssMb };
}

