/**
 * The Node/V8 flags a ztunnel runs with, wherever it is started: the lab passes them on
 * the command line (src/lab/up.ts), the DaemonSet as NODE_OPTIONS (daemonset/ztunnel.yaml,
 * checked equal by test/manifests.test.ts), `--workers` children inherit them.
 *
 * `--max-semi-space-size=1` (MiB): V8 grows the young generation up to 16 MiB per
 * semi-space when a process allocates fast, and a ztunnel does at start (loading its
 * modules) and with every burst of connections, then keeps it committed while idle.
 * Measured with `node dist/bench/ztunnel-memory.js --variants` (docs/performance.md,
 * "ztunnel memory"): idle RSS −8 MB, RSS per idle tunnelled connection −44 %, CPU per
 * GiB moved within a few per cent. `--lite-mode` (no optimizing compiler) saves more
 * memory but costs ~46 % more CPU per GiB, so it is not used.
 */
export const ZTUNNEL_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];
