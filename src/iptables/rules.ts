import { isIPv4 } from 'node:net';
import { WeftError } from '../lib/errors';

/**
 * Node-level traffic capture as `iptables-restore` text (table nat). Pure: the same
 * input always yields byte-identical text, so re-applying is a no-op and the output
 * can be compared with golden files.
 *
 * Why node-level DNAT and not Istio's in-pod REDIRECT: Node.js cannot setns() into a
 * pod, mark its sockets (SO_MARK) or ask for SO_ORIGINAL_DST. So the ztunnel listens in
 * the node's netns on the node address; pod traffic enters that netns through
 * PREROUTING (veth), gets DNAT'ed to the ztunnel, and the original destination is read
 * back from conntrack (see src/ztunnel/original-dst.ts). The ztunnel's own sockets
 * originate in the node netns (OUTPUT), so the PREROUTING rules never see them and no
 * mark is needed to avoid loops. DNAT rather than REDIRECT because REDIRECT rewrites to
 * the *incoming interface's* address, which a CNI's host-side veth usually lacks.
 */

/** The ztunnel's capture ports (reference.md §2). */
export interface CapturePorts {
  /** Redirected egress of enrolled pods. */
  outbound: number;
  /** Plaintext traffic to an enrolled pod that did not come over HBONE. */
  inboundPlaintext: number;
  /** HBONE (mTLS HTTP/2 CONNECT) addressed to an enrolled pod. */
  hbone: number;
}

export const DEFAULT_CAPTURE_PORTS: Readonly<CapturePorts> = Object.freeze({
  outbound: 15001,
  inboundPlaintext: 15006,
  hbone: 15008,
});

/** Chains the capture rules own. Jumped to from the built-in chains by the applier. */
export const CAPTURE_CHAINS = Object.freeze({
  /** Entry from nat PREROUTING: classifies pod traffic by enrolled source/destination. */
  prerouting: 'WEFT-PREROUTING',
  /** Entry from nat OUTPUT: the local ztunnel's HBONE to local enrolled pods. */
  output: 'WEFT-OUTPUT',
  /** Egress of an enrolled pod → ztunnel outbound port. */
  outbound: 'WEFT-OUTBOUND',
  /** Traffic to an enrolled pod → ztunnel inbound (HBONE or plaintext) port. */
  inbound: 'WEFT-INBOUND',
});

/** The kube-proxy emulation chain, owned by whoever applies service rules (the lab). */
export const SERVICES_CHAIN = 'WEFT-SERVICES';

export interface CaptureRulesInput {
  /** The node's own address, where the ztunnel listens (IPv4). */
  nodeAddress: string;
  /** IPv4 addresses of pods on this node that are in the mesh. Order does not matter. */
  enrolledPodIps: readonly string[];
  /**
   * Service VIP:ports with at least one enrolled endpoint on this node. Traffic to them
   * from sources outside the mesh goes to the inbound plaintext port instead of on to
   * kube-proxy: see generateCaptureRules for why. Order and duplicates do not matter.
   */
  capturedServices?: readonly CapturedServicePort[];
  ports?: CapturePorts;
}

/** A service port (the VIP side, before kube-proxy's DNAT) that the node captures. */
export interface CapturedServicePort {
  vip: string;
  port: number;
}

export interface ServiceEndpoint {
  ip: string;
  port: number;
}

export interface ServiceRule {
  vip: string;
  port: number;
  endpoints: readonly ServiceEndpoint[];
}

function invalid(field: string, value: unknown, expected: string): WeftError {
  return new WeftError('WEFT_CONFIG_INVALID', `invalid ${field}=${JSON.stringify(value)}: expected ${expected}`, {
    details: { field, value },
  });
}

function checkIPv4(field: string, value: unknown): string {
  if (typeof value !== 'string' || !isIPv4(value)) throw invalid(field, value, 'an IPv4 address such as 198.51.100.7 (IPv6 capture is not supported yet)');
  return value;
}

/**
 * A nodeAddress in 127.0.0.0/8 would make every DNAT from PREROUTING a martian that the
 * kernel drops silently (unless route_localnet=1), so it is refused up front.
 */
function checkNodeAddress(value: unknown): string {
  const ip = checkIPv4('nodeAddress', value);
  if (ip.startsWith('127.') || ip === '0.0.0.0') {
    throw invalid('nodeAddress', ip, "the node's routable address, not loopback or 0.0.0.0 (pod traffic cannot be DNAT'ed to loopback)");
  }
  return ip;
}

function checkPort(field: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw invalid(field, value, 'an integer port between 1 and 65535');
  }
  return value;
}

function checkPorts(ports: CapturePorts | undefined): CapturePorts {
  if (ports === undefined) return DEFAULT_CAPTURE_PORTS;
  const checked: CapturePorts = {
    outbound: checkPort('ports.outbound', ports.outbound),
    inboundPlaintext: checkPort('ports.inboundPlaintext', ports.inboundPlaintext),
    hbone: checkPort('ports.hbone', ports.hbone),
  };
  if (new Set([checked.outbound, checked.inboundPlaintext, checked.hbone]).size !== 3) {
    throw invalid('ports', ports, 'three distinct ports for outbound, inboundPlaintext and hbone');
  }
  return checked;
}

/** Numeric IPv4 order, so 198.51.100.9 sorts before 198.51.100.10. */
export function compareIPv4(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 4; i++) {
    const d = pa[i]! - pb[i]!;
    if (d !== 0) return d;
  }
  return 0;
}

function sortedUnique(ips: readonly string[]): string[] {
  return [...new Set(ips)].sort(compareIPv4);
}

function checkCapturedServices(value: unknown, node: string, pods: ReadonlySet<string>): CapturedServicePort[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalid('capturedServices', value, 'an array of {vip, port}');
  const byKey = new Map<string, CapturedServicePort>();
  value.forEach((svc: Partial<CapturedServicePort> | undefined, i) => {
    const vip = checkIPv4(`capturedServices[${i}].vip`, svc?.vip);
    if (vip === node || pods.has(vip)) throw invalid(`capturedServices[${i}].vip`, vip, 'a service VIP, not the node or an enrolled pod address');
    const port = checkPort(`capturedServices[${i}].port`, svc?.port);
    byKey.set(`${vip}:${port}`, { vip, port });
  });
  return [...byKey.values()].sort((a, b) => compareIPv4(a.vip, b.vip) || a.port - b.port);
}

/**
 * Capture rules for one node. Layout (each rule explained in docs via its comment):
 *
 *   PREROUTING → WEFT-PREROUTING
 *     -s <enrolled pod> -p tcp → WEFT-OUTBOUND   (first: enrolled→enrolled on the same
 *                                                  node must leave through 15001)
 *     -d <enrolled pod> -p tcp → WEFT-INBOUND    (only reached by non-enrolled sources)
 *     -d <VIP> --dport <port> → DNAT node:15006  (service ports with an enrolled
 *                                                  endpoint on this node; non-enrolled
 *                                                  sources only, as above)
 *   WEFT-OUTBOUND: RETURN for the node's own proxy ports, else DNAT node:15001
 *   WEFT-INBOUND:  dport 15008 → DNAT node:15008, else DNAT node:15006
 *   OUTPUT → WEFT-OUTPUT
 *     -d <enrolled pod> --dport 15008 → DNAT node:15008 (same-node HBONE from ztunnel)
 *
 * Pods not enrolled appear in no rule, so they are never captured.
 *
 * Why the VIP rules: a connection is DNAT'ed once (nat PREROUTING runs for its first
 * packet only). A non-mesh pod dialling a VIP is DNAT'ed by kube-proxy to the chosen
 * endpoint's pod IP; if that endpoint is an enrolled pod on this same node, the packet
 * never re-enters PREROUTING with the pod IP, so the `-d <enrolled pod>` rule cannot
 * catch it and it would reach the pod in plaintext, skipping authorization and STRICT
 * mTLS. So such VIP:ports are taken before kube-proxy (this chain is jumped to first)
 * and the ztunnel's inbound plaintext listener picks the endpoint itself, with the VIP
 * as the original destination. (On other nodes the capture sees the pod IP already.)
 */
export function generateCaptureRules(input: CaptureRulesInput): string {
  const node = checkNodeAddress(input.nodeAddress);
  const ports = checkPorts(input.ports);
  if (!Array.isArray(input.enrolledPodIps as unknown)) throw invalid('enrolledPodIps', input.enrolledPodIps, 'an array of IPv4 addresses');
  input.enrolledPodIps.forEach((ip, i) => checkIPv4(`enrolledPodIps[${i}]`, ip));
  const pods = sortedUnique(input.enrolledPodIps);
  if (pods.includes(node)) throw invalid('enrolledPodIps', node, 'pod addresses only: the node address cannot be enrolled');
  const services = checkCapturedServices(input.capturedServices, node, new Set(pods));

  const C = CAPTURE_CHAINS;
  const proxyPorts = [ports.outbound, ports.inboundPlaintext, ports.hbone].sort((a, b) => a - b).join(',');
  const lines: string[] = [
    `# weft capture rules: node ${node}, ${pods.length} enrolled pod(s)${services.length ? `, ${services.length} captured service port(s)` : ''}, ports outbound=${ports.outbound} inbound=${ports.inboundPlaintext} hbone=${ports.hbone}`,
    '*nat',
    ...[C.inbound, C.outbound, C.output, C.prerouting].sort().map((c) => `:${c} - [0:0]`),
  ];
  for (const pod of pods) {
    lines.push(`-A ${C.prerouting} -s ${pod}/32 -p tcp -m comment --comment "weft: egress of enrolled pod" -j ${C.outbound}`);
  }
  for (const pod of pods) {
    lines.push(`-A ${C.prerouting} -d ${pod}/32 -p tcp -m comment --comment "weft: ingress to enrolled pod" -j ${C.inbound}`);
  }
  for (const svc of services) {
    lines.push(`-A ${C.prerouting} -d ${svc.vip}/32 -p tcp -m tcp --dport ${svc.port} -m comment --comment "weft: service with an enrolled endpoint on this node, before kube-proxy" -j DNAT --to-destination ${node}:${ports.inboundPlaintext}`);
  }
  lines.push(
    `-A ${C.outbound} -d ${node}/32 -p tcp -m multiport --dports ${proxyPorts} -m comment --comment "weft: never capture traffic to the node proxy ports" -j RETURN`,
    `-A ${C.outbound} -p tcp -m comment --comment "weft: to ztunnel outbound" -j DNAT --to-destination ${node}:${ports.outbound}`,
    `-A ${C.inbound} -p tcp -m tcp --dport ${ports.hbone} -m comment --comment "weft: HBONE to ztunnel inbound" -j DNAT --to-destination ${node}:${ports.hbone}`,
    `-A ${C.inbound} -p tcp -m comment --comment "weft: plaintext to ztunnel inbound" -j DNAT --to-destination ${node}:${ports.inboundPlaintext}`,
  );
  for (const pod of pods) {
    lines.push(
      `-A ${C.output} -d ${pod}/32 -p tcp -m tcp --dport ${ports.hbone} -m comment --comment "weft: same-node HBONE to ztunnel inbound" -j DNAT --to-destination ${node}:${ports.hbone}`,
    );
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/**
 * kube-proxy-style service load balancing: VIP:port is DNAT'ed to one endpoint chosen
 * at random (the i-th of n rules matches with probability 1/(n-i), the last always), so
 * each endpoint gets 1/n of new connections. The applier jumps here from PREROUTING
 * *after* the capture chain: an enrolled pod's VIP traffic is already DNAT'ed to the
 * ztunnel (with the VIP as original destination) and never reaches this chain, and
 * neither does a non-mesh pod's traffic to a VIP with an enrolled endpoint on this node
 * (the capture chain's service rules); other traffic gets plain kube-proxy behaviour.
 *
 * A service port without endpoints gets no rule (the nat table cannot REJECT); such
 * connections go to the VIP itself and fail as unreachable.
 */
export function generateServiceRules(services: readonly ServiceRule[]): string {
  if (!Array.isArray(services as unknown)) throw invalid('services', services, 'an array of {vip, port, endpoints}');
  const byKey = new Map<string, { vip: string; port: number; endpoints: ServiceEndpoint[] }>();
  services.forEach((svc, i) => {
    const vip = checkIPv4(`services[${i}].vip`, svc?.vip);
    const port = checkPort(`services[${i}].port`, svc.port);
    if (!Array.isArray(svc.endpoints as unknown)) throw invalid(`services[${i}].endpoints`, svc.endpoints, 'an array of {ip, port}');
    const key = `${vip}:${port}`;
    if (byKey.has(key)) throw invalid(`services[${i}]`, key, 'each VIP:port at most once');
    const endpoints = svc.endpoints.map((ep, j) => ({
      ip: checkIPv4(`services[${i}].endpoints[${j}].ip`, ep?.ip),
      port: checkPort(`services[${i}].endpoints[${j}].port`, ep.port),
    }));
    const unique = new Map(endpoints.map((ep) => [`${ep.ip}:${ep.port}`, ep]));
    const sorted = [...unique.values()].sort((a, b) => compareIPv4(a.ip, b.ip) || a.port - b.port);
    byKey.set(key, { vip, port, endpoints: sorted });
  });
  const ordered = [...byKey.values()].sort((a, b) => compareIPv4(a.vip, b.vip) || a.port - b.port);

  const lines: string[] = [
    `# weft service rules: ${ordered.length} service port(s)`,
    '*nat',
    `:${SERVICES_CHAIN} - [0:0]`,
  ];
  for (const svc of ordered) {
    const match = `-A ${SERVICES_CHAIN} -d ${svc.vip}/32 -p tcp -m tcp --dport ${svc.port}`;
    const n = svc.endpoints.length;
    svc.endpoints.forEach((ep, i) => {
      const remaining = n - i;
      // Same format as kube-proxy (%0.10f) so the text is stable across runs.
      const pick = remaining > 1 ? ` -m statistic --mode random --probability ${(1 / remaining).toFixed(10)}` : '';
      lines.push(`${match} -m comment --comment "weft: service ${svc.vip}:${svc.port}"${pick} -j DNAT --to-destination ${ep.ip}:${ep.port}`);
    });
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}
