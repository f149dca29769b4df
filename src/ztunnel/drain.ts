/**
 * Graceful shutdown of the proxy listeners, as Istio's ztunnel drains on SIGTERM:
 *
 *   1. every listener stops accepting at once (capture stays, so new enrolled
 *      connections are refused by the kernel: fail closed, never plaintext) and the
 *      HBONE server sends GOAWAY, so peers open new tunnels for new connections;
 *   2. established connections go on until they end on their own, for at most
 *      `timeoutMs` (or until `cut()`: a second stop);
 *   3. the listeners close: what is still open is reset, its access-log line saying
 *      `closed by the proxy: drain period over`.
 */
import type { Logger } from '../lib/log';
import type { ConnectionRegistry } from './connections';

/** What the drain needs of a listener (ListenerBase). */
export interface DrainableListener {
  stopAccepting(): void;
  close(why?: string): Promise<void>;
}

export interface DrainOptions {
  listeners: readonly DrainableListener[];
  /** The registry every listener tracks its connections in. */
  connections: ConnectionRegistry;
  timeoutMs: number;
  logger: Logger;
}

export interface DrainOutcome {
  /** Connections that ended on their own during the drain. */
  finished: number;
  /** Connections still open at its end, reset. */
  reset: number;
  /** How the drain period ended. */
  ended: 'empty' | 'timeout' | 'cut';
}

/** The reason in the access log of a connection reset at the end of a drain. */
export const DRAIN_OVER = 'drain period over (ztunnel shutting down)';

export class ListenerDrain {
  private cutNow: (() => void) | undefined;
  private cutEarly = false;

  constructor(private readonly opts: DrainOptions) {}

  /** Ends the drain period now (a second SIGTERM, or the caller gave up waiting). */
  cut(): void {
    this.cutEarly = true;
    this.cutNow?.();
  }

  async run(): Promise<DrainOutcome> {
    const { listeners, connections, timeoutMs, logger } = this.opts;
    for (const l of listeners) l.stopAccepting();
    const open = connections.size;
    logger.info({ connections: open, drainTimeoutMs: timeoutMs }, 'draining: new connections refused, established ones go on');
    let timer: NodeJS.Timeout | undefined;
    const ended = this.cutEarly || timeoutMs === 0 ? 'cut' as const : await Promise.race([
      connections.whenEmpty().then(() => 'empty' as const),
      new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), timeoutMs); }),
      new Promise<'cut'>((resolve) => { this.cutNow = () => resolve('cut'); }),
    ]);
    clearTimeout(timer);
    this.cutNow = undefined;
    const reset = connections.size;
    if (reset > 0) logger.warn({ connections: reset, ended }, 'drain over: resetting the connections still open');
    else logger.info({ finished: open }, 'drained: every established connection ended on its own');
    for (const l of listeners) await l.close(DRAIN_OVER);
    return { finished: Math.max(0, open - reset), reset, ended };
  }
}
