// `weft lab ztunnel <node> stop`: every wait is bounded. A ztunnel that cannot die (here:
// frozen by the cgroup v1 freezer, where even SIGKILL waits for a thaw; in life a
// process stuck in the kernel) must end the command with an error saying so, not keep
// it signalling forever.
import t, { type Test } from 'tap';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { planLab } from '../src/lab/plan';
import { isAlive, startProcess, stopProcesses } from '../src/lab/procs';
import { StateStore } from '../src/lab/state';
import { parseTopology } from '../src/lab/topology';
import { stopZtunnel } from '../src/lab/ztunnel-ctl';
import { isWeftError } from '../src/lib/errors';
import { waitFor } from './helpers/wait';

const FREEZER = '/sys/fs/cgroup/freezer';
const root = process.getuid?.() === 0;

function labWith(t: Test, name: string, script: string) {
  const dir = mkdtempSync(join(tmpdir(), 'weft-lab-ctl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const plan = planLab(parseTopology('nodes: [{ name: a }]'));
  const store = StateStore.create({ labDir: dir, repo: '/repo', topologyFile: 'x.yaml', startedAt: 'now', plan });
  const log = join(dir, `${name.replace('/', '-')}.log`);
  const p = startProcess(store, { name, role: 'ztunnel', log, argv: [process.execPath, '-e', `${script}; console.log("ready"); setInterval(() => {}, 1000)`] });
  t.teardown(() => { if (isAlive(p)) process.kill(p.pid!, 'SIGKILL'); });
  return { dir, p, ready: () => waitFor(`${name} is up`, () => readFileSync(log, 'utf8').includes('ready'), { timeoutMs: 5000, intervalMs: 20 }) };
}

t.test('SIGKILL first: no grace period is waited for', async (t) => {
  const { p, ready } = labWith(t, 'ztunnel/a', 'process.on("SIGTERM", () => {})');
  await ready();
  // Were SIGTERM sent first, this process (ignoring it) would hold the call for the whole grace.
  t.same(await stopProcesses([p], { signal: 'SIGKILL', graceMs: 600_000 }), []);
  t.notOk(isAlive(p));
});

t.test('stop gives up on a ztunnel that cannot die, and says so', { skip: !root || !existsSync(join(FREEZER, 'cgroup.procs')) ? 'needs root and the cgroup v1 freezer' : false, timeout: 60_000 }, async (t) => {
  const { dir, p, ready } = labWith(t, 'ztunnel/a', '');
  await ready();
  const cg = join(FREEZER, `weft-test-${process.pid}`);
  mkdirSync(cg);
  t.teardown(async () => {
    writeFileSync(join(cg, 'freezer.state'), 'THAWED');
    if (isAlive(p)) process.kill(p.pid!, 'SIGKILL');
    // The cgroup can be removed once the killed task has fully left it.
    await waitFor('the test cgroup removed', () => { try { rmdirSync(cg); return true; } catch { return false; } }, { timeoutMs: 2000, intervalMs: 20 });
  });
  writeFileSync(join(cg, 'cgroup.procs'), String(p.pid));
  writeFileSync(join(cg, 'freezer.state'), 'FROZEN');
  await waitFor('the ztunnel frozen', () => readFileSync(join(cg, 'freezer.state'), 'utf8').trim() === 'FROZEN', { timeoutMs: 2000, intervalMs: 20 });
  const err = await stopZtunnel(dir, 'a', 'SIGKILL').then(() => undefined, (e: unknown) => e);
  t.ok(isWeftError(err) && err.code === 'WEFT_COMMAND_FAILED', 'refused with WEFT_COMMAND_FAILED');
  t.match((err as Error).message, new RegExp(`ztunnel of a \\(pid ${p.pid}\\) is still running after SIGKILL.*thaw or stop it`));
  t.ok(isAlive(p), 'it really is still there (frozen)');
});
