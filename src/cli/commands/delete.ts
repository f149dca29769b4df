/**
 * `weft delete -f FILE|DIR|-`: removes the objects the manifests name (only apiVersion,
 * kind and metadata are read, so a manifest that no longer validates can still be
 * deleted). Lab: one registry revision for all of them; cluster: one DELETE each.
 */
import { parse, type OptionSpec } from '../../lib/options';
import { deleteFromCluster } from '../apply-cluster';
import { deleteFromRegistry } from '../apply-registry';
import { loadContext } from '../context';
import { defineCommand, noPositionals } from '../io';
import { formatStructured } from '../output';
import { withRegistryStore } from '../registry-session';
import { loadObjects, manifestOptions, outcomeLines, withClusterSession } from './apply';

const USAGE = 'weft delete -f FILE|DIR|- [-n NAMESPACE] [--dry-run] [--ignore-not-found] [-o name|json|yaml]';

export default defineCommand({
  usage: USAGE,
  summary: 'delete the routes, waypoints and policies named in manifests',
  description: `Each object prints one line: deleted, or not found. Objects that exist are deleted even when others
are not found; the exit code is then 1 unless --ignore-not-found.`,
  specs: {
    ...manifestOptions,
    ignoreNotFound: {
      flag: 'ignore-not-found', boolean: true, default: false, description: 'exit 0 when some objects do not exist', parse: parse.bool(),
    } satisfies OptionSpec<boolean>,
    output: {
      flag: 'output', default: 'name', description: 'name (one line per object), json or yaml (-o)',
      parse: parse.oneOf(['name', 'json', 'yaml'] as const),
    } satisfies OptionSpec<'name' | 'json' | 'yaml'>,
  },
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    const ctx = loadContext(values, io.env);
    const objects = await loadObjects(values, ctx, io, true);
    const outcome = ctx.cluster
      ? await withClusterSession(ctx, (c) => deleteFromCluster(c, objects, { dryRun: values.dryRun }))
      : await withRegistryStore(ctx, (s) => deleteFromRegistry(s.store, objects, { dryRun: values.dryRun }));
    io.stdout(values.output === 'name' ? outcomeLines(outcome) : formatStructured(outcome, values.output));
    const missing = outcome.results.filter((r) => r.action === 'not found');
    if (missing.length > 0 && !values.ignoreNotFound) {
      io.stderr(`warning: ${missing.length} object${missing.length === 1 ? '' : 's'} not found (--ignore-not-found to accept)\n`);
      return 1;
    }
    return 0;
  },
});
