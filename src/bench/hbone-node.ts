/**
 * One proxy "node" of the loopback HBONE bench (src/bench/hbone.ts), run in a child
 * process of its own:
 *
 *   node-a     the source ztunnel's outbound side (one capture listener per route)
 *   node-b     the destination ztunnel's inbound HBONE server
 *   same-node  both in ONE process, the outbound dialling the inbound over HBONE/mTLS:
 *              what a connection between two pods of one node costs today (the
 *              ztunnel tunnels to its own inbound, both TLS ends in one event loop)
 *   relay      the outbound capture joined to the pod socket by the same Pipe, no TLS
 *              and no HTTP/2: the floor a same-node path that skipped the HBONE hop
 *              could reach (policy is decided once per connection, not per byte)
 */
import { X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import pino from 'pino';
import { MeshState } from '../registry/state';
import { ConnectionRegistry } from '../ztunnel/connections';
import type { CertSource, WorkloadCert } from '../hbone/contracts';
import type { HboneTuning } from '../hbone/settings';
import { Pipe } from '../hbone/pipe';
import { InboundServer } from '../ztunnel/inbound';
import { OutboundProxy } from '../ztunnel/outbound';
import { HbonePool } from '../hbone/pool';
import { fixedOriginalDst } from '../ztunnel/testing/conntrack-table';
import { ambientNamespace, nodeRecord, workloadRecord } from '../ztunnel/testing/records';
import { exactSelfAddresses, loopGuard } from '../ztunnel/loop-guard';

export const NODE_A = '127.0.0.2';
export const NODE_B = '127.0.0.3';
export const CLIENT_POD = '127.0.1.1';
export const SERVER_POD = '127.0.2.1';
export const TD = 'cluster.local';
export const CLIENT_ID = `spiffe://${TD}/ns/bench/sa/client`;
export const SERVER_ID = `spiffe://${TD}/ns/bench/sa/server`;

export type Certs = Record<string, { keyPem: string; chain: string[] }>;
export type ChildRole = 'node-a' | 'node-b' | 'same-node' | 'relay';
export interface ChildConfig {
  role: ChildRole;
  tuning: Partial<HboneTuning>;
  certs: Certs;
  roots: string;
  /** node-a, same-node, relay: one listener per destination; node-b: unused. */
  routes: Array<{ ip: string; port: number }>;
  /** node-a: the node-b process's HBONE port. */
  inboundPort: number;
}

class StaticCerts extends EventEmitter implements CertSource {
  constructor(private readonly certs: Map<string, WorkloadCert>, readonly rootsPem: string) { super(); }
  current(id: string): WorkloadCert | undefined { return this.certs.get(id); }
  async get(id: string): Promise<WorkloadCert> {
    const c = this.certs.get(id);
    if (!c) throw new Error(`no cert for ${id}`);
    return c;
  }
}

/** Starts the child's listeners; returns their ports (node-b: the HBONE port; the others: one per route). */
export async function runChild(cfg: ChildConfig): Promise<number[]> {
  if (cfg.role === 'relay') return relay(cfg.routes);
  const logger = pino({ level: 'warn' });
  const state = new MeshState({ trustDomain: TD });
  state.replaceAll({
    node: [nodeRecord('node-a', NODE_A), nodeRecord('node-b', NODE_B)],
    namespace: [ambientNamespace('bench')],
    workload: [
      workloadRecord({ name: 'client', namespace: 'bench', node: 'node-a', ip: CLIENT_POD }),
      workloadRecord({ name: 'server', namespace: 'bench', node: 'node-b', ip: SERVER_POD }),
    ],
    service: [], policy: [], peerauth: [],
  }, 1);
  const certs = new StaticCerts(new Map(Object.entries(cfg.certs).map(([id, c]) => {
    const x = new X509Certificate(c.chain[0]!);
    return [id, { identity: id, keyPem: c.keyPem, certChainPem: c.chain, notBefore: new Date(x.validFrom), notAfter: new Date(x.validTo), serial: x.serialNumber }];
  })), cfg.roots);
  const connections = new ConnectionRegistry();
  let inboundPort = cfg.inboundPort;
  if (cfg.role === 'node-b' || cfg.role === 'same-node') {
    const inbound = new InboundServer({ state, certs, logger, connections, nodeName: 'node-b', tuning: cfg.tuning,
      originalDst: fixedOriginalDst({ ip: SERVER_POD, port: 15008 }),
      // Every bench address is on loopback, so "an address of this node" must mean NODE_B only.
      loopGuard: loopGuard(exactSelfAddresses([NODE_B])) });
    inboundPort = (await inbound.listen(NODE_B, 0)).port;
    if (cfg.role === 'node-b') return [inboundPort];
  }
  const pool = new HbonePool({ certs, logger, tuning: cfg.tuning });
  const ports: number[] = [];
  for (const dst of cfg.routes) {
    const out = new OutboundProxy({ state, pool, logger, connections, nodeName: 'node-a', originalDst: fixedOriginalDst(dst),
      hboneDialTarget: () => ({ host: NODE_B, port: inboundPort }), pipeHighWaterMark: cfg.tuning.pipeHighWaterMark,
      loopGuard: loopGuard(exactSelfAddresses([NODE_A])) });
    ports.push((await out.listen(NODE_A, 0)).port);
  }
  return ports;
}

/** One plain listener per route, each accepted socket piped to a fresh connection to the route. */
async function relay(routes: Array<{ ip: string; port: number }>): Promise<number[]> {
  const ports: number[] = [];
  for (const dst of routes) {
    const srv = net.createServer({ allowHalfOpen: true, pauseOnConnect: true, noDelay: true }, (down) => {
      const up = net.connect({ host: dst.ip, port: dst.port, allowHalfOpen: true, noDelay: true });
      up.once('connect', () => new Pipe(down, up));
      up.once('error', () => down.destroy());
      down.on('error', () => up.destroy());
    });
    await new Promise<void>((r) => srv.listen(0, NODE_A, () => r()));
    ports.push((srv.address() as net.AddressInfo).port);
  }
  return ports;
}
