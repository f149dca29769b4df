/**
 * Reading the documents `weft apply -f` and `weft delete -f` take, as kubectl does: a
 * file, a directory (its *.yaml, *.yml and *.json files, in name order, not recursive)
 * or `-` for stdin; each file may hold several YAML documents (JSON is YAML too). A
 * `kind: List` document stands for its items. Every document keeps where it came from
 * (file and 1-based position), so a refusal can name it.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import YAML from 'yaml';
import { WeftError } from '../lib/errors';

export const MANIFEST_EXTENSIONS = ['.yaml', '.yml', '.json'] as const;
/** Refuses a stdin or file larger than this: a manifest is config, not data. */
export const MAX_MANIFEST_BYTES = 8 * 1024 * 1024;
export const STDIN_NAME = '<stdin>';

export interface ManifestDocument {
  /** The file as given on the command line (joined with its directory), or `<stdin>`. */
  source: string;
  /** 1-based position of the document in its file; items of a List are `3.1`, `3.2`, ... */
  index: string;
  object: unknown;
}

/** Where a document is, for messages: `canary.yaml: document 2`. */
export function documentPlace(d: Pick<ManifestDocument, 'source' | 'index'>): string {
  return `${d.source}: document ${d.index}`;
}

export function manifestError(message: string, details: Record<string, unknown> = {}): WeftError {
  return new WeftError('WEFT_MANIFEST_INVALID', message, { details });
}

/** The files a `-f` value names: itself, or a directory's manifest files in name order. */
export function manifestFiles(path: string): string[] {
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    throw manifestError(`-f ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`, { file: path });
  }
  if (!st.isDirectory()) return [path];
  const files = readdirSync(path, { withFileTypes: true })
    .filter((e) => e.isFile() && MANIFEST_EXTENSIONS.some((x) => e.name.endsWith(x)))
    .map((e) => e.name)
    .sort();
  if (files.length === 0) throw manifestError(`-f ${path}: the directory holds no ${MANIFEST_EXTENSIONS.join(', ')} files`, { file: path });
  return files.map((f) => join(path, f));
}

/**
 * Every document of every `-f` value, in order. `readStdin` is called at most once
 * (a second `-f -` would read nothing, so it is refused).
 */
export async function readManifests(paths: readonly string[], readStdin: () => Promise<string>): Promise<ManifestDocument[]> {
  if (paths.length === 0) throw new WeftError('WEFT_USAGE', 'no manifests given; pass -f FILE, -f DIR or -f - (stdin)');
  if (paths.filter((p) => p === '-').length > 1) throw new WeftError('WEFT_USAGE', '-f - (stdin) may be given once');
  const out: ManifestDocument[] = [];
  for (const p of paths) {
    if (p === '-') {
      out.push(...parseManifest(await readStdin(), STDIN_NAME));
      continue;
    }
    for (const file of manifestFiles(p)) {
      let text: string;
      try {
        if (statSync(file).size > MAX_MANIFEST_BYTES) throw new Error(`larger than ${MAX_MANIFEST_BYTES} bytes`);
        text = readFileSync(file, 'utf8');
      } catch (err) {
        throw manifestError(`${file}: cannot read it (${(err as Error).message})`, { file });
      }
      out.push(...parseManifest(text, file));
    }
  }
  return out;
}

/** The documents of one file's text; empty documents (a trailing `---`) are skipped as kubectl does. */
export function parseManifest(text: string, source: string): ManifestDocument[] {
  if (Buffer.byteLength(text) > MAX_MANIFEST_BYTES) throw manifestError(`${source}: larger than ${MAX_MANIFEST_BYTES} bytes`, { file: source });
  const docs = YAML.parseAllDocuments(text, { prettyErrors: false });
  // A stream that is not YAML at all comes back as one EmptyStream-like value without errors.
  const list = Array.isArray(docs) ? docs : [];
  const out: ManifestDocument[] = [];
  list.forEach((doc, i) => {
    const index = String(i + 1);
    const bad = doc.errors[0];
    if (bad) {
      const where = bad.linePos?.[0] ? ` at line ${bad.linePos[0].line}, column ${bad.linePos[0].col}` : '';
      throw manifestError(`${documentPlace({ source, index })} is not valid YAML${where}: ${bad.message.split('\n')[0]}`, { file: source, document: index });
    }
    const object: unknown = doc.toJS({ maxAliasCount: 100 });
    if (object === null || object === undefined) return;
    const kind = (object as { kind?: unknown }).kind;
    if (kind === 'List' && Array.isArray((object as { items?: unknown }).items)) {
      ((object as { items: unknown[] }).items).forEach((item, j) => out.push({ source, index: `${index}.${j + 1}`, object: item }));
      return;
    }
    out.push({ source, index, object });
  });
  return out;
}
