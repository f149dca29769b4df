/**
 * The lab's long-running processes (redis-server, weft ca, ztunnels, demo apps):
 * started detached, logs to files, PIDs in the state file. They are stopped only by
 * the PID recorded for them, and only while /proc still shows the same start time, so
 * a PID reused by an unrelated process after a crash or reboot is never signalled.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftError } from '../lib/errors';
import { procStatFields } from '../lib/proc';
import type { ProcessResource, StateStore } from './state';

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or undefined if gone. */
export function readStartTime(pid: number): string | undefined {
  const fields = procStatFields(pid);
  if (!fields || fields[0] === 'Z' || fields[0] === 'X') return undefined;
  return fields[22 - 3];
}

/** True while the recorded process (same PID, same start time) is running. */
export function isAlive(p: ProcessResource): boolean {
  if (p.pid === undefined) return false;
  const now = readStartTime(p.pid);
  return now !== undefined && (p.startTime === undefined || now === p.startTime);
}

/**
 * Starts a process detached (own session and process group, so it outlives `up` and
 * a Ctrl-C of it), stdout and stderr appended to its log. Records it before spawning
 * and its PID right after.
 */
export function startProcess(store: StateStore, p: Omit<ProcessResource, 'type' | 'pid' | 'startTime'>, env: NodeJS.ProcessEnv = process.env): ProcessResource {
  const resource: ProcessResource = { type: 'process', ...p };
  store.record(resource);
  mkdirSync(dirname(p.log), { recursive: true });
  const fd = openSync(p.log, 'a');
  try {
    const argv = p.netns ? ['ip', 'netns', 'exec', p.netns, ...p.argv] : p.argv;
    const child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ['ignore', fd, fd], env });
    if (child.pid === undefined) {
      throw new WeftError('WEFT_COMMAND_FAILED', `cannot start ${p.name} (${argv[0]}): check it is installed; log: ${p.log}`);
    }
    child.on('error', () => { /* reported through readiness and the log */ });
    child.unref();
    store.setPid(p.name, child.pid, readStartTime(child.pid));
    return store.current.resources.find((r): r is ProcessResource => r.type === 'process' && r.name === p.name)!;
  } finally {
    closeSync(fd);
  }
}

/**
 * Starts a stopped process again with the argv it was recorded with, as a restarted
 * pod would: the old record goes (its process is gone) and the new one is recorded, so
 * `down` stops the new PID.
 */
export function restartRecorded(store: StateStore, old: ProcessResource, env: NodeJS.ProcessEnv): ProcessResource {
  store.retain((r) => !(r.type === 'process' && r.name === old.name));
  const { name, role, netns, log, argv } = old;
  return startProcess(store, { name, role, netns, log, argv }, env);
}

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try { process.kill(pid, signal); } catch { /* already gone */ }
  }
}

export interface StopOptions {
  /** What is sent first: SIGTERM lets a process drain; SIGKILL is a crash. */
  signal?: 'SIGTERM' | 'SIGKILL';
  /** How long a SIGTERM is given before SIGKILL. */
  graceMs?: number;
  /**
   * Send the first signal to the process only, not its group: as the kubelet does to a
   * container's main process, so a ztunnel's SIGTERM does not also hit an
   * iptables-restore it is running. The SIGKILL that follows still takes the group.
   */
  firstToProcessOnly?: boolean;
}

/** How long a process gets to vanish after SIGKILL (a frozen or D-state one may never). */
const KILL_WAIT_MS = 2000;

/**
 * Stops recorded processes: `signal` (SIGTERM by default), then SIGKILL after
 * `graceMs`. Every wait is bounded; returns the names of those still alive afterwards
 * (normally none).
 */
export async function stopProcesses(procs: readonly ProcessResource[], opts: StopOptions = {}): Promise<string[]> {
  const { signal = 'SIGTERM', graceMs = 3000 } = opts;
  const alive = procs.filter(isAlive);
  for (const p of alive) {
    if (opts.firstToProcessOnly) {
      try { process.kill(p.pid!, signal); } catch { /* already gone */ }
    } else {
      signalGroup(p.pid!, signal);
    }
  }
  if (signal !== 'SIGKILL') {
    await until(() => !alive.some(isAlive), graceMs, 20);
    for (const p of alive.filter(isAlive)) signalGroup(p.pid!, 'SIGKILL');
  }
  await until(() => !alive.some(isAlive), KILL_WAIT_MS, 20);
  return alive.filter(isAlive).map((p) => p.name);
}

/** Last lines of a log, for error messages. */
export function logTail(file: string, lines = 8): string {
  try {
    const text = readFileSync(file, 'utf8').trimEnd();
    return text.split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export function tcpReady(host: string, port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    const done = (ok: boolean) => { sock.destroy(); resolve(ok); };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/** GET url; resolves with the status code, or 0 when unreachable. */
export function httpStatus(url: string, timeoutMs = 1000): Promise<number> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'GET', timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('timeout', () => req.destroy());
    req.once('error', () => resolve(0));
    req.end();
  });
}

/**
 * Polls `cond` every `intervalMs` until it holds or `timeoutMs` passes; resolves with
 * whether it held. A throw counts as "not yet" (a component still starting refuses).
 */
export async function until(cond: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 50): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try { if (await cond()) return true; } catch { /* not yet */ }
    if (Date.now() > deadline) return false;
    await sleep(intervalMs);
  }
}

/**
 * Polls `check` until it holds, or throws. Fails early, with the log's tail, when the
 * process it waits for has died, or any of `watch` (the other components started so
 * far): a crash on start-up must not look like a slow start, nor be blamed on whoever
 * waits for the dead component (ztunnels waiting 30 s for a CA that exited).
 */
export async function waitUntil(what: string, check: () => Promise<boolean>,
  opts: { timeoutMs: number; process?: ProcessResource; watch?: () => readonly ProcessResource[] }): Promise<void> {
  const proc = opts.process;
  let dead: ProcessResource | undefined;
  const ok = await until(async () => {
    if (await check()) return true;
    dead = deadProcess([...(proc ? [proc] : []), ...(opts.watch?.() ?? [])]);
    return dead !== undefined;
  }, opts.timeoutMs, 20);
  if (dead) throw exitedError(what, dead);
  if (!ok) {
    throw new WeftError('WEFT_COMMAND_FAILED',
      `${what}: not ready after ${opts.timeoutMs} ms${proc ? `; see ${proc.log}:\n${logTail(proc.log)}` : ''}`);
  }
}

/** The first started process (it has a PID) that is no longer running. */
export function deadProcess(procs: readonly ProcessResource[]): ProcessResource | undefined {
  return procs.find((p) => p.pid !== undefined && !isAlive(p));
}

/** "`ca` exited during start-up", with the last lines of its log: what `up` reports. */
export function exitedError(what: string, dead: ProcessResource): WeftError {
  return new WeftError('WEFT_LAB_COMPONENT_EXITED',
    `${what}: ${dead.name} exited during start-up; its log ${dead.log} ends with:\n${logTail(dead.log)}`,
    { details: { component: dead.name, pid: dead.pid, log: dead.log } });
}
