/**
 * A real Prometheus (Debian's `prometheus`) for the tests: started in the root
 * namespace on a free loopback port with a fresh TSDB in a temporary directory,
 * scraping the given targets every second and evaluating the given rule files every
 * second, so a few seconds of traffic are enough to see rates. Stopped in teardown
 * (also when the test fails): only the PID started here is signalled, and the
 * directory is removed. Its log stays readable while it runs (`log()`), for failures.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import { which } from '../../../src/lab/run';
import { waitFor } from '../../helpers/wait';

export interface ScrapeJob {
  job: string;
  /** host:port */
  targets: string[];
  /** Default /metrics. */
  path?: string;
}

export interface PromSeries { metric: Record<string, string>; value: [number, string] }
export interface PromTarget { labels: Record<string, string>; health: string; lastError: string; scrapeUrl: string }
export interface PromRule { name: string; type: 'recording' | 'alerting'; health: string; lastError?: string }

export interface PrometheusServer {
  /** http://127.0.0.1:<port> */
  url: string;
  pid: number;
  /** Instant query (/api/v1/query); throws on a PromQL error, with Prometheus' message. */
  query(expr: string): Promise<PromSeries[]>;
  /** /api/v1/label/<name>/values, optionally restricted by a series selector (Grafana's label_values). */
  labelValues(name: string, match?: string): Promise<string[]>;
  targets(): Promise<PromTarget[]>;
  rules(): Promise<PromRule[]>;
  /** Its log so far. */
  log(): string;
}

/** Why Prometheus tests cannot run here, or false. */
export function prometheusSkipReason(): string | false {
  return which('prometheus') ? false : 'prometheus is not installed (Debian: apt-get install prometheus)';
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  return port;
}

async function api<T>(base: string, path: string): Promise<T> {
  const res = await fetch(`${base}${path}`);
  const body = await res.json() as { status: string; data: T; error?: string; errorType?: string };
  if (body.status !== 'success') throw new Error(`prometheus ${path}: ${body.errorType ?? res.status}: ${body.error ?? 'failed'}`);
  return body.data;
}

export async function startPrometheus(t: Test, opts: { jobs: ScrapeJob[]; ruleFiles?: string[]; intervalSeconds?: number }): Promise<PrometheusServer> {
  const bin = which('prometheus');
  if (!bin) throw new Error('prometheus is not installed');
  const dir = mkdtempSync(join(tmpdir(), 'weft-prometheus-'));
  let child: ChildProcess | undefined;
  t.teardown(async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child!.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const interval = `${opts.intervalSeconds ?? 1}s`;
  // JSON is YAML: no YAML writer needed for Prometheus' config.
  const config = {
    global: { scrape_interval: interval, scrape_timeout: interval, evaluation_interval: interval },
    rule_files: opts.ruleFiles ?? [],
    scrape_configs: opts.jobs.map((j) => ({ job_name: j.job, metrics_path: j.path ?? '/metrics', static_configs: [{ targets: j.targets }] })),
  };
  const configFile = join(dir, 'prometheus.yml');
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const logFile = join(dir, 'prometheus.log');
  const logFd = openSync(logFile, 'w');
  child = spawn(bin, [
    `--config.file=${configFile}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`,
    // Debian's default console paths may be absent; no console is used.
    `--web.console.templates=${dir}`, `--web.console.libraries=${dir}`,
  ], { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  const log = () => readFileSync(logFile, 'utf8');
  const pid = child.pid!;
  await waitFor(`prometheus ready at ${url}`, async () => {
    if (child!.exitCode !== null) throw new Error(`prometheus exited (${child!.exitCode}):\n${log().slice(-2000)}`);
    const res = await fetch(`${url}/-/ready`).catch(() => undefined);
    return res?.status === 200;
  }, { timeoutMs: 30_000, intervalMs: 200 });
  return {
    url, pid, log,
    query: async (expr) => (await api<{ resultType: string; result: PromSeries[] }>(url, `/api/v1/query?query=${encodeURIComponent(expr)}`)).result,
    labelValues: (name, match) => api<string[]>(url, `/api/v1/label/${encodeURIComponent(name)}/values${match ? `?match[]=${encodeURIComponent(match)}` : ''}`),
    targets: async () => (await api<{ activeTargets: PromTarget[] }>(url, '/api/v1/targets')).activeTargets,
    rules: async () => (await api<{ groups: Array<{ rules: PromRule[] }> }>(url, '/api/v1/rules')).groups.flatMap((g) => g.rules),
  };
}
