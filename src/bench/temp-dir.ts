/**
 * A bench's scratch directory (certificates and keys, configs, a redis-server's dir).
 * remove() is the normal path, from a finally; the exit hook covers a bench that ends
 * with process.exit first (a SIGINT/SIGTERM handler, a child's exit), which skips
 * finally blocks and would leave the directory behind.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function benchTempDir(name: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `weft-bench-${name}-`));
  const remove = (): void => {
    process.off('exit', remove);
    rmSync(path, { recursive: true, force: true });
  };
  process.once('exit', remove);
  return { path, remove };
}
