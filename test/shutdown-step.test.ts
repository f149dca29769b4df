// The shutdown pieces both apps use: a failing step is logged and the rest still runs;
// stop() runs the shutdown once and a second call hurries it instead.
import t from 'tap';
import { createLogger } from '../src/lib/log';
import { shutdownStep, StopOnce } from '../src/lib/shutdown-step';

t.test('a failing step is logged and the next step still runs', async (t) => {
  const lines: { level: string; msg: string }[] = [];
  const log = createLogger({ level: 'info', component: 'test', destination: { write: (s: string) => { lines.push(JSON.parse(s)); } } });
  const step = shutdownStep(log);
  const ran: string[] = [];
  await step('closing a', () => { throw new Error('already closed'); });
  await step('closing b', async () => { ran.push('b'); });
  t.same(ran, ['b']);
  t.match(lines, [{ level: 'error', msg: 'shutdown: closing a failed', err: { message: 'already closed' } }]);
});

t.test('stop() runs the shutdown once; a second call runs `again` and returns the same promise', async (t) => {
  let runs = 0;
  let agains = 0;
  let finish!: () => void;
  const s = new StopOnce(() => { runs++; return new Promise<void>((r) => { finish = r; }); }, () => { agains++; });
  t.equal(s.stopping, false);
  const first = s.stop();
  t.equal(s.stopping, true, 'stopping from the first call');
  const second = s.stop();
  t.equal(second, first, 'the same shutdown');
  t.same([runs, agains], [1, 1]);
  finish();
  await first;
  t.equal(await s.stop(), undefined);
  t.same([runs, agains], [1, 2]);
});
