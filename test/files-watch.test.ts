/**
 * watchFiles, the one file poller behind the trust-anchor file (ztunnel) and the CA's
 * root reload: changes are applied once, a failed apply is retried at the next poll
 * (the new contents count as applied only after onChange succeeded), and a file that
 * stays bad is reported once. Polls are driven by hand (interval one hour).
 */
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { watchFiles, writeFileAtomic } from '../src/lib/files';

const dir = mkdtempSync(join(tmpdir(), 'weft-watch-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
const HOUR = 3600e3;

t.test('a change is applied once; missing files read as undefined', async (t) => {
  const a = join(dir, 'a1');
  const b = join(dir, 'b1');
  writeFileSync(a, 'one');
  const seen: Array<Array<string | undefined>> = [];
  const errors: unknown[] = [];
  const w = watchFiles([a, b], { intervalMs: HOUR, onChange: (texts) => { seen.push(texts); }, onError: (err) => errors.push(err) });
  t.teardown(() => w.stop());
  t.equal(await w.poll(), false, 'nothing changed since the watch started');
  writeFileAtomic(a, 'two');
  t.equal(await w.poll(), true);
  t.equal(await w.poll(), false, 'applied once');
  writeFileAtomic(b, '');
  t.equal(await w.poll(), true, 'a file appearing empty is a change');
  t.same(seen, [['two', undefined], ['two', '']]);
  t.same(errors, []);
  w.stop();
  writeFileAtomic(a, 'three');
  t.equal(await w.poll(), false, 'stopped');
});

t.test('a failed apply is retried at the next poll, reported once', async (t) => {
  const a = join(dir, 'a2');
  writeFileSync(a, 'good');
  let failWith: string | undefined = 'the server refused the swap';
  const applied: string[] = [];
  const errors: string[] = [];
  const w = watchFiles([a], {
    intervalMs: HOUR,
    onChange: async ([text]) => {
      await Promise.resolve();
      if (failWith) throw new Error(failWith);
      applied.push(text!);
    },
    onError: (err) => errors.push((err as Error).message),
  });
  t.teardown(() => w.stop());
  writeFileAtomic(a, 'new');
  t.equal(await w.poll(), false, 'the apply failed');
  t.equal(await w.poll(), false, 'retried, fails again');
  t.same(errors, ['the server refused the swap'], 'the same failure is reported once');
  failWith = 'another reason';
  t.equal(await w.poll(), false);
  t.same(errors, ['the server refused the swap', 'another reason'], 'a different failure is reported');
  failWith = undefined;
  t.equal(await w.poll(), true, 'the unchanged file is applied once the apply succeeds');
  t.same(applied, ['new']);
  t.equal(await w.poll(), false, 'and then counts as applied');
});

t.test('initial names the contents already in force', async (t) => {
  const a = join(dir, 'a3');
  writeFileSync(a, 'on disk');
  const applied: Array<string | undefined> = [];
  const w = watchFiles([a], { intervalMs: HOUR, initial: ['read earlier'], onChange: ([text]) => { applied.push(text); }, onError: () => undefined });
  t.teardown(() => w.stop());
  t.equal(await w.poll(), true, 'the file changed after the caller read it');
  t.same(applied, ['on disk']);
});
