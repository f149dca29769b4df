// The inbound plaintext listener handed a service VIP as original destination (what
// the capture chain's service rules produce), on loopback: the original destination
// is injected and pod addresses are mapped to loopback servers by the socket factory,
// so no iptables is needed. The kernel side is covered by test/iptables-capture.test.ts
// and test/e2e/mesh/vip-capture.ts.
import t, { type Test } from 'tap';
import * as net from 'node:net';
import { Registry } from 'prom-client';
import { silentLogger } from '../src/lib/log';
import { MeshState } from '../src/registry/state';
import { ConnectionRegistry } from '../src/ztunnel/connections';
import type { OriginalDst } from '../src/hbone/contracts';
import { InboundPlaintextServer } from '../src/ztunnel/inbound-plaintext';
import { exactSelfAddresses, loopGuard } from '../src/ztunnel/loop-guard';
import { ZtunnelMetrics } from '../src/ztunnel/metrics';
import { waitFor } from './helpers/wait';
import { ambientNamespace, nodeRecord, peerAuth, serviceRecord, workloadRecord } from '../src/ztunnel/testing/records';

const VIP = '10.96.0.10';

function mesh(): MeshState {
  const s = new MeshState({ trustDomain: 'cluster.local' });
  s.replaceAll({
    node: [nodeRecord('n1', '192.0.2.1'), nodeRecord('n2', '192.0.2.2')],
    namespace: [ambientNamespace('demo')],
    workload: [
      workloadRecord({ name: 'echo-1', namespace: 'demo', node: 'n1', ip: '10.1.0.1', sa: 'echo', labels: { app: 'echo' } }),
      workloadRecord({ name: 'echo-2', namespace: 'demo', node: 'n2', ip: '10.2.0.1', sa: 'echo', labels: { app: 'echo' } }),
      workloadRecord({ name: 'sick', namespace: 'demo', node: 'n1', ip: '10.1.0.5', labels: { app: 'sick' }, healthy: false }),
    ],
    service: [
      serviceRecord({ name: 'echo', namespace: 'demo', vip: VIP, port: 80, targetPort: 8080, selector: { app: 'echo' } }),
      serviceRecord({ name: 'sick', namespace: 'demo', vip: '10.96.0.30', port: 80, targetPort: 8080, selector: { app: 'sick' } }),
    ],
    policy: [], peerauth: [],
  }, 1);
  return s;
}

/** A pod's app: says its name, then echoes. */
async function app(t: Test, name: string): Promise<number> {
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.write(`${name}\n`);
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return (server.address() as net.AddressInfo).port;
}

/** One connection: the first line received, or the error that ended it. */
function dial(port: number): Promise<{ line?: string; error?: string }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let buf = '';
    s.setTimeout(5000, () => s.destroy(new Error('timeout')));
    s.on('data', (d) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl !== -1) { s.destroy(); resolve({ line: buf.slice(0, nl) }); }
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    s.on('close', () => resolve({ error: 'closed' }));
  });
}

t.test('a VIP reaching 15006: local mesh endpoint checked, remote forwarded, refusals reset', async (t) => {
  const state = mesh();
  const ports = new Map([['10.1.0.1', await app(t, 'echo-1')], ['10.2.0.1', await app(t, 'echo-2')]]);
  const dialled: string[] = [];
  let orig: OriginalDst = { ip: VIP, port: 80 };
  const registry = new Registry();
  const metrics = new ZtunnelMetrics(registry);
  const connections = new ConnectionRegistry();
  const server = new InboundPlaintextServer({
    state, nodeName: 'n1', logger: silentLogger(), connections, metrics,
    originalDst: { lookup: async () => orig },
    loopGuard: loopGuard(exactSelfAddresses(['192.0.2.1'])),
    socketFactory: (target) => {
      dialled.push(`${target.host}:${target.port}`);
      return net.connect({ host: '127.0.0.1', port: ports.get(target.host) ?? 1, allowHalfOpen: true });
    },
  });
  const { port } = await server.listen('127.0.0.1', 0);
  t.teardown(() => server.close());
  const series = async (metric: string) => (await registry.getMetricsAsJSON()).find((m) => m.name === metric)?.values ?? [];

  await t.test('PERMISSIVE: round robin over both endpoints, target port mapped', async (t) => {
    const answers = [];
    for (let i = 0; i < 4; i++) answers.push((await dial(port)).line);
    t.same(answers, ['echo-1', 'echo-2', 'echo-1', 'echo-2']);
    t.same(dialled.splice(0), ['10.1.0.1:8080', '10.2.0.1:8080', '10.1.0.1:8080', '10.2.0.1:8080']);
    const opened = (await series('istio_tcp_connections_opened_total'))
      .filter((v) => v.labels['destination_service'] === 'echo.demo.svc.cluster.local' && v.labels['reporter'] === 'destination');
    t.same(opened.map((v) => `${v.labels['destination_workload']}=${v.value}`).sort(), ['echo-1=2', 'echo-2=2'],
      'both counted with the service as destination_service');
  });

  await t.test('STRICT: the local endpoint is refused; the remote one is forwarded for its own node to check', async (t) => {
    state.applyChanges([{ op: 'put', kind: 'peerauth', key: 'demo/default', record: peerAuth('demo', 'STRICT') }], 2);
    const answers = [];
    for (let i = 0; i < 4; i++) {
      const r = await dial(port);
      answers.push(r.line ?? 'refused');
    }
    t.same(answers, ['refused', 'echo-2', 'refused', 'echo-2']);
    t.same(dialled.splice(0), ['10.2.0.1:8080', '10.2.0.1:8080'], 'the refused ones dialled nothing');
    const denied = (await series('istio_tcp_connections_failed_total')).find((v) => v.labels['response_flags'] === 'DENY');
    t.equal(denied?.value, 2);
    t.equal(denied?.labels['destination_workload'], 'echo-1');
    state.applyChanges([{ op: 'delete', kind: 'peerauth', key: 'demo/default' }], 3);
  });

  await t.test('an unknown service port or no healthy endpoint: reset, nothing dialled', async (t) => {
    orig = { ip: VIP, port: 81 };
    t.notOk((await dial(port)).line, 'unknown port refused');
    orig = { ip: '10.96.0.30', port: 80 };
    t.notOk((await dial(port)).line, 'no healthy endpoint refused');
    t.same(dialled, []);
    const failed = await series('istio_tcp_connections_failed_total');
    const flag = (f: string) => failed.find((v) => v.labels['response_flags'] === f);
    t.equal(flag('NO_ROUTE')?.labels['destination_service'], 'echo.demo.svc.cluster.local');
    t.equal(flag('NO_HEALTHY_UPSTREAM')?.labels['destination_service'], 'sick.demo.svc.cluster.local');
  });

  await t.test('nothing left tracked', async (t) => {
    await waitFor('every connection ended', () => [...connections.all()].length === 0, { timeoutMs: 5000 });
    t.pass('the registry is empty');
  });
});
