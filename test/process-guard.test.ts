// An unhandled promise rejection must never end the ztunnel (issue 9, item 15): logged
// (rate-limited), counted, process alive. Checked in a real child process, where Node's
// default would exit with code 1.
import t from 'tap';
import { EventEmitter } from 'node:events';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../src/lib/log';
import { guardUnhandledRejections } from '../src/lib/process-guard';

const ROOT = join(__dirname, '..');
const BUILT = join(ROOT, 'dist', 'lib', 'process-guard.js');

t.test('counted every time, logged a few times, removable', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({ write(c: Buffer, _e, done) { for (const l of c.toString().split('\n')) if (l) lines.push(JSON.parse(l)); done(); } });
  const logger = createLogger({ level: 'info', component: 'test', destination });
  const target = new EventEmitter();
  let count = 0;
  const unguard = guardUnhandledRejections({ logger, onRejection: () => count++, target: target as unknown as NodeJS.Process });
  for (let i = 0; i < 100; i++) target.emit('unhandledRejection', new Error(`bug ${i}`));
  logger.flush();
  await new Promise((r) => setImmediate(r));
  t.equal(count, 100);
  t.equal(lines.length, 5, 'at most 5 lines a minute');
  t.match(lines[0], { level: 'error', msg: /not handled/, err: { message: 'bug 0' } });
  unguard();
  t.equal(target.listenerCount('unhandledRejection'), 0);
});

t.test('a real process survives an unhandled rejection', async (t) => {
  if (!existsSync(BUILT)) throw new Error(`${BUILT} is missing: run npm run build first`);
  const script = (guarded: boolean) => `
    const { createLogger } = require(${JSON.stringify(join(ROOT, 'dist', 'lib', 'log.js'))});
    const { guardUnhandledRejections } = require(${JSON.stringify(BUILT)});
    const logger = createLogger({ level: 'info', component: 'child', destination: process.stdout });
    if (${guarded}) guardUnhandledRejections({ logger });
    Promise.reject(new Error('forgotten catch'));
    setImmediate(() => setImmediate(() => console.log('alive')));
  `;
  const guarded = spawnSync(process.execPath, ['-e', script(true)], { encoding: 'utf8', timeout: 20_000 });
  t.equal(guarded.status, 0, 'exit 0');
  t.match(guarded.stdout, /forgotten catch/, 'the error is logged');
  t.match(guarded.stdout, /alive/, 'and the process went on');
  // The control: without the guard, Node ends the process.
  const bare = spawnSync(process.execPath, ['-e', script(false)], { encoding: 'utf8', timeout: 20_000 });
  t.not(bare.status, 0, 'unguarded, Node exits');
  t.notMatch(bare.stdout, /alive/);
});
