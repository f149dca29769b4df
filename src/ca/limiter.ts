/**
 * At most `max` tasks at once; the rest wait in order. A finishing task hands its slot
 * straight to the next waiter, so a newcomer can never slip in between and exceed `max`.
 */
export class Limiter {
  private running = 0;
  private readonly waiting: Array<(run: boolean) => void> = [];
  private closed = false;

  constructor(private readonly max: number) {}

  /** Runs `task` when a slot is free; rejects without running it once close() was called. */
  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.closed) throw new Error('limiter closed');
    if (this.running >= this.max) {
      const go = await new Promise<boolean>((resolve) => this.waiting.push(resolve));
      if (!go) throw new Error('limiter closed');
    } else {
      this.running++;
    }
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next(true);
      else this.running--;
    }
  }

  /** Drops the queue: waiting tasks reject without running; running ones finish. */
  close(): void {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w(false);
  }
}
