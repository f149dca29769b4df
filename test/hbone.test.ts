// End-to-end data path in one process: two ztunnel "nodes" on loopback with real TLS,
// real HTTP/2 and real sockets (only DNAT is emulated, see src/ztunnel/testing).
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { startDemoMesh, IP, ID, type DemoMesh } from '../src/ztunnel/testing/demo-mesh';
import { metricSum } from '../src/ztunnel/testing/metric-values';
import { policyRecord, peerAuth, workloadRecord } from '../src/ztunnel/testing/records';
import { connected, ending, roundTrip, sendAndEnd, sha256, until } from '../src/ztunnel/testing/sockets';

// No subtest may hang the file: each has its own deadline.
const T = { timeout: 30_000 };
let demo: DemoMesh;
t.before(async () => { demo = await startDemoMesh(); });
t.teardown(async () => { await demo?.close(); });

const nodeA = () => demo.mesh.node('node-a');
const nodeB = () => demo.mesh.node('node-b');

t.test('client → service VIP → echo on the other node: bytes intact both ways, over one tunnel', T, async (t) => {
  const data = randomBytes(4 * 1024 * 1024);
  const sock = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echoVip, port: 80 });
  const end = await sendAndEnd(sock, data);
  t.equal(end.error, undefined);
  t.ok(end.gotEnd, 'clean FIN after the echo');
  t.equal(end.received.length, data.length);
  t.equal(sha256(end.received), sha256(data), 'echoed bytes are identical');
  const tunnels = nodeA().pool.stats();
  t.equal(tunnels.length, 1);
  t.match(tunnels[0], {
    sourceIdentity: ID.client, destinationIdentity: ID.echo, peerNode: 'node-b', totalStreams: 1, activeStreams: 0,
    bytesSent: data.length, bytesReceived: data.length,
  });
  const labels = { source_workload: 'client', destination_service: 'echo.demo.svc.cluster.local', connection_security_policy: 'mutual_tls' };
  await until(() => nodeB().connections.size === 0, 2000, 'inbound connection to finish');
  t.equal(await metricSum(nodeA().registry, 'istio_tcp_connections_opened_total', { reporter: 'source', ...labels }), 1);
  t.equal(await metricSum(nodeA().registry, 'istio_tcp_connections_closed_total', { reporter: 'source', response_flags: '-' }), 1);
  t.equal(await metricSum(nodeA().registry, 'istio_tcp_received_bytes_total', { reporter: 'source' }), data.length);
  t.equal(await metricSum(nodeA().registry, 'istio_tcp_sent_bytes_total', { reporter: 'source' }), data.length);
  t.equal(await metricSum(nodeB().registry, 'istio_tcp_connections_opened_total', {
    reporter: 'destination', source_workload: 'client', source_principal: ID.client, destination_workload: 'echo-1', destination_principal: ID.echo,
  }) + await metricSum(nodeB().registry, 'istio_tcp_connections_opened_total', { reporter: 'destination', destination_workload: 'echo-2' }), 1);
});

t.test('client → pod IP directly, and the VIP spreads over both endpoints', T, async (t) => {
  const small = Buffer.from('hello');
  const direct = await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo2, port: demo.ports.echo }), small);
  t.equal(direct.received.toString(), 'hello');
  const before = nodeB().connections.size;
  const a = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echoVip, port: 80 });
  const b = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echoVip, port: 80 });
  await Promise.all([roundTrip(a, small), roundTrip(b, small)]);
  const dsts = nodeA().connections.list().filter((c) => c.direction === 'outbound').map((c) => c.destinationWorkload).sort();
  t.same(dsts, ['demo/echo-1', 'demo/echo-2'], 'round robin over the two endpoints');
  t.equal(nodeB().connections.size, before + 2);
  const info = nodeA().connections.list()[0]!;
  t.match(info, { protocol: 'hbone', sourceWorkload: 'demo/client', sourceIdentity: ID.client, destinationService: 'demo/echo', destinationIdentity: ID.echo });
  a.end();
  b.end();
  await Promise.all([ending(a), ending(b)]);
});

t.test('half-close: the client ends its side and still gets the answer', T, async (t) => {
  const data = randomBytes(3 * 1024 * 1024 + 7);
  const end = await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.hash }), data);
  t.equal(end.received.toString(), sha256(data));
  t.ok(end.gotEnd);
  t.equal(end.error, undefined);
});

t.test('half-close: the server ends its side first and still reads the client', T, async (t) => {
  const sock = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.speak });
  const got: Buffer[] = [];
  sock.on('data', (d: Buffer) => got.push(d));
  await new Promise<void>((r) => sock.once('end', () => r()));
  t.equal(sha256(Buffer.concat(got)), sha256(demo.speakBytes), 'server data arrived, then FIN');
  const upload = randomBytes(2 * 1024 * 1024);
  const before = demo.spoken.length;
  const closed = ending(sock);
  sock.end(upload);
  await until(() => demo.spoken.length > before, 5000, 'server to finish reading');
  t.equal(demo.spoken[before], sha256(upload), 'client data after the server FIN arrived intact');
  t.equal((await closed).error, undefined);
});

t.test('a reset by the server reaches the client as a TCP reset', T, async (t) => {
  const sock = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.reset });
  const end = ending(sock);
  await connected(sock);
  sock.write('boom');
  const e = await end;
  t.equal(e.error, 'ECONNRESET');
  t.notOk(e.gotEnd);
  await until(() => nodeA().connections.size === 0 && nodeB().connections.size === 0, 2000, 'connections to end');
  t.ok(await metricSum(nodeB().registry, 'istio_tcp_connections_closed_total', { response_flags: 'UPSTREAM_RESET' }) >= 1);
  t.ok(await metricSum(nodeA().registry, 'istio_tcp_connections_closed_total', { response_flags: 'UPSTREAM_RESET' }) >= 1);
});

t.test('a reset by the client reaches the server as a TCP reset', T, async (t) => {
  const sock = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.hold });
  const before = demo.held.length;
  await connected(sock);
  sock.write('x');
  await until(() => demo.held.length > before, 5000, 'server to accept');
  const server = demo.held[before]!;
  const serverEnd = ending(server);
  sock.resetAndDestroy();
  const e = await serverEnd;
  t.equal(e.error, 'ECONNRESET', 'the pod sees a reset, not a FIN');
  t.notOk(e.gotEnd);
});

t.test('a destination presenting another identity is refused', T, async (t) => {
  // node-a's registry believes echo-1 runs as sa "imposter"; node-b serves its real (sa echo) certificate.
  const rec = workloadRecord({ name: 'echo-1', namespace: 'demo', node: 'node-b', ip: IP.echo1, sa: 'imposter', labels: { app: 'echo' } });
  nodeA().state.applyChanges([{ op: 'put', kind: 'workload', key: rec.uid, record: rec }], 1000);
  t.teardown(() => {
    const good = { ...rec, serviceAccount: 'echo' };
    nodeA().state.applyChanges([{ op: 'put', kind: 'workload', key: rec.uid, record: good }], 1001);
  });
  const e = await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.echo }), 'hi');
  t.equal(e.received.length, 0, 'no byte reached the client');
  t.equal(e.error, 'ECONNRESET');
  t.equal(await metricSum(nodeA().registry, 'istio_tcp_connections_failed_total', {
    response_flags: 'TLS_FAILURE', destination_principal: 'spiffe://cluster.local/ns/demo/sa/imposter',
  }), 1);
});

t.test('a DENY policy answers 401 at the destination and the client connection closes', T, async (t) => {
  demo.mesh.put('policy', policyRecord({ name: 'deny-client', namespace: 'demo', action: 'DENY', rules: [{ clauses: [{ matches: [{ principals: [ID.client] }] }] }] }));
  t.teardown(() => demo.mesh.remove('policy', 'demo/deny-client'));
  const denied = await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echoVip, port: 80 }), 'hi');
  t.equal(denied.received.length, 0);
  t.equal(denied.error, 'ECONNRESET');
  t.equal(await metricSum(nodeB().registry, 'istio_tcp_connections_failed_total', { reporter: 'destination', response_flags: 'DENY', source_principal: ID.client }), 1);
  t.equal(await metricSum(nodeA().registry, 'istio_tcp_connections_failed_total', { reporter: 'source', response_flags: 'DENY' }), 1);
  const other = await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client2, { ip: IP.echoVip, port: 80 }), 'hi');
  t.equal(other.received.toString(), 'hi', 'another identity is still allowed');
});

t.test('a policy change closes a live connection it now denies', T, async (t) => {
  const sock = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.echo });
  const end = ending(sock);
  t.equal((await roundTrip(sock, Buffer.from('before'))).toString(), 'before');
  const revokedBefore = nodeB().inbound.policies.revoked;
  demo.mesh.put('policy', policyRecord({ name: 'only-other', namespace: 'demo', action: 'ALLOW', rules: [{ clauses: [{ matches: [{ principals: [ID.other] }] }] }] }));
  t.teardown(() => demo.mesh.remove('policy', 'demo/only-other'));
  const e = await end;
  t.ok(e.error === 'ECONNRESET' || !e.gotEnd, 'the client connection was torn down');
  t.equal(nodeB().inbound.policies.revoked, revokedBefore + 1);
  t.equal(await metricSum(nodeB().registry, 'weft_ztunnel_connections_revoked_total', { listener: 'hbone' }), revokedBefore + 1);
  await until(() => nodeB().connections.size === 0, 2000, 'inbound side to finish');
  t.ok(await metricSum(nodeB().registry, 'istio_tcp_connections_closed_total', { response_flags: 'DENY' }) >= 1);
});

t.test('passthrough: destinations outside the mesh get plain TCP, no tunnel', T, async (t) => {
  const tunnelsBefore = nodeA().pool.stats().reduce((n, s) => n + s.totalStreams, 0);
  for (const ip of [IP.legacy, IP.external]) {
    const sock = demo.mesh.connectOutbound('node-a', IP.client, { ip, port: demo.ports.echo });
    t.equal((await roundTrip(sock, Buffer.from('plain'))).toString(), 'plain', ip);
    t.match(nodeA().connections.list().find((c) => c.destinationAddress.startsWith(ip)), { protocol: 'passthrough', direction: 'outbound' });
    sock.end();
    await ending(sock);
  }
  t.equal(nodeA().pool.stats().reduce((n, s) => n + s.totalStreams, 0), tunnelsBefore, 'no HBONE stream was opened');
  t.ok(await metricSum(nodeA().registry, 'istio_tcp_connections_closed_total', { connection_security_policy: 'unknown', destination_workload: 'legacy' }) >= 1);
});

t.test('loop guard: a proxy port of a workload is refused', T, async (t) => {
  for (const port of [15001, 15006, 15008]) {
    const e = await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port }), 'x');
    t.equal(e.error, 'ECONNRESET', `port ${port}`);
  }
  t.equal(await metricSum(nodeA().registry, 'istio_tcp_connections_failed_total', { response_flags: 'LOOP' }), 3);
});

t.test('plaintext inbound (15006): allowed under PERMISSIVE, refused under STRICT', T, async (t) => {
  const ok = await sendAndEnd(demo.mesh.connectPlaintext('node-b', IP.legacy, { ip: IP.echo1, port: demo.ports.echo }), 'plain');
  t.equal(ok.received.toString(), 'plain');
  t.match(await metricSum(nodeB().registry, 'istio_tcp_connections_closed_total', { connection_security_policy: 'unknown', destination_workload: 'echo-1', source_workload: 'legacy' }), 1);
  demo.mesh.put('peerauth', peerAuth('demo', 'STRICT'));
  t.teardown(() => demo.mesh.remove('peerauth', 'demo/default'));
  const refused = await sendAndEnd(demo.mesh.connectPlaintext('node-b', IP.legacy, { ip: IP.echo1, port: demo.ports.echo }), 'plain');
  t.equal(refused.received.length, 0);
  t.equal(refused.error, 'ECONNRESET');
  t.equal(await metricSum(nodeB().registry, 'istio_tcp_connections_failed_total', { response_flags: 'DENY', source_workload: 'legacy' }), 1);
  const mtls = await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.echo }), 'mtls');
  t.equal(mtls.received.toString(), 'mtls', 'STRICT still allows mesh (HBONE) traffic');
});

t.test('STRICT closes live plaintext connections', T, async (t) => {
  const sock = demo.mesh.connectPlaintext('node-b', IP.legacy, { ip: IP.echo1, port: demo.ports.echo });
  const end = ending(sock);
  t.equal((await roundTrip(sock, Buffer.from('live'))).toString(), 'live');
  demo.mesh.put('peerauth', peerAuth('demo', 'STRICT'));
  t.teardown(() => demo.mesh.remove('peerauth', 'demo/default'));
  const e = await end;
  t.ok(e.error === 'ECONNRESET' || !e.gotEnd);
  t.equal(nodeB().plaintext.policies.revoked, 1);
  t.equal(await metricSum(nodeB().registry, 'weft_ztunnel_connections_revoked_total', { listener: 'plaintext' }), 1);
});

t.test('everything is released afterwards', T, async (t) => {
  await until(() => nodeA().connections.size === 0 && nodeB().connections.size === 0, 3000, 'connections to drain');
  t.equal(nodeA().pool.stats().reduce((n, s) => n + s.activeStreams, 0), 0);
  t.equal(nodeB().inbound.policies.size, 0);
  t.equal(nodeB().plaintext.policies.size, 0);
});
