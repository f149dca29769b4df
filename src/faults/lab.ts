/**
 * The fault suite's hold on a running lab: its context, its recorded processes (to
 * freeze, kill and restart them the way an orchestrator would), and steady traffic
 * from its pods. Built from a lab that someone else brought up through the real CLI
 * (`npm run faults` does it in main.ts, the e2e test through its helper).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { LabContext } from '../lab/context';
import { REPO_ROOT } from '../lab/paths';
import { isAlive, restartRecorded, until } from '../lab/procs';
import { runWeft, type RunResult } from '../lab/run';
import { readState, StateStore, type ProcessResource } from '../lab/state';
import { adminGet, LogCursor } from './observe';
import type { ZtunnelStatus } from '../ztunnel/admin-types';

/** Always the built file: pods run plain node, also when the suite itself runs from source (tap). */
export const TRAFFIC = join(REPO_ROOT, 'dist', 'faults', 'traffic.js');

/** A pod-side traffic run: its JSON lines as they arrive. */
export class TrafficRun<T = Record<string, unknown>> {
  readonly lines: T[] = [];
  readonly done: Promise<number>;
  private readonly child: ChildProcess;

  constructor(netns: string, args: string[]) {
    this.child = spawn('ip', ['netns', 'exec', netns, process.execPath, TRAFFIC, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    createInterface({ input: this.child.stdout! }).on('line', (l) => { try { this.lines.push(JSON.parse(l) as T); } catch { /* not ours */ } });
    this.done = new Promise((resolve) => this.child.once('close', (code) => resolve(code ?? 1)));
  }

  /** Resolves with the first line matching `pred` (waits for it), or undefined once the run ended without one. */
  async waitLine(pred: (l: T) => boolean, timeoutMs: number): Promise<T | undefined> {
    let found: T | undefined;
    await until(() => { found = this.lines.find(pred); return found !== undefined || this.child.exitCode !== null; }, timeoutMs);
    return found ?? this.lines.find(pred);
  }

  /** Asks the run to finish early (it prints its closing lines). */
  stop(): void {
    if (this.child.exitCode === null) this.child.kill('SIGTERM');
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

export interface Flow { flow: number; start: number; ms: number; ok: boolean; peer?: string; err?: string }

export class FaultLab {
  private readonly runs: TrafficRun[] = [];

  /** `env` points the `weft` CLI at this lab (WEFT_LAB_DIR, WEFT_CONTEXT). */
  constructor(readonly labDir: string, readonly ctx: LabContext, readonly env: NodeJS.ProcessEnv) {}

  static fromContextFile(file: string, env: NodeJS.ProcessEnv): FaultLab {
    const ctx = JSON.parse(readFileSync(file, 'utf8')) as LabContext;
    return new FaultLab(ctx.labDir, ctx, env);
  }

  /** Runs the built `weft` CLI against this lab; `extraEnv` adds to the environment. */
  weft(args: string[], extraEnv: NodeJS.ProcessEnv = {}): Promise<RunResult> {
    return runWeft(args, { ...this.env, ...extraEnv });
  }

  pod(uid: string): LabContext['pods'][number] {
    const p = this.ctx.pods.find((x) => x.uid === uid);
    if (!p) throw new Error(`no pod ${uid} in the lab`);
    return p;
  }

  node(name: string): LabContext['nodes'][number] {
    const n = this.ctx.nodes.find((x) => x.name === name);
    if (!n) throw new Error(`no node ${name} in the lab`);
    return n;
  }

  log(file: string): LogCursor {
    return new LogCursor(join(this.labDir, 'logs', file));
  }

  ztunnelLog(node: string): LogCursor {
    return this.log(`ztunnel-${node}.log`);
  }

  process(name: string): ProcessResource {
    const p = readState(this.labDir)?.resources.find((r): r is ProcessResource => r.type === 'process' && r.name === name);
    if (!p?.pid) throw new Error(`the lab has no running process ${name}`);
    return p;
  }

  signal(name: string, sig: NodeJS.Signals): ProcessResource {
    const p = this.process(name);
    process.kill(p.pid!, sig);
    return p;
  }

  /** Waits until the recorded process has exited (after a signal). */
  async exited(p: ProcessResource, timeoutMs = 20_000): Promise<boolean> {
    return until(() => !isAlive(p), timeoutMs, 20);
  }

  /**
   * Starts a stopped process again with the argv the lab recorded and the environment
   * the old one had (read from /proc before it died: `env`), as a restarted pod
   * would; `extraEnv` adds to it. The state file then records the new PID, so
   * `weft lab down` stops it.
   */
  restart(old: ProcessResource, env: NodeJS.ProcessEnv, extraEnv: NodeJS.ProcessEnv = {}): ProcessResource {
    const state = readState(this.labDir);
    if (!state) throw new Error(`no lab state in ${this.labDir}`);
    return restartRecorded(StateStore.open(state), old, { ...env, ...extraEnv });
  }

  /** The environment of a running process (to restart it the same way). */
  environ(p: ProcessResource): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = {};
    for (const kv of readFileSync(`/proc/${p.pid}/environ`, 'utf8').split('\0')) {
      const i = kv.indexOf('=');
      if (i > 0) env[kv.slice(0, i)] = kv.slice(i + 1);
    }
    return env;
  }

  async ztunnelStatus(node: string): Promise<ZtunnelStatus> {
    return adminGet<ZtunnelStatus>(this.node(node).adminSocket!, '/status');
  }

  async ztunnelReady(node: string): Promise<boolean> {
    return (await this.ztunnelStatus(node).catch(() => undefined))?.ready === true;
  }

  /** Steady traffic from a pod (see traffic.ts); stopped by stopTraffic() at the latest. */
  traffic<T = Record<string, unknown>>(podUid: string, args: string[]): TrafficRun<T> {
    const run = new TrafficRun<T>(this.pod(podUid).netns, args);
    this.runs.push(run as TrafficRun);
    return run;
  }

  flows(podUid: string, target: string, rateps: number, durationMs: number): TrafficRun<Flow> {
    return this.traffic<Flow>(podUid, ['flows', '--target', target, '--rate', String(rateps), '--duration', String(durationMs), '--timeout', '3000']);
  }

  stopTraffic(): void {
    for (const r of this.runs) r.kill();
  }
}

/** Flows of a run that carry a result (not the closing line). */
export function flowsOf(run: TrafficRun<Flow>): Flow[] {
  return run.lines.filter((l) => typeof l.flow === 'number');
}
