/**
 * The mesh most data-path tests share: two nodes on loopback, an ambient namespace
 * `demo` and a non-mesh namespace `legacy`, and pods with behaviours tests need.
 *
 *   node-a 127.0.0.2: client 127.0.1.1 (sa client), client2 127.0.1.2 (sa other)
 *   node-b 127.0.0.3: echo-1 127.0.2.1, echo-2 127.0.2.2 (sa echo),
 *                     legacy 127.0.3.1 (namespace legacy, not in the mesh)
 *   not registered:   external 127.0.9.1
 *   service demo/echo VIP 127.0.100.1:80 → echo pods' `ports.echo`
 *
 * Pod ports (the same number on every pod that serves it):
 *   echo    echoes, ends after the client ends
 *   hash    reads to FIN, answers sha256(hex) of what it read, ends
 *   speak   writes `speakBytes` then FIN at once, hashes what it reads until FIN
 *   reset   resets the connection on the first byte
 *   hold    keeps connections open; tests inspect `held`
 */
import { createHash, randomBytes } from 'node:crypto';
import type * as net from 'node:net';
import type { Logger } from '../../lib/log';
import { LoopbackMesh, type LoopbackMeshOptions } from './loopback-mesh';
import { ambientNamespace, nodeRecord, plainNamespace, serviceRecord, workloadRecord } from './records';

export const IP = {
  nodeA: '127.0.0.2',
  nodeB: '127.0.0.3',
  client: '127.0.1.1',
  client2: '127.0.1.2',
  echo1: '127.0.2.1',
  echo2: '127.0.2.2',
  legacy: '127.0.3.1',
  external: '127.0.9.1',
  echoVip: '127.0.100.1',
} as const;

export const ID = {
  client: 'spiffe://cluster.local/ns/demo/sa/client',
  other: 'spiffe://cluster.local/ns/demo/sa/other',
  echo: 'spiffe://cluster.local/ns/demo/sa/echo',
} as const;

export interface DemoMesh {
  mesh: LoopbackMesh;
  ports: { echo: number; hash: number; speak: number; reset: number; hold: number };
  /** Connections the `hold` pods accepted, in order. */
  held: net.Socket[];
  /** sha256 of what each `speak` connection received, as they finish. */
  spoken: string[];
  speakBytes: Buffer;
  close(): Promise<void>;
}

export async function startDemoMesh(opts: { logger?: Logger; pool?: LoopbackMeshOptions['pool']; inbound?: LoopbackMeshOptions['inbound']; traceSampling?: LoopbackMeshOptions['traceSampling'] } = {}): Promise<DemoMesh> {
  const mesh = await LoopbackMesh.start({
    nodes: [{ name: 'node-a', address: IP.nodeA }, { name: 'node-b', address: IP.nodeB }],
    ...(opts.logger ? { logger: opts.logger } : {}),
    ...(opts.pool ? { pool: opts.pool } : {}),
    ...(opts.inbound ? { inbound: opts.inbound } : {}),
    ...(opts.traceSampling ? { traceSampling: opts.traceSampling } : {}),
  });
  const held: net.Socket[] = [];
  const spoken: string[] = [];
  const speakBytes = randomBytes(1024 * 1024);
  const behaviours: Record<keyof DemoMesh['ports'], (s: net.Socket) => void> = {
    echo: (s) => s.pipe(s),
    hash: (s) => {
      const h = createHash('sha256');
      s.on('data', (d) => h.update(d));
      s.on('end', () => s.end(h.digest('hex')));
    },
    speak: (s) => {
      s.end(speakBytes);
      const h = createHash('sha256');
      s.on('data', (d) => h.update(d));
      s.on('end', () => spoken.push(h.digest('hex')));
    },
    reset: (s) => s.once('data', () => s.resetAndDestroy()),
    hold: (s) => { held.push(s); s.resume(); },
  };
  const ports = { echo: 0, hash: 0, speak: 0, reset: 0, hold: 0 };
  for (const name of Object.keys(ports) as Array<keyof typeof ports>) {
    ports[name] = await mesh.pod(IP.echo1, behaviours[name]);
    await mesh.pod(IP.echo2, behaviours[name], ports[name]);
  }
  await mesh.pod(IP.legacy, behaviours.echo, ports.echo);
  await mesh.pod(IP.external, behaviours.echo, ports.echo);

  mesh.put('node', nodeRecord('node-a', IP.nodeA), nodeRecord('node-b', IP.nodeB));
  mesh.put('namespace', ambientNamespace('demo'), plainNamespace('legacy'));
  mesh.put('workload',
    workloadRecord({ name: 'client', namespace: 'demo', node: 'node-a', ip: IP.client }),
    workloadRecord({ name: 'client2', namespace: 'demo', node: 'node-a', ip: IP.client2, sa: 'other' }),
    workloadRecord({ name: 'echo-1', namespace: 'demo', node: 'node-b', ip: IP.echo1, sa: 'echo', labels: { app: 'echo' } }),
    workloadRecord({ name: 'echo-2', namespace: 'demo', node: 'node-b', ip: IP.echo2, sa: 'echo', labels: { app: 'echo' } }),
    workloadRecord({ name: 'legacy', namespace: 'legacy', node: 'node-b', ip: IP.legacy }));
  mesh.put('service', serviceRecord({ name: 'echo', namespace: 'demo', vip: IP.echoVip, port: 80, targetPort: ports.echo, selector: { app: 'echo' } }));
  return { mesh, ports, held, spoken, speakBytes, close: () => mesh.close() };
}
