/**
 * One step of a component's shutdown: a failure is logged and the shutdown goes on,
 * so one step that throws (a socket already gone, Redis down) does not leave the
 * steps after it undone. Shared by the ztunnel's and the waypoint's stop().
 */
import type { Logger } from './log';

export type ShutdownStep = (what: string, fn: () => Promise<void> | void) => Promise<void>;

export function shutdownStep(log: Logger): ShutdownStep {
  return async (what, fn) => {
    try {
      await fn();
    } catch (err) {
      log.error({ err }, `shutdown: ${what} failed`);
    }
  };
}

/**
 * A component's stop(): the first call marks it stopping (readiness drops at once) and
 * runs `run`; a second call runs `again` (ends a drain now) and returns the same
 * promise, so a second SIGTERM hurries the shutdown instead of starting another.
 */
export class StopOnce {
  private done: Promise<void> | undefined;
  private started = false;

  constructor(private readonly run: () => Promise<void>, private readonly again: () => void) {}

  /** True from the first stop() on, already while `run` makes its first synchronous steps. */
  get stopping(): boolean {
    return this.started;
  }

  stop(): Promise<void> {
    if (this.done) {
      this.again();
      return this.done;
    }
    this.started = true;
    this.done = this.run();
    return this.done;
  }
}
