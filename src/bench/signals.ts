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
