/**
 * RegistryStore: the writer. Every apply() is one Lua script, so the record writes, the
 * revision bump and the single change-stream entry happen atomically: a reader that
 * sees revision N in a snapshot sees exactly the records of N, and the stream holds
 * exactly one entry per revision. That is what lets followers detect gaps by revision.
 */
import { randomUUID } from 'node:crypto';
import { ReplyError, type Redis } from 'ioredis';
import { WeftError, isWeftError } from '../lib/errors';
import { silentLogger, type Logger } from '../lib/log';
import { describeRedis, openRedis, type RedisTarget } from './connection';
import {
  DEFAULT_PREFIX, DEFAULT_STREAM_MAXLEN, logInvalid, parseHashes, parseRecord, registryKeys,
  type RegistryKeys,
} from './layout';
import type { RegistrySnapshot } from './state';
import { KINDS, recordKey, type Change, type Kind, type NamespaceRecord, type RecordsByKind } from './types';
import { validateRecord } from './validate';

/** What a caller passes to apply(): puts carry the record, their key is derived from it. */
export type ChangeInput =
  | { [K in Kind]: { op: 'put'; kind: K; record: RecordsByKind[K] } }[Kind]
  | { op: 'delete'; kind: Kind; key: string };

export interface RegistryStoreOptions {
  /** Prefix of every key; default `weft:`. Tests use a random one to share a server. */
  prefix?: string;
  logger?: Logger;
  /** Approximate cap on change-stream entries (XADD MAXLEN ~); default 100,000. */
  streamMaxLen?: number;
}

export interface ApplyOptions {
  /** Compare-and-set: apply only if the registry is still at this revision. */
  expectedRevision?: number;
}

// KEYS: revision, epoch, changes, then one hash key per op.
// ARGV: maxlen, expected revision ('' = none), new epoch candidate, changes JSON, then op/field/value per op.
const APPLY_SCRIPT = `
if ARGV[2] ~= '' and tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[2]) then
  return -1
end
redis.call('SET', KEYS[2], ARGV[3], 'NX')
local epoch = redis.call('GET', KEYS[2])
local rev = redis.call('INCR', KEYS[1])
local n = (#ARGV - 4) / 3
for i = 0, n - 1 do
  local op, field, value = ARGV[5 + i * 3], ARGV[6 + i * 3], ARGV[7 + i * 3]
  if op == 'put' then
    redis.call('HSET', KEYS[4 + i], field, value)
  else
    redis.call('HDEL', KEYS[4 + i], field)
  end
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[1], '*', 'rev', rev, 'epoch', epoch, 'changes', ARGV[4])
return rev
`;

const CAS_ATTEMPTS = 20;

type ApplyCommand = (numKeys: number, ...args: (string | number)[]) => Promise<number>;

export class RegistryStore {
  readonly keys: RegistryKeys;
  private readonly redis: Redis;
  private readonly logger: Logger;
  private readonly maxLen: number;
  private readonly url: string;

  private constructor(target: RedisTarget, opts: RegistryStoreOptions) {
    this.url = describeRedis(target);
    this.keys = registryKeys(opts.prefix ?? DEFAULT_PREFIX);
    this.logger = opts.logger ?? silentLogger();
    this.maxLen = opts.streamMaxLen ?? DEFAULT_STREAM_MAXLEN;
    // Few retries per command: a CLI call against a dead Redis should fail in well under
    // a second with a clear message rather than hang; long-running writers retry themselves.
    this.redis = openRedis(target, {
      lazyConnect: true,
      maxRetriesPerRequest: 2,
      connectTimeout: 3000,
      retryStrategy: (times) => Math.min(50 * 2 ** times, 2000),
    });
    this.redis.on('error', (err) => this.logger.debug({ err: err.message }, 'registry store connection error'));
    this.redis.defineCommand('weftApply', { lua: APPLY_SCRIPT });
  }

  /** Opens a store; the connection is made on first use. */
  static connect(target: RedisTarget, opts: RegistryStoreOptions = {}): RegistryStore {
    return new RegistryStore(target, opts);
  }

  /**
   * Applies all changes atomically as ONE new revision and returns it. Every put is
   * validated first (unknown keys rejected); nothing is written if any is invalid.
   * An empty list writes nothing and returns the current revision.
   */
  async apply(changes: ChangeInput[], opts: ApplyOptions = {}): Promise<number> {
    if (changes.length === 0) return this.revision();
    const full: Change[] = changes.map((c) => {
      if (c.op === 'delete') return { op: 'delete', kind: c.kind, key: c.key };
      const record = validateRecord(c.kind, c.record, { unknownKeys: 'reject' });
      return { op: 'put', kind: c.kind, key: recordKey(c.kind, record), record } as Change;
    });
    const keys = [this.keys.revision, this.keys.epoch, this.keys.changes, ...full.map((c) => this.keys.kind(c.kind))];
    const args: string[] = [
      String(this.maxLen), opts.expectedRevision === undefined ? '' : String(opts.expectedRevision),
      randomUUID(), JSON.stringify(full),
    ];
    for (const c of full) args.push(c.op, c.key, c.op === 'put' ? JSON.stringify(c.record) : '');
    const rev = await this.call(() => (this.redis as unknown as { weftApply: ApplyCommand }).weftApply(keys.length, ...keys, ...args));
    if (rev === -1) {
      throw new WeftError('WEFT_REGISTRY_CONFLICT',
        `registry moved past revision ${opts.expectedRevision} before this write; re-read and retry`,
        { details: { expectedRevision: opts.expectedRevision } });
    }
    return rev;
  }

  put<K extends Kind>(kind: K, record: RecordsByKind[K]): Promise<number> {
    return this.apply([{ op: 'put', kind, record } as ChangeInput]);
  }

  /** Deletes a record; deleting a missing key still makes a revision (deletes are idempotent). */
  delete(kind: Kind, key: string): Promise<number> {
    return this.apply([{ op: 'delete', kind, key }]);
  }

  /** One record, or undefined when absent or malformed (malformed is logged). */
  async get<K extends Kind>(kind: K, key: string): Promise<RecordsByKind[K] | undefined> {
    const json = await this.call(() => this.redis.hget(this.keys.kind(kind), key));
    if (json === null) return undefined;
    return parseRecord(kind, key, json, 'hash', logInvalid(this.logger));
  }

  /** Every valid record of a kind, in no particular order. */
  async list<K extends Kind>(kind: K): Promise<RecordsByKind[K][]> {
    const all = await this.call(() => this.redis.hgetall(this.keys.kind(kind)));
    const hashes = KINDS.map((k) => (k === kind ? all : {}));
    return parseHashes(hashes, logInvalid(this.logger))[kind];
  }

  async revision(): Promise<number> {
    const v = await this.call(() => this.redis.get(this.keys.revision));
    return v === null ? 0 : Number(v);
  }

  /** All records and the revision they are at, read in one transaction. */
  async snapshot(): Promise<{ revision: number; records: RegistrySnapshot }> {
    const multi = this.redis.multi();
    for (const kind of KINDS) multi.hgetall(this.keys.kind(kind));
    multi.get(this.keys.revision);
    const replies = await this.call(() => multi.exec());
    const values = (replies ?? []).map(([err, v]) => {
      if (err) throw err;
      return v;
    });
    const records = parseHashes(values.slice(0, KINDS.length) as Record<string, string>[], logInvalid(this.logger));
    const rev = values[KINDS.length] as string | null;
    return { revision: rev === null ? 0 : Number(rev), records };
  }

  /**
   * Sets (or, with undefined, removes) one label of a namespace, e.g. to enrol it with
   * `weft.io/dataplane-mode=ambient`. Compare-and-set on the revision, retried, so
   * concurrent label edits by the lab and the CLI never overwrite each other.
   */
  async setNamespaceLabel(namespace: string, label: string, value: string | undefined): Promise<number> {
    for (let attempt = 0; attempt < CAS_ATTEMPTS; attempt++) {
      const multi = this.redis.multi().hget(this.keys.kind('namespace'), namespace).get(this.keys.revision);
      const replies = (await this.call(() => multi.exec())) ?? [];
      const [[e1, json], [e2, rev]] = replies as [[Error | null, string | null], [Error | null, string | null]];
      if (e1 || e2) throw this.unreachable(e1 ?? e2);
      if (json === null) {
        throw new WeftError('WEFT_REGISTRY_NOT_FOUND',
          `namespace ${namespace} is not in the registry; create it first (weft apply a namespace record)`,
          { details: { kind: 'namespace', key: namespace } });
      }
      const current = validateRecord('namespace', JSON.parse(json), { key: namespace });
      const labels = { ...current.labels };
      if (value === undefined) delete labels[label];
      else labels[label] = value;
      const next: NamespaceRecord = { ...current, labels };
      try {
        return await this.apply([{ op: 'put', kind: 'namespace', record: next }], { expectedRevision: rev === null ? 0 : Number(rev) });
      } catch (err) {
        if (!isWeftError(err, 'WEFT_REGISTRY_CONFLICT')) throw err;
      }
    }
    throw new WeftError('WEFT_REGISTRY_CONFLICT',
      `gave up setting ${label} on namespace ${namespace} after ${CAS_ATTEMPTS} conflicting writes; retry`);
  }

  async close(): Promise<void> {
    if (this.redis.status === 'end') return;
    try {
      await this.redis.quit();
    } catch {
      this.redis.disconnect();
    }
  }

  /** Runs a Redis call, turning connection failures into WEFT_REGISTRY_UNREACHABLE. */
  private async call<T>(fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      // A reply error is Redis refusing a command (a bug or a foreign key type), not an outage.
      if (isWeftError(err) || err instanceof ReplyError) throw err;
      throw this.unreachable(err);
    }
  }

  private unreachable(err: unknown): WeftError {
    const msg = err instanceof Error ? err.message : String(err);
    return new WeftError('WEFT_REGISTRY_UNREACHABLE',
      `registry write/read at ${this.url} failed: ${msg}; check --redis-url/WEFT_REDIS_URL and that Redis runs`,
      { cause: err });
  }
}
