/**
 * A lab for one whole run of the fault suite or the benchmarks: wait for the
 * machine-wide lab lock, bring the lab up through the real CLI, run the body, and
 * always take the lab down and release the lock. "Always" includes a `lab up` that
 * failed half-way (it may have made namespaces before it gave up) and a run ended by
 * SIGINT or SIGTERM: a lab left behind makes every later lab user fail on its conflicts.
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

export async function withLab<T>(opts: LabSessionOptions, body: () => Promise<T>): Promise<T> {
  const weft = opts.weft ?? runWeft;
  opts.progress('waiting for the lab lock');
  const release = await acquireLabLock(undefined, opts.lockDir);
  let downing: Promise<void> | undefined;
  const down = () => downing ??= weft(['lab', 'down'], opts.env)
    .catch((err: unknown) => ({ code: 1, stdout: '', stderr: String(err) }))
    .then((r) => {
      if (r.code !== 0) opts.progress(`lab down failed (${r.code}): ${r.stderr.trim()}; run \`WEFT_LAB_DIR=${opts.env.WEFT_LAB_DIR ?? '<lab dir>'} weft lab down\``);
      release();
    });
  // Ctrl-C or a CI job's SIGTERM would end the process without the finally below.
  const onSignal = (signal: NodeJS.Signals) => {
    opts.progress(`${signal}: taking the lab down`);
    void down().then(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    opts.progress('bringing up the lab');
    const up = await weft(['lab', 'up'], opts.env);
    if (up.code !== 0) throw new Error(`lab up failed (${up.code}):\n${up.stdout}${up.stderr}`);
    return await body();
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await down();
  }
}
