import { realClock, type Clock } from '../lib/clock';
import type { Logger } from '../lib/log';
import { loadAddon, nativeFile } from '../lib/native';

/** native/memory.cc, if this machine built it. */
export interface NativeMemory {
  /** V8's full, compacting, shrinking collection. Pauses the event loop (~0.1 s after 4,000 connections). */
  lowMemoryNotification(): void;
  /** glibc malloc_trim(0); true when pages were released. */
  mallocTrim(): boolean;
}

export function loadNativeMemory(path = nativeFile('weft_memory.node')): NativeMemory | undefined {
  return loadAddon<NativeMemory>(path, ['lowMemoryNotification', 'mallocTrim']);
}

/**
 * A reclaim itself: V8's full, shrinking collection first, so the pages of the heap it
 * uncommits and the native buffers it frees are in malloc's free lists, then
 * malloc_trim to give them to the kernel. What the MemoryReclaimer does each time, and
 * bench/scale-follower once before its after-reclaim figure. Returns how long each took
 * (both pause the event loop).
 */
export function giveMemoryBack(native: NativeMemory): { gcMs: number; trimMs: number } {
  const t0 = process.hrtime.bigint();
  native.lowMemoryNotification();
  const t1 = process.hrtime.bigint();
  native.mallocTrim();
  const t2 = process.hrtime.bigint();
  return { gcMs: Number(t1 - t0) / 1e6, trimMs: Number(t2 - t1) / 1e6 };
}

export interface MemoryReclaimOptions {
  /** Live tracked connections now. */
  live: () => number;
  logger: Logger;
  /** undefined: load the native helper; null: none (the reclaimer then does nothing). */
  native?: NativeMemory | null;
  clock?: Clock;
  checkEveryMs?: number;
  /** A reclaim needs at least this many connections gone since the peak... */
  minDrop?: number;
  /** ...and the live count at most this fraction of the peak... */
  maxRemainingFraction?: number;
  /** ...and no reclaim for this long (the collection pauses the event loop). */
  minIntervalMs?: number;
  /** HBONE tunnels held now, dialled and accepted (about 0.6 MiB of native memory each while idle). */
  tunnels?: () => number;
  /** A drop of this many tunnels (to at most `maxRemainingFraction` of their peak) also reclaims. */
  minTunnelDrop?: number;
  /** RSS in bytes, for the log line. */
  rss?: () => number;
  /**
   * One reclaim this long after start(), whatever the counts. Loading the code and the
   * start-up work (snapshot, certificates) leave garbage, an enlarged young generation
   * and bytecode of functions that ran once, none of which a quiet ztunnel collects:
   * measured 68.5–69.2 → 65.0–65.2 MB idle RSS (docs/performance.md, "ztunnel memory"). Default: none.
   */
  afterStartMs?: number;
}

/**
 * Gives memory back after a large burst of connections has gone. Without it a quiet
 * ztunnel keeps its peak RSS (210 MiB after 10,000 connections, baseline 96 MiB): an
 * idle process allocates too little for V8 to run the full collections that free and
 * uncommit the dead connections' pages, and glibc keeps the freed native memory.
 * Runs when the live count has fallen by `minDrop` and to `maxRemainingFraction` of
 * its peak and has stopped falling (the burst is over, not half-way closing), and
 * again when the pooled tunnels the burst left fall the same way (the pool closes them
 * at its idle timeout, minutes later), at most once per `minIntervalMs`.
 */
export class MemoryReclaimer {
  private readonly clock: Clock;
  private readonly native: NativeMemory | undefined;
  private readonly checkEveryMs: number;
  private readonly minDrop: number;
  private readonly maxRemainingFraction: number;
  private readonly minIntervalMs: number;
  private readonly connections: Burst;
  private readonly tunnels: Burst | undefined;
  private lastReclaimAt = -Infinity;
  /** A registry snapshot was loaded again since the last reclaim (reloaded()). */
  private reloaded = false;
  private timer: unknown;
  private startTimer: unknown;
  private stopped = false;
  /** Reclaims done and the last one's cost, for tests and /config_dump. */
  readonly stats = { reclaims: 0, lastPauseMs: 0 };

  constructor(private readonly opts: MemoryReclaimOptions) {
    this.clock = opts.clock ?? realClock;
    this.native = opts.native === null ? undefined : (opts.native ?? loadNativeMemory());
    this.checkEveryMs = opts.checkEveryMs ?? 2000;
    this.minDrop = opts.minDrop ?? 1000;
    this.maxRemainingFraction = opts.maxRemainingFraction ?? 0.5;
    this.minIntervalMs = opts.minIntervalMs ?? 60_000;
    this.connections = new Burst(opts.live, this.minDrop, this.maxRemainingFraction);
    this.tunnels = opts.tunnels ? new Burst(opts.tunnels, opts.minTunnelDrop ?? 20, this.maxRemainingFraction) : undefined;
  }

  get available(): boolean {
    return this.native !== undefined;
  }

  start(): this {
    if (!this.native || this.stopped) return this;
    this.arm();
    if (this.opts.afterStartMs !== undefined) {
      this.startTimer = this.clock.setTimeout(() => {
        this.startTimer = undefined;
        if (this.stopped) return;
        // Not a burst's reclaim: it leaves the burst bookkeeping alone, so a burst under
        // way or just after still gets its own reclaim, without waiting out the interval.
        // A registry reload in the meantime is one reclaim, whichever comes first: not a
        // second pause (0.5–0.9 s at 100k workloads) a few seconds after the other.
        this.reloaded = false;
        if (this.stats.reclaims > 0) return;
        this.reclaim(this.connections.live, 'start-up over; memory given back');
      }, this.opts.afterStartMs);
    }
    return this;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    if (this.startTimer !== undefined) this.clock.clearTimeout(this.startTimer);
    this.timer = undefined;
    this.startTimer = undefined;
  }

  private arm(): void {
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      if (this.stopped) return;
      this.check();
      this.arm();
    }, this.checkEveryMs);
  }

  /**
   * The registry's whole snapshot was loaded again (a resync after the follower lost
   * its stream, a Redis failover): loading 100,000 workloads leaves ~90 MB of garbage
   * and freed malloc pages that a quiet ztunnel keeps (bench/ztunnel-registry-memory.js:
   * 373–375 MiB after a reload without this, ~145 with it). The next look reclaims, at
   * most once per `minIntervalMs` (the start-up reclaim does not count).
   */
  registryReloaded(): void {
    this.reloaded = true;
  }

  /**
   * One look at the live counts; reclaims when a burst of connections is over, when
   * the idle tunnels a burst left (closed by the pool's idle timeout later) are gone,
   * or after a registry reload. Returns whether it did.
   */
  check(): boolean {
    const over = this.connections.look();
    const tunnelsGone = this.tunnels?.look() ?? false;
    if (!this.native || !(over || tunnelsGone || this.reloaded)) return false;
    if (this.clock.now() - this.lastReclaimAt < this.minIntervalMs) return false;
    this.reclaim(this.connections.live, over || tunnelsGone ? 'connections burst over; memory given back' : 'registry snapshot reloaded; memory given back');
    this.reloaded = false;
    this.lastReclaimAt = this.clock.now();
    this.connections.reset();
    this.tunnels?.reset();
    return true;
  }

  private reclaim(live: number, msg: string): void {
    const rss = this.opts.rss ?? (() => process.memoryUsage.rss());
    const before = rss();
    const { gcMs, trimMs } = giveMemoryBack(this.native!);
    this.stats.reclaims++;
    this.stats.lastPauseMs = gcMs + trimMs;
    this.opts.logger.info({
      peakConnections: this.connections.peak, liveConnections: live, tunnels: this.tunnels?.live, rssBeforeBytes: before, rssAfterBytes: rss(),
      gcMs: Math.round(gcMs), trimMs: Math.round(trimMs),
    }, msg);
  }
}

/** A count's peak since the last reclaim, and whether it has fallen far and settled. */
class Burst {
  peak = 0;
  live = 0;
  constructor(private readonly read: () => number, private readonly minDrop: number, private readonly maxRemainingFraction: number) {}

  look(): boolean {
    const now = this.read();
    const falling = now < this.live;
    this.live = now;
    if (now > this.peak) this.peak = now;
    return !falling && this.peak - now >= this.minDrop && now <= this.peak * this.maxRemainingFraction;
  }

  reset(): void {
    this.peak = this.live;
  }
}
