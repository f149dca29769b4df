/**
 * Last line of defence for long-running proxies: an unhandled promise rejection ends
 * a Node process by default (--unhandled-rejections=throw). In the ztunnel one
 * forgotten `.catch` on a per-connection promise would then drop every connection of
 * the node and, while it restarts, its capture. The data path catches its promises
 * (each fire-and-forget call has a .catch); this handler catches what slips through:
 * it logs the error (rate-limited: a bug hit per connection must not flood the log),
 * counts it, and keeps the process alive. A synchronous uncaught exception still
 * ends the process: its state is unknown after one.
 */
import type { Logger } from './log';
import { LogLimiter } from './log-limiter';

export interface RejectionGuardOptions {
  logger: Logger;
  /** Called once per unhandled rejection (a metric). */
  onRejection?: () => void;
  /** The process to guard; injected by tests. */
  target?: Pick<NodeJS.Process, 'on' | 'off'>;
}

/** Installs the handler; returns the function that removes it. */
export function guardUnhandledRejections(opts: RejectionGuardOptions): () => void {
  const target = opts.target ?? process;
  const limiter = new LogLimiter({ burst: 5, intervalMs: 60_000 });
  const handler = (reason: unknown) => {
    opts.onRejection?.();
    limiter.log(opts.logger, 'error', 'unhandled-rejection', { err: reason },
      'BUG: a promise rejection was not handled; the process keeps running (please report this with the error)');
  };
  target.on('unhandledRejection', handler);
  return () => { target.off('unhandledRejection', handler); };
}
