/**
 * The shape shared by the commands that read the registry (workloads, services,
 * policies): load a snapshot into a MeshState — the very view the ztunnels derive —
 * and turn it into a Frame, once or every second with --watch.
 */
import { parse, type OptionSpec } from '../lib/options';
import type { MeshState } from '../registry/state';
import { contextOptions, loadContext } from './context';
import type { CliIo } from './io';
import { outputOptions, show, type Frame, type OutputFormat } from './output';
import { withRegistry } from './registry-session';

export const namespaceOption = {
  flag: 'namespace', default: '', defaultText: 'all namespaces',
  description: 'only this namespace (-n)', parse: parse.string(),
} satisfies OptionSpec<string>;

export const nodeOption = {
  flag: 'node', default: '', defaultText: 'all nodes', description: 'only this node', parse: parse.string(),
} satisfies OptionSpec<string>;

export const registryViewOptions = { ...contextOptions, ...outputOptions };

export interface RegistryViewValues {
  context: string;
  redisUrl: string;
  output: OutputFormat;
  watch: boolean;
}

export async function runRegistryView(
  values: RegistryViewValues, io: CliIo, title: string, build: (state: MeshState) => Frame,
): Promise<number> {
  const ctx = loadContext(values, io.env);
  return withRegistry(ctx, (session) =>
    show(async () => build(await session.load()), { format: values.output, watch: values.watch, title, io }));
}

export function byKey<T>(key: (t: T) => string): (a: T, b: T) => number {
  return (a, b) => {
    const ka = key(a);
    const kb = key(b);
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  };
}

/** `where` for an empty answer: " in namespace demo on node node-1". */
export function scopeText(f: { namespace?: string; node?: string }): string {
  return `${f.namespace ? ` in namespace ${f.namespace}` : ''}${f.node ? ` on node ${f.node}` : ''}`;
}
