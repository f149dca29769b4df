#!/usr/bin/env node
// Builds native/build/weft_native.node (getsockopt SO_ORIGINAL_DST, C, N-API) and
// native/build/weft_memory.node (give memory back after a burst, C++ against V8's
// headers) with the system compiler against Node's own headers. Optional by design: without a compiler or
// headers it says so and exits 0, and the ztunnel reads conntrack instead.
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync, mkdirSync } = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const src = path.join(root, 'native', 'original_dst.c');
const outDir = path.join(root, 'native', 'build');
const out = path.join(outDir, 'weft_native.node');
if (process.platform !== 'linux') {
  console.log('build-native: not Linux; the ztunnel has no capture here anyway');
  process.exit(0);
}
const candidates = [
  process.env.npm_config_nodedir && path.join(process.env.npm_config_nodedir, 'include', 'node'),
  path.join(path.dirname(path.dirname(process.execPath)), 'include', 'node'),
  '/usr/include/node',
].filter(Boolean);
const include = candidates.find((dir) => existsSync(path.join(dir, 'node_api.h')));
const cc = process.env.CC || 'cc';
if (!include) {
  console.log(`build-native: no node_api.h in ${candidates.join(', ')}; skipped (the ztunnel will read conntrack)`);
  process.exit(0);
}
mkdirSync(outDir, { recursive: true });
const res = spawnSync(cc, ['-O2', '-Wall', '-Werror', '-shared', '-fPIC', `-I${include}`, '-o', out, src], { stdio: 'inherit' });
if (res.error || res.status !== 0) {
  console.log(`build-native: ${cc} failed (${res.error ? res.error.message : `exit ${res.status}`}); skipped (the ztunnel will read conntrack)`);
} else {
  console.log(`build-native: built ${path.relative(root, out)}`);
}
// No C++ runtime is linked: the file uses no exceptions, RTTI or standard library, only
// V8 symbols the node binary exports.
const memOut = path.join(outDir, 'weft_memory.node');
const mem = spawnSync(cc, ['-O2', '-Wall', '-Werror', '-std=c++17', '-fno-exceptions', '-fno-rtti', '-shared', '-fPIC', `-I${include}`,
  '-o', memOut, path.join(root, 'native', 'memory.cc')], { stdio: 'inherit' });
if (mem.error || mem.status !== 0) {
  console.log(`build-native: ${cc} failed on memory.cc (${mem.error ? mem.error.message : `exit ${mem.status}`}); skipped (the ztunnel will not give memory back after bursts)`);
} else {
  console.log(`build-native: built ${path.relative(root, memOut)}`);
}
