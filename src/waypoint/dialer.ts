/**
 * How the waypoint reaches an endpoint: a mesh endpoint over HBONE (a CONNECT stream
 * in a pooled tunnel, presenting the waypoint's own certificate and requiring the
 * endpoint's identity; the destination ztunnel applies L4 policy to the waypoint's
 * identity), anything else over plain TCP.
 */
import type { Duplex } from 'node:stream';
import type { HbonePool } from '../hbone/pool';
import { HBONE_PORT } from '../hbone/contracts';
import { defaultUpstreamFactory, dialTcp } from '../mesh/dial';
import { WeftError } from '../lib/errors';
import type { UpstreamDialer, UpstreamTarget } from './types';

export interface MeshDialerOptions {
  pool: HbonePool;
  /** The waypoint's own SPIFFE identity: the client certificate of every tunnel. */
  identity: string;
  /** The waypoint pod's address, sent as the HBONE `forwarded` client (the HTTP request carries the original client). */
  address: string;
  /** TCP connect timeout for endpoints outside the mesh. Default 10 s (as HBONE's). */
  connectTimeoutMs?: number;
}

export class MeshDialer implements UpstreamDialer {
  constructor(private readonly opts: MeshDialerOptions) {}

  async dial(target: UpstreamTarget): Promise<Duplex> {
    if (target.transport === 'tcp') {
      return dialTcp(defaultUpstreamFactory, { ip: target.host, port: target.port }, this.opts.connectTimeoutMs ?? 10_000);
    }
    if (!target.identity) {
      throw new WeftError('WEFT_HBONE_CONNECT_FAILED', `no identity known for the mesh endpoint ${target.host}:${target.port}; it is refused rather than reached without checking who answers`);
    }
    const opened = await this.opts.pool.open({
      sourceIdentity: this.opts.identity,
      destinationIdentity: target.identity,
      nextHop: { host: target.host, port: HBONE_PORT },
      authority: { ip: target.host, port: target.port },
      forwardedFor: { ip: this.opts.address, port: 0 },
      counters: { sent: 0, received: 0 },
    });
    return opened.stream;
  }
}
