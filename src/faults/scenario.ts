/** What every fault scenario reports, and how long the two forms of the suite run. */
import type { FaultLab, Flow } from './lab';

export interface Row {
  scenario: string;
  goal: string;
  measured: string;
  /** 'n/a': reported elsewhere (no measurement made here). */
  verdict: 'PASS' | 'FAIL' | 'n/a';
  /**
   * The goal without its time limits (nothing failed or leaked, it recovered at all).
   * Tests assert this one only (no test asserts a timing); the table judges both.
   */
  functional: boolean;
}

export interface Durations {
  name: 'full' | 'short';
  /** Steady flows per second per target during a scenario. */
  rate: number;
  warmMs: number;
  redisDownMs: number;
  caDownMs: number;
  /** Certificate lifetime asked for in the rotation scenario (the minimum the ztunnel accepts is 60 s). */
  rotationTtl: string;
  rotationMs: number;
  /**
   * When set, rotation ends this long after every workload certificate has rotated at
   * least once (at most rotationMs): with short lifetimes that is the goal's evidence, and
   * the rest of a fixed window is waiting. Unset: rotation runs rotationMs whole.
   */
  rotationTailMs?: number;
  killGapMs: number;
  heldConnections: number;
  holdMs: number;
  /**
   * How long the held-connections scenario gives memory to come back after they close.
   * The full form waits past the pool's 5-minute idle release: until then the idle
   * HBONE tunnels the burst opened are a cache still in use (about 0.6 MiB each), not
   * memory the ztunnel failed to return. It stops waiting as soon as RSS is back.
   */
  settleMs: number;
  /**
   * Environment for `weft lab up` (its components inherit it). The short form brings the
   * ztunnels up with short certificate lifetimes, so rotation needs no restart; the
   * full form keeps the default (a 10-minute CA outage must not outlive certificates).
   */
  labEnv: Record<string, string>;
}

export const FULL: Durations = {
  name: 'full', rate: 20, warmMs: 2000, redisDownMs: 60_000, caDownMs: 600_000, rotationTtl: '60s', rotationMs: 300_000,
  killGapMs: 3000, heldConnections: 10_000, holdMs: 600_000, settleMs: 360_000, labEnv: {},
};

export const SHORT: Durations = {
  name: 'short', rate: 10, warmMs: 1000, redisDownMs: 8000, caDownMs: 10_000, rotationTtl: '60s', rotationMs: 35_000, rotationTailMs: 3000,
  killGapMs: 2000, heldConnections: 1000, holdMs: 10_000, settleMs: 5000, labEnv: { WEFT_CERT_TTL: '60s' },
};

export type Scenario = (lab: FaultLab, d: Durations) => Promise<Row>;

/** Verdict fields of a row: `functional` is what must hold at any speed, `timely` the time limits of the goal. */
export function verdict(functional: boolean, timely = true): { verdict: 'PASS' | 'FAIL'; functional: boolean } {
  return { verdict: functional && timely ? 'PASS' : 'FAIL', functional };
}

export interface FlowSummary {
  total: number;
  failed: number;
  /** Flows the echo app saw coming from the client pod itself: they skipped the ztunnels. */
  plaintext: number;
  errors: string[];
}

/** Flows started in [from, to) (all when omitted). */
export function summarize(flows: Flow[], clientIp: string, from = -Infinity, to = Infinity): FlowSummary {
  const inWindow = flows.filter((f) => f.start >= from && f.start < to);
  const failed = inWindow.filter((f) => !f.ok);
  return {
    total: inWindow.length,
    failed: failed.length,
    plaintext: inWindow.filter((f) => f.ok && f.peer?.startsWith(`${clientIp}:`)).length,
    errors: [...new Set(failed.map((f) => f.err ?? '?'))].slice(0, 4),
  };
}

/**
 * How long after `from` flows became good for good: the start of the first flow after
 * which every flow started succeeded, minus `from`. Infinity when the last one failed.
 */
export function recoveryMs(flows: Flow[], from: number): number {
  const after = flows.filter((f) => f.start >= from).sort((a, b) => a.start - b.start);
  if (after.length === 0) return Infinity;
  let firstGood = Infinity;
  for (let i = after.length - 1; i >= 0; i--) {
    if (!after[i]!.ok) break;
    firstGood = after[i]!.start;
  }
  return firstGood === Infinity ? Infinity : Math.max(0, firstGood - from);
}


export function secs(ms: number): string {
  return ms >= 10_000 ? `${Math.round(ms / 1000)} s` : `${(ms / 1000).toFixed(1)} s`;
}
