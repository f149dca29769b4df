import type { DestinationStream } from 'pino';

/**
 * A pino destination that keeps every line, parsed, as soon as it is written (pino
 * calls write() synchronously, once per line), so a test can look at the log right
 * after the call that logs. Pass it as createLogger's `destination` or pino's second
 * argument.
 */
export class LogLines implements DestinationStream {
  /** Every line as written, unparsed (for checks on the line's length). */
  readonly raw: string[] = [];
  /** Every line, parsed. */
  readonly lines: Array<Record<string, unknown>> = [];

  write(chunk: string): void {
    for (const line of chunk.split('\n')) {
      if (!line) continue;
      this.raw.push(line);
      this.lines.push(JSON.parse(line) as Record<string, unknown>);
    }
  }
}
