/**
 * Resolves with the first SIGTERM or SIGINT, then stops listening, so a long-running
 * component can shut down in order (and a second signal gets Node's default: exit).
 */
export function waitForShutdownSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const on = (s: NodeJS.Signals) => {
      process.off('SIGTERM', on);
      process.off('SIGINT', on);
      resolve(s);
    };
    process.on('SIGTERM', on);
    process.on('SIGINT', on);
  });
}
