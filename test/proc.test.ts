// /proc memory fields (src/lib/proc.ts) come back in bytes, though /proc prints kB:
// every caller (faults/observe rssBytes, the memory benches) divides by 2^20 for MiB.
import t from 'tap';
import { procBytes } from '../src/lib/proc';

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
