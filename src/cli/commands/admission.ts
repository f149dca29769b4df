/**
 * `weft admission`: what each waypoint's admission does to the Services it serves under a
 * TrafficPolicy with `faults`, `rateLimit` or `loadShedding`: per Service and waypoint
 * pod, the requests aborted, delayed, rate limited and shed since the policy version took
 * effect there, the rate-limit buckets kept, and the adaptive concurrency limit with its
 * requests in flight and measured minRTT. Read from every ready waypoint pod's read-only
 * view (`GET /admission` on its metrics port, 15020); each pod limits on its own.
 */
import { loadContext } from '../context';
import { defineCommand, noPositionals } from '../io';
import { show, type Frame } from '../output';
import { byKey, namespaceOption, registryViewOptions, scopeText } from '../registry-command';
import { withRegistry } from '../registry-session';
import { askWaypointPods } from '../waypoint-views';
import type { MeshState } from '../../registry/state';
import type { AdmissionView } from '../../waypoint/admission';

export interface AdmissionItem extends AdmissionView {
  /** `namespace/name` of the waypoint and the pod that answered. */
  waypoint: string;
  pod: string;
}

function check(data: unknown): string | undefined {
  return Array.isArray(data) && data.every((x) => typeof x === 'object' && x !== null && typeof (x as { counts?: unknown }).counts === 'object')
    ? undefined : 'expected a list of { namespace, name, counts, ... }';
}

export async function admissionFrame(state: MeshState, f: { namespace: string }, port?: number): Promise<Frame> {
  const { pods, answers, warnings } = await askWaypointPods<AdmissionView>(state, f.namespace, '/admission', check, port);
  const items: AdmissionItem[] = [];
  for (const { pod, items: views } of answers) {
    for (const v of views) if (!f.namespace || v.namespace === f.namespace) items.push({ ...v, waypoint: pod.waypoint, pod: pod.pod });
  }
  items.sort(byKey((i) => `${i.namespace}\u0000${i.name}\u0000${i.waypoint}\u0000${i.pod}`));
  const sections = (i: AdmissionItem) => [i.faults ? 'faults' : '', i.rateLimit ? 'rateLimit' : '', i.concurrency ? 'loadShedding' : ''].filter(Boolean).join(',');
  const rows = items.map((i) => [
    `${i.namespace}/${i.name}`, sections(i), String(i.counts.fault_abort), String(i.counts.fault_delay), String(i.counts.rate_limited), String(i.counts.shed),
    i.rateLimitBuckets !== undefined ? String(i.rateLimitBuckets) : '-',
    i.concurrency ? `${i.concurrency.inFlight}/${i.concurrency.limit}${i.concurrency.measuring ? ' (measuring minRTT)' : ''}` : '-',
    i.concurrency?.minRttMs !== undefined ? `${i.concurrency.minRttMs.toFixed(1)}ms` : '-',
    `${i.waypoint}/${i.pod}`,
  ]);
  return {
    table: { headers: ['SERVICE', 'SECTIONS', 'ABORTED', 'DELAYED', 'RATE LIMITED', 'SHED', 'BUCKETS', 'IN FLIGHT/LIMIT', 'MIN RTT', 'WAYPOINT/POD'], rows },
    data: { items },
    warnings,
    empty: pods.length === 0
      ? `No ready waypoint pods${scopeText(f)}; admission runs in waypoints (weft waypoints).`
      : answers.length === 0
        ? `No waypoint pod${scopeText(f)} gave its admission state (see the warnings).`
        : `No Service has had a request under faults, rateLimit or loadShedding${scopeText(f)} (weft trafficpolicies lists the policies).`,
    exitCode: pods.length > 0 && warnings.length === pods.length ? 1 : 0,
  };
}

const USAGE = 'weft admission [-n NAMESPACE] [-o table|json|yaml] [-w]';

export default defineCommand({
  usage: USAGE,
  summary: 'fault injection, rate limits and load shedding at the waypoints: counts, buckets, concurrency limit',
  description: 'Each ready waypoint pod is asked for its admission state (GET /admission on its metrics port): per\n'
    + 'Service with a TrafficPolicy faults / rateLimit / loadShedding section, the requests aborted, delayed,\n'
    + 'rate limited and shed since the policy version took effect at that pod, the rate-limit buckets kept,\n'
    + 'and the adaptive concurrency limit (requests in flight / limit, minRTT). The same counts are the metric\n'
    + 'weft_waypoint_admission_total; the limit is weft_waypoint_concurrency_limit.',
  specs: { ...registryViewOptions, namespace: namespaceOption },
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    const ctx = loadContext(values, io.env);
    return withRegistry(ctx, (session) =>
      show(async () => admissionFrame(await session.load(), { namespace: values.namespace }), { format: values.output, watch: values.watch, title: 'weft admission', io }));
  },
});
