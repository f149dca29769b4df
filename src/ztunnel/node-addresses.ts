/**
 * This node's own addresses, as the loop guard needs them: every address of every
 * interface in the ztunnel's network namespace (it runs in the node's), plus loopback
 * and unspecified. Addresses come and go (DHCP, a new interface, a VIP moved by
 * keepalived), and Node has no netlink events, so the set is re-read when it is older
 * than `refreshMs` at the moment a connection asks: one getifaddrs() at most every
 * couple of seconds under load, none when idle, and no timer to leak. A destination
 * missed in that window is still never a loop: proxy ports are refused at any address.
 */
import { networkInterfaces, type NetworkInterfaceInfo } from 'node:os';
import { realClock, type Clock } from '../lib/clock';
import type { Logger } from '../lib/log';
import { fixedSelfAddresses, type SelfAddresses } from './loop-guard';

export type InterfaceReader = () => NodeJS.Dict<NetworkInterfaceInfo[]>;

/**
 * Interfaces whose addresses are not "this node" for the guard. kube-proxy in IPVS
 * mode puts every ClusterIP on the dummy kube-ipvs0; those are services, resolved by
 * the ztunnel before dialling, and refusing them would refuse every unknown VIP.
 */
const NOT_SELF_INTERFACES: ReadonlySet<string> = new Set(['kube-ipvs0']);

export interface NodeAddressesOptions {
  /** Reads the interfaces; os.networkInterfaces by default. */
  read?: InterfaceReader;
  clock?: Clock;
  /** Re-read when the set is older than this. Default 2 s. */
  refreshMs?: number;
  logger?: Logger;
}

export class NodeAddresses implements SelfAddresses {
  private readonly read: InterfaceReader;
  private readonly clock: Clock;
  private readonly refreshMs: number;
  private readonly log: Logger | undefined;
  private current: SelfAddresses = fixedSelfAddresses([]);
  private addresses: string[] = [];
  private readAt = -Infinity;
  private failing = false;

  constructor(opts: NodeAddressesOptions = {}) {
    this.read = opts.read ?? networkInterfaces;
    this.clock = opts.clock ?? realClock;
    this.refreshMs = opts.refreshMs ?? 2000;
    this.log = opts.logger;
    this.refresh();
  }

  has(ip: string): boolean {
    if (this.clock.now() - this.readAt >= this.refreshMs) this.refresh();
    return this.current.has(ip);
  }

  /** The interface addresses last read (sorted), for /config_dump and tests. */
  list(): string[] {
    return [...this.addresses];
  }

  /** Re-reads the interfaces now. A failed read keeps the previous set. */
  refresh(): void {
    this.readAt = this.clock.now();
    let ifaces: NodeJS.Dict<NetworkInterfaceInfo[]>;
    try {
      ifaces = this.read();
    } catch (err) {
      if (!this.failing) this.log?.error({ err }, 'cannot read this node\'s interface addresses; keeping the previous set');
      this.failing = true;
      return;
    }
    this.failing = false;
    const found = new Set<string>();
    for (const [name, list] of Object.entries(ifaces)) {
      if (NOT_SELF_INTERFACES.has(name)) continue;
      for (const a of list ?? []) found.add(a.address);
    }
    const sorted = [...found].sort();
    if (sorted.join() !== this.addresses.join()) {
      this.log?.debug({ addresses: sorted }, 'node addresses changed');
      this.addresses = sorted;
      this.current = fixedSelfAddresses(sorted);
    }
  }
}
