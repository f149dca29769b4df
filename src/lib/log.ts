import pino, { type Logger, type LevelWithSilent } from 'pino';
import { redactText } from './redact';

export type { Logger };
export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * One root logger per process; components take `child({component})` and connections
 * take further children, so every line carries where it came from.
 */
export function createLogger(opts: { level: LevelWithSilent; component: string; destination?: pino.DestinationStream }): Logger {
  const root = pino(
    {
      level: opts.level,
      // `app` names the process; children add `component` (outbound, inbound, ...).
      base: { app: opts.component },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // The last line of defence: whatever a line carries (a message, an error from a
      // library, a config), URL passwords and secret query values are masked before it
      // is written. Callers still redact what they log; this catches what they miss.
      hooks: { streamWrite: redactText },
    },
    opts.destination ?? pino.destination({ fd: 1, sync: false }),
  );
  return root;
}

/** A logger that drops everything, for tests and library defaults. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
