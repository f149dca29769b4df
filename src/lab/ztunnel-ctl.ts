/**
 * `weft lab ztunnel <node> stop|start|restart`: what a rolling update or a crash does to
 * one node's ztunnel, on demand. The fault suite and the capture e2e use it to show
 * that enrolled traffic fails closed while no ztunnel runs and works again after.
 *
 * Only the process the lab recorded is signalled (same PID and start time), and a new
 * one is recorded before it is spawned, like everything else the lab makes.
 */
import Redis from 'ioredis';
import { createJoinToken } from '../ca/join-tokens';
import { WeftError } from '../lib/errors';
import { LAB_NET } from './plan';
import { httpStatus, isAlive, startProcess, waitUntil } from './procs';
import { readState, StateStore, type ProcessResource } from './state';
import { JOIN_TOKEN_TTL_MS, READY_TIMEOUT_MS } from './up';

export type StopSignal = 'SIGTERM' | 'SIGKILL';

function recorded(labDir: string, node: string): { store: StateStore; proc: ProcessResource; address: string } {
  const state = readState(labDir);
  if (!state) throw new WeftError('WEFT_LAB_NOT_RUNNING', `no lab is recorded in ${labDir}; start it with scripts/lab up`);
  const planned = state.plan.nodes.find((n) => n.name === node);
  const proc = state.resources.find((r): r is ProcessResource => r.type === 'process' && r.name === `ztunnel/${node}`);
  if (!planned || !proc) {
    throw new WeftError('WEFT_USAGE', `no ztunnel for node ${JSON.stringify(node)} in the lab; nodes with one: ${
      state.resources.flatMap((r) => (r.type === 'process' && r.role === 'ztunnel' ? [r.name.slice('ztunnel/'.length)] : [])).join(', ') || 'none'}`);
  }
  return { store: StateStore.open(state), proc, address: planned.address };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Signals the recorded ztunnel of `node` and waits until it is gone. Returns its PID (undefined: was not running). */
export async function stopZtunnel(labDir: string, node: string, signal: StopSignal): Promise<number | undefined> {
  const { proc } = recorded(labDir, node);
  if (!isAlive(proc)) return undefined;
  process.kill(proc.pid!, signal);
  // A graceful stop drains connections; give it the lab's usual grace, then insist.
  const deadline = Date.now() + 10_000;
  while (isAlive(proc)) {
    if (Date.now() > deadline) process.kill(proc.pid!, 'SIGKILL');
    await sleep(20);
  }
  return proc.pid;
}

/**
 * Starts the ztunnel of `node` again with the argv it was first started with and a
 * fresh join token (tokens are secrets: the state file never holds them), and waits
 * until it is ready. Refuses while the recorded one still runs.
 */
export async function startZtunnel(labDir: string, node: string): Promise<number> {
  const { store, proc, address } = recorded(labDir, node);
  if (isAlive(proc)) throw new WeftError('WEFT_USAGE', `the ztunnel of ${node} still runs (pid ${proc.pid}); stop it first`);
  const redis = new Redis(`redis://127.0.0.1:${store.current.plan.redisPort}`, { lazyConnect: true, maxRetriesPerRequest: 2 });
  let token: string;
  try {
    token = (await createJoinToken(redis, node, JOIN_TOKEN_TTL_MS)).token;
  } finally {
    redis.disconnect();
  }
  store.retain((r) => r !== proc && !(r.type === 'process' && r.name === proc.name));
  const started = startProcess(store, { name: proc.name, role: proc.role, netns: proc.netns, log: proc.log, argv: proc.argv },
    { ...process.env, WEFT_JOIN_TOKEN: token });
  const url = `http://${address}:${LAB_NET.readinessPort}/healthz/ready`;
  await waitUntil(`ztunnel on ${node}`, async () => (await httpStatus(url)) === 200, { timeoutMs: READY_TIMEOUT_MS, process: started });
  return started.pid!;
}
