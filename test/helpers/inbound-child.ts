/**
 * One ztunnel HBONE server (15008) in its own process, so a test can read that
 * process's memory (/proc/<pid>/status) while it attacks it from the test process.
 * Real TLS (its own CA), real HTTP/2, real upstream sockets.
 *
 * Environment: WEFT_CHILD_POD (the pod IP every connection is for, as the DNAT would
 * say), WEFT_CHILD_TUNING / WEFT_CHILD_LIMITS (JSON option overrides).
 * Prints one JSON line `{"ready":true,...}` with the port, the roots and a client
 * certificate (identity `client`) for the test to use. Reads commands on stdin:
 * `stats` prints `{"stats":{...}}` (sessions, connections, refusal counters).
 */
import pino from 'pino';
import { createInterface } from 'node:readline';
import { Registry } from 'prom-client';
import { MeshState } from '../../src/registry/state';
import { ConnectionRegistry } from '../../src/ztunnel/connections';
import { InboundServer } from '../../src/ztunnel/inbound';
import { exactSelfAddresses, loopGuard } from '../../src/ztunnel/loop-guard';
import { ZtunnelMetrics } from '../../src/ztunnel/metrics';
import { fixedOriginalDst } from '../../src/ztunnel/testing/conntrack-table';
import { IssuerCertSource } from '../../src/ztunnel/testing/issuer-certs';
import { ambientNamespace, nodeRecord, workloadRecord } from '../../src/ztunnel/testing/records';

const CHILD_NODE_IP = '127.0.0.3';
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
  const inbound = new InboundServer({
    state, certs, connections, metrics, nodeName: 'node-b', logger: pino({ level: 'silent' }),
    originalDst: fixedOriginalDst({ ip: pod, port: 15008 }),
    // Pods live on 127.0.0.0/8 beside the node: only the node's own address is "self".
    loopGuard: loopGuard(exactSelfAddresses([CHILD_NODE_IP])),
    ...(process.env.WEFT_CHILD_TUNING ? { tuning: JSON.parse(process.env.WEFT_CHILD_TUNING) } : {}),
    ...(process.env.WEFT_CHILD_LIMITS ? { limits: JSON.parse(process.env.WEFT_CHILD_LIMITS) } : {}),
  } as ConstructorParameters<typeof InboundServer>[0]);
  const port = (await inbound.listen(CHILD_NODE_IP, 0)).port;
  process.stdout.write(`${JSON.stringify({ ready: true, port, rootsPem: certs.rootsPem, client: { keyPem: client.keyPem, certChainPem: client.certChainPem } })}\n`);
  createInterface({ input: process.stdin }).on('line', (line) => {
    if (line.trim() !== 'stats') return;
    void registry.getSingleMetric('weft_ztunnel_hbone_refused_total')?.get().then((m) => {
      const refused: Record<string, number> = {};
      for (const v of m?.values ?? []) refused[String(v.labels.reason)] = v.value;
      process.stdout.write(`${JSON.stringify({ stats: { sessions: inbound.sessionCount, connections: connections.size, refused } })}\n`);
    });
  });
  process.stdin.once('end', () => { void inbound.close().then(() => process.exit(0)); });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
