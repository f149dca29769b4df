#!/usr/bin/env node
// Runs the whole suite with tap's TAP reporter, streams it, and ends with the one line
// CI reads: "N passed, N failed, N skipped". Skipped counts tap's skip and todo, so an
// assertion that did not run is visible in that line instead of vanishing. tap's own
// exit code stays the verdict.
'use strict';
const { spawn } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
const args = process.argv.slice(2);
const files = args.length ? args : ['test/**/*.test.ts'];
const child = spawn(process.execPath, [path.join(root, 'node_modules', 'tap', 'dist', 'esm', 'run.mjs'), '-R', 'tap', ...files], {
  cwd: root, stdio: ['ignore', 'pipe', 'inherit'],
});
let tail = '';
let summary;
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString('utf8')).split('\n').slice(-50).join('\n');
  for (const m of tail.matchAll(/^# \{ total: \d+[^}]*\}$/gm)) summary = m[0];
});

/** A count from tap's closing summary, e.g. "# { total: 5, pass: 2, todo: 1, skip: 2 }". */
function count(name) {
  const m = summary && summary.match(new RegExp(`\\b${name}: (\\d+)`));
  return m ? Number(m[1]) : 0;
}

child.on('close', (code, signal) => {
  const pass = count('pass');
  let fail = count('fail');
  const skipped = count('skip') + count('todo');
  if (!summary || (code !== 0 && fail === 0)) fail += 1; // a crashed run is never green
  process.stdout.write(`\n${pass} passed, ${fail} failed, ${skipped} skipped\n`);
  process.exit(code ?? (signal ? 1 : 0));
});
