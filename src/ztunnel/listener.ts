/**
 * What the ztunnel's captured-traffic listeners (15001, 15006, 15008) share on top of
 * the generic TCP listener (src/lib/listener.ts): their options, the loop guard, and
 * reading where a captured connection was going.
 */
import type * as net from 'node:net';
import { TcpListener } from '../lib/listener';
import type { Logger } from '../lib/log';
import { formatHostPort, normalizeIp } from '../lib/address';
import type { MeshState } from '../registry/state';
import type { ConnectionRegistry } from './connections';
import type { OriginalDstSource } from './contracts';
import type { OriginalDst, SocketFactory } from '../hbone/contracts';
import type { ZtunnelMetrics } from './metrics';
import type { ProxyTelemetry } from '../telemetry/proxy-telemetry';
import { reset } from '../mesh/dial';
import { loopGuard, type LoopGuard } from './loop-guard';
import { NodeAddresses } from './node-addresses';

/** What every captured-traffic listener (15001, 15006, 15008) is built from. */
export interface CapturedListenerOptions {
  state: MeshState;
  originalDst: OriginalDstSource;
  logger: Logger;
  connections: ConnectionRegistry;
  metrics?: ZtunnelMetrics;
  /** Spans, the live tap and access-log volume (src/telemetry); absent: no spans, no tap. */
  telemetry?: ProxyTelemetry;
  /** This node's name: only workloads scheduled here are served. */
  nodeName: string;
  /** Dials upstream TCP (local pods, passthrough destinations); `net.connect` by default. */
  socketFactory?: SocketFactory;
  /**
   * Destinations never dialled: this node's addresses and the proxy ports
   * (loop-guard.ts). Default: the interfaces of this network namespace and PROXY_PORTS.
   */
  loopGuard?: LoopGuard;
}

/** The guard a listener uses when none is given: fail closed, with the real interfaces. */
export function defaultLoopGuard(): LoopGuard {
  return loopGuard(new NodeAddresses());
}

/** A ztunnel listener: the generic one, plus the original destination of captured connections. */
export abstract class ListenerBase extends TcpListener {
  /**
   * Both ends of a captured connection: its source, and where it was going before the
   * node's DNAT. A connection whose destination cannot be read did not come through
   * the capture rules; it is reset and undefined returned.
   */
  protected async capturedEnds(sock: net.Socket, originalDst: OriginalDstSource, what: string): Promise<{ srcIp: string; srcPort: number; dst: OriginalDst } | undefined> {
    const srcIp = normalizeIp(sock.remoteAddress);
    const srcPort = sock.remotePort ?? 0;
    try {
      return { srcIp, srcPort, dst: await originalDst.lookup(sock) };
    } catch (err) {
      this.logLimiter.log(this.log, 'warn', 'no-original-dst', { err, src: formatHostPort(srcIp, srcPort) }, `no original destination for ${what}; resetting it`);
      reset(sock);
      return undefined;
    }
  }
}
