// Item 8 of issue 9: dead peers. Every proxied socket has TCP keepalive (seen by the
// kernel: `ss -o` shows its timer), and a proxied connection with no byte either way
// for the idle timeout is closed on both nodes: client socket, HBONE stream, pod
// socket and tracked records all go away. Keepalive is checked on a connection with
// the default timeout (1 h), so a slow check cannot race the idle close; the idle part
// uses a short timeout; nothing is timed, the test waits for each of them to go.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { configurePipes, DEFAULT_IDLE_TIMEOUT_MS } from '../src/hbone/pipe';
import { startDemoMesh, IP, type DemoMesh } from '../src/ztunnel/testing/demo-mesh';
import { ending, until } from '../src/ztunnel/testing/sockets';

let demo: DemoMesh;
t.before(async () => { demo = await startDemoMesh(); });
t.teardown(async () => { configurePipes({ idleTimeoutMs: DEFAULT_IDLE_TIMEOUT_MS }); await demo?.close(); });

/** `ss` lines of established TCP sockets matching a filter, with their timers. */
function ss(filter: string): string[] {
  return execFileSync('ss', ['-tnoH', 'state', 'established', ...filter.split(' ')], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

/** A client connection through both nodes to the pod that holds it, with one byte sent. */
async function held(): Promise<{ client: ReturnType<DemoMesh['mesh']['connectOutbound']>; ended: ReturnType<typeof ending>; podClosed: Promise<void> }> {
  const before = demo.held.length;
  const client = demo.mesh.connectOutbound('node-a', IP.client, { ip: IP.echo1, port: demo.ports.hold });
  const ended = ending(client, 20_000);
  client.write('x');
  await until(() => demo.held.length === before + 1, 5000, 'the pod to get the connection');
  const pod = demo.held[before]!;
  return { client, ended, podClosed: new Promise<void>((resolve) => pod.once('close', () => resolve())) };
}

t.test('keepalive on every proxied socket', { timeout: 30_000 }, async (t) => {
  const a = demo.mesh.node('node-a');
  const b = demo.mesh.node('node-b');
  const { client, ended } = await held();
  t.equal(a.connections.size, 1);
  t.equal(b.connections.size, 1);
  const sockets: Array<[string, string]> = [
    ['downstream (accepted at 15001)', `sport = :${a.ports.outbound}`],
    ['HBONE, client side (pool)', `dport = :${b.ports.inbound}`],
    ['HBONE, server side (15008)', `sport = :${b.ports.inbound}`],
    ['upstream (dialled to the pod)', `dport = :${demo.ports.hold}`],
  ];
  for (const [what, filter] of sockets) {
    // While bytes are unacknowledged ss shows the retransmission timer instead; a
    // socket without keepalive shows no timer once quiet.
    const keepalive = () => { const l = ss(filter); return l.length > 0 && l.every((x) => x.includes('timer:(keepalive')); };
    const ok = await until(keepalive, 5000, what).then(() => true, () => false);
    t.ok(ok, `${what}: TCP keepalive on (${ss(filter).join(' | ')})`);
  }
  // A reset ends it on both nodes (a FIN would leave it half-open: the pod holds).
  client.resetAndDestroy();
  await ended;
  await until(() => a.connections.size === 0 && b.connections.size === 0, 5000, 'tracked records to go');
});

t.test('an idle connection goes away everywhere', { timeout: 30_000 }, async (t) => {
  const a = demo.mesh.node('node-a');
  const b = demo.mesh.node('node-b');
  configurePipes({ idleTimeoutMs: 500 });
  const { ended, podClosed } = await held();
  t.equal(a.connections.size, 1);
  t.equal(b.connections.size, 1);
  // Nothing more is sent: the idle timeout closes it on both nodes.
  const e = await ended;
  t.not(e.error, 'TEST_TIMEOUT', 'the client connection was closed by the proxy');
  await podClosed;
  t.pass('the pod\'s connection was closed');
  await until(() => a.connections.size === 0 && b.connections.size === 0, 5000, 'tracked records to go');
  await until(() => a.pool.stats().every((s) => s.activeStreams === 0), 5000, 'the HBONE stream to close');
  t.equal(b.inbound.policies.size, 0, 'no policy watch left');
});
