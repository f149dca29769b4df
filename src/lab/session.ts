/**
 * A lab for one whole run of the fault suite or the benchmarks: wait for the
 * machine-wide lab lock, bring the lab up through the real CLI, run the body, and
 * always take the lab down and release the lock. "Always" includes a `lab up` that
 * failed half-way (it may have made namespaces before it gave up), a run ended by
 * SIGINT or SIGTERM, and one whose output pipe closed (`| head`): a lab left behind
 * makes every later lab user fail on its conflicts.
 */
import { acquireLabLock } from './lock';
import { runWeft, type RunResult } from './run';

export interface LabSessionOptions {
  /** The environment of the `weft lab` commands: WEFT_LAB_DIR, WEFT_CONTEXT, ... */
  env: NodeJS.ProcessEnv;
  /** One line per step (waiting, up, a failed down). */
  progress: (line: string) => void;
  /** Runs the CLI (tests pass a recording one). */
  weft?: (args: string[], env: NodeJS.ProcessEnv) => Promise<RunResult>;
  /** The lock directory (tests pass their own). */
  lockDir?: string;
}

/**
 * `body` gets `onAbort(fn)`: what it starts outside the lab's record (traffic
 * generators, benchmark servers in pod namespaces) is stopped by `fn` when a signal
 * ends the run, since the body's own `finally` never runs then.
 */
export async function withLab<T>(opts: LabSessionOptions, body: (onAbort: (stop: () => void) => void) => Promise<T>): Promise<T> {
  const weft = opts.weft ?? runWeft;
  opts.progress('waiting for the lab lock');
  const release = await acquireLabLock(undefined, opts.lockDir);
  let downing: Promise<void> | undefined;
  const down = () => downing ??= weft(['lab', 'down'], opts.env)
    .catch((err: unknown) => ({ code: 1, stdout: '', stderr: String(err) }))
    .then((r) => {
      if (r.code !== 0) opts.progress(`lab down failed (${r.code}): ${r.stderr.trim()}; run \`WEFT_LAB_DIR=${opts.env.WEFT_LAB_DIR ?? '<lab dir>'} scripts/lab down\``);
      release();
    });
  const aborts: Array<() => void> = [];
  // Ctrl-C or a CI job's SIGTERM would end the process without the finally below. A
  // second signal while down runs (an impatient Ctrl-C) only waits for the same down:
  // Node's default handler would kill the process half-way through it.
  let signalled = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled) {
      opts.progress(`${signal} again: still taking the lab down`);
      return;
    }
    signalled = true;
    opts.progress(`${signal}: taking the lab down`);
    for (const stop of aborts.splice(0)) {
      try { stop(); } catch (err) { opts.progress(`stopping the run's own processes failed: ${String(err)}`); }
    }
    void down().then(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A run whose output is piped into `head`, or whose terminal went away, gets EPIPE at
  // its next line; unheard, that ends the process there, half-way through the teardown,
  // and the lab left up makes every later lab user (CI included) fail on its conflicts.
  // The output is lost either way; the teardown is not.
  const onOutputError = (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE' && err.code !== 'ERR_STREAM_DESTROYED') throw err;
  };
  process.stdout.on('error', onOutputError);
  process.stderr.on('error', onOutputError);
  try {
    opts.progress('bringing up the lab');
    const up = await weft(['lab', 'up'], opts.env);
    if (up.code !== 0) throw new Error(`lab up failed (${up.code}):\n${up.stdout}${up.stderr}`);
    return await body((stop) => { aborts.push(stop); });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await down();
    process.stdout.off('error', onOutputError);
    process.stderr.off('error', onOutputError);
  }
}
