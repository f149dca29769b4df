import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { WeftError } from './errors';

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
 * A file's text, or undefined when it cannot be read for whatever reason (missing, not
 * readable, a process gone from /proc, a cgroup file this host does not have): for
 * files whose absence is an answer, not an error. Where a missing file is fine but an
 * unreadable one is not, check the error's code instead (readOptionalJson).
 */
export function readFileIfAny(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
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

/**
 * Reads a file a flag names (a password, a PEM bundle: usually a mounted Secret), with
 * the one check its contents get whether read at start or again later (a client made
 * after a Secret rotation). Throws an Error saying what is wrong with the file, not
 * naming the flag: the caller's refusal names the flag or variable the path came from.
 * `check` returns what is wrong with the contents, if anything.
 */
export function readConfigFile(file: string, check?: (text: string) => string | undefined): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); fix the path, or mount the file there (in Kubernetes: is its Secret still mounted?)`,
      { cause: err });
  }
  const problem = check?.(text);
  if (problem) throw new Error(problem);
  return text;
}

/**
 * readConfigFile for a file named by a flag, when it is read again after start (a
 * client made after a Secret rotation): WEFT_CONFIG_INVALID naming the flag and file.
 */
export function readFlagFile(flag: string, file: string, check?: (text: string) => string | undefined): string {
  try {
    return readConfigFile(file, check);
  } catch (err) {
    throw new WeftError('WEFT_CONFIG_INVALID', `invalid --${flag}=${file}: ${(err as Error).message}`, { cause: err, details: { flag, file } });
  }
}

/** The first line of a secret's file (a password or token), without its line end. */
export function firstLine(text: string): string {
  return text.split(/\r?\n/, 1)[0] ?? '';
}

/** What watchFiles hands back: a way to poll now (tests, or a caller that knows) and to stop. */
export interface FileWatch {
  /** Re-reads the files now; resolves true when changed contents were applied. False while a poll runs already or after stop(). */
  poll(): Promise<boolean>;
  stop(): void;
}

export interface WatchFilesOptions {
  /** How often to re-read. Polling, not fs.watch: ConfigMap and Secret volumes change by symlink swap, which polling always sees. */
  intervalMs: number;
  /** The contents the caller already applied (undefined = missing file); default: the files as they are now. */
  initial?: Array<string | undefined>;
  /**
   * Applies changed contents (undefined for a missing file). A throw or rejection goes
   * to `onError` and leaves the previous contents in force.
   */
  onChange(texts: Array<string | undefined>): void | Promise<void>;
  /** A change that could not be read or applied; called once per distinct contents and error, not at every poll. */
  onError(err: unknown): void;
}

/**
 * Keeps files' contents applied: re-reads them every `intervalMs` (an unref'd timer, one
 * poll at a time) and calls `onChange` when any differs from what was last applied.
 *
 * A failed apply is retried at the next poll: the new contents count as applied only
 * once `onChange` succeeded, so a transient failure (say, the CA's server refusing a
 * root swap for a moment) does not leave the old contents in force until the files
 * change again. A file that stays bad is retried at every poll but reported once.
 */
export function watchFiles(files: readonly string[], opts: WatchFilesOptions): FileWatch {
  const read = async (): Promise<Array<string | undefined>> => Promise.all(files.map(async (f) => {
    try {
      return await readFile(f, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }));
  // JSON keeps "missing" (null) apart from "empty" ('').
  const key = (texts: Array<string | undefined>) => JSON.stringify(texts.map((t) => t ?? null));
  let applied = key(opts.initial ?? files.map((f) => readFileIfAny(f)));
  let reported = '';
  let busy = false;
  let stopped = false;

  const poll = async (): Promise<boolean> => {
    if (busy || stopped) return false;
    busy = true;
    let seen = '';
    try {
      const texts = await read();
      seen = key(texts);
      if (seen === applied) return false;
      await opts.onChange(texts);
      applied = seen;
      reported = '';
      return true;
    } catch (err) {
      const failure = `${seen}\0${err instanceof Error ? err.message : String(err)}`;
      if (failure !== reported) opts.onError(err);
      reported = failure;
      return false;
    } finally {
      busy = false;
    }
  };
  const timer = setInterval(() => { void poll(); }, opts.intervalMs);
  timer.unref();
  return {
    poll,
    stop: () => {
      stopped = true;
      clearInterval(timer);
    },
  };
}
