/**
 * One ztunnel HBONE server (15008) in its own process, so a test can read that
 * process's memory (/proc/<pid>/status) while it attacks it from the test process.
 * Real TLS (its own CA), real HTTP/2, real upstream sockets.
 *
 * Environment: WEFT_CHILD_POD (the pod IP every connection is for, as the DNAT would
 * say), WEFT_CHILD_TUNING / WEFT_CHILD_LIMITS (JSON option overrides).
 * Prints one JSON line `{"ready":true,...}` with the port, the roots and a client
 * certificate (identity `client`) for the test to use. Reads commands on stdin:
 * `stats [tag]` prints `{"stats":{...},"tag":...}` (sessions, connections, refusal counters, and the
 * upstream sockets open and stalled: queued past the pipe's high-water mark, where the
 * pipe pauses the stream; to a pod that never reads, that stall is for good), and the
 * bytes parked in this process: now, and the peak since start (sampled every 5 ms)
 * — what the upstream sockets queue plus what the HTTP/2 streams hold unread — beside
 * the node budget's reservations.
 */
import pino from 'pino';
import type * as net from 'node:net';
import type * as http2 from 'node:http2';
import { createInterface } from 'node:readline';
import { Registry } from 'prom-client';
import { MeshState } from '../../src/registry/state';
import { ConnectionRegistry } from '../../src/ztunnel/connections';
import { defaultUpstreamFactory } from '../../src/mesh/dial';
import { hboneTuning } from '../../src/hbone/settings';
import { InboundServer } from '../../src/ztunnel/inbound';
import { exactSelfAddresses, loopGuard } from '../../src/ztunnel/loop-guard';
import { ZtunnelMetrics } from '../../src/ztunnel/metrics';
import { fixedOriginalDst } from '../../src/ztunnel/testing/conntrack-table';
import { IssuerCertSource } from '../../src/ztunnel/testing/issuer-certs';
import { ambientNamespace, nodeRecord, workloadRecord } from '../../src/ztunnel/testing/records';
import { CHILD_NODE_IP } from './inbound-child-client';

const CLIENT_ID = 'spiffe://cluster.local/ns/demo/sa/client';

async function main(): Promise<void> {
  const pod = process.env.WEFT_CHILD_POD ?? '127.0.5.1';
  const state = new MeshState({ trustDomain: 'cluster.local' });
  state.replaceAll({
    node: [nodeRecord('node-a', '127.0.0.2'), nodeRecord('node-b', CHILD_NODE_IP)],
    namespace: [ambientNamespace('demo')],
    workload: [
      workloadRecord({ name: 'client', namespace: 'demo', node: 'node-a', ip: '127.0.5.100' }),
      workloadRecord({ name: 'sink', namespace: 'demo', node: 'node-b', ip: pod }),
    ],
    service: [], policy: [], peerauth: [],
  }, 1);
  const certs = await IssuerCertSource.create('cluster.local');
  const client = await certs.get(CLIENT_ID);
  const registry = new Registry();
  const metrics = new ZtunnelMetrics(registry);
  const connections = new ConnectionRegistry();
  const tuning = process.env.WEFT_CHILD_TUNING ? JSON.parse(process.env.WEFT_CHILD_TUNING) : undefined;
  const upstreams = new Set<net.Socket>();
  const inbound = new InboundServer({
    socketFactory: (target, purpose) => {
      const s = defaultUpstreamFactory(target, purpose);
      upstreams.add(s);
      s.once('close', () => upstreams.delete(s));
      return s;
    },
    state, certs, connections, metrics, nodeName: 'node-b', logger: pino({ level: 'silent' }),
    originalDst: fixedOriginalDst({ ip: pod, port: 15008 }),
    // Pods live on 127.0.0.0/8 beside the node: only the node's own address is "self".
    loopGuard: loopGuard(exactSelfAddresses([CHILD_NODE_IP])),
    ...(tuning ? { tuning } : {}),
    ...(process.env.WEFT_CHILD_LIMITS ? { limits: JSON.parse(process.env.WEFT_CHILD_LIMITS) } : {}),
  } as ConstructorParameters<typeof InboundServer>[0]);
  const port = (await inbound.listen(CHILD_NODE_IP, 0)).port;
  // The server's streams, to read what they hold unread (test-only reach into the server).
  const streams = new Set<http2.ServerHttp2Stream>();
  (inbound as unknown as { hbone: { h2: http2.Http2Server } }).hbone.h2.on('stream', (st: http2.ServerHttp2Stream) => {
    streams.add(st);
    st.once('close', () => streams.delete(st));
  });
  const parked = () => {
    let n = 0;
    for (const u of upstreams) n += u.writableLength;
    for (const st of streams) n += st.readableLength;
    return n;
  };
  /** What the peer may still send on the streams before it needs a WINDOW_UPDATE. */
  const openWindow = () => {
    let n = 0;
    for (const st of streams) n += Math.max(0, st.state.localWindowSize ?? 0);
    return n;
  };
  let peakParked = 0;
  let peakReserved = 0;
  setInterval(() => {
    peakParked = Math.max(peakParked, parked());
    peakReserved = Math.max(peakReserved, inbound.node.budget.used);
  }, 5).unref();
  process.stdout.write(`${JSON.stringify({ ready: true, port, rootsPem: certs.rootsPem, client: { keyPem: client.keyPem, certChainPem: client.certChainPem } })}\n`);
  createInterface({ input: process.stdin }).on('line', (line) => {
    const [command, tag = ''] = line.trim().split(' ');
    if (command !== 'stats') return;
    void registry.getSingleMetric('weft_ztunnel_hbone_refused_total')?.get().then((m) => {
      const refused: Record<string, number> = {};
      for (const v of m?.values ?? []) refused[String(v.labels.reason)] = v.value;
      const hwm = hboneTuning(tuning).pipeHighWaterMark;
      const stalled = [...upstreams].filter((u) => u.writableLength > hwm).length;
      process.stdout.write(`${JSON.stringify({ stats: {
        sessions: inbound.sessionCount, connections: connections.size, refused, upstreams: upstreams.size, stalled,
        parked: parked(), peakParked, openWindow: openWindow(), reserved: inbound.node.budget.used, peakReserved,
      }, tag })}\n`);
    });
  });
  process.stdin.once('end', () => { void inbound.close().then(() => process.exit(0)); });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
