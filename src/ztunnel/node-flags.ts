/**
 * The Node/V8 flags a ztunnel runs with, wherever it is started: the lab passes them on
 * the command line (src/lab/up.ts), the DaemonSet as NODE_OPTIONS (daemonset/ztunnel.yaml,
 * checked equal by test/manifests.test.ts), `--workers` children inherit them.
 *
 * `--max-semi-space-size=4` (MiB): V8 grows the young generation up to 16 MiB per
 * semi-space when a process allocates fast, and a ztunnel does at start (loading its
 * modules) and with every burst of connections, then keeps it committed while idle.
 * Measured (docs/performance.md, "ztunnel memory"): with 4, RSS per idle tunnelled
 * connection 24 -> 15 KB and the lab's ztunnel RSS under `npm run bench` 149 -> 130 MB
 * at the same CPU per GiB (5,210 vs 5,206 ms). `=1` saves ~7 MB more idle but cost
 * +26 % CPU per GiB and ~0.8x the single-stream throughput on the lab in the same
 * hour, a bad trade for a data path. `--lite-mode` saves more memory but costs ~46 %
 * more CPU per GiB, so it is not used either.
 */
export const ZTUNNEL_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];
