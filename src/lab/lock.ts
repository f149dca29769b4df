/**
 * Machine-wide mutual exclusion between lab users (e2e tests, `npm run faults`): the
 * lab's names and addresses are fixed (weft-br0, 198.18.0.0/24, ...), so two labs
 * cannot run at once. A directory created atomically, holding the owner's PID and
 * start time, so a crashed owner's lock is taken over.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { readStartTime } from './procs';

export const LAB_LOCK_DIR = '/run/weft-lab-e2e.lock';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

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
    let owner: string | undefined;
    try {
      owner = readFileSync(join(lockDir, 'owner'), 'utf8');
    } catch { /* being created right now */ }
    if (owner !== undefined) {
      const [pid, start] = owner.split(' ');
      if (readStartTime(Number(pid)) !== start) {
        rmSync(lockDir, { recursive: true, force: true }); // owner gone: take over
        continue;
      }
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for the lab lock ${lockDir} (held by ${owner})`);
    await sleep(200);
  }
}
