/**
 * `weft namespace use-waypoint <ns> <name|none>`: binds a namespace's Services to its
 * waypoint by the namespace label weft.io/use-waypoint (a Service's own label still
 * wins; `none` opts the namespace out). Written where enrolment is: the namespace
 * record (lab) or the Namespace object (cluster, mirrored by the controller); the
 * ztunnels follow within about a second. A name that is not a waypoint of the
 * namespace is refused: its Services' traffic would be refused (fail closed).
 */
import { WeftError } from '../../lib/errors';
import { GATEWAY_API_GROUP } from '../../gateway/types';
import { k8sStatus } from '../../k8s/client';
import { USE_WAYPOINT_NONE } from '../../registry/enrolment';
import { USE_WAYPOINT_LABEL } from '../../registry/types';
import { ClusterSession } from '../cluster';
import { contextOptions, loadContext } from '../context';
import { defineCommand } from '../io';
import { formatStructured, outputOptions } from '../output';
import { withRegistryStore, type RegistrySession } from '../registry-session';

export interface UseWaypointResult {
  namespace: string;
  label: string;
  changed: boolean;
  before?: string;
  after: string;
  /** Registry revision written at (lab); 0 on a cluster. */
  revision: number;
  /** Services of the namespace whose own label overrides the namespace's (`ns/name=value`). */
  overriddenBy: string[];
  object?: string;
}

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Sets the label on the namespace record; writes only when it changes. */
export async function setNamespaceWaypoint(session: RegistrySession, namespace: string, waypoint: string): Promise<UseWaypointResult> {
  const state = await session.load();
  const rec = state.get('namespace', namespace);
  if (!rec) {
    const known = state.list('namespace').map((n) => n.name).sort();
    throw new WeftError('WEFT_REGISTRY_NOT_FOUND',
      `namespace "${namespace}" is not in the registry (namespaces: ${known.join(', ') || 'none'}); check the name with weft namespace list`,
      { details: { kind: 'namespace', key: namespace } });
  }
  if (waypoint !== USE_WAYPOINT_NONE && !state.waypoint(namespace, waypoint)) {
    const known = state.list('waypoint').filter((w) => w.namespace === namespace).map((w) => w.name).sort();
    throw new WeftError('WEFT_REGISTRY_NOT_FOUND',
      `namespace ${namespace} has no waypoint "${waypoint}" (its waypoints: ${known.join(', ') || 'none'}); `
      + `add one first (weft waypoint add ${namespace}/${waypoint} --node <node>): traffic bound to a missing waypoint is refused`,
      { details: { kind: 'waypoint', key: `${namespace}/${waypoint}` } });
  }
  const before = rec.labels[USE_WAYPOINT_LABEL];
  const changed = before !== waypoint;
  const revision = changed ? await session.store.setNamespaceLabel(namespace, USE_WAYPOINT_LABEL, waypoint) : state.revision;
  const result: UseWaypointResult = {
    namespace, label: USE_WAYPOINT_LABEL, changed, after: waypoint, revision,
    overriddenBy: state.list('service').filter((s) => s.namespace === namespace && s.waypoint)
      .map((s) => `${s.namespace}/${s.name}=${s.waypoint}`).sort(),
  };
  if (before !== undefined) result.before = before;
  return result;
}

async function setOnCluster(ctx: ReturnType<typeof loadContext>, namespace: string, waypoint: string): Promise<UseWaypointResult> {
  const cluster = ClusterSession.open(ctx);
  try {
    if (waypoint !== USE_WAYPOINT_NONE) {
      try {
        await cluster.client.get(`/apis/${GATEWAY_API_GROUP}/v1/namespaces/${encodeURIComponent(namespace)}/gateways/${encodeURIComponent(waypoint)}`);
      } catch (err) {
        if (k8sStatus(err) !== 404) throw err;
        throw new WeftError('WEFT_REGISTRY_NOT_FOUND',
          `namespace ${namespace} has no Gateway "${waypoint}" in ${cluster.target.source}; add it first (weft waypoint add ${namespace}/${waypoint})`,
          { cause: err, details: { kind: 'waypoint', key: `${namespace}/${waypoint}` } });
      }
    }
    const before = (await cluster.namespaceLabels(namespace))[USE_WAYPOINT_LABEL];
    const changed = before !== waypoint;
    if (changed) await cluster.setNamespaceLabel(namespace, USE_WAYPOINT_LABEL, waypoint);
    const result: UseWaypointResult = {
      namespace, label: USE_WAYPOINT_LABEL, changed, after: waypoint, revision: 0, overriddenBy: [],
      object: `Namespace ${namespace} (${cluster.target.source})`,
    };
    if (before !== undefined) result.before = before;
    return result;
  } finally {
    cluster.close();
  }
}

export function formatUseWaypoint(r: UseWaypointResult): string {
  const lines: string[] = [];
  const none = r.after === USE_WAYPOINT_NONE;
  if (!r.changed) {
    lines.push(`namespace ${r.namespace} already has ${r.label}=${r.after}; nothing changed`);
  } else {
    lines.push(`namespace ${r.namespace}: label ${r.label}=${r.after} set${r.before !== undefined ? ` (was ${r.before})` : ''}`
      + (r.object ? ` on ${r.object}` : ` at registry revision ${r.revision}`));
    lines.push(none
      ? 'Its Services are no longer sent through a waypoint (L4 only); the ztunnels follow within about a second.'
      : `Its Services' traffic now goes through waypoint ${r.namespace}/${r.after}; the ztunnels follow within about a second.`);
  }
  if (r.overriddenBy.length > 0) lines.push(`Services with their own ${r.label} label keep it: ${r.overriddenBy.join(', ')}`);
  return lines.join('\n') + '\n';
}

const USAGE = 'weft namespace use-waypoint <namespace> <waypoint|none> [-o table|json|yaml]';

export default defineCommand({
  usage: USAGE,
  summary: `send a namespace's Services through its waypoint (sets ${USE_WAYPOINT_LABEL}; none opts out)`,
  description: `A Service's own ${USE_WAYPOINT_LABEL} label wins over the namespace's. The waypoint must exist in the namespace.`,
  specs: { ...contextOptions, output: outputOptions.output },
  async run({ values, positionals }, io) {
    if (positionals.length !== 2) throw new WeftError('WEFT_USAGE', `expected a namespace and a waypoint name (or none); usage: ${USAGE}`);
    const [namespace, waypoint] = positionals as [string, string];
    for (const [what, v] of [['namespace', namespace], ['waypoint', waypoint]] as const) {
      if (!DNS_LABEL.test(v)) throw new WeftError('WEFT_USAGE', `invalid ${what} ${JSON.stringify(v)}: expected a DNS label (lower-case letters, digits and '-'); usage: ${USAGE}`);
    }
    const ctx = loadContext(values, io.env);
    const result = ctx.cluster
      ? await setOnCluster(ctx, namespace, waypoint)
      : await withRegistryStore(ctx, (s) => setNamespaceWaypoint(s, namespace, waypoint));
    io.stdout(values.output === 'table' ? formatUseWaypoint(result) : formatStructured(result, values.output));
    return 0;
  },
});
