/**
 * Reading a running lab from the outside, as an operator would: the ztunnels' admin
 * API (unix socket) and metrics, their JSON logs, and a process's RSS. Used by the
 * fault suite and by the e2e tests, so both judge the mesh by the same evidence.
 */
import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { run } from '../lab/run';
import { procBytes, procStatFields } from '../lib/proc';

/** GET a ztunnel admin path over its unix socket; parses the JSON answer. */
export function adminGet<T>(socketPath: string, path: string, timeoutMs = 3000): Promise<T> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        try { resolve(JSON.parse(Buffer.concat(chunks).toString()) as T); } catch (err) { reject(err as Error); }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`admin ${path}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** GET url; resolves with status and body (rejects when unreachable). */
export function httpGet(url: string, timeoutMs = 3000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

/** A ztunnel's Prometheus text (`http://<node>:15020/metrics`). */
export async function scrapeZtunnel(nodeAddress: string): Promise<string> {
  return (await httpGet(`http://${nodeAddress}:15020/metrics`)).body;
}

/** Sum of a metric's samples whose labels include every given pair (NaN when no sample matches). */
export function metricSum(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  let seen = false;
  for (const line of text.split('\n')) {
    if (line !== name && !line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) continue;
    sum += Number(line.slice(line.lastIndexOf(' ') + 1));
    seen = true;
  }
  return seen ? sum : NaN;
}

/** A counter's total over the matching series: 0 while none was counted yet (a counter starts at 0). */
export function counterSum(text: string, name: string, labels: Record<string, string> = {}): number {
  const sum = metricSum(text, name, labels);
  return Number.isNaN(sum) ? 0 : sum;
}

export type LogLine = Record<string, unknown> & { msg?: string };

/**
 * Reads a JSON-lines log from a mark on: `mark()` remembers the current end, `since()`
 * returns the parsed lines written after it (non-JSON lines skipped).
 */
export class LogCursor {
  private offset = 0;

  constructor(readonly file: string) {
    this.mark();
  }

  mark(): void {
    try { this.offset = statSync(this.file).size; } catch { this.offset = 0; }
  }

  since(): LogLine[] {
    let fd: number;
    try { fd = openSync(this.file, 'r'); } catch { return []; }
    try {
      const size = statSync(this.file).size;
      if (size <= this.offset) return [];
      const buf = Buffer.alloc(size - this.offset);
      readSync(fd, buf, 0, buf.length, this.offset);
      const out: LogLine[] = [];
      for (const l of buf.toString('utf8').split('\n')) {
        if (!l.startsWith('{')) continue;
        try { out.push(JSON.parse(l) as LogLine); } catch { /* a line still being written */ }
      }
      return out;
    } finally {
      closeSync(fd);
    }
  }

  /** Lines since the mark whose `msg` equals `msg`. */
  find(msg: string): LogLine[] {
    return this.since().filter((l) => l.msg === msg);
  }
}

/** Resident set size of a process in bytes (VmRSS; VmHWM is its peak), or NaN when it is gone. */
export function rssBytes(pid: number, field: 'VmRSS' | 'VmHWM' = 'VmRSS'): number {
  return procBytes(pid, 'status', [field])[field];
}

let clockTicks: number | undefined;

/** CPU time (user + system) a process has used, in seconds, or NaN when it is gone. */
export function cpuSeconds(pid: number): number {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  const fields = procStatFields(pid);
  if (!fields) return NaN;
  // utime and stime are fields 14 and 15.
  return (Number(fields[14 - 3]) + Number(fields[15 - 3])) / clockTicks;
}

/**
 * The iptables and ip6tables rules of a network namespace (nat, mangle, filter), without
 * comments and counters: what capture installed, comparable before and after a restart
 * (time stamps and packet counts change; the rules must not).
 */
export async function captureRules(netns: string): Promise<string> {
  const tables: string[] = [];
  for (const save of ['iptables-save', 'ip6tables-save']) {
    for (const table of ['nat', 'mangle', 'filter']) tables.push((await run('ip', ['netns', 'exec', netns, save, '-t', table])).stdout);
  }
  return tables.join('\n').split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.replace(/ \[\d+:\d+\]$/, '')).join('\n');
}
