// /proc memory fields (src/lib/proc.ts) come back in bytes, though /proc prints kB:
// every caller (faults/observe rssBytes, the memory benches) divides by 2^20 for MiB.
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { procBytes, procCommandLine, procStatFields } from '../src/lib/proc';

t.test('procBytes: /proc kB fields as bytes; NaN for a missing field or a gone process', async (t) => {
  const { VmRSS, VmHWM } = procBytes('self', 'status', ['VmRSS', 'VmHWM']);
  const rss = process.memoryUsage.rss();
  t.comment(`VmRSS ${VmRSS} bytes, process.memoryUsage.rss() ${rss} bytes`);
  t.equal(VmRSS % 1024, 0, 'whole kB, times 1024');
  t.ok(VmRSS > rss / 2 && VmRSS < rss * 2, 'the same order as process.memoryUsage.rss(), which is in bytes');
  t.ok(VmHWM >= VmRSS, 'the peak is at least the current');
  t.ok(Number.isNaN(procBytes('self', 'status', ['NoSuchField']).NoSuchField), 'a field /proc does not print');
  t.ok(Number.isNaN(procBytes(2 ** 30, 'status', ['VmRSS']).VmRSS), 'a process that is not there');
});

t.test('procStatFields: field N at index N − 3, after the command name whatever it holds; undefined for a process that is gone', async (t) => {
  const fields = procStatFields(process.pid)!;
  t.equal(fields[4 - 3], String(process.ppid), 'field 4 is the parent PID');
  t.match(fields[0], /^[RSDZTtWXxKWPI]$/, 'field 3 is the state');
  t.equal(procStatFields(2 ** 22 + 12345), undefined);
});

t.test('procCommandLine: the arguments joined by spaces, cut with ...; undefined for a gone process or an empty cmdline', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-proc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, '7'));
  writeFileSync(join(dir, '7', 'cmdline'), 'node\0dist/cli/main.js\0lab\0up\0');
  mkdirSync(join(dir, '2'));
  writeFileSync(join(dir, '2', 'cmdline'), '');
  t.equal(procCommandLine(7, 100, dir), 'node dist/cli/main.js lab up');
  t.equal(procCommandLine(7, 4, dir), 'node...', 'cut at max');
  t.equal(procCommandLine(2, 100, dir), undefined, 'a kernel thread has none');
  t.equal(procCommandLine(9, 100, dir), undefined, 'gone');
  t.match(procCommandLine(process.pid, 1000), /node/, 'this process, from the real /proc');
});
