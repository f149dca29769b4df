/**
 * The life of a long-running proxy process (`weft ztunnel`, `weft waypoint run`): start
 * the app, stay up until SIGTERM/SIGINT, stop it. A signal during start-up (e.g. while
 * Redis is still unreachable) must stop it too: stopping first makes a pending start
 * give up, then its outcome is collected. A missed .catch on the data path must not take
 * the traffic down with it: unhandled rejections are counted and logged, not fatal.
 */
import { Counter, type Registry } from 'prom-client';
import type { Logger } from './log';
import { guardUnhandledRejections } from './process-guard';
import { waitForShutdownSignal } from './signals';

export interface RunnableApp {
  readonly metrics: Registry;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Resolves with the exit code once the app stopped after a signal (or `stopAsked`); rejects when start-up failed. */
export async function runComponent(app: RunnableApp, logger: Logger, name: 'ztunnel' | 'waypoint', stopAsked?: Promise<NodeJS.Signals>): Promise<number> {
  const rejections = new Counter({
    name: `weft_${name}_unhandled_rejections_total`, help: 'Promise rejections nothing handled (each is a bug; the process kept running).',
    registers: [app.metrics],
  });
  const unguard = guardUnhandledRejections({ logger, onRejection: () => rejections.inc() });
  const signal = waitForShutdownSignal(stopAsked);
  const started = app.start().then(() => 'started' as const, (err: unknown) => ({ err }));
  const first = await Promise.race([started, signal]);
  if (typeof first === 'object') {
    logger.error({ err: first.err }, `${name} failed to start`);
    await app.stop();
    throw first.err;
  }
  if (first !== 'started') {
    logger.info({ signal: first }, 'shutting down during start-up');
    await app.stop();
    await started;
    return 0;
  }
  logger.info({ signal: await signal }, 'shutting down');
  await app.stop();
  unguard();
  logger.flush();
  return 0;
}
