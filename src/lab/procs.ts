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
import { WeftError } from '../lib/errors';
import type { ProcessResource, StateStore } from './state';

/** Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or undefined if gone. */
export function readStartTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    return fields[19];
  } catch {
    return undefined;
  }
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

function signalGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    try { process.kill(pid, signal); } catch { /* already gone */ }
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Stops recorded processes: SIGTERM, then SIGKILL after `graceMs`. Returns the names
 * of those still alive afterwards (normally none).
 */
export async function stopProcesses(procs: readonly ProcessResource[], graceMs = 3000): Promise<string[]> {
  const alive = procs.filter(isAlive);
  for (const p of alive) signalGroup(p.pid!, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (alive.some(isAlive) && Date.now() < deadline) await sleep(20);
  for (const p of alive.filter(isAlive)) signalGroup(p.pid!, 'SIGKILL');
  const killDeadline = Date.now() + 2000;
  while (alive.some(isAlive) && Date.now() < killDeadline) await sleep(20);
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
 * Polls `check` until it holds. Fails early, with the log's tail, when the process it
 * waits for has died: a crash on start-up must not look like a slow start.
 */
export async function waitUntil(what: string, check: () => Promise<boolean>, opts: { timeoutMs: number; process?: ProcessResource }): Promise<void> {
  const deadline = Date.now() + opts.timeoutMs;
  let delay = 10;
  for (;;) {
    if (await check()) return;
    if (opts.process && !isAlive(opts.process)) {
      throw new WeftError('WEFT_COMMAND_FAILED',
        `${what}: ${opts.process.name} exited during start-up; its log ${opts.process.log} ends with:\n${logTail(opts.process.log)}`);
    }
    if (Date.now() > deadline) {
      throw new WeftError('WEFT_COMMAND_FAILED',
        `${what}: not ready after ${opts.timeoutMs} ms${opts.process ? `; see ${opts.process.log}:\n${logTail(opts.process.log)}` : ''}`);
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 100);
  }
}
