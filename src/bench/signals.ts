import { WeftError } from '../lib/errors';

/**
 * SIGINT (Ctrl-C) and SIGTERM end a bench through process.exit, so the exit hooks run:
 * startRedis' (redis-server), benchTempDir's (scratch directories) and `stop` (the
 * bench's own children). The default action ends the process without them, leaving
 * redis-server, haproxy or iperf3 running and the directories in /tmp.
 */
export function exitOnSignals(stop: () => void = () => undefined): void {
  const bail = (): void => { stop(); process.exit(130); };
  process.once('SIGINT', bail);
  process.once('SIGTERM', bail);
}

/**
 * A bench's entry point: signals end it through its exit hooks (exitOnSignals), then
 * `main` runs; the process exits 0 when it resolves, and 1 after `stop` when it rejects.
 * A bad flag's WeftError says which flag and what it takes: printed without a stack.
 */
export function runBench(main: () => Promise<void>, stop: () => void = () => undefined): void {
  exitOnSignals(stop);
  main().then(() => process.exit(0), (err: unknown) => { console.error(err instanceof WeftError ? err.message : err); stop(); process.exit(1); });
}
