// The machine-wide lab lock (src/lab/lock.ts): a live holder makes others wait and is
// named in the refusal; a dead holder's lock, or one whose owner crashed before writing
// its name, is taken over.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireLabLock, OWNERLESS_STALE_MS } from '../src/lab/lock';
import { readStartTime } from '../src/lab/procs';
import { isWeftError } from '../src/lib/errors';

function lockDir(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'weft-lock-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'lock');
}

t.test('held: a second user waits, and is told who holds it and what to do', async (t) => {
  const dir = lockDir(t);
  const holder = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', 'weft-lock-holder'], { stdio: 'ignore' });
  t.teardown(() => holder.kill('SIGKILL'));
  await new Promise((r) => holder.once('spawn', r));
  mkdirSync(dir);
  writeFileSync(join(dir, 'owner'), `${holder.pid} ${readStartTime(holder.pid!)}`);
  const err = await acquireLabLock(300, dir).then(() => undefined, (e: unknown) => e);
  t.ok(isWeftError(err, 'WEFT_LAB_BUSY'), 'WEFT_LAB_BUSY');
  t.match((err as Error).message, new RegExp(`held by pid ${holder.pid} \\(.*weft-lock-holder\\); wait for it to finish, or stop it \\(kill ${holder.pid}\\)`));
});

t.test('a dead holder\'s lock is taken over, and released by its new owner', async (t) => {
  const dir = lockDir(t);
  mkdirSync(dir);
  writeFileSync(join(dir, 'owner'), `${process.pid} 1`); // our PID, another start time: a PID reused
  const release = await acquireLabLock(5000, dir);
  t.equal(readFileSync(join(dir, 'owner'), 'utf8'), `${process.pid} ${readStartTime(process.pid)}`);
  release();
  t.notOk(existsSync(dir));
});

t.test('a lock dir with no owner: left alone while fresh, taken over once stale', async (t) => {
  const dir = lockDir(t);
  mkdirSync(dir);
  const err = await acquireLabLock(300, dir).then(() => undefined, (e: unknown) => e);
  t.ok(isWeftError(err, 'WEFT_LAB_BUSY'), 'a fresh one may be an owner about to write its name');
  t.match((err as Error).message, /held by a process that is just taking it; wait for it to finish/);
  const old = (Date.now() - OWNERLESS_STALE_MS - 1000) / 1000;
  utimesSync(dir, old, old);
  const release = await acquireLabLock(5000, dir);
  t.ok(existsSync(join(dir, 'owner')), 'taken over');
  release();
});
