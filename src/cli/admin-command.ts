/**
 * The shape shared by the commands that ask each node's ztunnel (tunnels,
 * connections, certs): pick the nodes from the context, query them all at once, and
 * build one frame from the answers, reporting the silent nodes as warnings.
 */
import { WeftError } from '../lib/errors';
import { failureWarning, queryNodes, type NodeAnswer, type NodeFailure } from './admin-client';
import { contextNodes, withCluster } from './cluster';
import { contextOptions, loadContext, selectNodes, type CliContext } from './context';
import type { CliIo } from './io';
import { outputOptions, show, type Frame, type OutputFormat } from './output';
import { nodeOption } from './registry-command';

export const adminViewOptions = { ...contextOptions, ...outputOptions, node: nodeOption };

export interface AdminViewValues {
  context: string;
  redisUrl: string;
  kubeconfig?: string;
  kubeContext?: string;
  output: OutputFormat;
  watch: boolean;
  node: string;
}

export interface AdminView<T> {
  title: string;
  path: string;
  check: (data: unknown) => string | undefined;
  build(answers: NodeAnswer<T>[], now: number): Omit<Frame, 'warnings'>;
}

/** Admin commands need node endpoints: a lab context file names them, a cluster lists them. */
export function requireNodes(ctx: CliContext): void {
  if (ctx.nodes.length === 0 && !ctx.cluster) {
    throw new WeftError('WEFT_CONTEXT_MISSING',
      `context ${ctx.source} names no nodes, so there is no ztunnel admin API to ask; start the lab with scripts/lab up, or pass --context FILE or --kubeconfig FILE`);
  }
}

export function adminFrame<T>(view: AdminView<T>, answers: NodeAnswer<T>[], failures: NodeFailure[], now: number): Frame {
  const frame = view.build(answers, now);
  const data = { ...(frame.data as Record<string, unknown>) };
  if (failures.length > 0) data.unreachable = failures;
  return { ...frame, data, warnings: failures.map(failureWarning), exitCode: failures.length > 0 && answers.length === 0 ? 1 : 0 };
}

export async function runAdminView<T>(values: AdminViewValues, io: CliIo, view: AdminView<T>): Promise<number> {
  const ctx = loadContext(values, io.env);
  requireNodes(ctx);
  return withCluster(ctx, (cluster) => show(async () => {
    // On a cluster the pods are listed per frame: a rollout replaces them under --watch.
    const nodes = selectNodes(ctx, values.node, await contextNodes(ctx, cluster));
    const { answers, failures } = await queryNodes<T>(nodes, view.path, view.check, cluster ? cluster.adminOptions : {});
    return adminFrame(view, answers, failures, Date.now());
  }, { format: values.output, watch: values.watch, title: view.title, io }));
}
