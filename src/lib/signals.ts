/**
 * Resolves with the first SIGTERM or SIGINT, then stops listening, so a long-running
 * component can shut down in order (and a second signal gets Node's default: exit).
 * `asked` is a stop request that is not a signal (a ztunnel worker's primary asks over
 * IPC): it counts as the first signal, so only a signal after it ends the process.
 */
export function waitForShutdownSignal(asked?: Promise<NodeJS.Signals>): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (s: NodeJS.Signals) => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      resolve(s);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
    void asked?.then(on);
  });
}
