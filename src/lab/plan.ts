/**
 * The lab's fixed address plan, derived from a validated topology by pure functions:
 * every name and address the lab will create is known before anything is created,
 * so the state file can record it first and `down` can remove exactly that.
 *
 *   root ns      weft-br0 198.18.0.1/24 (the cluster network)
 *   node N       netns weft-<node>, eth0 198.18.0.(10+N)/24, pod CIDR 198.19.N.0/24
 *   pod k on N   netns weft-pod-<ns>-<name>, eth0 198.19.N.(10+k)/32,
 *                gateway 169.254.1.1 (the node side of its veth)
 *   services     VIPs 198.18.128.(10+i), or the topology's fixed vip
 */
import type { WaypointFor } from '../gateway/types';
import type { LabRedisHa } from './redis';
import { createHash } from 'node:crypto';
import type { NodePortRule, ServiceRule } from '../iptables/services';
import type { Labels, NamespaceRecord, NodeRecord, ServiceRecord, WorkloadRecord } from '../registry/types';
import type { EchoBehaviour } from './echo-behaviour';
import type { ReadinessProbe } from './probe';
import { nodeNetnsName, podNetnsName, type PodRun, type Topology, type TopologyServicePort } from './topology';

export const LAB_NET = Object.freeze({
  bridge: 'weft-br0',
  /** The root namespace's address on the bridge: Redis and the CA listen here. */
  gateway: '198.18.0.1',
  clusterCidr: '198.18.0.0/24',
  podSupernet: '198.19.0.0/16',
  vipCidr: '198.18.128.0/24',
  /** Calico-style: every pod's gateway; the node side of each pod veth holds it. */
  podGateway: '169.254.1.1',
  /** Dual-stack labs: the nodes' IPv6 network on the bridge (ULA, never routed out). */
  clusterCidr6: 'fd00:7eff::/64',
  /** The IPv6 pod gateway, link-local like the IPv4 one, on the node side of each pod veth. */
  podGateway6: 'fe80::1',
  caPort: 15012,
  caMetricsPort: 15014,
  readinessPort: 15021,
  clusterDomain: 'cluster.local',
  echoHttpPort: 8080,
  echoTcpPort: 9000,
  echoGrpcPort: 7070,
});

export interface PlannedNode {
  name: string;
  /** 1-based position in the topology. */
  index: number;
  netns: string;
  address: string;
  podCidr: string;
  /** Root-side end of the node's veth (attached to the bridge); the node side is eth0. */
  hostLink: string;
  labels: Labels;
  /** Dual-stack labs: fd00:7eff::(10+N) and the pod prefix fd00:7eff:N::/64. */
  address6?: string;
  podCidr6?: string;
}

export interface PlannedPod {
  /** `<namespace>/<name>`, the registry uid. */
  uid: string;
  name: string;
  namespace: string;
  node: string;
  netns: string;
  ip: string;
  /** Node-side end of the pod's veth (inside the node netns); the pod side is eth0. */
  nodeLink: string;
  /** Dual-stack labs: fd00:7eff:N::(10+k). */
  ip6?: string;
  serviceAccount: string;
  labels: Labels;
  run: PodRun;
  /** Checked by the lab's prober on the pod's node; absent: the pod stays Healthy. */
  readinessProbe?: ReadinessProbe;
  /** The echo app's misbehaviour at start (topology `pods[].echo`). */
  echo?: EchoBehaviour;
}

/**
 * A waypoint's pod: laid out as any pod (its own netns, an address from its node's
 * CIDR, a veth to the node), but it runs `weft waypoint run` and is never enrolled.
 */
export interface PlannedWaypoint {
  /** `<namespace>/<name>`, the registry uid of its workload record. */
  uid: string;
  name: string;
  namespace: string;
  node: string;
  serviceAccount: string;
  netns: string;
  ip: string;
  nodeLink: string;
  ip6?: string;
  /** What it serves (`weft.io/waypoint-for`); absent: `service`. */
  for?: WaypointFor;
}

export interface PlannedEndpoint {
  uid: string;
  ip: string;
}

export interface PlannedService {
  name: string;
  namespace: string;
  hostname: string;
  vip: string;
  ports: TopologyServicePort[];
  selector: Labels;
  endpoints: PlannedEndpoint[];
}

export interface LabPlan {
  redisPort: number;
  /** Replicas and Sentinels around the primary on redisPort (`lab up --redis-sentinel`); src/lab/redis.ts. */
  redisHa?: LabRedisHa;
  nodes: PlannedNode[];
  namespaces: { name: string; labels: Labels }[];
  pods: PlannedPod[];
  services: PlannedService[];
  /** The topology's waypoints (`weft waypoint add` plans its own with planWaypoint). */
  waypoints: PlannedWaypoint[];
}

/** Pod veths need names unique within a node netns and at most 15 bytes (IFNAMSIZ-1). */
export function podLinkName(namespace: string, name: string): string {
  return `weft-${createHash('sha256').update(`${namespace}/${name}`).digest('hex').slice(0, 10)}`;
}

export function selectorMatches(selector: Labels, labels: Labels): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

export function planLab(topology: Topology): LabPlan {
  const nodes: PlannedNode[] = topology.nodes.map((n, i) => ({
    name: n.name,
    index: i + 1,
    netns: nodeNetnsName(n.name),
    address: `198.18.0.${11 + i}`,
    podCidr: `198.19.${i + 1}.0/24`,
    hostLink: `weft-n${i + 1}`,
    labels: { ...n.labels },
    ...(topology.ipv6 ? { address6: `fd00:7eff::${11 + i}`, podCidr6: `fd00:7eff:${i + 1}::/64` } : {}),
  }));
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const nextHost = new Map<string, number>();
  const pods: PlannedPod[] = topology.pods.map((p) => {
    const node = byName.get(p.node)!;
    const k = nextHost.get(node.name) ?? 10;
    nextHost.set(node.name, k + 1);
    return {
      uid: `${p.namespace}/${p.name}`,
      name: p.name,
      namespace: p.namespace,
      node: node.name,
      netns: podNetnsName(p.namespace, p.name),
      ip: `198.19.${node.index}.${k}`,
      nodeLink: podLinkName(p.namespace, p.name),
      ...(topology.ipv6 ? { ip6: `fd00:7eff:${node.index}::${k}` } : {}),
      serviceAccount: p.serviceAccount,
      labels: { ...p.labels },
      run: p.run,
      ...(p.readinessProbe ? { readinessProbe: p.readinessProbe } : {}),
      ...(p.echo ? { echo: { ...p.echo } } : {}),
    };
  });
  // Waypoints take the next addresses of their node, after its pods.
  const waypoints = topology.waypoints.map((w) => {
    const node = byName.get(w.node)!;
    const k = nextHost.get(node.name) ?? 10;
    nextHost.set(node.name, k + 1);
    return planWaypoint(node, w, k);
  });
  // Fixed VIPs are taken first so the allocated ones step around them.
  const taken = new Set(topology.services.flatMap((s) => (s.vip ? [s.vip] : [])));
  let next = 10;
  const services: PlannedService[] = topology.services.map((s) => {
    let vip = s.vip;
    if (!vip) {
      while (taken.has(`198.18.128.${next}`)) next++;
      vip = `198.18.128.${next++}`;
      taken.add(vip);
    }
    return {
      name: s.name,
      namespace: s.namespace,
      hostname: `${s.name}.${s.namespace}.svc.${LAB_NET.clusterDomain}`,
      vip,
      ports: s.ports.map((p) => ({ ...p })),
      selector: { ...s.selector },
      endpoints: pods.filter((p) => p.namespace === s.namespace && selectorMatches(s.selector, p.labels)).map((p) => ({ uid: p.uid, ip: p.ip })),
    };
  });
  return {
    redisPort: topology.redisPort,
    nodes,
    namespaces: topology.namespaces.map((n) => ({ name: n.name, labels: { ...n.labels } })),
    pods,
    services,
    waypoints,
  };
}

/** First host number of a node's pod CIDR; pod k gets .(10+k). */
export const FIRST_POD_HOST = 10;
/** Last usable host number (the /24's broadcast is .255). */
export const LAST_POD_HOST = 254;

/** The pod of a waypoint `w` on `node` at host number `host` of the node's pod CIDR. */
export function planWaypoint(node: Pick<PlannedNode, 'name' | 'index' | 'podCidr6'>,
  w: { name: string; namespace: string; serviceAccount: string; for?: WaypointFor }, host: number): PlannedWaypoint {
  return {
    uid: `${w.namespace}/${w.name}`,
    name: w.name,
    namespace: w.namespace,
    node: node.name,
    serviceAccount: w.serviceAccount,
    netns: podNetnsName(w.namespace, w.name),
    ip: `198.19.${node.index}.${host}`,
    nodeLink: podLinkName(w.namespace, w.name),
    ...(node.podCidr6 ? { ip6: `fd00:7eff:${node.index}::${host}` } : {}),
    ...(w.for ? { for: w.for } : {}),
  };
}

/**
 * The lowest free host number on `node` for a waypoint added to a running lab: not
 * taken by a pod of the plan nor by a waypoint already there. Undefined when the /24 is full.
 */
export function freePodHost(plan: LabPlan, node: string, waypoints: readonly PlannedWaypoint[]): number | undefined {
  const taken = new Set([...plan.pods, ...waypoints].filter((p) => p.node === node).map((p) => Number(p.ip.split('.')[3])));
  for (let k = FIRST_POD_HOST; k <= LAST_POD_HOST; k++) if (!taken.has(k)) return k;
  return undefined;
}

/**
 * The pod's /etc/hosts (bind-mounted by `ip netns exec` from /etc/netns/<netns>/hosts).
 * It stands in for cluster DNS: `<svc>.<ns>`, `<svc>.<ns>.svc` and the full name
 * resolve to the VIP everywhere, the bare `<svc>` only inside its own namespace (as
 * the Kubernetes search path would have it).
 */
export function hostsFile(plan: LabPlan, pod: Pick<PlannedPod, 'ip' | 'name' | 'namespace'>): string {
  const lines = [
    '# Written by weft lab; removed by `weft lab down`.',
    '127.0.0.1\tlocalhost',
    '::1\tlocalhost ip6-localhost ip6-loopback',
    `${pod.ip}\t${pod.name}`,
  ];
  for (const s of plan.services) {
    const names = [s.hostname, `${s.name}.${s.namespace}.svc`, `${s.name}.${s.namespace}`];
    if (s.namespace === pod.namespace) names.push(s.name);
    lines.push(`${s.vip}\t${names.join(' ')}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * Names outside the hosts file must fail fast instead of waiting on the host's
 * resolver, which no pod can reach (the lab has no route out).
 */
export function resolvConf(pod: Pick<PlannedPod, 'namespace'>): string {
  return [
    '# Written by weft lab: cluster names come from /etc/hosts; nothing else resolves.',
    'nameserver 127.0.0.1',
    `search ${pod.namespace}.svc.${LAB_NET.clusterDomain} svc.${LAB_NET.clusterDomain} ${LAB_NET.clusterDomain}`,
    'options timeout:1 attempts:1',
  ].join('\n') + '\n';
}

/** The registry records the Kubernetes controller would write for this cluster. */
export function registryRecords(plan: LabPlan): {
  nodes: NodeRecord[];
  namespaces: NamespaceRecord[];
  workloads: WorkloadRecord[];
  services: ServiceRecord[];
} {
  return {
    nodes: plan.nodes.map((n) => ({ name: n.name, address: n.address, podCidr: n.podCidr, labels: { ...n.labels } })),
    namespaces: plan.namespaces.map((n) => ({ name: n.name, labels: { ...n.labels } })),
    workloads: plan.pods.map((p) => {
      const w: WorkloadRecord = {
        uid: p.uid,
        name: p.name,
        namespace: p.namespace,
        node: p.node,
        addresses: p.ip6 ? [p.ip, p.ip6] : [p.ip],
        serviceAccount: p.serviceAccount,
        labels: { ...p.labels },
        status: 'Healthy',
      };
      if (p.run === 'echo') w.ports = [LAB_NET.echoHttpPort, LAB_NET.echoTcpPort, LAB_NET.echoGrpcPort];
      return w;
    }),
    services: plan.services.map((s) => ({
      name: s.name,
      namespace: s.namespace,
      hostname: s.hostname,
      vips: [s.vip],
      // NodePorts live only in the lab's kube-proxy emulation; the registry has no field for them.
      ports: s.ports.map(({ nodePort: _np, ...p }) => ({ ...p })),
      selector: { ...s.selector },
    })),
  };
}

/** kube-proxy's view: one entry per service port, endpoints at the target port. */
export function serviceRuleInput(plan: LabPlan): ServiceRule[] {
  return plan.services.flatMap((s) => s.ports.map((p) => ({
    vip: s.vip,
    port: p.port,
    endpoints: s.endpoints.map((e) => ({ ip: e.ip, port: p.targetPort })),
  })));
}

/** kube-proxy's NodePorts on one node: only that node's endpoints (externalTrafficPolicy: Local). */
export function nodePortRuleInput(plan: LabPlan, node: string): NodePortRule[] {
  const onNode = new Set(plan.pods.filter((p) => p.node === node).map((p) => p.uid));
  return plan.services.flatMap((s) => s.ports.flatMap((p) => (p.nodePort === undefined ? [] : [{
    nodePort: p.nodePort,
    endpoints: s.endpoints.filter((e) => onNode.has(e.uid)).map((e) => ({ ip: e.ip, port: p.targetPort })),
  }])));
}
