// Metric series of deleted pods are removed (issue 9, item 15): the Istio TCP counters
// carry both ends' workload names, so without this every pod that ever talked keeps
// its series for the life of the ztunnel. Real ztunnel metrics registries on the
// loopback mesh, real connections.
import t from 'tap';
import { Registry } from 'prom-client';
import { ConnectionRegistry } from '../src/ztunnel/connections';
import { ZtunnelMetrics } from '../src/ztunnel/metrics';
import { startDemoMesh, IP, type DemoMesh } from '../src/ztunnel/testing/demo-mesh';
import { ending, roundTrip, until } from '../src/ztunnel/testing/sockets';

const ISTIO = ['istio_tcp_connections_opened_total', 'istio_tcp_connections_closed_total', 'istio_tcp_connections_failed_total',
  'istio_tcp_sent_bytes_total', 'istio_tcp_received_bytes_total'];

/** Series (any Istio TCP counter) whose labels name `name` on either end. */
async function seriesNaming(registry: Registry, name: string): Promise<number> {
  let n = 0;
  for (const metric of ISTIO) {
    const data = await registry.getSingleMetric(metric)!.get();
    n += data.values.filter((v) => v.labels['source_workload'] === name || v.labels['destination_workload'] === name).length;
  }
  return n;
}

let demo: DemoMesh;
t.before(async () => { demo = await startDemoMesh(); });
t.teardown(async () => { await demo?.close(); });

t.test('a deleted workload\'s series disappear from both ztunnels; a live connection keeps them until it ends', { timeout: 30_000 }, async (t) => {
  const a = demo.mesh.node('node-a');
  const b = demo.mesh.node('node-b');
  // Traffic to echo-1 (finished), echo-2 (held open) and legacy (passthrough, stays).
  for (const dst of [{ ip: IP.echo1, port: demo.ports.echo }, { ip: IP.legacy, port: demo.ports.echo }]) {
    const s = demo.mesh.connectOutbound('node-a', IP.client, dst);
    await roundTrip(s, Buffer.from('hi'));
    s.end();
    await ending(s);
  }
  const live = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo2, port: demo.ports.echo });
  await roundTrip(live, Buffer.from('hi'));
  await until(() => a.connections.size === 1, 5000, 'only the live connection left on node-a');

  t.ok(await seriesNaming(a.registry, 'echo-1') > 0, 'node-a has echo-1 series');
  t.ok(await seriesNaming(b.registry, 'echo-1') > 0, 'node-b has echo-1 series');
  t.ok(await seriesNaming(a.registry, 'echo-2') > 0, 'node-a has echo-2 series');
  const legacyBefore = await seriesNaming(a.registry, 'legacy');
  t.ok(legacyBefore > 0);

  demo.mesh.remove('workload', 'demo/echo-1');
  demo.mesh.remove('workload', 'demo/echo-2');
  t.equal(await seriesNaming(a.registry, 'echo-1'), 0, 'node-a: echo-1 series gone');
  t.equal(await seriesNaming(b.registry, 'echo-1'), 0, 'node-b: echo-1 series gone');
  t.equal(await seriesNaming(a.registry, 'legacy'), legacyBefore, 'other workloads\' series stay');
  t.ok(await seriesNaming(a.registry, 'echo-2') > 0, 'echo-2 still has a live connection on node-a: its series stay');

  live.end();
  await ending(live);
  await until(() => a.connections.size === 0, 5000, 'the live connection to end');
  t.equal(await seriesNaming(a.registry, 'echo-2'), 0, 'node-a: echo-2 series gone once its last connection ended');
  await until(() => b.connections.size === 0, 5000, 'node-b side to end');
  t.equal(await seriesNaming(b.registry, 'echo-2'), 0, 'node-b: echo-2 series gone');

  // A snapshot without a workload (a resync after an outage) removes its series too.
  const ext = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.external, port: demo.ports.echo });
  await roundTrip(ext, Buffer.from('hi'));
  ext.end();
  await ending(ext);
  await until(() => a.connections.size === 0, 5000, 'the external connection to end');
  t.ok(await seriesNaming(a.registry, 'client') > 0, 'client → an unregistered address has series');
  const state = a.state;
  const snapshot = {
    node: state.list('node'), namespace: state.list('namespace'), service: state.list('service'), policy: state.list('policy'), peerauth: state.list('peerauth'),
    workload: state.workloads().map((w) => w.record).filter((r) => r.name !== 'legacy'),
  };
  state.replaceAll(snapshot, state.revision + 1);
  t.equal(await seriesNaming(a.registry, 'legacy'), 0, 'gone after a snapshot without it');
  t.ok(await seriesNaming(a.registry, 'client') > 0, 'client is still in the snapshot');
});

t.test('a close re-checks only the deleted workloads it names, not every live connection per pending workload', async (t) => {
  const wl = (name: string) => ({ record: { namespace: 'demo', name, uid: name }, identity: `spiffe://cluster.local/ns/demo/sa/${name}` }) as never;
  const registry = new Registry();
  const metrics = new ZtunnelMetrics(registry);
  const connections = new ConnectionRegistry();
  metrics.observe(connections);
  let walks = 0;
  const all = connections.all.bind(connections);
  connections.all = () => { walks++; return all(); };
  const open = (src: string) => {
    const c = connections.add({ direction: 'inbound', protocol: 'HBONE', src: { ip: '10.0.0.1', port: 1, workload: wl(src) }, dst: { ip: '10.0.0.2', port: 80, workload: wl('server') } });
    c.established = true;
    metrics.connectionOpened(c);
    return c;
  };
  const close = (c: ReturnType<typeof open>) => {
    connections.remove(c);
    metrics.connectionClosed(c, '-');
  };
  const gone = open('gone');
  const others = Array.from({ length: 20 }, () => open('other'));
  metrics.forgetWorkload('demo', 'gone');
  t.ok(await seriesNaming(registry, 'gone') > 0, 'kept while its connection is live');
  walks = 0;
  for (const c of others) close(c);
  t.equal(walks, 0, 'closing connections that do not name the deleted workload looks at no live connection');
  close(gone);
  t.equal(await seriesNaming(registry, 'gone'), 0, 'removed once its last connection ended');
  t.ok(await seriesNaming(registry, 'other') > 0, 'other series stay');
});
