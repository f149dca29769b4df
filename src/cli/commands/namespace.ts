/**
 * `weft namespace enroll|unenroll|list`: the namespace is the unit an operator puts in
 * the mesh. Enrolling sets `weft.io/dataplane-mode=ambient` on the namespace record
 * (lab), or on the Namespace object through the API server (cluster: the controller
 * mirrors it, and would undo a registry write); every ztunnel follows the registry,
 * re-derives its pods' enrolment and reconciles capture within about a second. Pods
 * are never restarted.
 */
import { WeftError } from '../../lib/errors';
import type { MeshState } from '../../registry/state';
import { DATAPLANE_MODE_AMBIENT, DATAPLANE_MODE_LABEL, DATAPLANE_MODE_NONE, USE_WAYPOINT_LABEL } from '../../registry/types';
import { contextOptions, loadContext, type CliContext } from '../context';
import { defineCommand, defineGroup, type CliIo } from '../io';
import { formatStructured, outputOptions, show } from '../output';
import { byKey } from '../registry-command';
import { openRegistry, withRegistry, withRegistryStore, type RegistryReader, type RegistrySession } from '../registry-session';
import { ClusterSession } from '../cluster';
import useWaypoint from './use-waypoint';

export interface EnrolmentCount {
  /** Workloads of the namespace in the mesh now. */
  enrolled: number;
  total: number;
  /** `ns/name` of pods that opt out with weft.io/dataplane-mode=none. */
  optedOut: string[];
}

export function enrolmentCount(state: MeshState, namespace: string): EnrolmentCount {
  const ws = state.workloads().filter((w) => w.record.namespace === namespace);
  return {
    enrolled: ws.filter((w) => w.enrolled).length,
    total: ws.length,
    optedOut: ws.filter((w) => w.record.labels[DATAPLANE_MODE_LABEL] === DATAPLANE_MODE_NONE)
      .map((w) => `${w.record.namespace}/${w.record.name}`).sort(),
  };
}

export interface EnrolResult {
  namespace: string;
  action: 'enroll' | 'unenroll';
  changed: boolean;
  label: string;
  /** Label value before and after; absent means unset. */
  before?: string;
  after?: string;
  /** Registry revision the change was written at (the current one when nothing changed). */
  revision: number;
  workloads: EnrolmentCount;
  /** Cluster: the object the label was set on. */
  object?: string;
  /** Cluster: whether the mesh's registry view showed the new label before the command returned. */
  meshSynced?: boolean;
  /** Cluster: why the mesh's view could not be read, when it could not. */
  meshError?: string;
}

function requireNamespace(state: MeshState, name: string): void {
  if (state.get('namespace', name)) return;
  const known = state.list('namespace').map((n) => n.name).sort();
  throw new WeftError('WEFT_REGISTRY_NOT_FOUND',
    `namespace "${name}" is not in the registry (namespaces: ${known.join(', ') || 'none'}); check the name with weft namespace list`,
    { details: { kind: 'namespace', key: name } });
}

/** Enrols or releases a namespace; writes only when the label actually changes. */
export async function setEnrolment(session: RegistrySession, namespace: string, enroll: boolean): Promise<EnrolResult> {
  const before = await session.load();
  requireNamespace(before, namespace);
  const current = before.get('namespace', namespace)!.labels[DATAPLANE_MODE_LABEL];
  const wanted = enroll ? DATAPLANE_MODE_AMBIENT : undefined;
  let revision = before.revision;
  const changed = current !== wanted;
  if (changed) revision = await session.store.setNamespaceLabel(namespace, DATAPLANE_MODE_LABEL, wanted);
  const after = changed ? await session.load() : before;
  const result: EnrolResult = {
    namespace, action: enroll ? 'enroll' : 'unenroll', changed, label: DATAPLANE_MODE_LABEL, revision,
    workloads: enrolmentCount(after, namespace),
  };
  if (current !== undefined) result.before = current;
  if (wanted !== undefined) result.after = wanted;
  return result;
}

/** How long enroll/unenroll on a cluster waits for the mesh (controller → Redis → ztunnel) to show the label. */
export const MESH_SYNC_TIMEOUT_MS = 10_000;

/**
 * Cluster enrolment: patch the Namespace label, then watch a ztunnel's registry view
 * until it shows the label, so the operator learns that the mesh acted on it, not only
 * that the API server stored it.
 */
export async function setEnrolmentInCluster(ctx: CliContext, namespace: string, enroll: boolean,
  opts: { timeoutMs?: number } = {}): Promise<EnrolResult> {
  const cluster = ClusterSession.open(ctx);
  try {
    const current = (await cluster.namespaceLabels(namespace))[DATAPLANE_MODE_LABEL];
    const wanted = enroll ? DATAPLANE_MODE_AMBIENT : undefined;
    const changed = current !== wanted;
    if (changed) await cluster.setNamespaceLabel(namespace, DATAPLANE_MODE_LABEL, wanted);
    const result: EnrolResult = {
      namespace, action: enroll ? 'enroll' : 'unenroll', changed, label: DATAPLANE_MODE_LABEL, revision: 0,
      workloads: { enrolled: 0, total: 0, optedOut: [] }, object: `Namespace ${namespace} (${cluster.target.source})`, meshSynced: false,
    };
    if (current !== undefined) result.before = current;
    if (wanted !== undefined) result.after = wanted;
    let reader: RegistryReader | undefined;
    try {
      reader = await openRegistry(ctx);
      const deadline = Date.now() + (opts.timeoutMs ?? MESH_SYNC_TIMEOUT_MS);
      for (;;) {
        const state = await reader.load();
        result.revision = state.revision;
        result.workloads = enrolmentCount(state, namespace);
        if (state.get('namespace', namespace)?.labels[DATAPLANE_MODE_LABEL] === wanted) {
          result.meshSynced = true;
          break;
        }
        if (Date.now() >= deadline) break;
        await new Promise((r) => setTimeout(r, 250));
      }
    } catch (err) {
      result.meshError = (err as Error).message;
    } finally {
      await reader?.close();
    }
    return result;
  } finally {
    cluster.close();
  }
}

/** What an enroll/unenroll did, in words; the same shape for the registry (lab) and a cluster. */
export function formatEnrolResult(r: EnrolResult): string {
  const w = r.workloads;
  const cluster = r.object !== undefined;
  const lines: string[] = [];
  if (!r.changed) {
    lines.push(r.action === 'enroll'
      ? `namespace ${r.namespace} is already enrolled (${r.label}=${DATAPLANE_MODE_AMBIENT}); nothing changed`
      : `namespace ${r.namespace} is not enrolled (no ${r.label} label); nothing changed`);
  } else if (r.action === 'enroll') {
    lines.push(`namespace ${r.namespace} enrolled: label ${r.label}=${DATAPLANE_MODE_AMBIENT} set`
      + (cluster ? ` on ${r.object}` : '') + (r.before !== undefined ? ` (was ${r.before})` : '')
      + (cluster ? '' : ` at registry revision ${r.revision}`));
  } else {
    lines.push(`namespace ${r.namespace} unenrolled: label ${r.label}=${r.before} removed`
      + (cluster ? ` from ${r.object}` : ` at registry revision ${r.revision}`));
  }
  const count = `${w.enrolled} of ${w.total} workload${w.total === 1 ? '' : 's'} in ${r.namespace} ${w.enrolled === 1 ? 'is' : 'are'}`
    + ` ${cluster ? '' : 'now '}in the mesh (HBONE)`
    + (w.optedOut.length > 0 ? `; opted out with ${r.label}=${DATAPLANE_MODE_NONE}: ${w.optedOut.join(', ')}` : '');
  if (!cluster) {
    lines.push(count);
    if (r.changed) {
      lines.push(r.action === 'enroll'
        ? 'The ztunnels follow the registry and start capturing these pods within about a second; no pod restart is needed.'
        : 'The ztunnels follow the registry and stop capturing these pods within about a second; their traffic goes plain TCP again.');
    }
  } else if (r.meshSynced) {
    lines.push(`The ztunnels have it (registry revision ${r.revision}): ${count}.`);
  } else if (r.meshError) {
    lines.push(`Could not read the mesh's view to confirm (${r.meshError}).`);
  } else {
    lines.push(`The ztunnels did not show the change within ${MESH_SYNC_TIMEOUT_MS / 1000} s; is weft-controller running? (kubectl -n weft-system get pods)`);
  }
  return lines.join('\n') + '\n';
}

const enrolSpecs = {
  ...contextOptions,
  output: outputOptions.output,
};

function enrolCommand(enroll: boolean) {
  const verb = enroll ? 'enroll' : 'unenroll';
  const usage = `weft namespace ${verb} <namespace> [-o table|json|yaml]`;
  return defineCommand({
    usage,
    summary: enroll
      ? `put a namespace in the mesh (sets ${DATAPLANE_MODE_LABEL}=${DATAPLANE_MODE_AMBIENT}; no pod restart)`
      : `take a namespace out of the mesh (removes ${DATAPLANE_MODE_LABEL}; no pod restart)`,
    description: (enroll
      ? `Pods labelled ${DATAPLANE_MODE_LABEL}=${DATAPLANE_MODE_NONE} stay out. Running it twice changes nothing the second time.`
      : 'Running it on a namespace that is not enrolled changes nothing.')
      + ' On a cluster (--kubeconfig) the label is patched on the Namespace object through the API server, and the command'
      + ` waits up to ${MESH_SYNC_TIMEOUT_MS / 1000} s for the ztunnels to show it; exit code 4 when they did not.`,
    specs: enrolSpecs,
    async run({ values, positionals }, io) {
      if (positionals.length !== 1) throw new WeftError('WEFT_USAGE', `expected exactly one namespace; usage: ${usage}`);
      const ctx = loadContext(values, io.env);
      // On a cluster the Namespace object is the source of truth; the controller would
      // overwrite a label written to Redis.
      const result = ctx.cluster
        ? await setEnrolmentInCluster(ctx, positionals[0]!, enroll)
        : await withRegistryStore(ctx, (s) => setEnrolment(s, positionals[0]!, enroll));
      io.stdout(values.output === 'table' ? formatEnrolResult(result) : formatStructured(result, values.output));
      return result.object !== undefined && !result.meshSynced ? 4 : 0;
    },
  });
}

export interface NamespaceItem {
  name: string;
  /** The namespace has a registry record (workloads can name a namespace that has none). */
  registered: boolean;
  dataplaneMode?: string;
  waypoint?: string;
  workloadsInMesh: number;
  workloads: number;
}

export function listNamespaces(state: MeshState): NamespaceItem[] {
  const names = new Set([...state.list('namespace').map((n) => n.name), ...state.workloads().map((w) => w.record.namespace)]);
  return [...names].map((name) => {
    const rec = state.get('namespace', name);
    const count = enrolmentCount(state, name);
    const item: NamespaceItem = { name, registered: rec !== undefined, workloadsInMesh: count.enrolled, workloads: count.total };
    const mode = rec?.labels[DATAPLANE_MODE_LABEL];
    const waypoint = rec?.labels[USE_WAYPOINT_LABEL];
    if (mode) item.dataplaneMode = mode;
    if (waypoint) item.waypoint = waypoint;
    return item;
  }).sort(byKey((n) => n.name));
}

const LIST_USAGE = 'weft namespace list [-o table|json|yaml] [-w]';

const list = defineCommand({
  usage: LIST_USAGE,
  summary: 'list namespaces: dataplane mode, waypoint, workloads in the mesh',
  specs: { ...contextOptions, ...outputOptions },
  async run({ values, positionals }, io: CliIo) {
    if (positionals.length > 0) throw new WeftError('WEFT_USAGE', `unexpected argument "${positionals.join(' ')}"; usage: ${LIST_USAGE}`);
    const ctx = loadContext(values, io.env);
    return withRegistry(ctx, (s) => show(async () => {
      const state = await s.load();
      const items = listNamespaces(state);
      return {
        table: {
          headers: ['NAMESPACE', 'DATAPLANE MODE', 'WAYPOINT', 'IN MESH'],
          rows: items.map((n) => [n.name + (n.registered ? '' : ' (no record)'), n.dataplaneMode ?? '-', n.waypoint ?? 'None', `${n.workloadsInMesh}/${n.workloads}`]),
        },
        data: { revision: state.revision, items },
        warnings: [],
        empty: 'No namespaces in the registry.',
      };
    }, { format: values.output, watch: values.watch, title: 'weft namespace list', io }));
  },
});

export default defineGroup({
  usage: 'weft namespace <enroll|unenroll|use-waypoint|list> ...',
  summary: 'enroll or unenroll a namespace in the mesh, bind it to a waypoint, or list namespaces',
  subcommands: { enroll: enrolCommand(true), unenroll: enrolCommand(false), 'use-waypoint': useWaypoint, list },
});
