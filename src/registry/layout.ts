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
import { failClosedPolicy, heldText } from './policy-fallback';
import { KINDS, type AuthorizationPolicyRecord, type Change, type Kind, type RecordsByKind } from './types';
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

/**
 * Called once per record that fails to parse or validate on read, after the reader
 * decided what to hold instead: `standIn` is the fail-closed policy enforced in its
 * place, absent when the record is skipped (every other kind, or a policy whose key is
 * unreadable).
 */
export type OnInvalid = (err: unknown, where: { kind: Kind; key?: string; source: 'hash' | 'stream'; standIn?: AuthorizationPolicyRecord }) => void;

export function emptySnapshot(): RegistrySnapshot {
  return { node: [], namespace: [], workload: [], service: [], policy: [], peerauth: [], waypoint: [], httproute: [], grpcroute: [], trafficpolicy: [] };
}

/**
 * Parses and validates one stored record; undefined (after onInvalid) when malformed —
 * except a policy, which becomes its fail-closed stand-in (policy-fallback.ts): a
 * policy that silently vanished could open the workloads it guarded.
 */
export function parseRecord<K extends Kind>(kind: K, key: string, json: string, source: 'hash' | 'stream', onInvalid: OnInvalid): RecordsByKind[K] | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch (err) {
    return invalid(kind, key, undefined, `the stored record is not JSON (${(err as Error).message})`, err, source, onInvalid);
  }
  return checkStored(kind, key, raw, source, onInvalid);
}

function checkStored<K extends Kind>(kind: K, key: string, raw: unknown, source: 'hash' | 'stream', onInvalid: OnInvalid): RecordsByKind[K] | undefined {
  try {
    return validateRecord(kind, raw, { key });
  } catch (err) {
    return invalid(kind, key, raw, err instanceof Error ? err.message : String(err), err, source, onInvalid);
  }
}

/** What a reader holds for a record that failed validation (nothing, or for a policy its stand-in), reported to onInvalid. */
function invalid<K extends Kind>(kind: K, key: string, raw: unknown, reason: string, err: unknown, source: 'hash' | 'stream', onInvalid: OnInvalid): RecordsByKind[K] | undefined {
  const standIn = kind === 'policy' ? failClosedPolicy(key, raw, `the stored record is invalid: ${reason}`) : undefined;
  onInvalid(err, standIn ? { kind, key, source, standIn } : { kind, key, source });
  return standIn as RecordsByKind[K] | undefined;
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
 * Parses an entry's changes. A put whose record is malformed becomes a delete (a
 * policy: a put of its fail-closed stand-in): exactly what a snapshot load gives for
 * the same record, keeping followed state equal to loaded state.
 * A change of a kind this build does not know (a newer writer's) is skipped and
 * reported to onUnknownKind: reloading would not make it known, only cost a full
 * snapshot per such entry, and the kinds this reader acts on are unaffected.
 * Returns undefined when the entry as a whole cannot be understood.
 */
export function parseChanges(json: string, onInvalid: OnInvalid, onUnknownKind: (kind: string) => void = () => {}): Change[] | undefined {
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
    if (typeof kind !== 'string' || typeof key !== 'string') return undefined;
    if (!(KINDS as readonly string[]).includes(kind)) {
      if (op !== 'put' && op !== 'delete') return undefined;
      onUnknownKind(kind);
      continue;
    }
    const k = kind as Kind;
    if (op === 'delete') {
      out.push({ op: 'delete', kind: k, key });
    } else if (op === 'put') {
      const checked = checkStored(k, key, record, 'stream', onInvalid);
      out.push(checked === undefined ? { op: 'delete', kind: k, key } : { op: 'put', kind: k, key, record: checked } as Change);
    } else {
      return undefined;
    }
  }
  return out;
}

/**
 * The standard onInvalid: one warning per bad record, naming it, what is held instead
 * and what to do; never throws. Only the controller writes policy records, so a
 * malformed one is repaired by giving it a valid object to translate.
 */
export function logInvalid(logger: Logger, count?: () => void): OnInvalid {
  return (err, where) => {
    count?.();
    const fields: Record<string, unknown> = {
      kind: where.kind, key: where.key, source: where.source,
      code: isWeftError(err) ? err.code : 'WEFT_REGISTRY_RECORD_INVALID',
      err: err instanceof Error ? err.message : String(err),
    };
    const s = where.standIn;
    if (!s) {
      logger.warn(fields, 'skipping malformed registry record');
      return;
    }
    fields.standIn = { action: s.action, scope: s.scope, ...(s.selector ? { selector: s.selector } : {}) };
    logger.warn(fields, `malformed policy record: ${heldText(s.invalid?.state, s.action)}; fix or re-apply the AuthorizationPolicy; the controller rewrites the record on its next sync`);
  };
}
