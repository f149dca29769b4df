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

/**
 * Collects, from a run's TAP lines, each failed file with its first failing assertion and
 * the start of that assertion's diagnostics. CI keeps only the end of a long log; this
 * recap, printed just before the count, is what tells there which file failed and why.
 */
class FailureRecap {
  constructor() {
    this.failed = [];
    this.first = undefined; // the current file's first failing assertion: { name, diag }
    this.inDiag = false;
  }

  line(l) {
    if (/^# Subtest: /.test(l)) {
      this.first = undefined;
      this.inDiag = false;
      return;
    }
    const top = l.match(/^not ok \d+ - (.*?)(?: # time=.*)?$/);
    if (top) {
      this.failed.push({ file: top[1], first: this.first ? brief(this.first) : [] });
      this.first = undefined;
      this.inDiag = false;
      return;
    }
    const sub = l.match(/^\s+not ok \d+ - (.*)$/);
    if (this.first === undefined && sub) {
      this.first = { name: sub[1], diag: [] };
      this.inDiag = true;
      return;
    }
    if (this.inDiag && this.first) {
      if (/^\s+\.\.\.$/.test(l) || this.first.diag.length > 200) this.inDiag = false;
      else this.first.diag.push(l);
    }
  }
}

/**
 * An assertion's name, where it failed, and its diagnostics without the location blocks
 * (at, stack, source), at most 10 lines.
 */
function brief({ name, diag }) {
  const out = [`not ok - ${name}`];
  const file = diag.find((l) => /^\s+fileName: /.test(l));
  const line = diag.find((l) => /^\s+lineNumber: /.test(l));
  if (file) out.push(`at ${file.trim().slice('fileName: '.length)}${line ? `:${line.trim().slice('lineNumber: '.length)}` : ''}`);
  const keyIndent = diag.length > 1 ? diag[1].search(/\S/) : 0;
  let skip = false;
  for (const l of diag.slice(1)) {
    const indent = l.search(/\S/);
    if (indent === keyIndent) skip = /^\s+(at|stack|source|compare|tapCaught|test):/.test(l);
    if (!skip && out.length < 11) out.push(l.slice(Math.max(0, keyIndent)));
  }
  return out;
}

/** One tap run; resolves with its exit code, closing summary ("# { total: 5, pass: 2, ... }") and failed files. */
function runTap(files, extra, label) {
  return new Promise((resolve) => {
    const started = Date.now();
    const child = spawn(process.execPath, [tapBin, '-R', 'tap', ...extra, ...files], { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] });
    let tail = '';
    let partial = '';
    let summary;
    const recap = new FailureRecap();
    child.stdout.on('data', (chunk) => {
      const text = partial + chunk.toString('utf8');
      const end = text.lastIndexOf('\n') + 1;
      partial = text.slice(end);
      // Whole lines only, so two runs' lines never mix within a line.
      if (end > 0) process.stdout.write(text.slice(0, end));
      const lines = text.slice(0, end).split('\n');
      lines.pop();
      for (const l of lines) recap.line(l);
      tail = (tail + text.slice(0, end)).split('\n').slice(-50).join('\n');
      for (const m of tail.matchAll(/^# \{ total: \d+[^}]*\}$/gm)) summary = m[0];
    });
    child.on('close', (code, signal) => {
      if (partial) {
        process.stdout.write(`${partial}\n`);
        recap.line(partial);
      }
      // Each run's wall time: which of the two is the suite's critical path.
      if (label) process.stdout.write(`# ${label}: ${summary ?? 'no summary'} (exit ${code ?? signal}) in ${Math.round((Date.now() - started) / 1000)} s\n`);
      resolve({ code: code ?? (signal ? 1 : 0), summary, failed: recap.failed, label });
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
  const failed = results.flatMap((r) => r.failed.map((f) => ({ ...f, label: r.label })));
  if (failed.length) {
    process.stdout.write(`\n# failed files (${failed.length}), each with its first failing assertion:\n`);
    for (const f of failed.slice(0, 30)) {
      process.stdout.write(`# - ${f.file}${f.label ? ` (${f.label})` : ''}\n`);
      for (const l of f.first) process.stdout.write(`#     ${l}\n`);
    }
  }
  process.stdout.write(`\n${pass} passed, ${fail} failed, ${skipped} skipped\n`);
  process.exit(code);
}

main();
