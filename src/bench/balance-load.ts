/**
 * Closed-loop HTTP load for comparing load balancers (test/e2e/resilience/hash.ts
 * runs it inside the lab's client pod): `--concurrency` loops each send one GET at a
 * time over keep-alive until `--requests` were sent, and print one JSON line with the
 * latency percentiles (ms, measured per request in this process) and which echo pod
 * answered how often. Bounded: at most 100,000 requests, each given up after 5 s.
 *
 *   node dist/bench/balance-load.js http://198.18.128.10/ --concurrency 8 --requests 800
 */
import * as http from 'node:http';
import { percentile } from './stats';

export interface LoadSummary {
  requests: number;
  p50: number;
  p90: number;
  p99: number;
  /** The echo app's `pod` field → answers. */
  pods: Record<string, number>;
  statuses: Record<string, number>;
  errors: Record<string, number>;
}

const MAX_REQUESTS = 100_000;
const TIMEOUT_MS = 5000;

function one(agent: http.Agent, url: URL): Promise<{ status: number; pod?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent, timeout: TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        let pod: string | undefined;
        try {
          pod = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { pod?: string }).pod;
        } catch {
          pod = undefined;
        }
        resolve({ status: res.statusCode ?? 0, ...(pod ? { pod } : {}) });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

export async function load(url: string, concurrency: number, requests: number): Promise<LoadSummary> {
  const target = new URL(url);
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  const latencies: number[] = [];
  const pods: Record<string, number> = {};
  const statuses: Record<string, number> = {};
  const errors: Record<string, number> = {};
  let sent = 0;
  const loop = async () => {
    while (sent < requests) {
      sent++;
      const t0 = process.hrtime.bigint();
      try {
        const r = await one(agent, target);
        latencies.push(Number(process.hrtime.bigint() - t0) / 1e6);
        statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        if (r.pod) pods[r.pod] = (pods[r.pod] ?? 0) + 1;
      } catch (err) {
        const k = (err as Error).message;
        errors[k] = (errors[k] ?? 0) + 1;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 100) / 100;
  return { requests, p50: r(percentile(latencies, 50)), p90: r(percentile(latencies, 90)), p99: r(percentile(latencies, 99)), pods, statuses, errors };
}

function arg(name: string, fallback: number, max: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i < 0 ? fallback : Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v < 1 || v > max) throw new Error(`--${name} must be an integer 1-${max}`);
  return v;
}

if (require.main === module) {
  const url = process.argv[2];
  if (!url || url.startsWith('--')) {
    console.error('usage: balance-load <url> [--concurrency 8] [--requests 800]');
    process.exit(2);
  }
  load(url, arg('concurrency', 8, 256), arg('requests', 800, MAX_REQUESTS)).then(
    (s) => console.log(JSON.stringify(s)),
    (err: Error) => { console.error(err.message); process.exit(1); },
  );
}
