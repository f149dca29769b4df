/**
 * The lab's kube-proxy emulation as `iptables-restore` text (table nat, chain
 * WEFT-SERVICES). Pure: the same input always yields byte-identical text. It exists so
 * the lab reproduces what kube-proxy does to a connection before the ztunnel sees it,
 * including the DNAT that makes NodePort traffic reach a pod without passing the
 * capture rules (see generateCaptureGuardRules).
 */
import { formatHostPort } from '../lib/address';
import { checkIp, checkPort, compareIp, invalid } from './ip';

/** Why an IPv6 address is refused here. */
const IPV4_ONLY = "the lab's kube-proxy emulation is IPv4 only: give the service an IPv4 VIP and IPv4 endpoints";

/** The kube-proxy emulation chain, owned by whoever applies service rules (the lab). */
export const SERVICES_CHAIN = 'WEFT-SERVICES';

export interface ServiceEndpoint {
  ip: string;
  port: number;
}

export interface ServiceRule {
  vip: string;
  port: number;
  endpoints: readonly ServiceEndpoint[];
}

/**
 * A NodePort: TCP to any of the node's own addresses on `nodePort` goes to one of
 * `endpoints`. The lab gives each node only its local endpoints (kube-proxy's
 * `externalTrafficPolicy: Local`: no SNAT, the client address is kept), which is the
 * case that matters for capture: the endpoint is on the node that did the DNAT.
 */
export interface NodePortRule {
  nodePort: number;
  endpoints: readonly ServiceEndpoint[];
}

type Sorted = { match: string; comment: string; endpoints: ServiceEndpoint[] };

function endpointsOf(field: string, list: unknown): ServiceEndpoint[] {
  if (!Array.isArray(list)) throw invalid(field, list, 'an array of {ip, port}');
  const endpoints = list.map((ep: Partial<ServiceEndpoint> | undefined, j) => ({
    ip: checkIp(`${field}[${j}].ip`, ep?.ip, 4, IPV4_ONLY),
    port: checkPort(`${field}[${j}].port`, ep?.port),
  }));
  const unique = new Map(endpoints.map((ep) => [`${ep.ip}:${ep.port}`, ep]));
  return [...unique.values()].sort((a, b) => compareIp(a.ip, b.ip) || a.port - b.port);
}

/**
 * kube-proxy-style service load balancing: VIP:port (and NodePorts) DNAT'ed to one
 * endpoint chosen at random (the i-th of n rules matches with probability 1/(n-i), the
 * last always), so each endpoint gets 1/n of new connections. The applier jumps here
 * from PREROUTING *after* the capture chain: an enrolled pod's VIP traffic is already
 * DNAT'ed to the ztunnel (with the VIP as original destination) and never reaches this
 * chain, and neither does a non-mesh pod's traffic to a VIP with an enrolled endpoint on
 * this node (the capture chain's service rules); other traffic gets plain kube-proxy
 * behaviour.
 *
 * A port without endpoints gets no rule (the nat table cannot REJECT); such connections
 * go to the VIP itself and fail as unreachable.
 */
export function generateServiceRules(services: readonly ServiceRule[], nodePorts: readonly NodePortRule[] = []): string {
  if (!Array.isArray(services as unknown)) throw invalid('services', services, 'an array of {vip, port, endpoints}');
  if (!Array.isArray(nodePorts as unknown)) throw invalid('nodePorts', nodePorts, 'an array of {nodePort, endpoints}');
  const byKey = new Map<string, Sorted & { vip: string; port: number }>();
  services.forEach((svc, i) => {
    const vip = checkIp(`services[${i}].vip`, svc?.vip, 4, IPV4_ONLY);
    const port = checkPort(`services[${i}].port`, svc.port);
    const key = `${vip}:${port}`;
    if (byKey.has(key)) throw invalid(`services[${i}]`, key, 'each VIP:port at most once');
    byKey.set(key, {
      vip, port, endpoints: endpointsOf(`services[${i}].endpoints`, svc.endpoints),
      match: `-d ${vip}/32 -p tcp -m tcp --dport ${port}`, comment: `weft: service ${vip}:${port}`,
    });
  });
  const byNodePort = new Map<number, Sorted & { port: number }>();
  nodePorts.forEach((np, i) => {
    const port = checkPort(`nodePorts[${i}].nodePort`, np?.nodePort);
    if (byNodePort.has(port)) throw invalid(`nodePorts[${i}].nodePort`, port, 'each NodePort at most once');
    byNodePort.set(port, {
      port, endpoints: endpointsOf(`nodePorts[${i}].endpoints`, np.endpoints),
      // dst-type LOCAL: every address of this node, as kube-proxy's KUBE-NODEPORTS.
      match: `-p tcp -m addrtype --dst-type LOCAL -m tcp --dport ${port}`, comment: `weft: node port ${port}`,
    });
  });
  const ordered: Sorted[] = [
    ...[...byKey.values()].sort((a, b) => compareIp(a.vip, b.vip) || a.port - b.port),
    // After the VIPs, as kube-proxy's KUBE-NODEPORTS comes last in KUBE-SERVICES.
    ...[...byNodePort.values()].sort((a, b) => a.port - b.port),
  ];

  const lines: string[] = [
    `# weft service rules: ${byKey.size} service port(s)${byNodePort.size ? `, ${byNodePort.size} node port(s)` : ''}`,
    '*nat',
    `:${SERVICES_CHAIN} - [0:0]`,
  ];
  for (const svc of ordered) {
    const n = svc.endpoints.length;
    svc.endpoints.forEach((ep, i) => {
      const remaining = n - i;
      // Same format as kube-proxy (%0.10f) so the text is stable across runs.
      const pick = remaining > 1 ? ` -m statistic --mode random --probability ${(1 / remaining).toFixed(10)}` : '';
      lines.push(`-A ${SERVICES_CHAIN} ${svc.match} -m comment --comment "${svc.comment}"${pick} -j DNAT --to-destination ${formatHostPort(ep.ip, ep.port)}`);
    });
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}
