/**
 * `weft lab ztunnel <node> stop|start|restart`: what a rolling update or a crash does to
 * one node's ztunnel, on demand. The fault suite and the capture e2e use it to show
 * that enrolled traffic fails closed while no ztunnel runs and works again after.
 *
 * Only the process the lab recorded is signalled (same PID and start time), and a new
 * one is recorded before it is spawned, like everything else the lab makes.
 */
import { WeftError } from '../lib/errors';
import { isAlive, restartRecorded, stopProcesses } from './procs';
import { requireState, StateStore, type ProcessResource } from './state';
import { LAB_DRAIN_TIMEOUT_MS, startNodeZtunnel } from './up';

export type StopSignal = 'SIGTERM' | 'SIGKILL';

function recorded(labDir: string, node: string): { store: StateStore; proc: ProcessResource; address: string } {
  const state = requireState(labDir);
  const planned = state.plan.nodes.find((n) => n.name === node);
  const proc = state.resources.find((r): r is ProcessResource => r.type === 'process' && r.name === `ztunnel/${node}`);
  if (!planned || !proc) {
    throw new WeftError('WEFT_USAGE', `no ztunnel for node ${JSON.stringify(node)} in the lab; nodes with one: ${
      state.resources.flatMap((r) => (r.type === 'process' && r.role === 'ztunnel' ? [r.name.slice('ztunnel/'.length)] : [])).join(', ') || 'none'}`);
  }
  return { store: StateStore.open(state), proc, address: planned.address };
}

/** A graceful stop drains connections (the lab's --drain-timeout); then it is killed. */
const STOP_GRACE_MS = 2 * LAB_DRAIN_TIMEOUT_MS;

/** Signals the recorded ztunnel of `node` and waits until it is gone. Returns its PID (undefined: was not running). */
export async function stopZtunnel(labDir: string, node: string, signal: StopSignal): Promise<number | undefined> {
  const { proc } = recorded(labDir, node);
  if (!isAlive(proc)) return undefined;
  const stuck = await stopProcesses([proc], { signal, graceMs: STOP_GRACE_MS, firstToProcessOnly: true });
  if (stuck.length > 0) {
    throw new WeftError('WEFT_COMMAND_FAILED',
      `the ztunnel of ${node} (pid ${proc.pid}) is still running after ${signal === 'SIGKILL' ? '' : 'SIGTERM and '}SIGKILL; `
      + `it may be frozen or stuck in the kernel (see /proc/${proc.pid}/status); thaw or stop it, then run \`weft lab down\``);
  }
  return proc.pid;
}

/**
 * Starts the ztunnel of `node` again with the argv it was first started with and a
 * fresh join token, and waits until it is ready. Refuses while the recorded one still runs.
 */
export async function startZtunnel(labDir: string, node: string): Promise<number> {
  const { store, proc, address } = recorded(labDir, node);
  if (isAlive(proc)) throw new WeftError('WEFT_USAGE', `the ztunnel of ${node} still runs (pid ${proc.pid}); stop it first`);
  const started = await startNodeZtunnel(store.current.plan, { name: node, address }, (env) => restartRecorded(store, proc, env));
  return started.pid!;
}
