// Every lab command refuses the same way when no lab is recorded: what is missing and
// how to start one (one requireState in src/lab/state.ts, not a copy per command).
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireState } from '../src/lab/state';
import { caught } from './helpers/wait';

t.test('no lab recorded: WEFT_LAB_NOT_RUNNING naming the directory and scripts/lab up', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-lab-state-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const err = await caught(() => requireState(dir));
  t.equal(err.code, 'WEFT_LAB_NOT_RUNNING');
  t.match(err.message, `no lab is recorded in ${dir}; start it with scripts/lab up`);
});
