/**
 * Outlier detection for one Service's endpoints (TrafficPolicy `outlierDetection`,
 * outlier-spec.ts): passive health checking from the outcomes of real requests, as
 * Envoy's outlier detector. Pure: time from the injected Clock, no I/O; the waypoint
 * (src/waypoint/outlier-detectors.ts) turns its events into a log line and metrics.
 *
 * Each endpoint (keyed `ip:port`) is in one of three states, changed only by
 * transition():
 *   active   → ejected   consecutive5xxErrors 5xx answers in a row (connect failures,
 *                        resets and timeouts count as 5xx), consecutiveGatewayErrors
 *                        502/503/504 (or the same failures) in a row, or a success rate
 *                        below mean - stdevFactor x stdev at an interval's end;
 *                        refused while maxEjectionPercent of the endpoints are out
 *                        already (one may always be, if the percentage is above 0).
 *   ejected  → probing   its ejection time (base x times ejected, capped) has passed:
 *                        half-open, the NEXT request goes to it alone, as its probe.
 *   probing  → active    the probe succeeded (any status below 500);
 *            → ejected   it failed: ejected again, for one more multiple of the base.
 * The multiplier decays by one per interval spent active, as Envoy's does.
 *
 * If every endpoint would be left out (maxEjectionPercent 100), the full list is used:
 * sending to a suspect endpoint beats answering 503 with endpoints there (Envoy's panic).
 */
import type { Clock } from '../lib/clock';
import type { AttemptOutcome } from '../waypoint/types';
import { outlierTimes, type OutlierDetectionSpec, type OutlierTimes } from './outlier-spec';

export type EndpointHealth = 'active' | 'ejected' | 'probing';

export type EjectionReason = 'consecutive-5xx' | 'consecutive-gateway-errors' | 'success-rate' | 'probe-failed';
export const EJECTION_REASONS: readonly EjectionReason[] = ['consecutive-5xx', 'consecutive-gateway-errors', 'success-rate', 'probe-failed'];

/** Told to the waypoint on every ejection (a log line, a metric). */
export interface EjectionEvent {
  endpoint: string;
  reason: EjectionReason;
  /** Times ejected in a row (the multiplier of baseEjectionTime). */
  ejections: number;
  durationMs: number;
  /** When it may take its probe, epoch ms. */
  until: number;
  /** Endpoints out after this one, and endpoints known. */
  ejected: number;
  total: number;
}

export interface OutlierEvents {
  onEject?(e: EjectionEvent): void;
  /** A probe succeeded: the endpoint is back. */
  onReturn?(endpoint: string, ejectedForMs: number): void;
}

/** One endpoint as the admin view and `weft` show it. */
export interface EndpointHealthView {
  endpoint: string;
  state: EndpointHealth;
  ejections: number;
  consecutive5xx: number;
  consecutiveGatewayErrors: number;
  /** While ejected: when it gets its probe (ISO time). */
  until?: string;
  reason?: EjectionReason;
}

interface Endpoint {
  key: string;
  state: EndpointHealth;
  consecutive5xx: number;
  consecutiveGateway: number;
  ejections: number;
  ejectedAt: number;
  until: number;
  reason?: EjectionReason;
  /** probing: when its probe was handed out (undefined: not yet). */
  probeSince?: number;
  /** Requests and successes in the current interval (success-rate ejection). */
  total: number;
  ok: number;
  /** Was ever ejected or failed this interval: kept across evaluate(). */
  eventful: boolean;
  /** While out: when a candidate list last contained it (an endpoint gone from the Service is forgotten). */
  lastListed: number;
  /** When an outcome was last reported (an active endpoint idle past maxEjectionTime is forgotten). */
  lastReport: number;
}

function isGatewayError(o: AttemptOutcome): boolean {
  return o.failure !== undefined || o.status === 502 || o.status === 503 || o.status === 504;
}

function is5xx(o: AttemptOutcome): boolean {
  return o.failure !== undefined || (o.status !== undefined && o.status >= 500);
}

export class OutlierDetector {
  private readonly endpoints = new Map<string, Endpoint>();
  /** Endpoints in the last candidate list: the base of maxEjectionPercent. */
  private total = 0;
  private ejectedCount = 0;
  private timer: unknown;
  private closed = false;
  private readonly times: OutlierTimes;

  constructor(readonly spec: Readonly<OutlierDetectionSpec>, private readonly clock: Clock, private readonly events: OutlierEvents = {}) {
    this.times = outlierTimes(spec);
  }

  /**
   * The candidates without ejected endpoints: the same array when none is out (no
   * allocation). An endpoint whose ejection time passed is returned ALONE, once: the
   * request this list is for is its probe.
   */
  available<T>(list: readonly T[], keyOf: (t: T) => string): readonly T[] {
    this.total = list.length;
    if (this.ejectedCount === 0) return list;
    const now = this.clock.now();
    let out: T[] | undefined;
    for (let i = 0; i < list.length; i++) {
      const item = list[i]!;
      const e = this.endpoints.get(keyOf(item));
      if (e && e.state !== 'active') e.lastListed = now;
      if (e && e.state === 'ejected' && now >= e.until) this.transition(e, 'probing', now);
      if (e && e.state === 'probing' && (e.probeSince === undefined || now - e.probeSince > this.times.intervalMs)) {
        // Half-open: this request is the probe (a probe never answered within an interval is retried).
        e.probeSince = now;
        return [item];
      }
      const out0 = e !== undefined && e.state !== 'active';
      if (out0 && !out) out = list.slice(0, i);
      else if (!out0 && out) out.push(item);
    }
    if (!out) return list;
    return out.length > 0 ? out : list;
  }

  /** Whether `key` is out of the candidates now (for views and tests). */
  isEjected(key: string): boolean {
    const e = this.endpoints.get(key);
    return e !== undefined && e.state !== 'active';
  }

  /** One attempt's outcome at endpoint `key`. */
  report(key: string, o: AttemptOutcome): void {
    if (this.closed) return;
    const now = this.clock.now();
    let e = this.endpoints.get(key);
    if (!e) {
      e = { key, state: 'active', consecutive5xx: 0, consecutiveGateway: 0, ejections: 0, ejectedAt: 0, until: 0, total: 0, ok: 0, eventful: false, lastListed: 0, lastReport: now };
      this.endpoints.set(key, e);
      this.arm();
    }
    const bad5xx = is5xx(o);
    const badGateway = isGatewayError(o);
    e.total++;
    if (!bad5xx) e.ok++;
    e.lastReport = now;
    if (e.state === 'probing') {
      if (bad5xx) this.eject(e, 'probe-failed', now);
      else this.transition(e, 'active', now);
      return;
    }
    // An answer from an endpoint already out (a request sent before its ejection) changes nothing.
    if (e.state === 'ejected') return;
    if (!bad5xx) {
      e.consecutive5xx = 0;
      e.consecutiveGateway = 0;
      return;
    }
    e.eventful = true;
    e.consecutive5xx++;
    e.consecutiveGateway = badGateway ? e.consecutiveGateway + 1 : 0;
    const { consecutive5xxErrors: n5xx, consecutiveGatewayErrors: nGw } = this.spec;
    if (nGw > 0 && e.consecutiveGateway >= nGw) this.eject(e, 'consecutive-gateway-errors', now);
    else if (n5xx > 0 && e.consecutive5xx >= n5xx) this.eject(e, 'consecutive-5xx', now);
  }

  /**
   * An interval's end: success-rate ejection over the endpoints with enough requests,
   * then the counters start over and active endpoints' multipliers decay.
   */
  evaluate(): void {
    const now = this.clock.now();
    const sr = this.spec.successRate;
    if (sr) {
      const rated = [...this.endpoints.values()].filter((e) => e.state === 'active' && e.total >= sr.requestVolume);
      if (rated.length >= sr.minimumHosts) {
        const rates = rated.map((e) => (100 * e.ok) / e.total);
        const mean = rates.reduce((a, b) => a + b, 0) / rates.length;
        const stdev = Math.sqrt(rates.reduce((a, r) => a + (r - mean) ** 2, 0) / rates.length);
        const threshold = mean - sr.stdevFactor * stdev;
        // Worst first, so maxEjectionPercent keeps the worst out when it binds.
        const below = rated.map((e, i) => ({ e, rate: rates[i]! })).filter((x) => x.rate < threshold).sort((a, b) => a.rate - b.rate);
        for (const { e } of below) this.eject(e, 'success-rate', now);
      }
    }
    for (const e of [...this.endpoints.values()]) {
      if (e.state !== 'active' && now - e.until > this.times.intervalMs && now - e.lastListed > this.times.intervalMs) {
        // Out, its time over by an interval, and in no candidate list for as long: gone
        // from the Service (or idle); forgotten, so it no longer counts as out.
        this.ejectedCount--;
        this.endpoints.delete(e.key);
        continue;
      }
      if (e.state === 'active') {
        if (!e.eventful && e.ejections > 0) e.ejections--;
        // Nothing left to remember, or a streak of errors short of an ejection and then no
        // request for maxEjectionTime (the pod is gone: rollouts leave such streaks behind):
        // forgotten, so the map stays bounded by live endpoints and the timer stops.
        const idle = now - e.lastReport > this.times.maxEjectionTimeMs;
        if (e.ejections === 0 && (idle || (e.consecutive5xx === 0 && e.consecutiveGateway === 0))) this.endpoints.delete(e.key);
      }
      e.total = 0;
      e.ok = 0;
      e.eventful = e.state !== 'active';
    }
  }

  views(): EndpointHealthView[] {
    return [...this.endpoints.values()].map((e) => ({
      endpoint: e.key, state: e.state, ejections: e.ejections, consecutive5xx: e.consecutive5xx, consecutiveGatewayErrors: e.consecutiveGateway,
      ...(e.state !== 'active' ? { until: new Date(e.until).toISOString(), ...(e.reason ? { reason: e.reason } : {}) } : {}),
    })).sort((a, b) => (a.endpoint < b.endpoint ? -1 : a.endpoint > b.endpoint ? 1 : 0));
  }

  /** Endpoints out now (ejected or waiting for their probe's answer). */
  get ejected(): number {
    return this.ejectedCount;
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }

  private eject(e: Endpoint, reason: EjectionReason, now: number): void {
    const max = this.spec.maxEjectionPercent;
    // The one already out (a failed probe) does not count against itself.
    const others = e.state === 'active' ? this.ejectedCount : this.ejectedCount - 1;
    const total = Math.max(this.total, others + 1);
    if (max === 0 || (others > 0 && (others + 1) * 100 > max * total)) return;
    e.ejections++;
    e.reason = reason;
    const durationMs = Math.min(this.times.baseEjectionTimeMs * e.ejections, this.times.maxEjectionTimeMs);
    e.ejectedAt = e.state === 'active' ? now : e.ejectedAt;
    e.until = now + durationMs;
    e.lastListed = now;
    this.transition(e, 'ejected', now);
    this.events.onEject?.({ endpoint: e.key, reason, ejections: e.ejections, durationMs, until: e.until, ejected: this.ejectedCount, total });
  }

  /** The one place an endpoint changes state (and the count of those out follows). */
  private transition(e: Endpoint, to: EndpointHealth, now: number): void {
    const wasOut = e.state !== 'active';
    e.state = to;
    e.probeSince = undefined;
    e.consecutive5xx = 0;
    e.consecutiveGateway = 0;
    e.eventful = true;
    const isOut = to !== 'active';
    if (wasOut && !isOut) {
      this.ejectedCount--;
      this.events.onReturn?.(e.key, now - e.ejectedAt);
    } else if (!wasOut && isOut) {
      this.ejectedCount++;
    }
  }

  /** The interval timer runs while any endpoint is remembered. */
  private arm(): void {
    if (this.timer !== undefined || this.closed) return;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.evaluate();
      if (this.endpoints.size > 0) this.arm();
    }, this.times.intervalMs);
  }
}
