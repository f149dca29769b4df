/**
 * What one HBONE peer may cost this ztunnel. A peer is an authenticated mesh member,
 * but any pod's identity can be stolen, so nothing a peer sends may grow memory, dials
 * or log lines without bound:
 *
 *   - streams: at most `maxStreamsPerConnection` per connection (advertised in
 *     SETTINGS; Istio's clients open another connection at 100);
 *   - parked bytes: a stream whose pod does not read keeps up to its HTTP/2 window
 *     plus the pipe's high-water mark in memory. Node consumes the connection-level
 *     window at once, so nghttp2 bounds nothing per connection: the session shares the
 *     stream window out instead (window-share.ts: SETTINGS_INITIAL_WINDOW_SIZE lowered
 *     as streams open, so up to ~23 streams may all stall within 16 MiB), and
 *     `ByteBudget` keeps the account, per connection and per node. A stream that
 *     stalls when the budget has no room for it (more streams than shares, a peer that
 *     does not acknowledge the lowered window) is reset (RST_STREAM), counted, never
 *     left parked; one that sends past its window is a flow-control error (nghttp2);
 *   - dials: a CONNECT reserves a pending-dial slot, per connection and per node, so
 *     rapid reset (CVE-2023-44487) cannot turn into a storm of TCP dials to pods;
 *   - floods: PING and SETTINGS frames beyond a rate end the session with GOAWAY
 *     (ENHANCE_YOUR_CALM) before nghttp2's own flood detection drops it silently;
 *   - sessions: concurrent TLS handshakes per node, and sessions per peer address;
 *     a session with no stream for `sessionIdleTimeoutMs` is closed.
 *
 * The numbers that nghttp2 enforces itself (header list pairs, SETTINGS entries,
 * invalid frames, rejected streams, session memory) are set explicitly in
 * `serverSessionOptions` so they are visible and tested, not Node's defaults by luck.
 */
import type * as http2 from 'node:http2';
import { boundedIntegers, localSettings, type HboneTuning } from './settings';
import { MAX_OUTSTANDING_SETTINGS } from './window-share';

export interface HboneLimits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS we advertise (Istio: 100). */
  maxStreamsPerConnection: number;
  /** Bytes the stalled streams of one connection may park (Istio's connection window: 16 MiB). */
  connectionBufferBytes: number;
  /** Bytes the stalled streams of all connections may park together. */
  nodeBufferBytes: number;
  /** CONNECTs of one connection waiting for their upstream dial. */
  maxPendingDialsPerConnection: number;
  /**
   * CONNECTs of one peer identity (all its connections) waiting for their dial: one
   * stolen identity dialling a port whose pod drops SYNs must not hold every slot of
   * the node for the connect timeout.
   */
  maxPendingDialsPerIdentity: number;
  /** CONNECTs of all connections waiting for their upstream dial. */
  maxPendingDials: number;
  /** TLS handshakes in progress at once (each costs public-key signatures and verifications). */
  maxHandshakes: number;
  /** Live HBONE sessions from one peer address (a node, or a pod dialling directly). */
  maxSessionsPerPeer: number;
  /** PING frames a peer may send: burst, refilled at this many per 10 s. */
  pingsPer10s: number;
  /** SETTINGS frames a peer may send: burst, refilled at this many per 10 s. */
  settingsPer10s: number;
  /** A session with no open stream this long is closed (GOAWAY NO_ERROR). Above the pool's 5 min idle. */
  sessionIdleTimeoutMs: number;
  /** Header fields in one request (nghttp2 refuses the stream beyond it). An HBONE CONNECT has ~6. */
  maxHeaderListPairs: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE: bytes of one decoded header list. */
  maxHeaderListBytes: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;

export const DEFAULT_HBONE_LIMITS: Readonly<HboneLimits> = Object.freeze({
  maxStreamsPerConnection: 100,
  connectionBufferBytes: 16 * MiB,
  nodeBufferBytes: 128 * MiB,
  maxPendingDialsPerConnection: 100,
  maxPendingDialsPerIdentity: 256,
  maxPendingDials: 1024,
  maxHandshakes: 256,
  maxSessionsPerPeer: 1024,
  pingsPer10s: 100,
  settingsPer10s: 100,
  sessionIdleTimeoutMs: 10 * 60_000,
  maxHeaderListPairs: 32,
  maxHeaderListBytes: 16 * KiB,
});

/** Smallest and largest value of each limit (the ztunnel flags that set one use these too). */
export const HBONE_LIMIT_BOUNDS: Record<keyof HboneLimits, [number, number]> = {
  maxStreamsPerConnection: [1, 10_000],
  connectionBufferBytes: [64 * KiB, 4096 * MiB],
  nodeBufferBytes: [64 * KiB, 65_536 * MiB],
  maxPendingDialsPerConnection: [1, 10_000],
  maxPendingDialsPerIdentity: [1, 1_000_000],
  maxPendingDials: [1, 1_000_000],
  maxHandshakes: [1, 100_000],
  maxSessionsPerPeer: [1, 1_000_000],
  pingsPer10s: [1, 100_000],
  settingsPer10s: [1, 100_000],
  sessionIdleTimeoutMs: [1000, 7 * 86_400_000],
  maxHeaderListPairs: [8, 1000],
  maxHeaderListBytes: [1 * KiB, 1 * MiB],
};

/** Merges `partial` over the defaults; a value out of range names its field. */
export function hboneLimits(partial: Partial<HboneLimits> = {}): Readonly<HboneLimits> {
  return boundedIntegers('HBONE limit', DEFAULT_HBONE_LIMITS, HBONE_LIMIT_BOUNDS, partial);
}

/** Why a limit refused or closed something: `weft_ztunnel_hbone_refused_total{reason}` (fixed set). */
export type RefusalReason =
  | 'buffer_budget'
  | 'pending_dials'
  | 'reset_before_dial'
  | 'handshakes'
  | 'sessions_per_peer'
  | 'ping_flood'
  | 'settings_flood'
  | 'idle_session';

/** The http2.createServer options of the HBONE server. */
export function serverSessionOptions(t: HboneTuning, l: HboneLimits): http2.ServerOptions {
  return {
    settings: localSettings(t, { maxConcurrentStreams: l.maxStreamsPerConnection, maxHeaderListSize: l.maxHeaderListBytes }),
    maxSessionMemory: t.maxSessionMemoryMb,
    maxHeaderListPairs: l.maxHeaderListPairs,
    // Entries in one SETTINGS frame: RFC 9113 defines 6 (+ a few extensions).
    maxSettings: 16,
    // Malformed frames before nghttp2 closes the session (Node's default is 1000).
    maxSessionInvalidFrames: 100,
    // Streams nghttp2 refused (over the stream limit, out of session memory) before it closes the session.
    maxSessionRejectedStreams: 100,
    // Our own keepalive never has more than one PING in flight.
    maxOutstandingPings: 2,
    // Node's default, set here because the shared stream window depends on it
    // (window-share.ts keeps fewer than this in flight). Node reads the option;
    // @types/node does not declare it.
    ...({ maxOutstandingSettings: MAX_OUTSTANDING_SETTINGS } as http2.ServerOptions),
  };
}

/**
 * A byte ledger with a limit, optionally inside a parent ledger (a connection's inside
 * the node's): taking succeeds only when every level has room.
 */
export class ByteBudget {
  used = 0;

  constructor(readonly limit: number, private readonly parent?: ByteBudget) {}

  tryTake(n: number): boolean {
    if (this.used + n > this.limit) return false;
    if (this.parent && !this.parent.tryTake(n)) return false;
    this.used += n;
    return true;
  }

  give(n: number): void {
    this.used -= n;
    this.parent?.give(n);
  }
}

/** Bytes a stalled direction may park: fixed, or evaluated at each stall (the window in force). */
export type StallSize = Record<'received' | 'sent', number | (() => number)>;

/**
 * The budget hook of one piped stream (PipeOptions.stall): a direction about to
 * pause reserves what it may still park (`reserve[direction]`), and gives it back when
 * it resumes or the pipe ends. A refused reservation means: reset instead of parking.
 * `refit` brings what is held to what the directions may park now: less when the
 * session's shared window dropped (window-share.ts), more when it grew, which fails,
 * holding what it held, when the budget has no room.
 */
export class StallReservation {
  private readonly held: Record<'received' | 'sent', number> = { received: 0, sent: 0 };

  constructor(private readonly budget: ByteBudget, private readonly reserve: StallSize, private readonly onRelease?: () => void) {}

  private size(direction: 'received' | 'sent'): number {
    const r = this.reserve[direction];
    return typeof r === 'number' ? r : r();
  }

  readonly stall = (direction: 'received' | 'sent', paused: boolean): boolean => {
    if (!paused) {
      this.budget.give(this.held[direction]);
      this.held[direction] = 0;
      return true;
    }
    if (this.held[direction] > 0) return true;
    const n = this.size(direction);
    if (!this.budget.tryTake(n)) return false;
    this.held[direction] = n;
    return true;
  };

  refit(): boolean {
    let ok = true;
    for (const direction of ['received', 'sent'] as const) {
      if (this.held[direction] === 0) continue;
      const delta = this.size(direction) - this.held[direction];
      if (delta < 0) this.budget.give(-delta);
      else if (delta > 0 && !this.budget.tryTake(delta)) {
        ok = false;
        continue;
      }
      this.held[direction] += delta;
    }
    return ok;
  }

  release(): void {
    this.budget.give(this.held.received + this.held.sent);
    this.held.received = 0;
    this.held.sent = 0;
    this.onRelease?.();
  }
}

/** Counts per key (peer address) with a cap; keys at zero are forgotten. */
export class KeyedCounter<K = string> {
  private readonly counts = new Map<K, number>();

  constructor(private readonly max: number) {}

  /** Is `key` at its cap (a check that takes nothing)? */
  full(key: K): boolean {
    return (this.counts.get(key) ?? 0) >= this.max;
  }

  tryAdd(key: K): boolean {
    const n = this.counts.get(key) ?? 0;
    if (n >= this.max) return false;
    this.counts.set(key, n + 1);
    return true;
  }

  /** Count of `key` now. */
  count(key: K): number {
    return this.counts.get(key) ?? 0;
  }

  remove(key: K): void {
    const n = (this.counts.get(key) ?? 0) - 1;
    if (n <= 0) this.counts.delete(key);
    else this.counts.set(key, n);
  }

  get size(): number {
    return this.counts.size;
  }
}

/** Which pending-dial limit refused a CONNECT. */
export type DialLimit = 'connection' | 'identity' | 'node';

/**
 * Pending-dial slots: a CONNECT holds one from its dial's start until it is piped or
 * refused, counted at once per connection (`session`), per peer identity and per
 * node. One place takes and gives back all three, so they cannot drift apart.
 */
export class DialSlots {
  private pendingOnNode = 0;
  private readonly bySession: KeyedCounter<object>;
  private readonly byIdentity: KeyedCounter;

  constructor(private readonly limits: Pick<HboneLimits, 'maxPendingDials' | 'maxPendingDialsPerIdentity' | 'maxPendingDialsPerConnection'>) {
    this.bySession = new KeyedCounter(limits.maxPendingDialsPerConnection);
    this.byIdentity = new KeyedCounter(limits.maxPendingDialsPerIdentity);
  }

  /** Takes a slot; undefined when taken, else the limit that refused (nothing taken then). */
  tryTake(session: object, identity: string): DialLimit | undefined {
    if (this.bySession.full(session)) return 'connection';
    if (this.pendingOnNode >= this.limits.maxPendingDials) return 'node';
    if (!this.byIdentity.tryAdd(identity)) return 'identity';
    this.bySession.tryAdd(session);
    this.pendingOnNode++;
    return undefined;
  }

  /** Gives back a slot `tryTake` gave. */
  release(session: object, identity: string): void {
    this.bySession.remove(session);
    this.byIdentity.remove(identity);
    this.pendingOnNode--;
  }

  /** CONNECTs waiting for their dial: on the node, and on `session`. */
  pending(session?: object): number {
    return session === undefined ? this.pendingOnNode : this.bySession.count(session);
  }

  /** What a refusal by `limit` tells the operator: which limit, and what to do. */
  refusal(limit: DialLimit, identity: string): string {
    const slow = 'the pods dialled are slow to accept or drop SYNs';
    switch (limit) {
      case 'connection':
        return `${this.limits.maxPendingDialsPerConnection} CONNECTs of this HBONE connection already wait for their dial (the per-connection limit): ${slow}; the peer retries the refused stream`;
      case 'identity':
        return `${this.limits.maxPendingDialsPerIdentity} CONNECTs of peer identity ${identity} already wait for their dial (the per-identity limit, so one identity cannot hold every slot of the node): ${slow}`;
      case 'node':
        return `${this.limits.maxPendingDials} HBONE CONNECTs already wait for their dial on this node: ${slow}; raise --hbone-max-pending-dials if this load is legitimate`;
    }
  }
}

/**
 * The node-wide half of the HBONE server's limits, built once per ztunnel and shared
 * by its HBONE servers (one per address family on a dual-stack node), so a "per node"
 * limit holds for the node, not per family.
 */
export class HboneNodeLimits {
  readonly limits: Readonly<HboneLimits>;
  /** Bytes all stalled streams park together (each session's budget sits inside it). */
  readonly budget: ByteBudget;
  readonly dials: DialSlots;
  /** Live sessions per peer address (a peer at its cap gets no TLS handshake either). */
  readonly peerSessions: KeyedCounter;
  /** TLS handshakes in progress on the node. */
  handshakes = 0;

  constructor(partial: Partial<HboneLimits> = {}) {
    const limits = hboneLimits(partial);
    // A connection can never park more than its node: with --workers a node's budget is
    // split (workers.ts workerShare) and can fall below one connection's. Capped here, once,
    // every user of the limits (a session's budget, its shared window) sees the same bound.
    this.limits = { ...limits, connectionBufferBytes: Math.min(limits.connectionBufferBytes, limits.nodeBufferBytes) };
    this.budget = new ByteBudget(this.limits.nodeBufferBytes);
    this.dials = new DialSlots(this.limits);
    this.peerSessions = new KeyedCounter(this.limits.maxSessionsPerPeer);
  }
}
