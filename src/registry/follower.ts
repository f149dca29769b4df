/**
 * RegistryFollower: keeps a MeshState equal to the registry in Redis. It loads a
 * consistent snapshot, then tails the change stream from the snapshot's position.
 *
 * Correctness rests on the revision every stream entry carries (store.ts writes one
 * entry per revision, atomically with the data): an entry at or below the state's
 * revision was already applied and is skipped; an entry beyond revision+1 means
 * entries were lost (trimmed, or the registry replaced) and the snapshot is reloaded.
 * So no change is applied twice and none is missed, whatever the connection does.
 *
 * While Redis is unreachable the state is left as it was (proxies keep serving the
 * last known mesh) and the follower reconnects with capped exponential backoff:
 * 100 ms doubling to 1 s, jittered between half the step and the step so the nodes of
 * a cluster, which all lost Redis at once, spread their reconnects. The cap bounds how
 * long after Redis' return the follower resyncs; a connect attempt pending when Redis
 * resumes (a frozen or partitioned Redis) is answered at once.
 */
import { EventEmitter } from 'node:events';
import type { Redis } from 'ioredis';
import { Counter, Gauge, type Registry as MetricsRegistry } from 'prom-client';
import { backoffDelay } from '../lib/backoff';
import { WeftError } from '../lib/errors';
import { silentLogger, type Logger } from '../lib/log';
import {
  DEFAULT_PREFIX, logInvalid, parseChanges, parseHashes, parseStreamEntry, registryKeys,
  type OnInvalid, type RegistryKeys,
} from './layout';
import { describeRedis, openRedis, toConnection, type RedisTarget } from './connection';
import type { MeshState } from './state';
import { KINDS } from './types';

export interface RegistryFollowerOptions {
  /** The Redis to follow: a URL, or a URL with credentials (connection.ts). */
  url: RedisTarget;
  /** Key prefix; default `weft:` (must match the writer's). */
  prefix?: string;
  state: MeshState;
  logger?: Logger;
  /** prom-client registry for the weft_registry_* metrics; one follower per registry. */
  metrics?: MetricsRegistry;
  /** XREAD BLOCK time: an idle registry still confirms freshness this often. Default 1000 ms. */
  blockMs?: number;
  /** Timeout of a connect or a command (beyond the block time). Default 5000 ms. */
  timeoutMs?: number;
  /**
   * Cap of the reconnect backoff. Default 1000 ms: the follower must be current within
   * 2 s of Redis' return, and a retry sleep is time Redis may already be back.
   */
  maxBackoffMs?: number;
  /** Stream entries per read. Default 1000. */
  batchSize?: number;
}

/**
 * idle → connecting → (loading | resuming) → following ⇄ loading
 * any → disconnected (on failure; backoff, then connecting) ; any → stopped.
 */
export type FollowerStatus = 'idle' | 'connecting' | 'loading' | 'resuming' | 'following' | 'disconnected' | 'stopped';

export interface RegistryFollowerEvents {
  /** Contact with Redis was lost; the state is now possibly stale. */
  stale: [err: Error];
  /** Contact regained after `downtimeMs`; the state is current again. */
  recovered: [downtimeMs: number];
  /** A snapshot was (re)loaded; `reason` says why. */
  snapshot: [revision: number, reason: string];
  status: [status: FollowerStatus];
}

const INITIAL_BACKOFF_MS = 100;
export const DEFAULT_MAX_BACKOFF_MS = 1000;

/** Sleep before reconnect attempt `failures + 1`: never above `maxMs`, jittered below it. */
export function reconnectDelay(failures: number, maxMs = DEFAULT_MAX_BACKOFF_MS, random: () => number = Math.random): number {
  return backoffDelay(failures, { initialMs: Math.min(INITIAL_BACKOFF_MS, maxMs), maxMs, jitter: 'below' }, random);
}
const STILL_STALE_LOG_MS = 30_000;

export class RegistryFollower extends EventEmitter<RegistryFollowerEvents> {
  /** When the follower last knew it was current (ms since the epoch); undefined before the first snapshot. */
  lastSyncAt: number | undefined;
  private statusValue: FollowerStatus = 'idle';

  private readonly url: RedisTarget;
  private readonly keys: RegistryKeys;
  private readonly state: MeshState;
  private readonly logger: Logger;
  private readonly blockMs: number;
  private readonly timeoutMs: number;
  private readonly maxBackoffMs: number;
  private readonly batchSize: number;
  private readonly onInvalid: OnInvalid;
  private readonly metrics: {
    reloads?: Counter; reconnects?: Counter; resumes?: Counter; invalid?: Counter; unknownKind?: Counter; revision?: Gauge;
  };
  /** Unknown kinds already logged (bounded: the names come from the stream). */
  private readonly unknownKindsLogged = new Set<string>();

  /** Last stream entry id applied or skipped; undefined until a snapshot is loaded. */
  private position: string | undefined;
  /** Registry epoch of the loaded data; null while the registry has never been written. */
  private epoch: string | null = null;
  private snapshots = 0;
  private startedAt = Date.now();
  private staleSince: number | undefined;
  private lastStaleLog = 0;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private client: Redis | undefined;
  private reader: Redis | undefined;
  private sleepTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private ready: { resolve: () => void; reject: (err: Error) => void } | undefined;

  constructor(opts: RegistryFollowerOptions) {
    super();
    this.url = opts.url;
    this.keys = registryKeys(opts.prefix ?? DEFAULT_PREFIX);
    this.state = opts.state;
    this.logger = (opts.logger ?? silentLogger()).child({ subsystem: 'registry-follower' });
    this.blockMs = opts.blockMs ?? 1000;
    this.timeoutMs = opts.timeoutMs ?? 5000;
    this.maxBackoffMs = opts.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS;
    this.batchSize = opts.batchSize ?? 1000;
    this.metrics = {};
    if (opts.metrics) {
      const registers = [opts.metrics];
      const self = this;
      new Gauge({
        name: 'weft_registry_staleness_seconds', registers,
        // Across `ztunnel --workers` (a view each): the stalest.
        aggregator: 'max',
        help: 'Seconds since this process last confirmed its registry view was current',
        collect() { this.set(self.stalenessSeconds()); },
      });
      // Across `ztunnel --workers`: the oldest view's.
      this.metrics.revision = new Gauge({ name: 'weft_registry_revision', help: 'Registry revision of the local view', registers, aggregator: 'min' });
      this.metrics.reloads = new Counter({ name: 'weft_registry_reloads_total', help: 'Snapshot reloads after the initial load (gaps, trims, registry resets, writes lost in a failover)', registers });
      this.metrics.reconnects = new Counter({ name: 'weft_registry_reconnects_total', help: 'Connections to Redis made again after one was lost (a restart, a Sentinel failover)', registers });
      this.metrics.resumes = new Counter({ name: 'weft_registry_resumes_total', help: 'Reconnects that resynced from the change stream at the last position, without a snapshot reload', registers });
      this.metrics.invalid = new Counter({ name: 'weft_registry_invalid_records_total', help: 'Malformed registry records or stream entries skipped', registers });
      this.metrics.unknownKind = new Counter({ name: 'weft_registry_unknown_kind_changes_total', help: 'Changes of a kind this build does not know (from a newer writer), skipped', registers });
    }
    this.onInvalid = logInvalid(this.logger, () => this.metrics.invalid?.inc());
  }

  get status(): FollowerStatus {
    return this.statusValue;
  }

  /** Seconds since the view was last known current (since start() before the first load). */
  stalenessSeconds(): number {
    return (Date.now() - (this.lastSyncAt ?? this.startedAt)) / 1000;
  }

  /** Resolves once the first snapshot is loaded; keeps retrying (and logging) while Redis is unreachable. */
  start(): Promise<void> {
    if (this.loop) throw new Error('RegistryFollower.start() called twice');
    this.startedAt = Date.now();
    const ready = new Promise<void>((resolve, reject) => { this.ready = { resolve, reject }; });
    this.loop = this.run();
    return ready;
  }

  /** Stops following and closes every connection and timer. The state keeps its contents. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.sleepTimer) clearTimeout(this.sleepTimer);
    this.wake?.();
    this.dropConnections();
    await this.loop;
    this.ready?.reject(new WeftError('WEFT_REGISTRY_UNREACHABLE',
      `registry follower stopped before the first snapshot was loaded from ${describeRedis(this.url)}`));
    this.ready = undefined;
  }

  private transition(next: FollowerStatus): void {
    if (next === this.statusValue) return;
    this.logger.debug({ from: this.statusValue, to: next }, 'registry follower status');
    this.statusValue = next;
    this.emit('status', next);
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      try {
        await this.connect();
        if (this.position === undefined) await this.loadSnapshot(this.snapshots === 0 ? 'initial load' : 'reload');
        else await this.resume();
        failures = 0;
        await this.follow();
      } catch (err) {
        this.dropConnections();
        if (this.stopped) break;
        failures++;
        this.noteFailure(err instanceof Error ? err : new Error(String(err)));
        await this.sleep(reconnectDelay(failures, this.maxBackoffMs));
      }
    }
    this.dropConnections();
    this.transition('stopped');
  }

  private newClient(role: string): Redis {
    // No ioredis-level retries or queues: this loop owns reconnection, so every failure
    // surfaces here once, and a resume check always runs before reading again.
    const client = openRedis(this.url, {
      lazyConnect: true,
      retryStrategy: () => null,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      connectTimeout: this.timeoutMs,
      connectionName: `weft-follower-${role}`,
    });
    client.on('error', (err) => this.logger.debug({ role, err: err.message }, 'registry connection error'));
    return client;
  }

  private async connect(): Promise<void> {
    this.transition('connecting');
    this.client = this.newClient('snapshot');
    this.reader = this.newClient('reader');
    await this.timed(Promise.all([this.client.connect(), this.reader.connect()]), this.timeoutMs);
    // Each client asks the Sentinels on its own: during a failover the two may be
    // named different primaries, and the position checked (or loaded) on one would be
    // read from on the other, mixing two registries' changes. Only one server will do.
    if (toConnection(this.url).sentinel) {
      const [a, b] = [this.client, this.reader].map((c) => `${c.stream.remoteAddress}:${c.stream.remotePort}`);
      if (a !== b) throw new Error(`the Sentinels named two different primaries (${a} and ${b}) to the follower's two connections, as during a failover; connecting again`);
    }
  }

  private dropConnections(): void {
    this.client?.disconnect();
    this.reader?.disconnect();
    this.client = undefined;
    this.reader = undefined;
  }

  /** One MULTI: every hash, the revision, the epoch and the last stream id, so data and position agree. */
  private async loadSnapshot(reason: string): Promise<void> {
    this.transition('loading');
    const client = this.must(this.client);
    const multi = client.multi();
    for (const kind of KINDS) multi.hgetall(this.keys.kind(kind));
    multi.get(this.keys.revision).get(this.keys.epoch).xrevrange(this.keys.changes, '+', '-', 'COUNT', 1);
    const values = unwrap(await this.timed(multi.exec(), this.timeoutMs));
    const n = KINDS.length;
    const records = parseHashes(values.slice(0, n) as Record<string, string>[], this.onInvalid);
    const revision = Number((values[n] as string | null) ?? 0);
    const last = (values[n + 2] as [string, string[]][])[0];
    this.state.replaceAll(records, revision);
    this.position = last?.[0] ?? '0-0';
    this.epoch = values[n + 1] as string | null;
    if (this.snapshots++ > 0) this.metrics.reloads?.inc();
    this.metrics.revision?.set(revision);
    this.logger.info({ revision, reason, workloads: records.workload.length }, 'registry snapshot loaded');
    this.emit('snapshot', revision, reason);
    this.markSynced();
  }

  /**
   * After a reconnect: continue from our position if nothing we need was lost, else
   * reload. Besides the revision and epoch, the entry at our position must still be in
   * the stream: after a Sentinel failover the new primary may lack the last writes the
   * old one acknowledged (replication is asynchronous), and the writers then reuse
   * those revision numbers for other changes. Revision and epoch alone would look
   * intact; the missing entry is what shows our view holds changes the registry lost.
   */
  private async resume(): Promise<void> {
    this.transition('resuming');
    this.metrics.reconnects?.inc();
    const client = this.must(this.client);
    const position = this.position!;
    const multi = client.multi().get(this.keys.revision).get(this.keys.epoch)
      .xrange(this.keys.changes, `(${position}`, '+', 'COUNT', 1)
      .xrange(this.keys.changes, position, position);
    const [revText, epoch, entries, atPosition] = unwrap(await this.timed(multi.exec(), this.timeoutMs)) as
      [string | null, string | null, [string, string[]][], [string, string[]][]];
    const revision = Number(revText ?? 0);
    const have = this.state.revision;
    const next = entries[0] ? parseStreamEntry(entries[0]) : undefined;
    let problem: string | undefined;
    if (this.epoch !== null && epoch !== this.epoch) problem = 'registry was replaced (epoch changed)';
    else if (revision < have) problem = `registry revision went back from ${have} to ${revision}`;
    else if (position !== '0-0' && atPosition.length === 0) {
      problem = `the change stream no longer holds entry ${position} (writes lost in a failover, or trimmed past it)`;
    } else if (revision > have && !(next && next.rev <= have + 1)) problem = `changes after revision ${have} were trimmed from the stream`;
    if (problem) return this.loadSnapshot(problem);
    this.metrics.resumes?.inc();
    this.logger.info({ revision: have, registryRevision: revision, position }, 'registry follower resumed from its stream position; no reload needed');
    this.markSynced();
  }

  private async follow(): Promise<void> {
    this.transition('following');
    if (this.ready) {
      this.ready.resolve();
      this.ready = undefined;
    }
    while (!this.stopped) {
      const reader = this.must(this.reader);
      const reply = (await this.timed(
        reader.xread('COUNT', this.batchSize, 'BLOCK', this.blockMs, 'STREAMS', this.keys.changes, this.position!),
        this.blockMs + this.timeoutMs,
      )) as [string, [string, string[]][]][] | null;
      if (reply && reply[0]) await this.applyEntries(reply[0][1]);
      // Redis answered a read at our position, so the view was current at this moment.
      this.markSynced();
    }
  }

  private async applyEntries(raw: [string, string[]][]): Promise<void> {
    for (const item of raw) {
      const entry = parseStreamEntry(item);
      const have = this.state.revision;
      if (Number.isNaN(entry.rev)) {
        this.metrics.invalid?.inc();
        this.logger.warn({ id: entry.id }, 'skipping change-stream entry without a revision');
        this.position = entry.id;
        continue;
      }
      if (this.epoch !== null && entry.epoch !== this.epoch) {
        return this.reloadInline('registry was replaced (epoch changed)');
      }
      if (entry.rev <= have) {
        this.position = entry.id;
        continue;
      }
      if (entry.rev > have + 1) return this.reloadInline(`gap in the change stream: at revision ${have}, next entry is ${entry.rev}`);
      const changes = entry.changes === undefined ? undefined : parseChanges(entry.changes, this.onInvalid, (kind) => this.unknownKind(kind));
      if (!changes) {
        this.metrics.invalid?.inc();
        this.logger.warn({ id: entry.id, revision: entry.rev }, 'unreadable change-stream entry');
        return this.reloadInline(`unreadable change-stream entry at revision ${entry.rev}`);
      }
      if (this.epoch === null && entry.epoch !== undefined) this.epoch = entry.epoch;
      this.state.applyChanges(changes, entry.rev);
      this.position = entry.id;
      this.metrics.revision?.set(entry.rev);
    }
  }

  private unknownKind(kind: string): void {
    this.metrics.unknownKind?.inc();
    if (this.unknownKindsLogged.size >= 16 || this.unknownKindsLogged.has(kind)) return;
    this.unknownKindsLogged.add(kind);
    this.logger.warn({ kind: kind.slice(0, 64) }, 'skipping changes of a registry kind this version does not know (a newer writer?); upgrade this component to act on them');
  }

  private async reloadInline(reason: string): Promise<void> {
    await this.loadSnapshot(reason);
    this.transition('following');
  }

  private markSynced(): void {
    this.lastSyncAt = Date.now();
    if (this.staleSince !== undefined) {
      const downtimeMs = this.lastSyncAt - this.staleSince;
      this.staleSince = undefined;
      this.logger.info({ downtimeMs, revision: this.state.revision }, 'registry reachable again; view is current');
      this.emit('recovered', downtimeMs);
    }
  }

  private noteFailure(err: Error): void {
    this.transition('disconnected');
    const now = Date.now();
    const fields = { err: err.message, url: describeRedis(this.url), revision: this.state.revision };
    if (this.staleSince === undefined) {
      this.staleSince = now;
      this.lastStaleLog = now;
      this.logger.warn(fields, 'registry unreachable; serving the last known state until it is back');
      this.emit('stale', err);
    } else if (now - this.lastStaleLog >= STILL_STALE_LOG_MS) {
      this.lastStaleLog = now;
      this.logger.warn({ ...fields, staleSeconds: Math.round(this.stalenessSeconds()) }, 'registry still unreachable');
    } else {
      this.logger.debug(fields, 'registry reconnect failed');
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = () => { this.wake = undefined; resolve(); };
      this.sleepTimer = setTimeout(() => { this.sleepTimer = undefined; this.wake?.(); }, ms);
    });
  }

  /** Rejects after `ms`; the loop then drops the connection, which settles the original call. */
  private async timed<T>(p: Promise<T>, ms: number): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        p,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer from Redis within ${ms} ms`)), ms);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  private must(c: Redis | undefined): Redis {
    if (!c) throw new Error('registry connection closed');
    return c;
  }
}

/** A MULTI's replies, throwing the first per-command error. */
function unwrap(replies: [Error | null, unknown][] | null): unknown[] {
  if (!replies) throw new Error('registry transaction aborted');
  return replies.map(([err, v]) => {
    if (err) throw err;
    return v;
  });
}
