/**
 * Retry delays, shared by every retry loop (certificate manager, registry follower,
 * the waypoint's request retries).
 *
 * Delay after `failures` consecutive failures (1 = first): `initialMs` doubling up to
 * `maxMs`, jittered so processes that failed together (every node when Redis or the
 * CA went away) do not come back together.
 *
 * - `around` (default): ±20 % around the step, clamped to the cap. Istio's ztunnel
 *   shape, for the certificate manager's 0.5 s → 150 s.
 * - `below`: between half the step and the step, so the cap is a hard bound and the
 *   spread at the cap is wide (a short cap, where ±20 % would bunch retries at it).
 * - `full`: anywhere from 0 to the step ("full jitter", as Envoy and gRPC retry requests:
 *   the retries of many clients that failed at the same moment spread over the whole
 *   interval instead of arriving in waves; AWS's analysis found it the cheapest in total work).
 */
export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
  jitter?: 'around' | 'below' | 'full';
}

export function backoffDelay(failures: number, opts: BackoffOptions = {}, random: () => number = Math.random): number {
  const initial = opts.initialMs ?? 500;
  const max = opts.maxMs ?? 150_000;
  const base = Math.min(max, initial * 2 ** Math.min(Math.max(0, failures - 1), 30));
  const factor = opts.jitter === 'full' ? random() : opts.jitter === 'below' ? 0.5 + 0.5 * random() : 0.8 + 0.4 * random();
  return Math.min(max, Math.round(base * factor));
}
