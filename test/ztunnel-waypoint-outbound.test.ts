// The source ztunnel's waypoint hop through the real outbound listener, pool, TLS and
// HTTP/2: a client connects to a VIP whose Service is bound to a waypoint; a stand-in
// waypoint (an HBONE server presenting the waypoint's certificate, real mTLS) must get
// the CONNECT for the ORIGINAL VIP:port with the client's certificate. Bound but not
// ready: reset, NO_WAYPOINT counted, one warning line with the reason. Traffic
// addressed to a pod bound to a waypoint for workloads goes the same way, with the
// registry followed from a real redis-server.
import t, { type Test } from 'tap';
import { randomBytes } from 'node:crypto';
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import type * as tls from 'node:tls';
import pino from 'pino';
import { Registry } from 'prom-client';
import { waypointPod, waypointRecord } from '../src/registry/fixtures';
import { MeshState } from '../src/registry/state';
import { RegistryFollower } from '../src/registry/follower';
import { RegistryStore, type ChangeInput } from '../src/registry/store';
import type { Change, WorkloadRecord } from '../src/registry/types';
import { connectionItem } from '../src/cli/commands/connections';
import { ConnectionRegistry } from '../src/ztunnel/connections';
import { exactSelfAddresses, loopGuard } from '../src/ztunnel/loop-guard';
import { ZtunnelMetrics } from '../src/ztunnel/metrics';
import { OutboundProxy } from '../src/ztunnel/outbound';
import { HbonePool } from '../src/hbone/pool';
import { HBONE_ALPN, peerUriSans } from '../src/hbone/tls';
import { ConntrackTable } from '../src/ztunnel/testing/conntrack-table';
import { IssuerCertSource } from '../src/ztunnel/testing/issuer-certs';
import { metricSum } from '../src/ztunnel/testing/metric-values';
import { ambientNamespace, nodeRecord, serviceRecord, workloadRecord } from '../src/ztunnel/testing/records';
import { ending, roundTrip, until } from '../src/ztunnel/testing/sockets';
import { LogLines } from './helpers/log-lines';
import { redisFixture } from './helpers/redis';

const fixture = redisFixture(t);

const T = { timeout: 30_000 };
const NODE = '127.0.90.1';
const CLIENT = '127.0.90.2';
const WP_POD = '127.0.90.50';
const VIP = { ip: '10.96.0.10', port: 80 };
const CLIENT_ID = 'spiffe://cluster.local/ns/demo/sa/client';
const WP_ID = 'spiffe://cluster.local/ns/demo/sa/waypoint';

/** What the stand-in waypoint saw of one CONNECT. */
interface Seen {
  authority: string | undefined;
  forwarded: string | undefined;
  baggage: string | undefined;
  peer: string[];
}

/** An HBONE server as a waypoint pod runs it: its own certificate, client certs required, each CONNECT answered 200 and echoed. */
async function standInWaypoint(t: Test, certs: IssuerCertSource): Promise<{ port: number; seen: Seen[] }> {
  const cert = await certs.get(WP_ID);
  const seen: Seen[] = [];
  const server = http2.createSecureServer({
    key: cert.keyPem, cert: cert.certChainPem.join('\n'), ca: certs.rootsPem,
    requestCert: true, rejectUnauthorized: true, ALPNProtocols: HBONE_ALPN, minVersion: 'TLSv1.3',
  });
  server.on('stream', (stream, headers) => {
    seen.push({
      authority: headers[':authority'], forwarded: headers.forwarded as string | undefined, baggage: headers.baggage as string | undefined,
      peer: peerUriSans(stream.session!.socket as tls.TLSSocket),
    });
    stream.respond({ ':status': 200 });
    stream.pipe(stream);
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on('session', (s) => { sessions.add(s); s.once('close', () => sessions.delete(s)); });
  await new Promise<void>((resolve) => server.listen(0, WP_POD, resolve));
  t.teardown(() => new Promise<void>((resolve) => {
    for (const s of sessions) s.destroy();
    server.close(() => resolve());
  }));
  return { port: (server.address() as net.AddressInfo).port, seen };
}

/**
 * The outbound listener of node n1 over `state`, and a client that connects through it
 * to `dst`. Every HBONE dial is recorded; only the waypoint pod has a server behind it.
 */
async function outboundRig(t: Test, state: MeshState, ca: IssuerCertSource, waypointPort: number, dst: { ip: string; port: number }) {
  const logs = new LogLines();
  const logger = pino({ level: 'debug' }, logs);
  const conntrack = new ConntrackTable();
  const registry = new Registry();
  const metrics = new ZtunnelMetrics(registry);
  const connections = new ConnectionRegistry();
  const pool = new HbonePool({ certs: ca.sibling(), logger, socketFactory: conntrack.factory() });
  const dialled: string[] = [];
  const outbound = new OutboundProxy({
    state, logger, connections, metrics, nodeName: 'n1', originalDst: conntrack, loopGuard: loopGuard(exactSelfAddresses([NODE])), pool,
    hboneDialTarget: (w) => {
      dialled.push(w.record.name);
      return { host: w.record.addresses[0]!, port: w.record.addresses[0] === WP_POD ? waypointPort : 1 };
    },
  });
  const { port } = await outbound.listen(NODE, 0);
  const clients = new Set<net.Socket>();
  t.teardown(async () => {
    for (const c of clients) c.destroy();
    await outbound.close();
    await pool.close();
  });
  const connect = () => {
    const c = conntrack.dial({ host: NODE, port }, dst, { from: CLIENT });
    c.on('error', () => {}); // a reset is what some subtests expect; `ending` reports it
    clients.add(c);
    return c;
  };
  return { logs, registry, connections, pool, dialled, connect };
}

function records(): Change[] {
  const wp = waypointRecord({ namespace: 'demo', name: 'waypoint' });
  const demo = ambientNamespace('demo');
  demo.labels['weft.io/use-waypoint'] = 'waypoint';
  const put = (kind: Change['kind'], key: string, record: unknown) => ({ op: 'put', kind, key, record }) as Change;
  return [
    put('node', 'n1', nodeRecord('n1', NODE)),
    put('namespace', 'demo', demo),
    put('workload', 'demo/client', workloadRecord({ name: 'client', namespace: 'demo', node: 'n1', ip: CLIENT })),
    // The endpoint exists and is healthy: a bypass would have somewhere to go.
    put('workload', 'demo/echo-1', workloadRecord({ name: 'echo-1', namespace: 'demo', node: 'n1', ip: '127.0.90.10', sa: 'echo', labels: { app: 'echo' } })),
    put('service', 'demo/echo', serviceRecord({ name: 'echo', namespace: 'demo', vip: VIP.ip, port: VIP.port, targetPort: 8080, selector: { app: 'echo' } })),
    put('waypoint', 'demo/waypoint', wp),
    put('workload', 'demo/wp-1', waypointPod(wp, { uid: 'demo/wp-1', name: 'wp-1', node: 'n1', addresses: [WP_POD] })),
  ];
}

t.test('a VIP bound to a waypoint goes to the waypoint over HBONE; not ready → reset, NO_WAYPOINT', T, async (t) => {
  const ca = await IssuerCertSource.create();
  const waypoint = await standInWaypoint(t, ca);
  const state = new MeshState({ trustDomain: 'cluster.local' });
  state.applyChanges(records(), 1);
  const { logs, registry, connections, pool, dialled, connect } = await outboundRig(t, state, ca, waypoint.port, VIP);

  await t.test('through the waypoint: original VIP:port, the client\'s certificate, the waypoint\'s identity checked', async (t) => {
    const sock = connect();
    const answer = await roundTrip(sock, Buffer.from('hello waypoint'));
    t.equal(answer.toString(), 'hello waypoint', 'bytes went through the waypoint and back');
    t.same(dialled.splice(0), ['wp-1'], 'the tunnel went to the waypoint pod, never to the endpoint');
    t.equal(waypoint.seen.length, 1);
    t.match(waypoint.seen[0], {
      authority: '10.96.0.10:80', // not 127.0.90.10:8080: the waypoint routes by the Service
      forwarded: `for="${CLIENT}:${sock.localPort}"`,
      peer: [CLIENT_ID],
    });
    t.match(waypoint.seen[0]!.baggage, /k8s\.namespace\.name=demo,k8s\.pod\.name=client/);
    const stats = pool.stats();
    t.equal(stats.length, 1);
    t.match(stats[0], { sourceIdentity: CLIENT_ID, destinationIdentity: WP_ID }, 'pooled per {source, waypoint identity, waypoint pod}');
    const live = connections.list().find((c) => c.direction === 'outbound');
    t.match(live, { destinationService: 'demo/echo', destinationWaypoint: 'demo/waypoint', destinationIdentity: WP_ID, destinationWorkload: 'demo/wp-1' });
    t.equal(connectionItem('n1', live!).remoteTarget, 'demo/echo via waypoint demo/waypoint', 'weft connections says so');
    sock.end();
    await ending(sock);
    await until(() => connections.size === 0, 5000, 'the connection to end');
    const done = logs.lines.find((l) => l.msg === 'connection complete');
    t.match(done, { 'dst.waypoint': 'demo/waypoint', 'dst.service': 'demo/echo', 'dst.identity': WP_ID });
    t.equal(await metricSum(registry, 'istio_tcp_connections_opened_total', {
      reporter: 'source', destination_service: 'echo.demo.svc.cluster.local', destination_principal: WP_ID,
    }), 1);
  });

  await t.test('waypoint pod not ready: reset, nothing dialled, NO_WAYPOINT and a warning with the reason', async (t) => {
    const pod = state.workload('demo/wp-1')!.record;
    state.applyChanges([{ op: 'put', kind: 'workload', key: 'demo/wp-1', record: { ...pod, status: 'Unhealthy' } }], 2);
    const end = await ending(connect());
    t.equal(end.error, 'ECONNRESET', 'a TCP reset');
    t.equal(end.received.length, 0);
    t.same(dialled, [], 'neither the waypoint nor the endpoint was dialled');
    t.equal(await metricSum(registry, 'istio_tcp_connections_failed_total', { response_flags: 'NO_WAYPOINT', destination_service: 'echo.demo.svc.cluster.local' }), 1);
    const line = logs.lines.find((l) => l.error === 'NO_WAYPOINT');
    t.equal(line?.level, 40, 'a warning');
    t.match(line, { 'dst.waypoint': 'demo/waypoint', 'dst.service': 'demo/echo' });
    t.match(line?.reason, /service demo\/echo is bound to waypoint demo\/waypoint .*which has no ready pod \(1 pod, 1 not Healthy\); refused rather than bypassing it/);
  });

  await t.test('waypoint deleted: the same; back when it returns', async (t) => {
    state.applyChanges([{ op: 'delete', kind: 'waypoint', key: 'demo/waypoint' }], 3);
    t.equal((await ending(connect())).error, 'ECONNRESET');
    t.equal(await metricSum(registry, 'istio_tcp_connections_failed_total', { response_flags: 'NO_WAYPOINT' }), 2);
    t.match(logs.lines.filter((l) => l.error === 'NO_WAYPOINT').at(-1)?.reason, /which does not exist/);
    state.applyChanges(records().filter((c) => c.key === 'demo/waypoint' || c.key === 'demo/wp-1'), 4);
    const again = await roundTrip(connect(), Buffer.from('back'));
    t.equal(again.toString(), 'back', 'recovers by itself on the next connection');
    t.same(dialled, ['wp-1']);
  });
});

t.test('a pod bound to a waypoint for workloads is reached through it, :authority the pod IP:port; fail closed as for services', T, async (t) => {
  const ca = await IssuerCertSource.create();
  const waypoint = await standInWaypoint(t, ca);
  const prefix = `weft-${randomBytes(4).toString('hex')}:`;
  const store = RegistryStore.connect(fixture.redis.url, { prefix });
  t.teardown(() => store.close());
  const state = new MeshState({ trustDomain: 'cluster.local' });
  const follower = new RegistryFollower({ url: fixture.redis.url, prefix, state, blockMs: 100 });
  t.teardown(() => follower.stop());
  // The namespace binds its pods and services to `waypoint`, which serves both.
  const all = waypointRecord({ namespace: 'demo', name: 'waypoint', for: 'all' });
  const write = async (changes: ChangeInput[]) => {
    const rev = await store.apply(changes);
    await until(() => state.revision >= rev, 5000, `the follower to reach revision ${rev}`);
  };
  await store.apply([...records().map((c) => ({ op: 'put', kind: c.kind, record: (c as { record: unknown }).record }) as ChangeInput),
    { op: 'put', kind: 'waypoint', record: all }]);
  await follower.start();
  const POD = { ip: '127.0.90.10', port: 8080 };
  const { logs, registry, connections, dialled, connect } = await outboundRig(t, state, ca, waypoint.port, POD);
  const echo1 = records().find((c) => c.key === 'demo/echo-1') as { record: WorkloadRecord };

  await t.test('namespace binding, waypoint for all: the pod\'s traffic goes to the waypoint with the pod IP:port', async (t) => {
    const sock = connect();
    t.equal((await roundTrip(sock, Buffer.from('to the pod'))).toString(), 'to the pod');
    t.same(dialled.splice(0), ['wp-1'], 'the tunnel went to the waypoint pod, never to the pod itself');
    t.match(waypoint.seen.at(-1), { authority: '127.0.90.10:8080', peer: [CLIENT_ID], forwarded: `for="${CLIENT}:${sock.localPort}"` });
    const live = connections.list().find((c) => c.direction === 'outbound');
    t.match(live, { destinationWaypoint: 'demo/waypoint', destinationIdentity: WP_ID, destinationWorkload: 'demo/wp-1' });
    sock.end();
    await ending(sock);
  });

  await t.test('a waypoint for services only does not take pod traffic: direct (MeshFrontend)', async (t) => {
    await write([{ op: 'put', kind: 'waypoint', record: { ...all, for: 'service' } }]);
    await ending(connect());
    t.same(dialled.splice(0), ['echo-1'], 'the pod itself was dialled');
  });

  await t.test('the pod\'s own label names a waypoint that does not exist: reset, NO_WAYPOINT, nothing dialled', async (t) => {
    await write([{ op: 'put', kind: 'workload', record: { ...echo1.record, labels: { ...echo1.record.labels, 'weft.io/use-waypoint': 'pods' } } }]);
    const end = await ending(connect());
    t.equal(end.error, 'ECONNRESET');
    t.same(dialled, [], 'neither a waypoint nor the pod');
    t.equal(await metricSum(registry, 'istio_tcp_connections_failed_total', { response_flags: 'NO_WAYPOINT' }), 1);
    t.match(logs.lines.filter((l) => l.error === 'NO_WAYPOINT').at(-1)?.reason,
      /127\.0\.90\.10:8080 is a pod address and pod demo\/echo-1 is bound to waypoint demo\/pods \(its weft\.io\/use-waypoint label\), which does not exist; refused rather than bypassing it/);
  });

  await t.test('that waypoint created, for workloads: through it; its pod not ready: refused again', async (t) => {
    const pods = waypointRecord({ namespace: 'demo', name: 'pods', serviceAccount: 'waypoint', for: 'workload' });
    // The same pod record (one pod per address), now a pod of `pods`.
    const podsPod = waypointPod(pods, { uid: 'demo/wp-1', name: 'wp-1', node: 'n1', addresses: [WP_POD] });
    await write([{ op: 'put', kind: 'waypoint', record: pods }, { op: 'put', kind: 'workload', record: podsPod }]);
    t.equal((await roundTrip(connect(), Buffer.from('again'))).toString(), 'again');
    t.same(dialled.splice(0), ['wp-1']);
    t.equal(waypoint.seen.at(-1)?.authority, '127.0.90.10:8080');
    await write([{ op: 'put', kind: 'workload', record: { ...podsPod, status: 'Unhealthy' } }]);
    t.equal((await ending(connect())).error, 'ECONNRESET');
    t.same(dialled, []);
    t.match(logs.lines.filter((l) => l.error === 'NO_WAYPOINT').at(-1)?.reason, /is bound to waypoint demo\/pods .*which has no ready pod \(1 pod, 1 not Healthy\)/);
  });
});
