#!/usr/bin/env node
// Builds the optional native helpers with the system compilers against Node's own
// headers. Optional by design: without a compiler or headers each is skipped with a
// line saying what the ztunnel then does without, and the script exits 0.
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync, mkdirSync } = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const outDir = path.join(root, 'native', 'build');

const ORIGINAL_DST_LOST = 'the ztunnel will read conntrack for original destinations';
const MEMORY_LOST = 'the ztunnel will not give memory back after bursts';
const SEND_BUFFER_LOST = 'HBONE connections keep the kernel\'s send buffer, and bulk both ways on one can stall (src/hbone/send-buffer.ts)';
const ALL_LOST = `${ORIGINAL_DST_LOST}, ${MEMORY_LOST}, and ${SEND_BUFFER_LOST}`;

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
if (!include) {
  console.log(`build-native: no node_api.h in ${candidates.join(', ')}; skipped (${ALL_LOST})`);
  process.exit(0);
}
mkdirSync(outDir, { recursive: true });

/** Compiles one source into native/build/<out>; `whatIsLost` says what goes without it. */
function build(out, src, compiler, flags, whatIsLost) {
  const file = path.join(outDir, out);
  const res = spawnSync(compiler, ['-O2', '-Wall', '-Werror', ...flags, '-shared', '-fPIC', `-I${include}`, '-o', file, path.join(root, 'native', src)], { stdio: 'inherit' });
  if (res.error || res.status !== 0) {
    console.log(`build-native: ${compiler} failed on ${src} (${res.error ? res.error.message : `exit ${res.status}`}); skipped (${whatIsLost})`);
  } else {
    console.log(`build-native: built ${path.relative(root, file)}`);
  }
}

// getsockopt(SO_ORIGINAL_DST), C, N-API.
build('weft_native.node', 'original_dst.c', process.env.CC || 'cc', [], ORIGINAL_DST_LOST);
// setsockopt(SO_SNDBUFFORCE) for the HBONE connections, C, N-API.
build('weft_send_buffer.node', 'send_buffer.c', process.env.CC || 'cc', [], SEND_BUFFER_LOST);
// V8 LowMemoryNotification + malloc_trim, C++ against V8's headers. No C++ runtime is
// linked (--as-needed drops the one the C++ driver adds): the file uses no exceptions,
// RTTI or standard library, only V8 symbols the node binary exports (so it must be
// built for the very Node version that loads it; the Dockerfile pins one for both stages).
build('weft_memory.node', 'memory.cc', process.env.CXX || 'c++', ['-std=c++17', '-fno-exceptions', '-fno-rtti', '-Wl,--as-needed'], MEMORY_LOST);
