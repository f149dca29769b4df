// 500 short connections of every kind, then nothing may be left behind: tracked
// connections, streams, sockets, timers, policy registrations.
import t from 'tap';
import { startDemoMesh, IP, type DemoMesh } from '../src/ztunnel/testing/demo-mesh';
import { metricSum } from '../src/ztunnel/testing/metric-values';
import { policyRecord } from '../src/ztunnel/testing/records';
import { connected, ending, roundTrip, sendAndEnd, until } from '../src/ztunnel/testing/sockets';

function resources(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
  return out;
}

async function batch(n: number, concurrency: number, one: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < n) await one(next++);
  }));
}

t.test('500 short connections leave nothing behind', { timeout: 120_000 }, async (t) => {
  const demo: DemoMesh = await startDemoMesh();
  t.teardown(() => demo.close());
  const a = demo.mesh.node('node-a');
  const b = demo.mesh.node('node-b');
  demo.mesh.put('policy', policyRecord({ name: 'deny-other', namespace: 'demo', action: 'DENY', rules: [{ clauses: [{ matches: [{ principals: ['spiffe://cluster.local/ns/demo/sa/other'] }] }] }] }));

  // Warm-up: the tunnels a steady state keeps (one per source identity), then the baseline.
  await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echoVip, port: 80 }), 'w');
  await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client2, { ip: IP.echoVip, port: 80 }), 'w');
  await until(() => a.connections.size === 0 && b.connections.size === 0, 5000, 'warm-up to finish');
  await new Promise((r) => setTimeout(r, 50));
  const baseline = resources();
  const tunnels = a.pool.size;
  const deniedBefore = await metricSum(b.registry, 'istio_tcp_connections_failed_total', { response_flags: 'DENY' });

  const kinds = ['echo', 'echo', 'echo', 'echo', 'echo', 'echo', 'reset', 'passthrough', 'denied', 'plaintext'] as const;
  const outcomes: Record<string, number> = {};
  await batch(500, 25, async (i) => {
    const kind = kinds[i % kinds.length]!;
    let ok = false;
    switch (kind) {
      case 'echo': {
        const e = await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echoVip, port: 80 }), `hello ${i}`);
        ok = e.received.toString() === `hello ${i}` && e.gotEnd;
        break;
      }
      case 'reset': {
        const s = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo2, port: demo.ports.reset });
        const e = ending(s);
        await connected(s);
        s.write('x');
        ok = (await e).error === 'ECONNRESET';
        break;
      }
      case 'passthrough': {
        const e = await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.legacy, port: demo.ports.echo }), 'p');
        ok = e.received.toString() === 'p';
        break;
      }
      case 'denied': {
        const e = await sendAndEnd(demo.mesh.connectOutbound('node-a', IP.client2, { ip: IP.echoVip, port: 80 }), 'd');
        ok = e.error === 'ECONNRESET' && e.received.length === 0;
        break;
      }
      case 'plaintext': {
        const e = await sendAndEnd(demo.mesh.connectPlaintext('node-b', IP.legacy, { ip: IP.echo1, port: demo.ports.echo }), 'q');
        ok = e.received.toString() === 'q';
        break;
      }
    }
    outcomes[`${kind}:${ok}`] = (outcomes[`${kind}:${ok}`] ?? 0) + 1;
  });
  t.same(outcomes, { 'echo:true': 300, 'reset:true': 50, 'passthrough:true': 50, 'denied:true': 50, 'plaintext:true': 50 });

  await until(() => a.connections.size === 0 && b.connections.size === 0, 10_000, 'tracked connections to drain');
  t.equal(a.connections.size, 0, 'node-a tracks no connection');
  t.equal(b.connections.size, 0, 'node-b tracks no connection');
  t.equal(a.pool.stats().reduce((n, s) => n + s.activeStreams, 0), 0, 'no active stream');
  t.equal(a.pool.size, tunnels, 'no extra tunnel');
  t.equal(b.inbound.sessionCount, tunnels, 'one server session per tunnel');
  t.equal(b.inbound.policies.size + b.plaintext.policies.size, 0, 'no policy registration left');
  t.equal(a.outbound.ownedSockets + b.inbound.ownedSockets + b.plaintext.ownedSockets, tunnels, 'listeners own only the tunnels\' sockets');
  await until(() => {
    const now = resources();
    return (now.TCPSocketWrap ?? 0) <= (baseline.TCPSocketWrap ?? 0) && (now.Timeout ?? 0) <= (baseline.Timeout ?? 0);
  }, 10_000, 'sockets and timers to return to baseline').catch(() => undefined);
  const after = resources();
  t.equal(after.TCPSocketWrap ?? 0, baseline.TCPSocketWrap ?? 0, `sockets back to baseline (${JSON.stringify(after)})`);
  t.ok((after.Timeout ?? 0) <= (baseline.Timeout ?? 0), `timers back to baseline (${after.Timeout ?? 0} vs ${baseline.Timeout ?? 0})`);
  t.equal(await metricSum(a.registry, 'istio_tcp_connections_opened_total', { reporter: 'source' }),
    await metricSum(a.registry, 'istio_tcp_connections_closed_total', { reporter: 'source' }), 'every opened connection was closed');
  t.equal(await metricSum(b.registry, 'istio_tcp_connections_failed_total', { response_flags: 'DENY' }) - deniedBefore, 50);
});

t.test('closing the listeners and the pool ends live connections', { timeout: 60_000 }, async (t) => {
  const demo: DemoMesh = await startDemoMesh();
  t.teardown(() => demo.close());
  const a = demo.mesh.node('node-a');
  const b = demo.mesh.node('node-b');
  const tunnelled = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echoVip, port: 80 });
  const plain = demo.mesh.connectPlaintext('node-b', IP.legacy, { ip: IP.echo1, port: demo.ports.echo });
  const passthrough = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.legacy, port: demo.ports.echo });
  const ends = [tunnelled, plain, passthrough].map((s) => ending(s));
  for (const s of [tunnelled, plain, passthrough]) await roundTrip(s, Buffer.from('up'));
  t.equal(a.connections.size, 2);
  t.equal(b.connections.size, 2);
  await Promise.all([a.outbound.close(), a.pool.close(), b.inbound.close(), b.plaintext.close()]);
  const results = await Promise.all(ends);
  t.ok(results.every((r) => r.error === 'ECONNRESET' || !r.gotEnd), 'every client connection was torn down');
  await until(() => a.connections.size === 0 && b.connections.size === 0, 5000, 'registries to empty');
  t.equal(a.pool.size, 0);
  t.equal(b.inbound.sessionCount, 0);
  t.equal(a.outbound.ownedSockets + b.inbound.ownedSockets + b.plaintext.ownedSockets, 0);
});
