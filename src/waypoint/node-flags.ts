/**
 * The Node/V8 flags a waypoint runs with, wherever it is started: the lab passes them on
 * the command line (src/lab/waypoint-pod.ts), the controller's Deployment as NODE_OPTIONS
 * (src/controller/waypoint-deploy.ts; test/controller-gateway.test.ts checks it).
 *
 * `--max-semi-space-size=4` (MiB): V8 grows the young generation up to 16 MiB per
 * semi-space under a request load and keeps it committed. Measured with
 * `node dist/bench/waypoint.js --variant` (docs/performance.md, "Waypoint"): RSS under
 * load 86–93 MB instead of 104–123, started 73 instead of 81; CPU per request at max
 * +2 % (fastest rounds) to +6 % (medians) over 7 interleaved rounds. `=1` cost more CPU
 * for little more memory; `--optimize-for-size` saves ~40 MB but costs up to ~50 % more
 * CPU (and is not allowed in NODE_OPTIONS).
 */
export const WAYPOINT_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];
