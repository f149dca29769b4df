/**
 * How the registry sits in Redis, shared by the writer (store.ts) and the readers
 * (follower.ts). docs/registry.md describes the same layout for humans.
 *
 *   <prefix><kind>     HASH   key → record JSON, one hash per kind
 *   <prefix>revision   STRING the revision, +1 per apply call
 *   <prefix>epoch      STRING random id set on the first write; a new epoch means the
 *                             registry was wiped or replaced and readers must reload
 *   <prefix>changes    STREAM one entry per revision: rev, epoch, changes (JSON Change[])
 */
import type { Logger } from '../lib/log';
import { isWeftError } from '../lib/errors';
import type { RegistrySnapshot } from './state';
import { KINDS, type Change, type Kind } from './types';
import { validateRecord } from './validate';

export const DEFAULT_PREFIX = 'weft:';
export const DEFAULT_STREAM_MAXLEN = 100_000;

export interface RegistryKeys {
  kind(kind: Kind): string;
  revision: string;
  epoch: string;
  changes: string;
}

export function registryKeys(prefix: string): RegistryKeys {
  return {
    kind: (kind) => `${prefix}${kind}`,
    revision: `${prefix}revision`,
    epoch: `${prefix}epoch`,
    changes: `${prefix}changes`,
  };
}

/** Called once per record that fails to parse or validate on read. */
export type OnInvalid = (err: unknown, where: { kind: Kind; key?: string; source: 'hash' | 'stream' }) => void;

export function emptySnapshot(): RegistrySnapshot {
  return { node: [], namespace: [], workload: [], service: [], policy: [], peerauth: [] };
}

/** Parses and validates one stored record; undefined (after onInvalid) when malformed. */
export function parseRecord<K extends Kind>(kind: K, key: string, json: string, source: 'hash' | 'stream', onInvalid: OnInvalid) {
  try {
    return validateRecord(kind, JSON.parse(json), { key });
  } catch (err) {
    onInvalid(err, { kind, key, source });
    return undefined;
  }
}

/** Turns the HGETALL replies of every kind (in KINDS order) into a snapshot, skipping bad records. */
export function parseHashes(hashes: Record<string, string>[], onInvalid: OnInvalid): RegistrySnapshot {
  const snap = emptySnapshot();
  KINDS.forEach((kind, i) => {
    const out = snap[kind] as unknown[];
    for (const [key, json] of Object.entries(hashes[i] ?? {})) {
      const record = parseRecord(kind, key, json, 'hash', onInvalid);
      if (record !== undefined) out.push(record);
    }
  });
  return snap;
}

export interface StreamEntry {
  id: string;
  /** NaN when the entry carries no usable revision. */
  rev: number;
  epoch: string | undefined;
  /** Raw JSON of the changes; parsed only when the entry is applied. */
  changes: string | undefined;
}

/** ioredis returns stream entries as [id, [field, value, ...]]. */
export function parseStreamEntry(raw: [string, string[]]): StreamEntry {
  const [id, fields] = raw;
  const get = (name: string): string | undefined => {
    for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1];
    return undefined;
  };
  const revText = get('rev');
  const rev = revText !== undefined && /^[0-9]+$/.test(revText) ? Number(revText) : NaN;
  return { id, rev, epoch: get('epoch'), changes: get('changes') };
}

/**
 * Parses an entry's changes. A put whose record is malformed becomes a delete: the
 * record is unreadable, so readers must hold it as absent — exactly what a snapshot
 * load (which skips it) would give, keeping followed state equal to loaded state.
 * Returns undefined when the entry as a whole cannot be understood.
 */
export function parseChanges(json: string, onInvalid: OnInvalid): Change[] | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (!Array.isArray(raw)) return undefined;
  const out: Change[] = [];
  for (const c of raw as unknown[]) {
    if (typeof c !== 'object' || c === null) return undefined;
    const { op, kind, key, record } = c as Record<string, unknown>;
    if (typeof kind !== 'string' || !(KINDS as readonly string[]).includes(kind) || typeof key !== 'string') return undefined;
    const k = kind as Kind;
    if (op === 'delete') {
      out.push({ op: 'delete', kind: k, key });
    } else if (op === 'put') {
      try {
        out.push({ op: 'put', kind: k, key, record: validateRecord(k, record, { key }) } as Change);
      } catch (err) {
        onInvalid(err, { kind: k, key, source: 'stream' });
        out.push({ op: 'delete', kind: k, key });
      }
    } else {
      return undefined;
    }
  }
  return out;
}

/** The standard onInvalid: one warning per bad record, naming it; never throws. */
export function logInvalid(logger: Logger, count?: () => void): OnInvalid {
  return (err, where) => {
    count?.();
    logger.warn({
      kind: where.kind, key: where.key, source: where.source,
      code: isWeftError(err) ? err.code : 'WEFT_REGISTRY_RECORD_INVALID',
      err: err instanceof Error ? err.message : String(err),
    }, 'skipping malformed registry record');
  };
}

/** A Redis URL with any password removed, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable redis url)';
  }
}
