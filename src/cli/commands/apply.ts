/**
 * `weft apply -f FILE|DIR|-`: declarative config, kubectl-like, one format for the lab
 * and clusters. Every document is read and checked before anything is written; the
 * lab then gets one atomic registry revision, a cluster one API request per object.
 */
import { parse, type OptionSpec } from '../../lib/options';
import { applyToCluster } from '../apply-cluster';
import { applyToRegistry, type ApplyOutcome, type DeleteOutcome } from '../apply-registry';
import { ClusterSession } from '../cluster';
import { contextOptions, loadContext, type CliContext } from '../context';
import { defineCommand, noPositionals, type CliIo } from '../io';
import { readManifests } from '../manifest';
import { MANIFEST_KINDS, parseObjects, type ManifestObject } from '../manifest-objects';
import { formatStructured } from '../output';
import { withRegistryStore } from '../registry-session';

/** The namespace a document without one lands in, when -n does not say. */
export const DEFAULT_NAMESPACE = 'default';

export const manifestOptions = {
  ...contextOptions,
  filename: {
    flag: 'filename', default: '', description: 'manifests: a file, a directory (its *.yaml, *.yml, *.json) or - for stdin; several comma-separated (-f)',
    parse: parse.string(),
  } satisfies OptionSpec<string>,
  namespace: {
    flag: 'namespace', default: '', defaultText: "the kubeconfig context's, else default",
    description: 'namespace of documents that name none; a document naming another is refused (-n)', parse: parse.string(),
  } satisfies OptionSpec<string>,
  dryRun: {
    flag: 'dry-run', boolean: true, default: false, description: 'check everything and print what would happen; write nothing', parse: parse.bool(),
  } satisfies OptionSpec<boolean>,
};

export interface ManifestFlags {
  filename: string;
  namespace: string;
}

/** Reads and checks every document of -f; throws WEFT_MANIFEST_INVALID naming each bad one. */
export async function loadObjects(values: ManifestFlags, ctx: CliContext, io: CliIo, identityOnly: boolean): Promise<ManifestObject[]> {
  const paths = values.filename.split(',').filter((p) => p !== '');
  const readStdin = io.readStdin ?? (() => Promise.resolve(''));
  const docs = await readManifests(paths, readStdin);
  return parseObjects(docs, {
    namespaceFlag: values.namespace || undefined,
    defaultNamespace: ctx.cluster?.config.namespace || DEFAULT_NAMESPACE,
    identityOnly,
  });
}

/** kubectl's lines: `httproute.gateway.networking.k8s.io/canary created (dry run)`. */
export function outcomeLines(outcome: ApplyOutcome | DeleteOutcome): string {
  return outcome.results.map((r) => `${r.ref} ${r.action}${outcome.dryRun ? ' (dry run)' : ''}\n`).join('');
}

/** -o json|yaml: the resulting object, or a List of them (as kubectl prints). */
export function outcomeObjects(outcome: ApplyOutcome): unknown {
  const items = outcome.results.map((r) => r.object);
  return items.length === 1 ? items[0] : { apiVersion: 'v1', kind: 'List', items };
}

const USAGE = 'weft apply -f FILE|DIR|- [-n NAMESPACE] [--dry-run] [-o name|json|yaml]';

export default defineCommand({
  usage: USAGE,
  summary: 'create or update routes, waypoints and policies from YAML/JSON manifests',
  description: `Kinds: ${MANIFEST_KINDS.map((k) => `${k.kind} (${k.apiVersions.join(', ')})`).join('; ')}.
A Gateway must have gatewayClassName ${'weft-waypoint'}. Each object prints one line: created, configured or unchanged.
Every document is checked first; one bad document (named by file, position and field) means nothing is written.
Lab: all objects are written in one registry revision. Cluster (--kubeconfig): each object is created or replaced
through the API server, and the controller mirrors it.`,
  specs: {
    ...manifestOptions,
    output: {
      flag: 'output', default: 'name', description: 'name (one line per object), json or yaml (the resulting objects) (-o)',
      parse: parse.oneOf(['name', 'json', 'yaml'] as const),
    } satisfies OptionSpec<'name' | 'json' | 'yaml'>,
  },
  footer: 'Exit codes: 0 applied (or nothing to change), 2 a document is invalid (WEFT_MANIFEST_INVALID) or the command line is wrong.',
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    const ctx = loadContext(values, io.env);
    const objects = await loadObjects(values, ctx, io, false);
    // On a cluster the API server is the source of truth: the controller would undo a registry write.
    const outcome = ctx.cluster
      ? await withClusterSession(ctx, (c) => applyToCluster(c, objects, { dryRun: values.dryRun }))
      : await withRegistryStore(ctx, (s) => applyToRegistry(s.store, objects, { dryRun: values.dryRun }));
    io.stdout(values.output === 'name' ? outcomeLines(outcome) : formatStructured(outcomeObjects(outcome), values.output));
    return 0;
  },
});

export async function withClusterSession<T>(ctx: CliContext, fn: (c: ClusterSession) => Promise<T>): Promise<T> {
  const cluster = ClusterSession.open(ctx);
  try {
    return await fn(cluster);
  } finally {
    cluster.close();
  }
}
