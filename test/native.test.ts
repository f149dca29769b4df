// The optional native helpers (src/lib/native.ts, scripts/build-native.js): loading one
// never throws, whatever sits at its path, and the build honours the compilers the
// environment names ($CC for C, $CXX for C++), as make and node-gyp do.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAddon, nativeFile } from '../src/lib/native';
import { REPO } from './helpers/built';

t.test('loadAddon: the module when every key is a function, otherwise undefined, never a throw', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-native-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const whole = join(dir, 'whole.js');
  writeFileSync(whole, 'module.exports = { a() { return 1; }, b() { return 2; } };');
  const partial = join(dir, 'partial.js');
  writeFileSync(partial, 'module.exports = { a() { return 1; }, b: 2 };');
  const foreign = join(dir, 'foreign.node');
  writeFileSync(foreign, 'not a shared object');
  const mod = loadAddon<{ a(): number; b(): number }>(whole, ['a', 'b']);
  t.equal(mod?.b(), 2, 'every key a function: the module');
  t.equal(loadAddon(partial, ['a', 'b']), undefined, 'a key that is not a function');
  t.equal(loadAddon(foreign, ['a']), undefined, 'a file that is no addon');
  t.equal(loadAddon(join(dir, 'missing.node'), ['a']), undefined, 'no file');
});

t.test('nativeFile: native/build of this checkout', async (t) => {
  t.equal(nativeFile('weft_native.node'), join(REPO, 'native', 'build', 'weft_native.node'));
});

t.test('build-native compiles C with $CC and C++ with $CXX; a missing compiler is a skip that says what is lost', async (t) => {
  // Compilers that cannot start write nothing, so the built helpers stay as they are.
  const res = spawnSync(process.execPath, [join(REPO, 'scripts', 'build-native.js')], {
    encoding: 'utf8', env: { ...process.env, CC: '/nonexistent/weft-cc', CXX: '/nonexistent/weft-cxx' },
  });
  t.equal(res.status, 0, 'optional: exits 0');
  t.match(res.stdout, /\/nonexistent\/weft-cc failed on original_dst\.c .*skipped \(the ztunnel will read conntrack/);
  t.match(res.stdout, /\/nonexistent\/weft-cc failed on send_buffer\.c .*skipped \(HBONE connections keep the kernel's send buffer/);
  t.match(res.stdout, /\/nonexistent\/weft-cxx failed on memory\.cc .*skipped \(the ztunnel will not give memory back/);
});
