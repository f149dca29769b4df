import type { Registry } from 'prom-client';

/**
 * Polls `cond` until it holds. Bounded: a broken system under test fails with `what`
 * instead of hanging. With `ignoreErrors`, a throwing check counts as "not yet".
 */
export async function waitFor(
  what: string,
  cond: () => boolean | Promise<boolean>,
  opts: { timeoutMs?: number; intervalMs?: number; ignoreErrors?: boolean } = {},
): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let ok: boolean;
    try {
      ok = await cond();
    } catch (err) {
      if (!opts.ignoreErrors) throw err;
      ok = false;
    }
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 10));
  }
}

/** The error `fn` throws (or its promise rejects with); fails the test when there is none. */
export async function caught(fn: () => unknown): Promise<Error & { code?: string }> {
  try {
    await fn();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected an error');
}

/** First sample of a metric in a prom-client registry (NaN when absent). */
export async function metricValue(reg: Registry, name: string): Promise<number> {
  const m = (await reg.getMetricsAsJSON()).find((x) => x.name === name);
  return (m?.values[0]?.value as number | undefined) ?? NaN;
}
