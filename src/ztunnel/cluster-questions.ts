/**
 * The `--workers` primary's questions to its workers over the cluster IPC channel
 * (cluster-worker.ts answers them): readiness, metrics and traces. A question ends
 * with the worker's answer, or with undefined when the worker cannot answer: its
 * channel is gone, it exits meanwhile (at once: a probe or scrape during a worker's
 * crash does not wait out the timeout), or it says nothing within `timeoutMs`.
 */
import type { Worker } from 'node:cluster';
import { realClock, type Clock } from '../lib/clock';
import type { WorkerAnswer, WorkerQuestion, WorkerQuestionKind } from './cluster-worker';

/** What the questions need of a cluster Worker. */
export type AskedWorker = Pick<Worker, 'isConnected' | 'send' | 'once' | 'off'>;

export class WorkerQuestions {
  private readonly pending = new Map<number, (value: unknown) => void>();
  private nextId = 0;

  constructor(readonly timeoutMs: number, private readonly clock: Clock = realClock) {}

  ask(worker: AskedWorker, what: WorkerQuestionKind, query?: string): Promise<unknown> {
    if (!worker.isConnected()) return Promise.resolve(undefined);
    const id = this.nextId++;
    return new Promise((resolve) => {
      const timer = this.clock.setTimeout(() => done(undefined), this.timeoutMs);
      const exited = () => done(undefined);
      const done = (value: unknown) => {
        this.clock.clearTimeout(timer);
        worker.off('exit', exited);
        this.pending.delete(id);
        resolve(value);
      };
      worker.once('exit', exited);
      this.pending.set(id, done);
      const question: WorkerQuestion = { weft: 'ask', id, what, ...(query !== undefined ? { query } : {}) };
      worker.send(question, (err: Error | null) => { if (err) done(undefined); });
    });
  }

  /** A worker's answer (cluster 'message'); one to a question already ended is dropped. */
  answered(msg: WorkerAnswer): void {
    this.pending.get(msg.id)?.(msg.value);
  }
}
