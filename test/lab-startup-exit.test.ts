// `lab up` notices at once a component that exits during start-up and names it with its
// last log lines (issue 14: the CA died with EADDRINUSE while `up` waited 30 s for the
// ztunnels and then blamed them). Real processes, started as the lab starts them.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startProcess, stopProcesses, waitUntil } from '../src/lab/procs';
import { StateStore, type ProcessResource } from '../src/lab/state';
import { started } from '../src/lab/up';
import { planLab } from '../src/lab/plan';
import { parseTopology } from '../src/lab/topology';
import { caught } from './helpers/wait';

t.test('a wait fails as soon as another started component dies, naming it and its log', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-lab-exit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = StateStore.create({ labDir: dir, repo: dir, topologyFile: 'x', startedAt: new Date().toISOString(),
    plan: planLab(parseTopology('nodes: [{name: n1}]')) });
  const ztunnel = startProcess(store, { name: 'ztunnel/n1', role: 'ztunnel', log: join(dir, 'ztunnel.log'), argv: ['sleep', '60'] });
  t.teardown(() => stopProcesses([ztunnel], { signal: 'SIGKILL' }).then(() => undefined));
  // The CA as it died in the issue: a bind error on its metrics port, then exit 1.
  startProcess(store, { name: 'ca', role: 'ca', log: join(dir, 'ca.log'),
    argv: ['sh', '-c', 'echo \'{"msg":"starting"}\'; echo \'{"level":50,"msg":"listen EADDRINUSE: address already in use 198.18.0.1:15014"}\'; exit 1'] });
  const err = await caught(() => waitUntil('ztunnel on n1', async () => false, { timeoutMs: 60_000, process: ztunnel, watch: started(store) }));
  t.equal(err.code, 'WEFT_LAB_COMPONENT_EXITED', 'not a 60 s timeout blaming the ztunnel');
  t.match(err.message, /^ztunnel on n1: ca exited during start-up; its log .*ca\.log ends with:\n\{"msg":"starting"\}\n.*EADDRINUSE.*198\.18\.0\.1:15014/);
  t.same((err as unknown as { details: Record<string, unknown> }).details.component, 'ca');
});

t.test('without a dead component, a wait still times out naming what it waited for', async (t) => {
  const err = await caught(() => waitUntil('thing', async () => false, { timeoutMs: 50, watch: () => [] as ProcessResource[] }));
  t.equal(err.code, 'WEFT_COMMAND_FAILED');
  t.match(err.message, /^thing: not ready after 50 ms/);
});
