#!/usr/bin/env node
import { WeftError, isWeftError } from '../lib/errors';
import { VERSION } from '../lib/version';
import type { CommandEntry } from './command';

/**
 * The command table. Components (`weft ca`, `weft ztunnel`, ...) and operator commands
 * share one binary so a node image needs one entry point.
 */
export const COMMANDS: Record<string, CommandEntry> = {
  ca: { summary: 'run the mesh certificate authority (gRPC, Istio-compatible)', component: true, load: () => require('../ca/command').default },
  ztunnel: { summary: 'run the per-node L4 proxy', component: true, load: () => require('../ztunnel/command').default },
  controller: { summary: 'mirror the Kubernetes API into the registry (leader-elected)', component: true, load: () => require('../controller/command').default },
  lab: { summary: 'run the local multi-node lab (up, down, status, exec)', load: () => require('../lab/command').default },
  status: { summary: 'health of the registry, the CA and every ztunnel', load: () => require('./commands/status').default },
  workloads: { summary: 'workloads: address, node, waypoint, HBONE or TCP, identity', load: () => require('./commands/workloads').default },
  services: { summary: 'services: VIPs, ports, waypoint, healthy/total endpoints', load: () => require('./commands/services').default },
  policies: { summary: 'authorization policies and peer authentication (STRICT/PERMISSIVE)', load: () => require('./commands/policies').default },
  tunnels: { summary: 'HBONE tunnels per node: identities, peer, streams, bytes', load: () => require('./commands/tunnels').default },
  connections: { summary: 'live proxied connections per node', load: () => require('./commands/connections').default },
  certs: { summary: 'workload certificates per node: state, validity, serial', load: () => require('./commands/certs').default },
  apply: { summary: 'create or update routes, waypoints and policies from manifests (-f FILE|DIR|-)', load: () => require('./commands/apply').default },
  delete: { summary: 'delete the routes, waypoints and policies named in manifests', load: () => require('./commands/delete').default },
  routes: { summary: 'HTTPRoutes and GRPCRoutes: parents, backends, Accepted and ResolvedRefs status', load: () => require('./commands/routes').default },
  admission: { summary: 'fault injection, rate limits and load shedding at the waypoints: counts, buckets, concurrency limit', load: () => require('./commands/admission').default },
  outliers: { summary: 'outlier detection at the waypoints: ejected endpoints, reason, when they get their probe', load: () => require('./commands/outliers').default },
  stat: { summary: 'golden signals per service and edge: rps, success rate, p50/p95/p99 latency, mTLS', load: () => require('./commands/stat').default },
  top: { summary: 'golden signals live: per edge by requests per second, and each proxy\'s saturation', load: () => require('./commands/top').default },
  trafficpolicies: { summary: 'TrafficPolicies (resilience): target Services, sections, Accepted / Conflicted / TargetNotFound', load: () => require('./commands/trafficpolicies').default },
  namespace: { summary: 'enroll/unenroll a namespace in the mesh (no pod restart), bind it to a waypoint, list namespaces', load: () => require('./commands/namespace').default },
  waypoint: { summary: 'add or remove a namespace\'s waypoint (L7 proxy); `waypoint run` runs one', load: () => require('./commands/waypoint').default },
  waypoints: { summary: 'waypoints: node and pod, address, identity, ready, what uses them', load: () => require('./commands/waypoints').default },
  graph: { summary: 'the service graph with rps, success rate and latency on each edge: text, DOT, Mermaid, SVG or JSON', load: () => require('./commands/graph').default },
  dashboard: { summary: 'a local web page: live service graph, golden signals per edge, recent traces, the tap', load: () => require('./commands/dashboard').default },
  traces: { summary: 'recent traces stitched across ztunnels and waypoints, drawn as a waterfall (-o json: OTLP)', load: () => require('./commands/traces').default },
  tap: { summary: 'the live stream of requests and connections through the proxies, with verdicts (routed, retried, denied, ...)', load: () => require('./commands/tap').default },
  explain: { summary: 'why a connection from a pod to a destination is tunnelled, passed through or denied', load: () => require('./commands/explain').default },
  completion: { summary: 'shell completion script (bash)', load: () => require('./commands/completion').default },
};

function usage(): string {
  const names = Object.keys(COMMANDS);
  const width = Math.max(...names.map((n) => n.length)) + 2;
  const list = (component: boolean) =>
    names.filter((n) => Boolean(COMMANDS[n]!.component) === component)
      .map((n) => `  ${n.padEnd(width)}${COMMANDS[n]!.summary}`).join('\n');
  return [
    `weft ${VERSION}: an ambient service mesh`,
    '',
    'Usage: weft <command> [flags]   (weft <command> --help for its flags)',
    '',
    'Components:',
    list(true),
    '',
    'Commands:',
    list(false),
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === 'version') {
    process.stdout.write(`weft ${VERSION}\n`);
    return 0;
  }
  const entry = COMMANDS[name];
  if (!entry) throw new WeftError('WEFT_USAGE', `unknown command "${name}"; run weft --help to list the commands`);
  const command = entry.load();
  // Only flags before `--` are ours: `weft lab exec pod -- ls --help` runs `ls --help`.
  const ownArgs = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;
  if (ownArgs.includes('--help') || ownArgs.includes('-h')) {
    process.stdout.write(command.help() + '\n');
    return 0;
  }
  return command.run(rest);
}

function exitCodeFor(err: unknown): number {
  return isWeftError(err) && (err.code === 'WEFT_USAGE' || err.code === 'WEFT_CONFIG_INVALID' || err.code === 'WEFT_MANIFEST_INVALID') ? 2 : 1;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => { process.exitCode = code; },
    (err: unknown) => {
      if (isWeftError(err)) process.stderr.write(`weft: ${err.message} [${err.code}]\n`);
      else process.stderr.write(`weft: unexpected error: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exitCode = exitCodeFor(err);
    },
  );
}
