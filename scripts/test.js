#!/usr/bin/env node
// Runs the suite with tap's TAP reporter, streams it, and ends with the one line CI
// reads: "N passed, N failed, N skipped". Skipped counts tap's skip and todo, so an
// assertion that did not run is visible in that line instead of vanishing. tap's own
// exit codes stay the verdict.
//
// With no arguments (the whole suite) the lab end-to-end files (test/e2e/) and the rest
// run as two tap runs side by side. The lab files take a machine-wide lock and so run
// one at a time anyway; in one tap run, sorted by name, they came back to back and one of
// tap's two slots sat waiting on that lock for the whole stretch. Side by side, the unit
// files use that time. WEFT_TEST_UNIT_JOBS sets the unit run's parallelism (default 2).
'use strict';
const { spawn, spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
const tapBin = path.join(root, 'node_modules', 'tap', 'dist', 'esm', 'run.mjs');
const args = process.argv.slice(2);

/** One tap run; resolves with its exit code and closing summary ("# { total: 5, pass: 2, ... }"). */
function runTap(files, extra, label) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [tapBin, '-R', 'tap', ...extra, ...files], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    let tail = '';
    let partial = '';
    let summary;
    child.stdout.on('data', (chunk) => {
      const text = partial + chunk.toString('utf8');
      const end = text.lastIndexOf('\n') + 1;
      partial = text.slice(end);
      // Whole lines only, so two runs' lines never mix within a line.
      if (end > 0) process.stdout.write(text.slice(0, end));
      tail = (tail + text.slice(0, end)).split('\n').slice(-50).join('\n');
      for (const m of tail.matchAll(/^# \{ total: \d+[^}]*\}$/gm)) summary = m[0];
    });
    child.on('close', (code, signal) => {
      if (partial) process.stdout.write(`${partial}\n`);
      if (label) process.stdout.write(`# ${label}: ${summary ?? 'no summary'} (exit ${code ?? signal})\n`);
      resolve({ code: code ?? (signal ? 1 : 0), summary });
    });
  });
}

/** A count from tap's closing summary. */
function count(summary, name) {
  const m = summary && summary.match(new RegExp(`\\b${name}: (\\d+)`));
  return m ? Number(m[1]) : 0;
}

async function main() {
  let runs;
  if (args.length) {
    runs = [runTap(args, [])];
  } else {
    const listed = spawnSync(process.execPath, [tapBin, 'list', 'test/**/*.test.ts'], { cwd: root, encoding: 'utf8' });
    const files = listed.status === 0 ? listed.stdout.split('\n').filter(Boolean) : [];
    if (files.length === 0) {
      process.stderr.write(`test.js: tap list found no test files: ${listed.stderr}\n`);
      process.stdout.write('\n0 passed, 1 failed, 0 skipped\n');
      process.exit(1);
    }
    const lab = files.filter((f) => f.startsWith('test/e2e/'));
    const unit = files.filter((f) => !f.startsWith('test/e2e/'));
    const unitJobs = process.env.WEFT_TEST_UNIT_JOBS || '2';
    runs = [runTap(lab, ['--jobs', '1'], 'lab end-to-end files'), runTap(unit, ['--jobs', unitJobs], 'unit and integration files')];
  }
  const results = await Promise.all(runs);
  let pass = 0;
  let fail = 0;
  let skipped = 0;
  let code = 0;
  for (const r of results) {
    pass += count(r.summary, 'pass');
    let f = count(r.summary, 'fail');
    if (!r.summary || (r.code !== 0 && f === 0)) f += 1; // a crashed run is never green
    fail += f;
    skipped += count(r.summary, 'skip') + count(r.summary, 'todo');
    if (r.code !== 0) code = r.code;
  }
  process.stdout.write(`\n${pass} passed, ${fail} failed, ${skipped} skipped\n`);
  process.exit(code);
}

main();
