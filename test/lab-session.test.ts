// withLab (src/lab/session.ts), the lab of one fault-suite or benchmark run: it waits
// for the lab lock, and the lab goes down and the lock is released whatever happened,
// also when `lab up` failed half-way. The CLI here is a recording stand-in.
import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { acquireLabLock } from '../src/lab/lock';
import type { RunResult } from '../src/lab/run';
import { withLab } from '../src/lab/session';
import { waitFor } from './helpers/wait';

function setup(t: Test, upCode = 0) {
  const dir = mkdtempSync(join(tmpdir(), 'weft-lab-session-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const lockDir = join(dir, 'lock');
  /** Each CLI call: its subcommand and whether the lock was held then. */
  const calls: string[] = [];
  const lines: string[] = [];
  const weft = async (args: string[]): Promise<RunResult> => {
    calls.push(`${args[1]}${existsSync(lockDir) ? ' (locked)' : ' (UNLOCKED)'}`);
    return { code: args[1] === 'up' ? upCode : 0, stdout: '', stderr: args[1] === 'up' && upCode ? 'half-way' : '' };
  };
  return { lockDir, calls, lines, opts: { env: { WEFT_LAB_DIR: join(dir, 'lab') }, progress: (l: string) => lines.push(l), weft, lockDir } };
}

t.test('up, the body, down, all under the lock, which is released after', async (t) => {
  const { lockDir, calls, opts } = setup(t);
  t.equal(await withLab(opts, async () => { calls.push('body'); return 42; }), 42);
  t.same(calls, ['up (locked)', 'body', 'down (locked)']);
  t.notOk(existsSync(lockDir), 'lock released');
});

t.test('a failed lab up is still taken down, and the lock released', async (t) => {
  const { lockDir, calls, opts } = setup(t, 1);
  await t.rejects(withLab(opts, async () => { calls.push('body'); }), /lab up failed \(1\):\nhalf-way/);
  t.same(calls, ['up (locked)', 'down (locked)'], 'no body; down after the failed up');
  t.notOk(existsSync(lockDir), 'lock released');
});

t.test('a failing body: down, release, and its error comes out', async (t) => {
  const { lockDir, calls, opts } = setup(t);
  await t.rejects(withLab(opts, async () => { throw new Error('scenario broke'); }), /scenario broke/);
  t.same(calls, ['up (locked)', 'down (locked)']);
  t.notOk(existsSync(lockDir));
});

t.test('waits while another lab user holds the lock', async (t) => {
  const { lockDir, calls, lines, opts } = setup(t);
  const other = await acquireLabLock(1000, lockDir);
  const run = withLab(opts, async () => 'done');
  await waitFor('withLab says it waits', () => lines.includes('waiting for the lab lock'), { timeoutMs: 2000 });
  t.same(calls, [], 'no lab command while the lock is held elsewhere');
  other();
  t.equal(await run, 'done');
  t.same(calls, ['up (locked)', 'down (locked)']);
});

/**
 * A run of withLab in a child process (signals and pipes need a process of their own):
 * its CLI stand-in appends each call to a record (`down` taking `downMs`), `body` is the
 * body's source (it has `note(line)` and `onAbort`), and it prints 'body' when the body
 * starts. `stdio` as for spawn; stdout is always a pipe the parent reads.
 */
function sessionChild(t: Test, opts: { body: string; downMs?: number; progress: 'stdout' | 'stderr'; stdin: 'ignore' | 'pipe'; stderr: 'inherit' | 'pipe' }) {
  const dir = mkdtempSync(join(tmpdir(), 'weft-lab-session-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const lockDir = join(dir, 'lock');
  const record = join(dir, 'calls');
  const script = `
const { appendFileSync } = require('node:fs');
const { withLab } = require(${JSON.stringify(join(__dirname, '..', 'src', 'lab', 'session.ts'))});
const note = (l) => appendFileSync(${JSON.stringify(record)}, l + '\\n');
const weft = async (args) => { note(args[1]); if (args[1] === 'down' && ${opts.downMs ?? 0}) { await new Promise((r) => setTimeout(r, ${opts.downMs ?? 0})); note('down done'); } return { code: 0, stdout: '', stderr: '' }; };
withLab({ env: {}, progress: (l) => process.${opts.progress}.write(l + '\\n'), weft, lockDir: ${JSON.stringify(lockDir)} }, async (onAbort) => {
  console.log('body');
  ${opts.body}
}).then(() => note('resolved'));
`;
  const child = spawn(process.execPath, [...process.execArgv, '-e', script], { stdio: [opts.stdin, 'pipe', opts.stderr] });
  t.teardown(() => { if (child.exitCode === null) child.kill('SIGKILL'); });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  const calls = () => readFileSync(record, 'utf8').split('\n').filter(Boolean);
  const bodyRuns = () => waitFor('the body runs', () => out.includes('body'), { timeoutMs: 20_000 });
  return { child, lockDir, calls, exited, bodyRuns };
}

t.test('SIGTERM or SIGINT mid-run: the body\'s own processes are stopped, the lab goes down (a second signal waits for it) and the lock is released before the process exits', async (t) => {
  for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
    // A body that never ends; down takes a while, as a real one does: long enough for an impatient second signal.
    const run = sessionChild(t, {
      body: "onAbort(() => note('traffic stopped')); await new Promise(() => { setInterval(() => {}, 1000); });",
      downMs: 700, progress: 'stdout', stdin: 'ignore', stderr: 'inherit',
    });
    await run.bodyRuns();
    t.ok(existsSync(run.lockDir), 'lock held while the body runs');
    run.child.kill(signal);
    await waitFor('down started', () => run.calls().includes('down'), { timeoutMs: 10_000 });
    run.child.kill(signal); // a second, impatient one
    t.equal(await run.exited, code, `${signal}: exits ${code}, not killed by the second signal`);
    t.same(run.calls(), ['up', 'traffic stopped', 'down', 'down done'], `${signal}: the body's processes stopped, then lab down ran to its end`);
    t.notOk(existsSync(run.lockDir), `${signal}: lock released`);
  }
});

t.test('output piped into something that stops reading (| head): the run goes on, the lab still goes down and the lock is released', async (t) => {
  // The body waits until its reader has gone, then prints more (EPIPE); progress lines go to stderr, which is gone too.
  const run = sessionChild(t, {
    body: `await new Promise((r) => process.stdin.once('end', r).resume());
  await new Promise((r) => setTimeout(r, 100));
  for (let i = 0; i < 200; i++) console.log('table row ' + i);
  await new Promise((r) => setTimeout(r, 200));
  note('body done');`,
    progress: 'stderr', stdin: 'pipe', stderr: 'pipe',
  });
  await run.bodyRuns();
  // The reader goes, as \`head\` does after its lines: both pipes closed, then the child is told.
  run.child.stdout!.destroy();
  run.child.stderr!.destroy();
  run.child.stdin!.end();
  t.equal(await run.exited, 0);
  t.same(run.calls(), ['up', 'body done', 'down', 'resolved'], 'the body finished and lab down ran, though every line after the first went nowhere');
  t.notOk(existsSync(run.lockDir), 'lock released');
});
