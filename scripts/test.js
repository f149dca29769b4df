#!/usr/bin/env node
// Runs the whole suite with tap's TAP reporter, streams it, and ends with the one line
// CI reads: "N passed, N failed". tap's own exit code stays the verdict.
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
  for (const m of tail.matchAll(/^# \{ total: (\d+)(?:, pass: (\d+))?(?:, fail: (\d+))?[^}]*\}$/gm)) summary = m;
});
child.on('close', (code, signal) => {
  const pass = summary ? Number(summary[2] ?? 0) : 0;
  let fail = summary ? Number(summary[3] ?? 0) : 0;
  if (!summary || (code !== 0 && fail === 0)) fail += 1; // a crashed run is never green
  process.stdout.write(`\n${pass} passed, ${fail} failed\n`);
  process.exit(code ?? (signal ? 1 : 0));
});
