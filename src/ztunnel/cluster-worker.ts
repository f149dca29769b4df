/**
 * One worker of `weft ztunnel --workers N` (cluster-primary.ts forks it with the same
 * command line). It is a whole ztunnel: its own registry follower, certificates (it
 * joins the CA with the node's credential, so the CA still hands a node only the
 * identities of workloads on it), HBONE pool and the three proxy listeners, whose
 * sockets the primary shares. It serves no readiness or metrics port; it answers the
 * primary's questions about them over the cluster IPC channel.
 */
import type { Logger } from '../lib/log';
import { runComponent } from '../lib/run-component';
import { ZtunnelApp } from './app';
import type { ZtunnelConfig } from './config';

export type WorkerQuestionKind = 'status' | 'metrics' | 'traces';
/** `query`: for 'traces', the search part of the `/debug/traces` request. */
export interface WorkerQuestion { weft: 'ask'; id: number; what: WorkerQuestionKind; query?: string }
export interface WorkerAnswer { weft: 'answer'; id: number; value: unknown }
/**
 * The primary's stop, sent over IPC rather than as SIGTERM: when the worker got the
 * signal itself too (SIGINT from a terminal, systemd signalling the whole cgroup), a
 * second SIGTERM would end it at once, undrained; a second stop message is a no-op.
 */
export interface WorkerStop { weft: 'stop' }
/** Sent once the worker listens for the primary's messages (before that, a stop message would be lost). */
export interface WorkerHello { weft: 'hello' }

export async function runZtunnelWorker(config: ZtunnelConfig, logger: Logger, index: number): Promise<number> {
  const log = logger.child({ worker: index });
  const app = new ZtunnelApp(config, log, undefined, { index, of: config.workers });
  let askStop!: (signal: NodeJS.Signals) => void;
  const stopAsked = new Promise<NodeJS.Signals>((resolve) => { askStop = resolve; });
  const onMessage = (msg: WorkerQuestion | WorkerStop) => {
    if (msg?.weft === 'stop') askStop('SIGTERM');
    if (msg?.weft !== 'ask') return;
    const value = msg.what === 'status' ? Promise.resolve(app.status())
      : msg.what === 'traces' ? Promise.resolve(app.spans(new URL(`http://worker/${msg.query ?? ''}`)))
        : app.metrics.getMetricsAsJSON();
    value.then((v) => {
      const answer: WorkerAnswer = { weft: 'answer', id: msg.id, value: v };
      process.send?.(answer, undefined, undefined, sendFailed);
    }, (err: unknown) => log.error({ err }, `answering the primary's ${msg.what} question failed`));
  };
  // Without a callback, a send on a channel the primary already closed (it is exiting)
  // is an 'error' event nobody handles, and the worker would crash instead of draining.
  const sendFailed = (err: Error | null) => {
    if (err) log.debug({ err }, 'the primary is gone; not answering it');
  };
  process.on('message', onMessage);
  // A signal from outside (the process group's: Ctrl-C, systemd) starts the stop as the
  // primary's message does, but a second one must not end the worker undrained (Node's
  // default, or a module re-raising it once it is the last listener). Ending a worker
  // early is the primary's: SIGKILL after the drain, or its own death (cluster exits us).
  const absorb = () => {};
  process.on('SIGTERM', absorb);
  process.on('SIGINT', absorb);
  const hello: WorkerHello = { weft: 'hello' };
  process.send?.(hello, undefined, undefined, sendFailed);
  const code = await runComponent(app, log, 'ztunnel', stopAsked);
  process.off('message', onMessage);
  // The IPC channel to the primary would keep this process alive.
  process.exit(code);
}
