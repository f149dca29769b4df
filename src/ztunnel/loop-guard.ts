/**
 * Destinations the ztunnel never dials for a captured connection, whichever listener
 * accepted it. Pure, so the decision is tested without sockets and shared by 15001,
 * 15006, 15008 and `weft explain`.
 *
 * Why: the ztunnel's own sockets are not captured, and its listeners bind the node
 * address. A pod connecting to `<node IP>:15001` was passed through, so the ztunnel
 * dialled itself; that connection's original destination (conntrack) was again
 * `<node IP>:15001`, and so on — about 10,000 self-dials in 2 s from one client
 * connection (issue 9, item 5). And a passthrough leaves from the node's address, so
 * a pod reaching the node's own addresses or a link-local endpoint (cloud metadata at
 * 169.254.169.254) through the ztunnel would be served as the node (item 11).
 *
 *   - a proxy port (PROXY_PORTS, plus this ztunnel's configured ports) at any
 *     address: LOOP. It is a ztunnel, this one or a peer's, never an application;
 *   - an address of this node (with 127.0.0.0/8, ::1, 0.0.0.0, ::): LOOP;
 *   - link-local (169.254.0.0/16, fe80::/10): NO_ROUTE. Capture leaves these alone
 *     (the pod reaches them as itself); refusing here is defence in depth.
 */
import { formatHostPort, normalizeIp, type HostPort } from '../lib/address';
import { CidrSet } from '../authz/cidr';
import { PROXY_PORTS } from '../mesh/ports';

/**
 * This node's own addresses: every interface of the ztunnel's network namespace, and
 * loopback and the unspecified addresses (fixedSelfAddresses, NodeAddresses). An
 * interface so the loopback tests, whose pods live on 127.0.0.0/8 too, can say
 * exactly which of those addresses is "the node".
 */
export interface SelfAddresses {
  /** `ip` is normalized (no zone, IPv4-mapped unwrapped). */
  has(ip: string): boolean;
}

/** What a listener checks a destination against. */
export interface LoopGuard {
  /** Addresses that are this node. */
  readonly self: SelfAddresses;
  /** Ports never dialled, at any address. */
  readonly ports: ReadonlySet<number>;
}

/** Why a destination is refused; `flag` is the metrics' `response_flags`. */
export interface GuardRefusal {
  flag: 'LOOP' | 'NO_ROUTE';
  reason: string;
}

const LOOPBACK = new CidrSet(['127.0.0.0/8', '0.0.0.0', '::1', '::']);
const LINK_LOCAL = new CidrSet(['169.254.0.0/16', 'fe80::/10']);

/** 127.0.0.0/8, ::1 and the unspecified addresses (connecting to 0.0.0.0 reaches this host). */
export function isLoopbackOrUnspecified(ip: string): boolean {
  return LOOPBACK.has(stripZone(ip));
}

/** 169.254.0.0/16 or fe80::/10. */
export function isLinkLocal(ip: string): boolean {
  return LINK_LOCAL.has(stripZone(ip));
}

/** `fe80::1%eth0` → `fe80::1`. */
function stripZone(ip: string): string {
  const pct = ip.indexOf('%');
  return pct === -1 ? ip : ip.slice(0, pct);
}

/**
 * Undefined when `dst` may be dialled, else why not. Every proxied hop is checked:
 * the original destination and, after a VIP is resolved, the chosen endpoint.
 */
export function guardDestination(dst: HostPort, guard: LoopGuard): GuardRefusal | undefined {
  // The text only for a refusal: an allowed destination (every connection) costs no string.
  const text = () => formatHostPort(dst.ip, dst.port);
  if (guard.ports.has(dst.port)) {
    return { flag: 'LOOP', reason: `refused to prevent a loop: ${text()} is proxy port ${dst.port}, never a workload's` };
  }
  const ip = normalizeIp(stripZone(dst.ip));
  if (guard.self.has(ip)) {
    return { flag: 'LOOP', reason: `refused to prevent a loop: ${text()} is an address of this node; the ztunnel never dials its own node for a pod` };
  }
  if (LINK_LOCAL.has(ip)) {
    return {
      flag: 'NO_ROUTE',
      reason: `${text()} is link-local: the ztunnel never forwards it (it would arrive from the node's address, e.g. at a cloud metadata endpoint)`,
    };
  }
  return undefined;
}

/**
 * Only the address checks of guardDestination: for a hop whose port is a proxy port
 * by design (a waypoint pod's 15008), so only its address can be wrong.
 */
export function guardAddress(hop: HostPort, guard: LoopGuard): GuardRefusal | undefined {
  return guardDestination(hop, { self: guard.self, ports: NO_PORTS });
}

const NO_PORTS: ReadonlySet<number> = new Set();

/** Only the port check of guardDestination: for a service VIP, whose address is not the dial target. */
export function guardPort(dst: HostPort, guard: LoopGuard): GuardRefusal | undefined {
  return guard.ports.has(dst.port) ? guardDestination(dst, { self: NO_SELF_ADDRESSES, ports: guard.ports }) : undefined;
}

/** No address at all; only for checks that do not look at the address. */
export const NO_SELF_ADDRESSES: SelfAddresses = { has: () => false };

/**
 * A fixed set of node addresses plus loopback and unspecified (what `weft explain`
 * knows from the registry; NodeAddresses builds on it).
 */
export function fixedSelfAddresses(addresses: Iterable<string>): SelfAddresses {
  const set = new Set<string>();
  for (const a of addresses) set.add(normalizeIp(stripZone(a)));
  return { has: (ip) => isLoopbackOrUnspecified(ip) || set.has(normalizeIp(stripZone(ip))) };
}

/**
 * Exactly these addresses, loopback NOT included: for in-process meshes on loopback
 * (tests, the HBONE benchmark), where pods live on 127.0.0.0/8 beside the "node".
 */
export function exactSelfAddresses(addresses: Iterable<string>): SelfAddresses {
  const set = new Set([...addresses].map((a) => normalizeIp(stripZone(a))));
  return { has: (ip) => set.has(normalizeIp(stripZone(ip))) };
}

/** PROXY_PORTS plus the ports this ztunnel was configured with (admin, metrics, ...). */
export function loopGuard(self: SelfAddresses, extraPorts: Iterable<number> = []): LoopGuard {
  return { self, ports: new Set([...PROXY_PORTS, ...extraPorts]) };
}
