import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Writes via a temporary file and rename, so a reader (or a crash) never sees half a
 * file: it finds the previous complete version or the new one.
 */
export function writeFileAtomic(file: string, content: string, mode = 0o644): void {
  mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, content, { mode });
  renameSync(tmp, file);
}

/**
 * Reads a JSON file that may not exist: undefined when it does not. Unparseable JSON,
 * or a value `check` rejects (by throwing), is handed to `invalid`, which turns it into
 * the error that tells the user what to do about that file.
 */
export function readOptionalJson<T>(file: string, check: (value: unknown) => T, invalid: (why: string, cause: unknown) => Error): T | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return check(JSON.parse(text));
  } catch (err) {
    throw invalid(err instanceof Error ? err.message : String(err), err);
  }
}
