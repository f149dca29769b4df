/**
 * Access-log volume (--access-log-sampling, --access-log-levels): which finished
 * requests (waypoint `access` lines) and connections (ztunnel `connection complete`
 * lines) are written, so a busy proxy's log stays bounded under load while every line
 * that explains a failure is kept.
 *
 * A namespace set to `off` writes no line (the destination's namespace decides, else
 * the source's). Otherwise failures are always written, and so are lines of sampled
 * traces (a trace a user finds in `weft traces` has its log lines); of the rest, the
 * sampling share is written. Lines left out are counted
 * (weft_access_log_dropped_total{reason="sampling"|"level"}), so a log reader can tell
 * how many requests a sampled log stands for.
 */
import { Counter, type Registry } from 'prom-client';
import type { AccessLogLevels } from './options';

export interface AccessLogOptions {
  /** Share of successful lines written, in [0, 1]. */
  sampling: number;
  levels: AccessLogLevels;
  registry?: Registry;
  /** [0, 1) for the sampling draw (tests). */
  random?: () => number;
}

/** What decides one line. */
export interface AccessLogFacts {
  /** The request or connection failed (a 5xx, a response flag, a refusal): always written. */
  failed: boolean;
  /** Its trace is sampled: always written. */
  traceSampled: boolean;
  /** The destination's namespace, when known. */
  destinationNamespace: string | undefined;
  /** The source's namespace; asked only when per-namespace levels are set and the destination's is unknown. */
  sourceNamespace: () => string | undefined;
}

export type AccessLogDrop = 'sampling' | 'level';

export class AccessLogPolicy {
  /** False when every line is written (sampling 1, no levels): callers skip the facts altogether. */
  readonly filtering: boolean;
  private readonly sampling: number;
  private readonly levels: AccessLogLevels;
  private readonly hasLevels: boolean;
  private readonly random: () => number;
  /** The counter's two series, bound once (a labelled inc() hashes its labels every time). */
  private readonly dropped: Record<AccessLogDrop, { inc(): void }> | undefined;

  constructor(options: AccessLogOptions) {
    this.sampling = options.sampling;
    this.levels = options.levels;
    this.hasLevels = Object.keys(options.levels).length > 0;
    this.filtering = this.sampling < 1 || this.hasLevels;
    this.random = options.random ?? Math.random;
    if (options.registry) {
      const counter = new Counter({
        name: 'weft_access_log_dropped_total', registers: [options.registry], labelNames: ['reason'],
        help: 'Access-log lines not written: reason="sampling" (a successful line left out by --access-log-sampling), "level" (its namespace is off in --access-log-levels).',
      });
      this.dropped = { sampling: counter.labels({ reason: 'sampling' }), level: counter.labels({ reason: 'level' }) };
    }
  }

  /** Whether to write the line; counts the ones left out. */
  keep(facts: AccessLogFacts): boolean {
    const drop = this.filtering ? this.decide(facts) : undefined;
    if (drop === undefined) return true;
    this.dropped?.[drop].inc();
    return false;
  }

  /** Why the line is left out, or undefined to write it (pure but for the sampling draw). */
  decide(facts: AccessLogFacts): AccessLogDrop | undefined {
    if (this.hasLevels) {
      const ns = facts.destinationNamespace ?? facts.sourceNamespace();
      if (ns !== undefined && this.levels[ns] === 'off') return 'level';
    }
    if (facts.failed || facts.traceSampled || this.sampling >= 1) return undefined;
    return this.random() < this.sampling ? undefined : 'sampling';
  }
}
