/**
 * `weft outliers`: what each waypoint's outlier detection remembers (TrafficPolicy
 * `outlierDetection`): per Service, its endpoints that are ejected, waiting for their
 * probe, or counting errors, with the reason and how long the ejection lasts. Read from
 * every ready waypoint pod's read-only view (`GET /outliers` on its metrics port, 15020);
 * each waypoint pod decides on its own, so two pods may disagree, and both are shown.
 * A pod that does not answer is a warning, not a failure of the others.
 */
import { loadContext } from '../context';
import { defineCommand, noPositionals } from '../io';
import { show, type Frame } from '../output';
import { byKey, namespaceOption, registryViewOptions, scopeText } from '../registry-command';
import { withRegistry } from '../registry-session';
import type { MeshState } from '../../registry/state';
import type { OutlierServiceView } from '../../waypoint/outlier-detectors';
import { METRICS_PORT } from '../../mesh/ports';
import { askWaypointPods } from '../waypoint-views';

export interface OutlierItem extends OutlierServiceView {
  /** `namespace/name` of the waypoint and the pod that answered. */
  waypoint: string;
  pod: string;
}

function check(data: unknown): string | undefined {
  return Array.isArray(data) && data.every((x) => typeof x === 'object' && x !== null && Array.isArray((x as { endpoints?: unknown }).endpoints))
    ? undefined : 'expected a list of { namespace, name, ejected, endpoints }';
}

export async function outliersFrame(state: MeshState, f: { namespace: string }, port: number = METRICS_PORT): Promise<Frame> {
  const { pods, answers, warnings } = await askWaypointPods<OutlierServiceView>(state, f.namespace, '/outliers', check, port);
  const items: OutlierItem[] = [];
  for (const { pod: p, items: views } of answers) {
    for (const v of views) {
      if (!f.namespace || v.namespace === f.namespace) items.push({ ...v, waypoint: p.waypoint, pod: p.pod });
    }
  }
  items.sort(byKey((i) => `${i.namespace}\u0000${i.name}\u0000${i.waypoint}\u0000${i.pod}`));
  const rows = items.flatMap((i) => (i.endpoints.length === 0 ? [] : i.endpoints.map((e) => [
    `${i.namespace}/${i.name}`, e.endpoint, e.state, String(e.ejections), e.reason ?? '-', e.until ?? '-',
    `${e.consecutive5xx}/${e.consecutiveGatewayErrors}`, `${i.waypoint}/${i.pod}`,
  ])));
  return {
    table: { headers: ['SERVICE', 'ENDPOINT', 'STATE', 'EJECTIONS', 'REASON', 'PROBE AT', '5XX/GW IN A ROW', 'WAYPOINT/POD'], rows },
    data: { items },
    warnings,
    empty: pods.length === 0
      ? `No ready waypoint pods${scopeText(f)}; outlier detection runs in waypoints (weft waypoints).`
      : `No endpoint is ejected or counting errors${scopeText(f)} (Services need a TrafficPolicy with outlierDetection: weft trafficpolicies).`,
    exitCode: pods.length > 0 && warnings.length === pods.length ? 1 : 0,
  };
}

const USAGE = 'weft outliers [-n NAMESPACE] [-o table|json|yaml] [-w]';

export default defineCommand({
  usage: USAGE,
  summary: 'outlier detection at the waypoints: ejected endpoints, reason, ejections, when they get their probe',
  description: 'Each ready waypoint pod is asked for what its outlier detection remembers (GET /outliers on its\n'
    + 'metrics port). STATE is active (counting errors), ejected (out of the candidates until PROBE AT) or\n'
    + 'probing (its one probe request is out). Ejections are also a metric (weft_waypoint_outlier_ejections_total)\n'
    + 'and one waypoint log line each (msg "outlier ejected").',
  specs: { ...registryViewOptions, namespace: namespaceOption },
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    const ctx = loadContext(values, io.env);
    return withRegistry(ctx, (session) =>
      show(async () => outliersFrame(await session.load(), { namespace: values.namespace }), { format: values.output, watch: values.watch, title: 'weft outliers', io }));
  },
});
