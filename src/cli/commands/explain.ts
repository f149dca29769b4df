/**
 * `weft explain <ns>/<pod> <destination>`: what the mesh would do with a new
 * connection and why, step by step. The reasoning is explain-model.ts (the proxies'
 * own decision code); this file prints it and maps the verdict to the exit code.
 */
import { WeftError } from '../../lib/errors';
import { contextOptions, loadContext } from '../context';
import { collectHeaderFlags, explainRequest } from '../explain-l7';
import { expandDestination, type Explanation, type PathExplanation, type WorkloadRef } from '../explain-model';
import type { WaypointExplanation } from '../explain-waypoint';
import { defineCommand } from '../io';
import { formatStructured, formatTable, outputOptions } from '../output';
import { withRegistry } from '../registry-session';

/** Exit code when the answer is "denied" or "refused" (also partly). */
export const EXIT_DENIED = 3;

function who(w: WorkloadRef): string {
  return `${w.namespace}/${w.name}`;
}

function indent(text: string, by: string): string {
  return text.split('\n').map((l) => (l ? by + l : l)).join('\n');
}

const PATH_KINDS: Record<PathExplanation['kind'], (p: PathExplanation) => string> = {
  hbone: () => 'HBONE (mutual TLS tunnel)',
  passthrough: () => 'passthrough, plain TCP',
  refuse: () => 'refused',
  answer: () => 'the waypoint answers itself',
  waypoint: (p) => (p.plaintext ? 'from the waypoint, plain TCP' : 'from the waypoint, HBONE as the waypoint\'s identity'),
};

const BINDING: Record<WaypointExplanation['binding'], string> = { service: 'service\'s', workload: 'pod\'s', namespace: 'namespace\'s' };

/** The source ztunnel's hop to the waypoint, its L7 step and the policy warnings. */
function formatWaypoint(w: WaypointExplanation, step: number): string[] {
  const out: string[] = [];
  out.push(`${step}. Waypoint ${w.waypoint} (bound by the ${BINDING[w.binding]} weft.io/use-waypoint label): HBONE (mutual TLS tunnel)`);
  out.push(`   ${w.route}`);
  out.push(w.endpointOf
    ? `   CONNECT :authority ${w.authority} (the chosen endpoint's IP:target port: service ${w.endpointOf} has no waypoint, so the endpoint's workload waypoint takes it and sends it to that pod)`
    : w.podAddressed
      ? `   CONNECT :authority ${w.authority} (the original pod IP:port: the waypoint sends it to that pod)`
      : `   CONNECT :authority ${w.authority} (the original VIP:port: the waypoint routes by the service)`);
  out.push(`   Identities: the source presents ${w.identities.source}`);
  out.push(`               the waypoint must present ${w.identities.destination}`);
  if (w.l7) {
    out.push('   L7 (routes):');
    for (const l of w.l7.summary) out.push(`     ${l}`);
  } else if (w.l7Note) {
    out.push(`   L7 (routes): ${w.l7Note}`);
  }
  out.push('   Endpoints see the waypoint\'s identity as the peer, and the source address from its `forwarded` header.');
  for (const warning of w.policyWarnings) out.push(`   Warning: ${warning}`);
  return out;
}

function formatPath(p: PathExplanation, step: number, many: boolean): string[] {
  const out: string[] = [];
  const head = many && p.endpoint ? ` via endpoint ${p.endpoint}` : '';
  out.push(`${step}. Path${head}: ${PATH_KINDS[p.kind](p)}`);
  out.push(`   ${p.route}`);
  if (p.kind === 'hbone' || (p.kind === 'waypoint' && p.identities)) {
    out.push(`   CONNECT :authority ${p.authority}`);
    out.push(`   Identities: the source presents ${p.identities!.source}`);
    out.push(`               the destination must present ${p.identities!.destination}`);
  }
  if (p.reason) out.push(`   Why not a tunnel: ${p.reason}`);
  if (p.refusal) out.push(p.kind === 'answer' ? `   Answer (${p.refusal.flag}): ${p.refusal.reason}` : `   Refused (${p.refusal.flag}): ${p.refusal.reason}`);
  if (p.waypointNote) out.push(`   Note: ${p.waypointNote}`);
  const a = p.authorization;
  if (a) {
    out.push(`${step + 1}. Authorization by ${a.enforcedBy}`);
    out.push(`   Peer identity: ${a.peerIdentity ?? 'none (plaintext)'}`);
    out.push(`   mTLS mode (PeerAuthentication): ${a.peerAuthentication}${a.peerIdentity ? '' : a.peerAuthentication === 'STRICT' ? ' — refuses plaintext' : ' — plaintext accepted'}`);
    if (a.policies.length === 0) {
      out.push('   Policies: none apply to this workload');
    } else {
      out.push('   Policies that apply:');
      const table = formatTable({
        headers: ['POLICY', 'ACTION', 'MATCH'],
        rows: a.policies.map((v) => [v.policy, v.action, v.matched ? `yes (rule ${v.rule})` : 'no']),
      });
      out.push(indent(table.trimEnd(), '     '));
    }
    out.push(`   Decision: ${a.allowed ? 'ALLOW' : 'DENY'}${a.decidingPolicy ? ` by ${a.decidingPolicy}` : ''} — ${a.reason}`);
  } else if (p.noPolicy) {
    out.push(`   Policy: ${p.noPolicy}`);
  }
  return out;
}

export function formatExplanation(e: Explanation): string {
  const lines: string[] = [];
  const s = e.source;
  // 1. source
  if (s.workload) {
    lines.push(`1. Source: ${who(s.workload)} (${s.ip}) on node ${s.workload.node}`);
    lines.push(`   In the mesh: ${s.enrolled ? 'yes' : 'no'} — ${s.enrolmentReason}`);
    lines.push(`   Identity: ${s.workload.identity}${s.enrolled ? '' : ' (not used: its traffic is not tunnelled)'}`);
  } else {
    lines.push(`1. Source: ${s.ip}`);
    lines.push(`   In the mesh: no — ${s.enrolmentReason}`);
  }
  // 2. destination
  const d = e.destination;
  lines.push(`2. Destination: ${d.input}`);
  if (d.resolution) lines.push(`   ${d.resolution}`);
  if (d.kind === 'service' && d.service) {
    const sv = d.service;
    lines.push(`   Service ${sv.namespace}/${sv.name} (${sv.hostname}), VIP ${d.dialled}`
      + (sv.targetPort !== undefined ? ` → target port ${sv.targetPort}` : ' — the service has no such port'));
    if (sv.waypoint) lines.push(`   Bound to waypoint ${sv.namespace}/${sv.waypoint}`);
    const eps = d.endpoints ?? [];
    const usable = eps.filter((x) => x.usable).length;
    if (eps.length === 0) {
      lines.push('   Endpoints: none (its selector matches no workload)');
    } else {
      lines.push(`   Endpoints: ${usable} of ${eps.length} usable (healthy, with an address)`);
      const table = formatTable({
        headers: ['POD', 'ADDRESS', 'NODE', 'STATUS', 'IN MESH'],
        rows: eps.map((x) => [who(x), x.address, x.node, x.status, x.enrolled ? `yes (${x.identity})` : 'no']),
      });
      lines.push(indent(table.trimEnd(), '     '));
      for (const x of eps) if (x.skipped) lines.push(`   Skipped ${who(x)}: ${x.skipped}`);
    }
  } else if (d.kind === 'workload' && d.workload) {
    const w = d.workload;
    lines.push(`   ${d.dialled} is pod ${who(w)} on node ${w.node}, ${w.status}, ${w.enrolled ? `in the mesh as ${w.identity}` : 'not in the mesh'}`);
  } else {
    lines.push(`   ${d.dialled} is neither a service VIP nor a pod in the registry: the connection leaves the mesh`);
  }
  if (e.l7 && !e.l7.applied) {
    if (e.l7.note) lines.push(`   L7 (routes): ${e.l7.note}`);
    if (e.l7.warning) lines.push(`   Warning: ${e.l7.warning}`);
  }
  // 3+. the waypoint, then paths
  let step = 3;
  if (e.waypoint) lines.push(...formatWaypoint(e.waypoint, step++));
  const many = e.paths.length > 1;
  if (many) lines.push(e.waypoint ? '   The waypoint balances over the usable endpoints; each path is shown.' : '   The ztunnel balances over the usable endpoints; each path is shown.');
  for (const p of e.paths) {
    lines.push(...formatPath(p, step, many));
    step += p.authorization ? 2 : 1;
  }
  lines.push('');
  lines.push(`Verdict: ${e.verdict.toUpperCase()}${verdictDetail(e)}`);
  return lines.join('\n') + '\n';
}

function verdictDetail(e: Explanation): string {
  const p = e.paths;
  if (e.verdict === 'partly-denied') {
    const denied = p.filter((x) => x.outcome !== 'allowed').map((x) => x.endpoint ?? '?');
    return ` — connections balanced to ${denied.join(', ')} would fail`;
  }
  const first = p[0];
  if (!first) return '';
  if (first.kind === 'answer') return ` — the waypoint answers ${first.refusal?.flag.replace('HTTP ', '')}: ${first.refusal?.reason}`;
  if (first.outcome === 'refused') return ` — ${first.refusal?.reason}`;
  if (first.outcome === 'denied') return ` — ${first.authorization?.reason}`;
  if (e.waypoint) return ` — through waypoint ${e.waypoint.waypoint}`;
  return first.kind === 'hbone' ? ' — over HBONE with mutual TLS' : ' — in plain TCP (not encrypted by the mesh)';
}

export function exitCodeFor(e: Explanation): number {
  return e.verdict === 'allowed' ? 0 : EXIT_DENIED;
}

const USAGE = 'weft explain <namespace>/<pod> <destination|URL> [--method M] [--path P] [-H \'name: value\']... [-o table|json|yaml]';

const command = defineCommand({
  usage: USAGE,
  summary: 'explain step by step what the mesh does with a connection from a pod to a destination, and why',
  description: `<destination> is ip:port, <service>.<namespace>[.svc.cluster.local]:port, <service>:port (in the
source's namespace) or <namespace>/<pod>:port. Without :port, a service's every port is explained in
turn (-o json|yaml: {items: [...]}), and a pod's declared ports. The source may also be a client IP outside the mesh.
The answer comes from the same code the ztunnels run (routing, enrolment, authorization) applied
to the registry as it is now: enrolment of the source and why, how the destination resolves
(service endpoints and their health), the path (HBONE to which node and pod IP:15008, through the
service's waypoint, plain TCP passthrough, or refused), the identities each side must present, and
which policy decides — with a warning when a policy names the client but sees the waypoint.
For a service bound to a waypoint, the request described by the URL (or --path), --method and
-H is run through the waypoint's own route code (decideRoute): the attached routes (producer or
consumer, and why), each match in precedence order and why it failed, the winning route, rule
and match, filters (header edits, rewrite, redirect, mirrors), timeouts and retry, every backend
with its weight share, or the 404/500/503 the waypoint would answer. Without a waypoint, routes
are not applied (L4 only); routes attached anyway are warned about.`,
  specs: {
    ...contextOptions,
    output: outputOptions.output,
    method: { flag: 'method', default: 'GET', description: 'HTTP method of the request the waypoint routes', parse: (v: string) => { if (!/^[A-Za-z]+$/.test(v)) throw new Error('expected a method such as GET or POST'); return v.toUpperCase(); } },
    path: { flag: 'path', default: undefined as string | undefined, defaultText: 'the URL\'s path, or /', description: 'request path (and ?query), overriding the URL\'s', parse: (v: string) => v as string | undefined },
    header: { flag: 'header', default: [] as string[], defaultText: 'none', description: 'a request header "name: value" (-H, repeatable)', parse: (v: string) => JSON.parse(v) as string[] },
  },
  footer: `Exit status: 0 when the connection would be allowed; ${EXIT_DENIED} when it would be denied by policy or
refused (for a service: when any usable endpoint would deny it); 1 or 2 on errors.

Examples:
  weft explain demo/client echo.demo:80
  weft explain demo/client echo.demo          (every port of the service)
  weft explain legacy/client 198.19.2.11:8080 -o json
  weft explain demo/client http://echo.demo/api -H 'x-user: beta'
  weft explain demo/client echo.demo:80 --method POST --path '/api/v2?debug=1'`,
  async run({ values, positionals }, io) {
    if (positionals.length !== 2) {
      throw new WeftError('WEFT_USAGE', `expected a source and a destination; usage: ${USAGE}`);
    }
    const ctx = loadContext(values, io.env);
    const flags = { method: values.method, headers: values.header, ...(values.path !== undefined ? { path: values.path } : {}) };
    // A service without a port means all its ports (or its only one), each explained.
    const all = await withRegistry(ctx, async (s) => {
      const state = await s.load();
      return expandDestination(state, positionals[0]!, positionals[1]!).map((d) => explainRequest(state, positionals[0]!, d, flags));
    });
    if (all.length === 1) {
      io.stdout(values.output === 'table' ? formatExplanation(all[0]!) : formatStructured(all[0]!, values.output));
    } else if (values.output === 'table') {
      io.stdout(all.map((e) => `== ${e.destination.input} (${all.length} ports of the service; each explained) ==\n${formatExplanation(e)}`).join('\n'));
    } else {
      io.stdout(formatStructured({ items: all }, values.output));
    }
    return Math.max(...all.map(exitCodeFor));
  },
});

/** Repeated -H flags are collected before the option parser (last flag wins) sees them. */
export default {
  ...command,
  runWith: (argv: string[], io: Parameters<typeof command.runWith>[1]) => command.runWith(collectHeaderFlags(argv), io),
  run: (argv: string[]) => command.run(collectHeaderFlags(argv)),
} satisfies typeof command;
