import { canonicalIp, familyOf, formatHostPort } from '../lib/address';
import { checkIp, checkPort, compareIp, host, invalid, LINK_LOCAL, sortedUnique, type IpFamily } from './ip';

/**
 * Node-level traffic capture as `iptables-restore` text (table nat), plus the guard
 * (table filter) that refuses what the capture cannot see. Pure: the same input always
 * yields byte-identical text, so re-applying is a no-op and the output can be compared
 * with golden files. One generator for both families: IPv4 text for iptables, IPv6
 * text for ip6tables, chosen by the family of the node address.
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

/** The filter chain that refuses new TCP to enrolled pods that bypassed capture. */
export const GUARD_CHAIN = 'WEFT-FORWARD';

export interface CaptureRulesInput {
  /**
   * The node's own address where the ztunnel listens; its family (IPv4 or IPv6) is the
   * family of the rules, so every other address below must be of the same family.
   */
  nodeAddress: string;
  /** Addresses of pods on this node that are in the mesh. Order does not matter. */
  enrolledPodIps: readonly string[];
  /**
   * The node's other addresses (the registry's, a second interface). Like nodeAddress
   * and link-local, never captured from an enrolled pod: the pod reaches them directly,
   * as on a node without the mesh, instead of through 15001 (which would dial the node
   * itself: a loop, or egress leaving as the node).
   */
  nodeAddresses?: readonly string[];
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

/**
 * A loopback nodeAddress would make every DNAT from PREROUTING a martian that the
 * kernel drops silently (unless route_localnet=1), and a link-local one needs a scope
 * DNAT cannot carry, so both are refused up front, as is the unspecified address.
 */
function checkNodeAddress(value: unknown): { ip: string; family: IpFamily } {
  const family = typeof value === 'string' ? familyOf(canonicalIp(value)) : undefined;
  if (family === undefined) throw invalid('nodeAddress', value, 'an IPv4 or IPv6 address such as 198.51.100.7 or 2001:db8::7');
  const ip = checkIp('nodeAddress', value, family);
  const bad = family === 4 ? ip.startsWith('127.') || ip === '0.0.0.0' || ip.startsWith('169.254.')
    : ip === '::1' || ip === '::' || /^fe[89ab]/.test(ip);
  if (bad) {
    throw invalid('nodeAddress', ip, "the node's routable address, not loopback, link-local or unspecified (pod traffic cannot be DNAT'ed there)");
  }
  return { ip, family };
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

function checkIpList(field: string, value: unknown, family: IpFamily, perFamily?: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalid(field, value, `an array of IPv${family} addresses`);
  return sortedUnique(value.map((ip, i) => checkIp(`${field}[${i}]`, ip, family, perFamily)));
}

/** Why capture input has one family: the family of its nodeAddress, where the DNATs go. */
function followsNode(family: IpFamily): string {
  return `the rules follow nodeAddress, an IPv${family} address: capture the IPv${family === 4 ? 6 : 4} addresses `
    + `with a separate call whose nodeAddress is the node's IPv${family === 4 ? 6 : 4} address (byFamily splits a mixed list)`;
}

function checkCapturedServices(value: unknown, family: IpFamily, taken: ReadonlySet<string>): CapturedServicePort[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw invalid('capturedServices', value, 'an array of {vip, port}');
  const byKey = new Map<string, CapturedServicePort>();
  value.forEach((svc: Partial<CapturedServicePort> | undefined, i) => {
    const vip = checkIp(`capturedServices[${i}].vip`, svc?.vip, family, followsNode(family));
    if (taken.has(vip)) throw invalid(`capturedServices[${i}].vip`, vip, 'a service VIP, not the node or an enrolled pod address');
    const port = checkPort(`capturedServices[${i}].port`, svc?.port);
    byKey.set(`${vip}:${port}`, { vip, port });
  });
  return [...byKey.values()].sort((a, b) => compareIp(a.vip, b.vip) || a.port - b.port);
}

/**
 * Capture rules for one node and one address family. Layout (each rule explained in
 * docs via its comment):
 *
 *   PREROUTING → WEFT-PREROUTING
 *     -s <enrolled pod> -p tcp → WEFT-OUTBOUND   (first: enrolled→enrolled on the same
 *                                                  node must leave through 15001)
 *     -d <enrolled pod> -p tcp → WEFT-INBOUND    (only reached by non-enrolled sources)
 *     -d <VIP> --dport <port> → DNAT node:15006  (service ports with an enrolled
 *                                                  endpoint on this node; non-enrolled
 *                                                  sources only, as above)
 *   WEFT-OUTBOUND: RETURN for the node's own addresses and link-local, else DNAT
 *                  node:15001
 *   WEFT-INBOUND:  dport 15008 → DNAT node:15008, else DNAT node:15006
 *   OUTPUT → WEFT-OUTPUT
 *     -d <enrolled pod> --dport 15008 → DNAT node:15008 (same-node HBONE from ztunnel)
 *
 * Pods not enrolled appear in no rule, so they are never captured.
 *
 * Why the RETURNs: the ztunnel would dial what it captured from the node's own
 * address. To the node itself that is a self-connect (a loop through 15001, or a
 * plaintext bypass of the pod's identity); to link-local (169.254.169.254 metadata
 * endpoints) the endpoint would see, and trust, the node instead of the pod. So an
 * enrolled pod reaches those directly, from its own address, exactly as without the
 * mesh; the ztunnel additionally refuses them at 15001 in case a rule is missing.
 *
 * Why the VIP rules: a connection is DNAT'ed once (nat PREROUTING runs for its first
 * packet only). A non-mesh pod dialling a VIP is DNAT'ed by kube-proxy to the chosen
 * endpoint's pod IP; if that endpoint is an enrolled pod on this same node, the packet
 * never re-enters PREROUTING with the pod IP, so the `-d <enrolled pod>` rule cannot
 * catch it and it would reach the pod in plaintext, skipping authorization and STRICT
 * mTLS. So such VIP:ports are taken before kube-proxy (this chain is jumped to first)
 * and the ztunnel's inbound plaintext listener picks the endpoint itself, with the VIP
 * as the original destination. (On other nodes the capture sees the pod IP already.)
 * Other DNATs to a same-node pod (NodePort, hostPort, LoadBalancer) are refused by the
 * guard rules instead: see generateCaptureGuardRules.
 */
export function generateCaptureRules(input: CaptureRulesInput): string {
  const { ip: node, family } = checkNodeAddress(input.nodeAddress);
  const ports = checkPorts(input.ports);
  if (!Array.isArray(input.enrolledPodIps as unknown)) throw invalid('enrolledPodIps', input.enrolledPodIps, `an array of IPv${family} addresses`);
  const pods = checkIpList('enrolledPodIps', input.enrolledPodIps, family, followsNode(family));
  if (pods.includes(node)) throw invalid('enrolledPodIps', node, 'pod addresses only: the node address cannot be enrolled');
  const own = sortedUnique([node, ...checkIpList('nodeAddresses', input.nodeAddresses, family, followsNode(family))]);
  const clash = own.find((ip) => pods.includes(ip));
  if (clash) throw invalid('nodeAddresses', clash, 'the node\'s own addresses, none of them an enrolled pod address');
  const services = checkCapturedServices(input.capturedServices, family, new Set([...own, ...pods]));

  const C = CAPTURE_CHAINS;
  const lines: string[] = [
    `# weft capture rules (IPv${family}): node ${node}, ${pods.length} enrolled pod(s)${services.length ? `, ${services.length} captured service port(s)` : ''}, ports outbound=${ports.outbound} inbound=${ports.inboundPlaintext} hbone=${ports.hbone}`,
    '*nat',
    ...[C.inbound, C.outbound, C.output, C.prerouting].sort().map((c) => `:${c} - [0:0]`),
  ];
  for (const pod of pods) {
    lines.push(`-A ${C.prerouting} -s ${host(pod)} -p tcp -m comment --comment "weft: egress of enrolled pod" -j ${C.outbound}`);
  }
  for (const pod of pods) {
    lines.push(`-A ${C.prerouting} -d ${host(pod)} -p tcp -m comment --comment "weft: ingress to enrolled pod" -j ${C.inbound}`);
  }
  for (const svc of services) {
    lines.push(`-A ${C.prerouting} -d ${host(svc.vip)} -p tcp -m tcp --dport ${svc.port} -m comment --comment "weft: service with an enrolled endpoint on this node, before kube-proxy" -j DNAT --to-destination ${formatHostPort(node, ports.inboundPlaintext)}`);
  }
  for (const ip of own) {
    lines.push(`-A ${C.outbound} -d ${host(ip)} -m comment --comment "weft: never capture traffic to the node addresses" -j RETURN`);
  }
  lines.push(
    `-A ${C.outbound} -d ${LINK_LOCAL[family]} -m comment --comment "weft: never capture link-local (metadata endpoints, the pod gateway)" -j RETURN`,
    `-A ${C.outbound} -p tcp -m comment --comment "weft: to ztunnel outbound" -j DNAT --to-destination ${formatHostPort(node, ports.outbound)}`,
    `-A ${C.inbound} -p tcp -m tcp --dport ${ports.hbone} -m comment --comment "weft: HBONE to ztunnel inbound" -j DNAT --to-destination ${formatHostPort(node, ports.hbone)}`,
    `-A ${C.inbound} -p tcp -m comment --comment "weft: plaintext to ztunnel inbound" -j DNAT --to-destination ${formatHostPort(node, ports.inboundPlaintext)}`,
  );
  for (const pod of pods) {
    lines.push(
      `-A ${C.output} -d ${host(pod)} -p tcp -m tcp --dport ${ports.hbone} -m comment --comment "weft: same-node HBONE to ztunnel inbound" -j DNAT --to-destination ${formatHostPort(node, ports.hbone)}`,
    );
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}

export interface CaptureGuardInput {
  family: IpFamily;
  /** Enrolled pod addresses of this family on this node. */
  enrolledPodIps: readonly string[];
  /**
   * Whether the nat capture rules of this family are in force. False when the node has
   * no address of this family for the ztunnel to listen on (an IPv6 pod address on a
   * node whose ztunnel has only an IPv4 address): then the pods' egress of this family
   * cannot be captured, so it is refused too, rather than leaving in plaintext.
   */
  captured: boolean;
}

/**
 * The guard (table filter, WEFT-FORWARD, jumped to first from FORWARD): new TCP
 * connections *forwarded* to an enrolled pod are refused with a reset.
 *
 * Every legitimate path to an enrolled pod ends at the local ztunnel (INPUT) and the
 * ztunnel delivers from the node itself (OUTPUT); only a bypass is forwarded. The
 * known bypass is a DNAT by someone else in nat PREROUTING, which runs once per
 * connection: NodePort, LoadBalancer and externalIPs (kube-proxy) and hostPort (the
 * CNI's portmap) rewrite `<node>:<port>` to `<pod>:<port>`, so the capture chain never
 * saw the pod address. Also caught: a capture chain that is not (or no longer) first
 * in PREROUTING, and the pod's own-family egress when that family is not captured.
 * Refusing is fail-closed; reaching such a pod through a NodePort needs the ztunnel to
 * resolve the node port (not done yet), or a client in the mesh.
 *
 * `--ctstate NEW` leaves connections established before the pod was enrolled alone,
 * like the nat rules (which only affect new connections).
 */
export function generateCaptureGuardRules(input: CaptureGuardInput): string {
  const family = input.family;
  if (family !== 4 && family !== 6) throw invalid('family', family, '4 or 6');
  if (!Array.isArray(input.enrolledPodIps as unknown)) throw invalid('enrolledPodIps', input.enrolledPodIps, `an array of IPv${family} addresses`);
  const pods = checkIpList('enrolledPodIps', input.enrolledPodIps, family);
  const lines: string[] = [
    `# weft capture guard (IPv${family}): ${pods.length} enrolled pod(s)${input.captured ? '' : ', not captured in this family: egress refused too'}`,
    '*filter',
    `:${GUARD_CHAIN} - [0:0]`,
  ];
  const reject = '-m conntrack --ctstate NEW';
  const target = '-j REJECT --reject-with tcp-reset';
  for (const pod of pods) {
    lines.push(`-A ${GUARD_CHAIN} -d ${host(pod)} -p tcp ${reject} -m comment --comment "weft: new TCP to an enrolled pod that bypassed capture (NodePort, hostPort, LoadBalancer)" ${target}`);
  }
  if (!input.captured) {
    for (const pod of pods) {
      lines.push(`-A ${GUARD_CHAIN} -s ${host(pod)} -p tcp ${reject} -m comment --comment "weft: egress of an enrolled pod in a family this node does not capture" ${target}`);
    }
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** Splits addresses by family (canonical text), for per-family generation. */
export function byFamily(ips: readonly string[]): Record<IpFamily, string[]> {
  const out: Record<IpFamily, string[]> = { 4: [], 6: [] };
  for (const ip of ips.map(canonicalIp)) {
    const f = familyOf(ip);
    if (f) out[f].push(ip);
  }
  return out;
}
