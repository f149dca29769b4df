// bench/heap-diff.ts: the growth between two real V8 heap snapshots (of a small Node
// process: snapshots of the test runner itself take minutes), per object made, by
// constructor; closures named with their script.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { heapDiff, heapGroups } from '../src/bench/heap-diff';

const PROBE = `
const v8 = require('node:v8');
class WeftHeapProbe { constructor(n, onEvent) { this.n = n; this.onEvent = onEvent; } }
v8.writeHeapSnapshot(process.argv[2]);
const kept = [];
for (let i = 0; i < 1000; i++) kept.push(new WeftHeapProbe(i, () => i));
v8.writeHeapSnapshot(process.argv[3]);
`;

t.test('objects made between two snapshots are counted per object, by constructor and by closure script', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-heap-diff-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const before = join(dir, 'before.heapsnapshot');
  const after = join(dir, 'after.heapsnapshot');
  writeFileSync(join(dir, 'weft-probe.js'), PROBE);
  execFileSync(process.execPath, [join(dir, 'weft-probe.js'), before, after]);
  const rows = heapDiff(heapGroups(before), heapGroups(after), 1000);
  const probe = rows.find((r) => r.key === 'object: WeftHeapProbe');
  t.ok(probe, 'the probes are grouped under their constructor');
  t.equal(probe!.count, 1, 'one probe per probe made');
  t.ok(probe!.bytes > 0, 'with their self size');
  const closure = rows.find((r) => r.key === 'closure: (anonymous) (weft-probe.js)');
  t.ok(closure, 'the closures are named with their script');
  t.equal(closure!.count, 1, 'one closure per probe');
  t.comment(`per probe: ${probe!.bytes} bytes object, ${closure!.bytes} bytes closure`);
});

t.test('a group gone by the second snapshot is a negative row, so the total is the real growth', async (t) => {
  const before = new Map([['object: Gone', { count: 10, bytes: 1000 }], ['object: Kept', { count: 1, bytes: 100 }]]);
  const after = new Map([['object: Kept', { count: 3, bytes: 300 }], ['object: New', { count: 2, bytes: 40 }]]);
  const rows = heapDiff(before, after, 2);
  t.same(rows, [
    { key: 'object: Kept', count: 1, bytes: 100 },
    { key: 'object: New', count: 1, bytes: 20 },
    { key: 'object: Gone', count: -5, bytes: -500 },
  ]);
  t.equal(rows.reduce((a, r) => a + r.bytes, 0), -380);
});
