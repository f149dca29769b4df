/**
 * The endpoint choice of one Service with a TrafficPolicy, as pure logic: round robin,
 * least request and peak EWMA (both power of two choices), and consistent hash (Ring or
 * Maglev, balance-hash.ts). Random and clock are injected, so tests replay a choice.
 *
 * The caller hands in the Service's current usable endpoints at each pick (the same
 * array object and elements while nothing changed: the check is an identity scan), and
 * tells the balancer when an attempt starts and how it ended; that is what least
 * request (requests in flight) and EWMA (latency) weigh. Per-endpoint facts are kept
 * by address and survive the endpoint leaving the list for a while (an ejection, or
 * outlier detection's half-open probe, which hands in the probed endpoint alone): they
 * are dropped only when the map grows past twice the longest list seen (+16), so it
 * stays bounded by the Service's size.
 */
import type { Clock } from '../lib/clock';
import { DEFAULT_MAGLEV_TABLE_SIZE, DEFAULT_MINIMUM_RING_SIZE, type BalancerType, type LoadBalancerSpec } from './balance-spec';
import { buildMaglev, buildRing, type HashTable } from './balance-hash';

/** Linkerd's defaults: an endpoint without a sample counts as 30 ms; the estimate decays with a 10 s time constant. */
export const EWMA_DEFAULT_RTT_MS = 30;
export const EWMA_DECAY_MS = 10_000;
/**
 * What a failed attempt (no response, or a 5xx) counts as in the EWMA, at least: a
 * fast failure must not look like a fast endpoint (the "black hole" that a pure
 * latency balancer sends everything to). Outlier detection ejects it for good.
 */
export const EWMA_FAILURE_PENALTY_MS = 1000;

export interface BalancerOptions {
  /** [0, 1); Math.random unless a test pins it. */
  random?: () => number;
  clock?: Pick<Clock, 'now'>;
  decayMs?: number;
  defaultRttMs?: number;
}

/** How an attempt ended, as the balancer weighs it; undefined: cancelled (says nothing of the endpoint). */
export interface AttemptSample {
  latencyMs: number;
  failed: boolean;
}

/** What the balancer knows of one endpoint (admin views and tests). */
export interface EndpointLoad {
  /** Attempts started and not yet ended. */
  pending: number;
  /** Peak-EWMA latency estimate, ms (undefined before the first sample). */
  rttMs: number | undefined;
  /** When rttMs was last updated or decayed (clock ms). */
  updatedAt: number;
}

export class EndpointBalancer<E> {
  readonly type: BalancerType;
  private readonly random: () => number;
  private readonly clock: Pick<Clock, 'now'>;
  private readonly decayMs: number;
  private readonly defaultRttMs: number;
  private readonly loads = new Map<string, EndpointLoad>();
  /** The candidate list last seen, its addresses sorted, and each candidate's index in it. */
  private seen: readonly E[] = [];
  private sorted: E[] = [];
  private sortedAddresses: string[] = [];
  private table: HashTable | undefined;
  /** The addresses `table` was built from (compared with sortedAddresses before a lookup). */
  private tableFor: readonly string[] = [];
  private cursor = 0;
  /** The ring's points per endpoint, kept across endpoint changes (see ringPointsPerHost). */
  private perHost = 0;
  /** The longest candidate list seen: the map's bound follows it, not a probe's list of one. */
  private largest = 0;

  constructor(private readonly spec: LoadBalancerSpec, private readonly addressOf: (e: E) => string, opts: BalancerOptions = {}) {
    this.type = spec.type;
    this.random = opts.random ?? Math.random;
    this.clock = opts.clock ?? { now: () => Date.now() };
    this.decayMs = opts.decayMs ?? EWMA_DECAY_MS;
    this.defaultRttMs = opts.defaultRttMs ?? EWMA_DEFAULT_RTT_MS;
  }

  /**
   * One of `candidates` (non-empty) for an attempt. `hash`: the request's key hash
   * (consistent hash; absent: a random endpoint, as Envoy does for a request without
   * the key). `avoid`: addresses already tried by this request, skipped while another
   * candidate is left.
   */
  pick(candidates: readonly E[], hash?: number, avoid?: readonly string[]): E {
    this.sync(candidates);
    const n = this.sorted.length;
    if (n === 1) return this.sorted[0]!;
    const skip = avoid && avoid.length > 0 ? this.skipper(avoid) : undefined;
    if (skip && this.sortedAddresses.every((_, i) => skip(i))) return this.pick(candidates, hash);
    switch (this.type) {
      case 'RoundRobin':
        return this.roundRobin(skip);
      case 'LeastRequest':
        return this.twoChoices(skip, (l) => l.pending);
      case 'EWMA':
        return this.twoChoices(skip, (l) => this.ewmaCost(l));
      case 'ConsistentHash': {
        const table = hash === undefined ? undefined : this.hashTable();
        if (hash === undefined || !table) return this.sorted[this.randomIndex(n, skip)]!;
        const i = skip ? table.lookupSkipping(hash, skip) : table.lookup(hash);
        return this.sorted[i ?? 0]!;
      }
    }
  }

  /** An attempt to `address` starts. */
  started(address: string): void {
    const l = this.loads.get(address);
    if (l) l.pending++;
  }

  /** The attempt to `address` ended; `sample` undefined when it was cancelled (downstream gone). */
  finished(address: string, sample: AttemptSample | undefined): void {
    const l = this.loads.get(address);
    if (!l) return;
    if (l.pending > 0) l.pending--;
    if (sample === undefined || this.type !== 'EWMA') return;
    const rtt = sample.failed ? Math.max(sample.latencyMs, EWMA_FAILURE_PENALTY_MS) : Math.max(0, sample.latencyMs);
    const now = this.clock.now();
    if (l.rttMs === undefined || rtt > l.rttMs) {
      // Peak: a slower response takes over the estimate at once.
      l.rttMs = rtt;
    } else {
      const decay = Math.exp(-Math.max(0, now - l.updatedAt) / this.decayMs);
      l.rttMs = l.rttMs * decay + rtt * (1 - decay);
    }
    l.updatedAt = now;
  }

  /** What is known of `address` (a copy), if it was a candidate lately. */
  load(address: string): EndpointLoad | undefined {
    const l = this.loads.get(address);
    return l && { ...l };
  }

  /** Every current candidate's load, by address order (the waypoint's admin view). */
  endpointLoads(): Array<{ address: string } & EndpointLoad> {
    return this.sortedAddresses.map((address) => ({ address, ...this.loads.get(address)! }));
  }

  /** Rebuilds the sorted list (and the hash table) when the candidates changed. */
  private sync(candidates: readonly E[]): void {
    if (candidates === this.seen) return;
    if (candidates.length === this.seen.length && candidates.every((c, i) => c === this.seen[i])) {
      this.seen = candidates;
      return;
    }
    const pairs = candidates.map((e) => ({ e, a: this.addressOf(e) })).sort((x, y) => (x.a < y.a ? -1 : x.a > y.a ? 1 : 0));
    const same = pairs.length === this.sortedAddresses.length && pairs.every((p, i) => p.a === this.sortedAddresses[i]);
    this.seen = candidates;
    this.sorted = pairs.map((p) => p.e);
    if (same) return;
    this.sortedAddresses = pairs.map((p) => p.a);
    for (const a of this.sortedAddresses) if (!this.loads.has(a)) this.loads.set(a, { pending: 0, rttMs: undefined, updatedAt: this.clock.now() });
    this.largest = Math.max(this.largest, this.sortedAddresses.length);
    if (this.loads.size > 2 * this.largest + 16) {
      const keep = new Set(this.sortedAddresses);
      for (const a of this.loads.keys()) if (!keep.has(a)) this.loads.delete(a);
    }
  }

  /**
   * The hash table for the current candidates, built when they differ from the last
   * build's (lazily: a one-endpoint list, such as a half-open probe's, never builds one,
   * and the full list after it finds its table still there).
   */
  private hashTable(): HashTable | undefined {
    const ch = this.spec.consistentHash;
    if (!ch) return undefined;
    if (this.tableFor === this.sortedAddresses && this.table) return this.table;
    const same = this.table !== undefined && this.tableFor.length === this.sortedAddresses.length && this.tableFor.every((a, i) => a === this.sortedAddresses[i]);
    if (!same) {
      if (ch.algorithm === 'Maglev') {
        this.table = buildMaglev(this.sortedAddresses, ch.tableSize ?? DEFAULT_MAGLEV_TABLE_SIZE);
      } else {
        this.perHost = ringPointsPerHost(this.perHost, this.sortedAddresses.length, ch.minimumRingSize ?? DEFAULT_MINIMUM_RING_SIZE);
        this.table = buildRing(this.sortedAddresses, this.perHost);
      }
    }
    this.tableFor = this.sortedAddresses;
    return this.table;
  }

  private skipper(avoid: readonly string[]): (i: number) => boolean {
    return (i) => avoid.includes(this.sortedAddresses[i]!);
  }

  private roundRobin(skip: ((i: number) => boolean) | undefined): E {
    const n = this.sorted.length;
    for (let k = 0; k < n; k++) {
      const i = this.cursor % n;
      // The cursor wraps well before it loses integer precision.
      this.cursor = (this.cursor + 1) % 1_000_000_007;
      if (!skip || !skip(i)) return this.sorted[i]!;
    }
    return this.sorted[0]!;
  }

  /** Power of two choices: two distinct random candidates, the cheaper wins (ties: the first drawn). */
  private twoChoices(skip: ((i: number) => boolean) | undefined, cost: (l: EndpointLoad) => number): E {
    const pool = skip ? this.sorted.map((_, i) => i).filter((i) => !skip(i)) : undefined;
    const n = pool ? pool.length : this.sorted.length;
    const at = (k: number) => (pool ? pool[k]! : k);
    if (n === 1) return this.sorted[at(0)]!;
    const a = Math.min(n - 1, Math.floor(this.random() * n));
    let b = Math.min(n - 2, Math.floor(this.random() * (n - 1)));
    if (b >= a) b++;
    const ia = at(a);
    const ib = at(b);
    const ca = cost(this.loads.get(this.sortedAddresses[ia]!)!);
    const cb = cost(this.loads.get(this.sortedAddresses[ib]!)!);
    return this.sorted[cb < ca ? ib : ia]!;
  }

  /**
   * Linkerd's (tower's) peak-EWMA cost: the latency estimate, decayed toward zero since
   * its last update (an endpoint that was slow a while ago gets tried again), times the
   * requests in flight plus one.
   */
  private ewmaCost(l: EndpointLoad): number {
    if (l.rttMs === undefined) return this.defaultRttMs * (l.pending + 1);
    const now = this.clock.now();
    const elapsed = now - l.updatedAt;
    if (elapsed > 0) {
      l.rttMs *= Math.exp(-elapsed / this.decayMs);
      l.updatedAt = now;
    }
    return l.rttMs * (l.pending + 1);
  }

  private randomIndex(n: number, skip: ((i: number) => boolean) | undefined): number {
    const first = Math.min(n - 1, Math.floor(this.random() * n));
    if (!skip) return first;
    for (let k = 0; k < n; k++) if (!skip((first + k) % n)) return (first + k) % n;
    return first;
  }
}

/**
 * Points per endpoint on the ring. Changing it moves keys between endpoints that stay,
 * so it is kept while the ring stays between half and four times minimumRingSize (one
 * of four endpoints leaving, or an ejection and return, moves only that endpoint's
 * keys); outside that band it is set afresh to minimumRingSize / endpoints.
 */
export function ringPointsPerHost(current: number, endpoints: number, minimumRingSize: number): number {
  const n = Math.max(1, endpoints);
  if (current > 0 && current * n >= minimumRingSize / 2 && current * n <= minimumRingSize * 4) return current;
  return Math.max(1, Math.ceil(minimumRingSize / n));
}
