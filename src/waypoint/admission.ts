/**
 * Admission at the waypoint: what a Service's TrafficPolicy says about a request the
 * router has planned to forward, before any upstream work: fault injection (abort `FI`,
 * delay `DI`), the local rate limit (429 + retry-after, `RL`) and adaptive concurrency
 * shedding (503, `SH`). gRPC requests get the gRPC form of each answer (trailers-only,
 * grpc-status in the head).
 *
 * Order, as Envoy's filter chain has them: faults first (an abort costs nothing else;
 * a delayed request is not yet at the backend, so it takes neither a token nor a
 * concurrency slot while it waits), then the rate limit, then the concurrency limit (a
 * rate-limited request never holds a slot).
 *
 * Per-Service state (buckets, limiter) lives in a ServiceGate, made on the Service's
 * first request and made anew when its policy changes (the lookup hands out a new spec
 * object then). A request to a Service without a policy costs one lookup.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Clock } from '../lib/clock';
import { FaultInjector } from '../resilience/fault';
import type { FaultAbortSpec } from '../resilience/fault-spec';
import { ServiceRateLimit } from '../resilience/rate-limit';
import { AdaptiveLimiter, type LimiterView } from '../resilience/shedding';
import type { TrafficPolicySpec } from '../resilience/spec';
import { GRPC, grpcFromHttp, grpcTrailersOnly, httpFromGrpc } from './grpc-status';
import { PerService } from './per-service';
import type { DestinationService, RequestFacts, ResponseFlag } from './types';

/** The TrafficPolicy lookup the waypoint keeps (traffic-policies.ts TrafficPolicies). */
export interface TrafficPolicyLookup {
  forService(namespace: string, name: string): TrafficPolicySpec | undefined;
}

/** What admission did, as counted (a bounded label). */
export const ADMISSION_ACTIONS = ['fault_abort', 'fault_delay', 'rate_limited', 'shed'] as const;
export type AdmissionAction = (typeof ADMISSION_ACTIONS)[number];

/** A local answer instead of forwarding. */
export interface Refusal {
  kind: 'refuse';
  status: number;
  headers: Record<string, string>;
  body: string;
  flag: ResponseFlag;
  /** Set for the gRPC form (for the access log and metrics). */
  grpcStatus?: string;
}

/** Admitted: forward, then call done() once when the request has finished. */
export interface Admitted {
  kind: 'admit';
  /** The request waited for an injected delay (flag `DI` unless another flag says more). */
  delayed: boolean;
  /**
   * Gives the concurrency slot back. `latencyMs`: the backend's answer time, from
   * sampleLatency(); undefined when the request never got an answer that says anything
   * about the backend's load.
   */
  done(latencyMs: number | undefined): void;
}

/** The client went away while the request was delayed: nothing to answer. */
export interface Gone {
  kind: 'gone';
}

export type AdmissionResult = Refusal | Admitted | Gone;

/** One Service's admission state, as the admin view and `weft admission` show it. */
export interface AdmissionView {
  namespace: string;
  name: string;
  faults: boolean;
  rateLimit: boolean;
  /** Requests per action since this policy version took effect at this waypoint pod. */
  counts: Record<AdmissionAction, number>;
  /** Buckets kept (1 for key: Service). */
  rateLimitBuckets?: number;
  concurrency?: LimiterView;
}

const NOTHING_HELD = (): void => {};

export class AdmissionMetrics {
  readonly actions: Counter<'destination_service_namespace' | 'destination_service_name' | 'action'>;
  readonly limit: Gauge<'destination_service_namespace' | 'destination_service_name'>;
  readonly inFlight: Gauge<'destination_service_namespace' | 'destination_service_name'>;

  constructor(registry: Registry, gates: () => Iterable<ServiceGate>) {
    const labelNames = ['destination_service_namespace', 'destination_service_name'] as const;
    const registers = [registry];
    this.actions = new Counter({
      name: 'weft_waypoint_admission_total', help: 'Requests refused or delayed by a TrafficPolicy at admission, by action (fault_abort, fault_delay, rate_limited, shed).',
      labelNames: [...labelNames, 'action'], registers,
    });
    // Read at scrape time from the live gates: a gone Service's series go with its gate.
    const gauge = (name: string, help: string, read: (l: AdaptiveLimiter) => number) => new Gauge({
      name, help, labelNames, registers,
      collect() {
        this.reset();
        for (const g of gates()) {
          if (g.limiter) this.set({ destination_service_namespace: g.namespace, destination_service_name: g.name }, read(g.limiter));
        }
      },
    });
    this.limit = gauge('weft_waypoint_concurrency_limit', 'The adaptive concurrency limit of a Service with loadShedding.', (l) => l.limit);
    this.inFlight = gauge('weft_waypoint_concurrency_in_flight', 'Requests holding a concurrency slot of a Service with loadShedding.', (l) => l.inFlight);
  }

  count(gate: ServiceGate, action: AdmissionAction): void {
    this.actions.inc({ destination_service_namespace: gate.namespace, destination_service_name: gate.name, action });
  }

  /** Drops the counter series of a Service whose policy is gone. */
  forget(namespace: string, name: string): void {
    for (const action of ADMISSION_ACTIONS) this.actions.remove({ destination_service_namespace: namespace, destination_service_name: name, action });
  }
}

/** The admission state of one Service under one version of its policy. */
export class ServiceGate {
  readonly faults: FaultInjector | undefined;
  readonly rate: ServiceRateLimit | undefined;
  readonly limiter: AdaptiveLimiter | undefined;
  /** Per action, since this gate was made (the admin view; the metric is the counter to alert on). */
  readonly counts: Record<AdmissionAction, number> = { fault_abort: 0, fault_delay: 0, rate_limited: 0, shed: 0 };

  constructor(readonly namespace: string, readonly name: string, readonly spec: TrafficPolicySpec, clock: Clock, random: () => number) {
    this.faults = spec.faults ? new FaultInjector(spec.faults, random) : undefined;
    this.rate = spec.rateLimit ? new ServiceRateLimit(spec.rateLimit, clock) : undefined;
    this.limiter = spec.loadShedding ? new AdaptiveLimiter(spec.loadShedding, clock, random) : undefined;
  }
}

export interface AdmissionOptions {
  policies: TrafficPolicyLookup;
  clock: Clock;
  /** [0, 1): fault percentages and minRTT jitter. */
  random?: () => number;
  metrics?: Registry;
}

export class Admission {
  /** Keyed by the policy object: a new version of the policy (any section) is a new gate. */
  private readonly gates: PerService<TrafficPolicySpec, ServiceGate>;
  private readonly random: () => number;
  private readonly metrics: AdmissionMetrics | undefined;

  constructor(private readonly opts: AdmissionOptions) {
    this.random = opts.random ?? Math.random;
    this.gates = new PerService({
      // First request under this policy version: a new gate (fresh buckets and limiter), and
      // gates whose policy went away are dropped, so they stay bounded by the Services with one.
      make: (namespace, name, spec) => {
        this.prune();
        return new ServiceGate(namespace, name, spec, opts.clock, this.random);
      },
      same: () => false,
      drop: (_gate, namespace, name) => this.metrics?.forget(namespace, name),
    });
    this.metrics = opts.metrics ? new AdmissionMetrics(opts.metrics, () => this.live()) : undefined;
  }

  /**
   * The gate of the Service a request was addressed to, or undefined when its policy
   * (if any) has nothing for admission: then the request costs this one lookup.
   */
  gate(service: DestinationService | undefined): ServiceGate | undefined {
    if (service === undefined) return undefined;
    const spec = this.opts.policies.forService(service.namespace, service.name);
    if (spec === undefined || (spec.faults === undefined && spec.rateLimit === undefined && spec.loadShedding === undefined)) return undefined;
    return this.gates.get(service.namespace, service.name, spec);
  }

  /** Faults, rate limit and concurrency limit for one request, in that order. */
  async admit(gate: ServiceGate, facts: RequestFacts, grpc: boolean, gone: AbortSignal): Promise<AdmissionResult> {
    let delayed = false;
    if (gate.faults) {
      const fault = gate.faults.decide(facts.headers);
      if (fault.delayMs > 0) {
        this.count(gate, 'fault_delay');
        if (!(await this.sleep(fault.delayMs, gone))) return { kind: 'gone' };
        delayed = true;
      }
      if (fault.abort) {
        this.count(gate, 'fault_abort');
        return abortAnswer(fault.abort, grpc);
      }
    }
    if (gate.rate) {
      const r = gate.rate.take(facts.source.identity, facts.headers);
      if (!r.ok) {
        this.count(gate, 'rate_limited');
        return rateLimitAnswer(r.retryAfterSeconds, grpc, gate);
      }
    }
    const limiter = gate.limiter;
    if (!limiter) return { kind: 'admit', delayed, done: NOTHING_HELD };
    if (!limiter.tryAcquire(limiter.priorityOf(facts.headers))) {
      this.count(gate, 'shed');
      return shedAnswer(grpc, gate);
    }
    const startedAt = this.opts.clock.now();
    let held = true;
    return {
      kind: 'admit', delayed,
      done: (latencyMs) => {
        if (!held) return;
        held = false;
        limiter.release(startedAt, latencyMs);
      },
    };
  }

  /** Gates in use now (for metrics and the admin view). */
  *live(): Iterable<ServiceGate> {
    this.prune();
    for (const e of this.gates.entries()) yield e.state;
  }

  /** Each Service's admission state, for the waypoint's admin view (`/admission`). */
  views(): AdmissionView[] {
    return [...this.live()].map((g) => ({
      namespace: g.namespace, name: g.name,
      faults: g.faults !== undefined, rateLimit: g.rate !== undefined, counts: { ...g.counts },
      ...(g.rate ? { rateLimitBuckets: g.rate.buckets } : {}),
      ...(g.limiter ? { concurrency: g.limiter.view() } : {}),
    }));
  }

  /** Drops gates whose Service has no policy now, or a newer one (also called when the policies change). */
  prune(): void {
    this.gates.prune((namespace, name) => this.opts.policies.forService(namespace, name));
  }

  private count(gate: ServiceGate, action: AdmissionAction): void {
    gate.counts[action]++;
    this.metrics?.count(gate, action);
  }

  /** Waits `ms` on the clock; false when the client went away first. */
  private sleep(ms: number, gone: AbortSignal): Promise<boolean> {
    if (gone.aborted) return Promise.resolve(false);
    const clock = this.opts.clock;
    return new Promise((resolve) => {
      const onGone = () => {
        clock.clearTimeout(timer);
        resolve(false);
      };
      const timer = clock.setTimeout(() => {
        gone.removeEventListener('abort', onGone);
        resolve(true);
      }, ms);
      gone.addEventListener('abort', onGone, { once: true });
    });
  }
}

/**
 * The latency sample of a finished request for the concurrency limiter: the time to
 * the upstream's answer when there was one (a 5xx answered fast says nothing of the
 * queue and is left out) or to a timeout (the strongest sign of a queue).
 */
export function sampleLatency(status: number | undefined, local: boolean, ms: number): number | undefined {
  if (status === undefined) return undefined;
  if (local) return status === 504 ? ms : undefined;
  return status < 500 ? ms : undefined;
}

function local(status: number, flag: ResponseFlag, grpc: boolean, grpcCode: number, message: string, headers: Record<string, string> = {}): Refusal {
  if (grpc) return { kind: 'refuse', status: 200, headers: { ...headers, ...grpcTrailersOnly(grpcCode, message) }, body: '', flag, grpcStatus: String(grpcCode) };
  return { kind: 'refuse', status, headers, body: `${message}\n`, flag };
}

function abortAnswer(abort: FaultAbortSpec, grpc: boolean): Refusal {
  const message = 'fault filter abort';
  if (abort.grpcStatus !== undefined) return local(httpFromGrpc(abort.grpcStatus), 'FI', grpc, abort.grpcStatus, message);
  return local(abort.httpStatus!, 'FI', grpc, grpcFromHttp(abort.httpStatus!), message);
}

function rateLimitAnswer(retryAfterSeconds: number, grpc: boolean, gate: ServiceGate): Refusal {
  const headers: Record<string, string> = { 'retry-after': String(retryAfterSeconds) };
  // gRPC's retry pushback: a client's retry policy waits this long (or not at all if absent).
  if (grpc) headers['grpc-retry-pushback-ms'] = String(retryAfterSeconds * 1000);
  return local(429, 'RL', grpc, GRPC.RESOURCE_EXHAUSTED,
    `local rate limit of ${gate.namespace}/${gate.name} exceeded (TrafficPolicy rateLimit); retry after ${retryAfterSeconds}s`, headers);
}

function shedAnswer(grpc: boolean, gate: ServiceGate): Refusal {
  return local(503, 'SH', grpc, GRPC.UNAVAILABLE,
    `${gate.namespace}/${gate.name} is at its adaptive concurrency limit (TrafficPolicy loadShedding); retry later`);
}
