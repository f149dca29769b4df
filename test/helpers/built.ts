/**
 * Tests that run the built CLI or the native helper check them here and FAIL when they
 * are missing or older than the sources: `npm test` builds first, and a test that
 * skipped (or rebuilt on its own) would hide a broken build. No test rebuilds dist/.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

export const REPO = join(__dirname, '..', '..');
export const MAIN = join(REPO, 'dist', 'cli', 'main.js');
export const NATIVE = join(REPO, 'native', 'build', 'weft_native.node');

function* tsFiles(dir: string): Generator<string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* tsFiles(p);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) yield p;
  }
}

/** Why dist/ cannot be trusted (missing, or a source newer than its output), or undefined. */
export function distProblem(): string | undefined {
  if (!existsSync(MAIN)) return `${MAIN} is missing: run npm run build (npm test does)`;
  const src = join(REPO, 'src');
  for (const file of tsFiles(src)) {
    const out = join(REPO, 'dist', relative(src, file)).replace(/\.ts$/, '.js');
    if (!existsSync(out)) return `${relative(REPO, out)} is missing (from ${relative(REPO, file)}): run npm run build`;
    if (statSync(file).mtimeMs > statSync(out).mtimeMs + 1) return `dist is stale: ${relative(REPO, file)} is newer than ${relative(REPO, out)}; run npm run build`;
  }
  return undefined;
}

/** Throws (fails the test file) when dist/ is missing or stale. */
export function assertDistFresh(): void {
  const problem = distProblem();
  if (problem) throw new Error(problem);
}

/** Throws when the native helper (SO_ORIGINAL_DST) is not built: CI has a compiler, so its absence is a failure. */
export function assertNativeBuilt(): void {
  if (!existsSync(NATIVE)) throw new Error(`${NATIVE} is missing: npm run build compiles it (needs cc and Node's headers)`);
}
