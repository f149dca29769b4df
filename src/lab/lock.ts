/**
 * Machine-wide mutual exclusion between lab users (e2e tests, `npm run faults`): the
 * lab's names and addresses are fixed (weft-br0, 198.18.0.0/24, ...), so two labs
 * cannot run at once. A directory created atomically, holding the owner's PID and
 * start time, so a crashed owner's lock is taken over.
 */
import { mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftError } from '../lib/errors';
import { procCommandLine } from '../lib/proc';
import { readStartTime } from './procs';

export const LAB_LOCK_DIR = '/run/weft-lab-e2e.lock';

/**
 * A lock dir without an owner file this old was left by an owner that crashed between
 * mkdir and writing the file (a live one writes it microseconds later).
 */
export const OWNERLESS_STALE_MS = 5000;

/** Resolves with the release function once the lock is held. */
export async function acquireLabLock(timeoutMs = 10 * 60_000, lockDir = LAB_LOCK_DIR): Promise<() => void> {
  const me = `${process.pid} ${readStartTime(process.pid)}`;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      mkdirSync(lockDir);
      writeFileSync(join(lockDir, 'owner'), me);
      return () => {
        try {
          if (readFileSync(join(lockDir, 'owner'), 'utf8') === me) rmSync(lockDir, { recursive: true, force: true });
        } catch { /* already released */ }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const owner = readOwner(lockDir);
    if (owner === 'stale') {
      rmSync(lockDir, { recursive: true, force: true }); // owner gone: take over
      continue;
    }
    if (Date.now() > deadline) {
      throw new WeftError('WEFT_LAB_BUSY', `timed out after ${Math.round(timeoutMs / 1000)} s waiting for the lab lock ${lockDir}: `
        + `held by ${owner === 'starting' ? 'a process that is just taking it' : `pid ${owner.pid} (${owner.command})`}; `
        + `wait for it to finish, or stop it${owner === 'starting' ? '' : ` (kill ${owner.pid})`} and run again`);
    }
    await sleep(200);
  }
}

/** Who holds the lock: a live owner, one taking it right now, or nobody any more. */
function readOwner(lockDir: string): { pid: number; command: string } | 'starting' | 'stale' {
  let text: string;
  try {
    text = readFileSync(join(lockDir, 'owner'), 'utf8');
  } catch {
    let age: number;
    try { age = Date.now() - statSync(lockDir).mtimeMs; } catch { return 'stale'; } // released meanwhile: try again
    return age > OWNERLESS_STALE_MS ? 'stale' : 'starting';
  }
  const [pidText, start] = text.split(' ');
  const pid = Number(pidText);
  if (!Number.isInteger(pid) || pid <= 0 || readStartTime(pid) !== start) return 'stale';
  return { pid, command: commandLine(pid) };
}

function commandLine(pid: number): string {
  return procCommandLine(pid, 120) ?? 'unknown command';
}
