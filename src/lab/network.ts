/**
 * The lab's network as data: the shell script that builds it and the batch that tears
 * it down, both pure functions of the plan. One script (mostly `ip -batch` and
 * `ip -n <netns> -batch`) instead of one process per step keeps `up` at tens of
 * milliseconds for the whole network, and leaves a readable record of what was done
 * (`<lab dir>/network-up.sh`).
 *
 * Safety: nothing here enables forwarding in the root namespace or adds a route out of
 * the lab. The root namespace gets routes *into* the lab (each pod CIDR via its node),
 * so replies to pods never follow the host's default route, and `unreachable` routes
 * for the rest of the pod and VIP ranges, so a stray packet fails at once instead of
 * leaving the machine.
 */
import { LAB_NET, type LabPlan, type PlannedNode } from './plan';

/** Resources the network script creates, for the state file (recorded before it runs). */
export interface NetworkResources {
  netns: string[];
  /** Links in the root namespace. */
  links: string[];
  /** Root-namespace routes that outlive the bridge (`ip route del <spec>` removes them). */
  routes: string[];
}

export const UNREACHABLE_ROUTES: readonly string[] = [
  `unreachable ${LAB_NET.podSupernet}`,
  `unreachable ${LAB_NET.vipCidr}`,
];

export function networkResources(plan: LabPlan): NetworkResources {
  return {
    // Pods first: deleting them first lets their veths go before the node side is torn.
    netns: [...plan.pods.map((p) => p.netns), ...plan.nodes.map((n) => n.netns)],
    links: [...plan.nodes.map((n) => n.hostLink), LAB_NET.bridge],
    routes: [...UNREACHABLE_ROUTES],
  };
}

function heredoc(cmd: string, lines: string[]): string {
  return `${cmd} <<'WEFT_EOF'\n${lines.join('\n')}\nWEFT_EOF`;
}

/** Sysctls of a node netns, set before its interfaces exist so they inherit them. */
function nodeSysctls(ipv6: boolean): string[] {
  return [
    // Dual stack: IPv6 forwarding in the node namespace only (never the root namespace).
    ...(ipv6 ? ['echo 1 > /proc/sys/net/ipv6/conf/all/forwarding'] : []),
    // Routing between pods and nodes happens here, never in the root namespace.
    'echo 1 > /proc/sys/net/ipv4/ip_forward',
    // Pods answer from 169.254.1.1-routed paths and proxies may reply with pod
    // addresses; strict reverse-path filtering would drop those.
    'echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter',
    'echo 0 > /proc/sys/net/ipv4/conf/default/rp_filter',
  ];
}

/** What a pod's network needs from the plan; pods and waypoint pods alike. */
export interface PodNet {
  netns: string;
  nodeLink: string;
  ip: string;
  ip6?: string;
}

/** `ip -n <node netns> -batch` lines for the node side of one pod's veth. */
function nodeSideOfPod(n: Pick<PlannedNode, 'address' | 'address6'>, p: PodNet): string[] {
  return [
    // The gateway address makes REDIRECT/DNAT in PREROUTING work for pod traffic.
    `addr add ${LAB_NET.podGateway}/32 dev ${p.nodeLink}`,
    ...(p.ip6 ? [`addr add ${LAB_NET.podGateway6}/64 dev ${p.nodeLink} nodad`] : []),
    `link set ${p.nodeLink} up`,
    // src: what the node itself sends to a pod (kubelet-style probes, the ztunnel's
    // delivery) comes from the node address, not from the shared 169.254.1.1.
    `route add ${p.ip}/32 dev ${p.nodeLink} src ${n.address}`,
    ...(p.ip6 ? [`route add ${p.ip6}/128 dev ${p.nodeLink} src ${n.address6}`] : []),
  ];
}

/** `ip -n <pod netns> -batch` lines: the pod's address and its Calico-style routes. */
function podSide(p: PodNet): string[] {
  return [
    'link set lo up',
    `addr add ${p.ip}/32 dev eth0`,
    ...(p.ip6 ? [`addr add ${p.ip6}/128 dev eth0 nodad`] : []),
    'link set eth0 up',
    `route add ${LAB_NET.podGateway} dev eth0 scope link`,
    `route add default via ${LAB_NET.podGateway} dev eth0`,
    // No IPv6 route in the root namespace: a pod's IPv6 reaches other pods and nodes only.
    ...(p.ip6 ? [`route add ::/0 via ${LAB_NET.podGateway6} dev eth0`] : []),
  ];
}

/**
 * The `sh -e` script that adds one pod to a running lab (a waypoint pod from `weft
 * waypoint add`): the same layout as the pods of networkUpScript. The root namespace
 * needs nothing: it already routes the node's whole pod CIDR to the node.
 */
export function podUpScript(node: Pick<PlannedNode, 'netns' | 'address' | 'address6'>, p: PodNet): string {
  return [
    '#!/bin/sh',
    '# Written and run by the lab to add one pod; removing its netns undoes it.',
    'set -e',
    `ip netns add ${p.netns}`,
    `ip link add ${p.nodeLink} netns ${node.netns} type veth peer name eth0 netns ${p.netns}`,
    heredoc(`ip -n ${node.netns} -batch -`, nodeSideOfPod(node, p)),
    heredoc(`ip -n ${p.netns} -batch -`, podSide(p)),
  ].join('\n') + '\n';
}

/**
 * The `ip` commands removing one pod added by podUpScript, in order. The node side of
 * its veth is deleted explicitly (taking the pod's eth0 with it) so the name is free at
 * once for a pod added again, rather than after the kernel's asynchronous clean-up.
 */
export function podDownCommands(node: Pick<PlannedNode, 'netns'>, p: PodNet): string[][] {
  return [['-n', node.netns, 'link', 'del', p.nodeLink], ['netns', 'del', p.netns]];
}

/** The `sh -e` script that builds the whole network; run as root in the root namespace. */
export function networkUpScript(plan: LabPlan): string {
  const b = LAB_NET.bridge;
  const parts: string[] = ['#!/bin/sh', '# Written and run by `weft lab up`; `weft lab down` undoes it.', 'set -e'];

  parts.push('# Cluster network and namespaces');
  parts.push(heredoc('ip -batch -', [
    `link add ${b} type bridge`,
    `addr add ${LAB_NET.gateway}/24 dev ${b}`,
    `link set ${b} up`,
    ...plan.nodes.map((n) => `netns add ${n.netns}`),
    ...plan.pods.map((p) => `netns add ${p.netns}`),
  ]));

  parts.push('# Node sysctls (before the links, which copy the defaults)');
  for (const n of plan.nodes) parts.push(`ip netns exec ${n.netns} sh -e -c '${nodeSysctls(n.address6 !== undefined).join('; ')}'`);

  parts.push('# Links: node veths on the bridge, pod veths to their node');
  parts.push(heredoc('ip -batch -', [
    ...plan.nodes.flatMap((n) => [
      `link add ${n.hostLink} type veth peer name eth0 netns ${n.netns}`,
      `link set ${n.hostLink} master ${b} up`,
    ]),
    ...plan.pods.map((p) => {
      const node = plan.nodes.find((n) => n.name === p.node)!;
      return `link add ${p.nodeLink} netns ${node.netns} type veth peer name eth0 netns ${p.netns}`;
    }),
  ]));

  for (const n of plan.nodes) {
    const pods = plan.pods.filter((p) => p.node === n.name);
    parts.push(`# Node ${n.name}`);
    parts.push(heredoc(`ip -n ${n.netns} -batch -`, [
      'link set lo up',
      `addr add ${n.address}/24 dev eth0`,
      // nodad: usable at once (no duplicate address detection in a lab we built).
      ...(n.address6 ? [`addr add ${n.address6}/64 dev eth0 nodad`] : []),
      'link set eth0 up',
      ...pods.flatMap((p) => nodeSideOfPod(n, p)),
      ...plan.nodes.filter((o) => o !== n).map((o) => `route add ${o.podCidr} via ${o.address} dev eth0`),
      ...plan.nodes.filter((o) => o !== n && o.podCidr6).map((o) => `route add ${o.podCidr6} via ${o.address6} dev eth0`),
    ]));
  }

  for (const p of plan.pods) {
    parts.push(`# Pod ${p.uid}`);
    parts.push(heredoc(`ip -n ${p.netns} -batch -`, podSide(p)));
  }

  parts.push('# Root namespace: routes into the lab only');
  parts.push(heredoc('ip -batch -', [
    ...plan.nodes.map((n) => `route add ${n.podCidr} via ${n.address} dev ${b}`),
    ...UNREACHABLE_ROUTES.map((r) => `route add ${r}`),
  ]));
  return parts.join('\n') + '\n';
}

/**
 * `ip -force -batch` lines removing recorded resources. Root-side veths are deleted
 * explicitly (which removes their peers at once) rather than left to the asynchronous
 * clean-up of a deleted netns, so nothing `weft-*` lingers after `down` returns.
 */
export function networkDownBatch(recorded: NetworkResources): string {
  const links = [...recorded.links].sort((a, b) => Number(a === LAB_NET.bridge) - Number(b === LAB_NET.bridge));
  return [
    ...links.map((l) => `link del ${l}`),
    ...recorded.netns.map((n) => `netns del ${n}`),
    ...recorded.routes.map((r) => `route del ${r}`),
  ].join('\n') + '\n';
}

/** stderr lines of `ip -force -batch` that only say a resource was already gone. */
export function isAlreadyGone(line: string): boolean {
  return /Cannot find device|No such file or directory|No such process|does not exist|Command failed -:\d+|^\s*$/.test(line);
}
