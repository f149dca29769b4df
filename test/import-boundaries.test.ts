// Which parts of src/ may import which: the shared layers never reach up into the
// components built on them. src/lib is the bottom (it imports nothing else of Weft);
// src/hbone serves both the ztunnel and the waypoint, so it imports neither (what it
// needs of them is passed in: src/hbone/contracts.ts, the server's callbacks). What the
// ztunnel and the waypoint both use of endpoint choice and dialling lives in src/mesh,
// which imports neither; the waypoint does not import the ztunnel; the dashboard's
// server imports neither the CLI nor the proxies.
import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = join(__dirname, '..');

/** Per folder: whether a module it imports (a path from the repository root) is out of bounds. */
const FORBIDDEN: Record<string, (target: string) => boolean> = {
  'src/lib': (target) => target.startsWith('src/') && !target.startsWith('src/lib/'),
  'src/hbone': (target) => target.startsWith('src/ztunnel/') || target.startsWith('src/waypoint/'),
  'src/mesh': (target) => target.startsWith('src/ztunnel/') || target.startsWith('src/waypoint/'),
  'src/waypoint': (target) => target.startsWith('src/ztunnel/'),
  // The dashboard's server and page are given their sources (src/dashboard/api.ts); what reaches the proxies is the CLI's.
  'src/dashboard': (target) => target.startsWith('src/cli/') || target.startsWith('src/ztunnel/') || target.startsWith('src/waypoint/'),
};

function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory()) return sources(path);
    return e.name.endsWith('.ts') ? [path] : [];
  });
}

/** Every relative module a file names: static and type imports, re-exports, import() and require(). */
function importedModules(file: string, text: string): string[] {
  const specs = [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|^\s*import\s+)(['"])(\.{1,2}\/[^'"]+)\1/gm)].map((m) => m[2]!);
  return specs.map((spec) => relative(root, resolve(root, dirname(file), spec)).split('\\').join('/'));
}

t.test('the import scanner sees every form of import', async (t) => {
  const text = [
    "import { a } from '../ztunnel/a';",
    "import type { B } from '../ztunnel/b';",
    "export { c } from '../ztunnel/c';",
    "import '../ztunnel/d';",
    "const e = await import('../ztunnel/e');",
    "const f = require('../ztunnel/f');",
  ].join('\n');
  t.same(importedModules('src/hbone/x.ts', text), ['a', 'b', 'c', 'd', 'e', 'f'].map((n) => `src/ztunnel/${n}`));
});

for (const [dir, forbidden] of Object.entries(FORBIDDEN)) {
  t.test(`${dir} imports nothing it is not allowed to`, async (t) => {
    const files = sources(dir);
    t.ok(files.length > 0, `${dir} has sources`);
    const bad = files.flatMap((f) => importedModules(f, readFileSync(join(root, f), 'utf8')).filter(forbidden).map((m) => `${f} imports ${m}`));
    t.same(bad, [], `${dir} must not import those (pass what it needs in instead)`);
  });
}
