// The destination ztunnel (real 15008) receiving a waypoint's upstream CONNECT: the
// peer is the waypoint (its certificate), policy sees the waypoint's principal, and
// `forwarded` is believed only while that waypoint is bound to the destination.
import t, { type Test } from 'tap';
import * as http2 from 'node:http2';
import * as tls from 'node:tls';
import { HBONE_PORT } from '../src/hbone/contracts';
import { SecureContextCache } from '../src/hbone/tls';
import { waypointRecord } from '../src/registry/fixtures';
import { startDemoMesh, IP, ID, type DemoMesh } from '../src/ztunnel/testing/demo-mesh';
import { ambientNamespace, policyRecord } from '../src/ztunnel/testing/records';
import { metricSum } from '../src/ztunnel/testing/metric-values';
import { until } from '../src/ztunnel/testing/sockets';

const T = { timeout: 30_000 };
const WP_ID = 'spiffe://cluster.local/ns/demo/sa/waypoint';
let demo: DemoMesh;
t.before(async () => { demo = await startDemoMesh(); });
t.teardown(async () => { await demo?.close(); });

const contexts = new SecureContextCache();

/** An HTTP/2 session to node-b's 15008 for `<podIp>:15008`, presenting `identity`'s certificate. */
async function session(t: Test, podIp: string, identity: string): Promise<http2.ClientHttp2Session> {
  const cert = await demo.mesh.ca.get(identity);
  const node = demo.mesh.node('node-b');
  const s = http2.connect(`https://${IP.nodeB}:${node.ports.inbound}`, {
    createConnection: () => tls.connect({
      socket: demo.mesh.conntrack.dial({ host: IP.nodeB, port: node.ports.inbound }, { ip: podIp, port: HBONE_PORT }, { allowHalfOpen: false }),
      secureContext: contexts.get(cert, demo.mesh.ca.rootsPem), ALPNProtocols: ['h2'], servername: '', checkServerIdentity: () => undefined,
    }),
  });
  s.on('error', () => {});
  t.teardown(() => s.destroy());
  return s;
}

function status(s: http2.ClientHttp2Session, authority: string, forwardedFor?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers: http2.OutgoingHttpHeaders = { ':method': 'CONNECT', ':authority': authority };
    if (forwardedFor) headers.forwarded = `for="${forwardedFor}"`;
    const req = s.request(headers, { endStream: false });
    req.on('response', (h) => { resolve(Number(h[':status'])); req.destroy(); });
    req.on('error', reject);
  });
}

const bind = (to: string | undefined) => {
  const ns = ambientNamespace('demo');
  if (to) ns.labels['weft.io/use-waypoint'] = to;
  demo.mesh.put('namespace', ns);
};

t.test('forwarded from the bound waypoint is the source address policy sees; unbound, the waypoint\'s own', T, async (t) => {
  demo.mesh.put('waypoint', waypointRecord({ namespace: 'demo', name: 'waypoint' }));
  demo.mesh.put('policy', policyRecord({
    name: 'deny-client-ip', namespace: 'demo', action: 'DENY', rules: [{ clauses: [{ matches: [{ sourceIps: [`${IP.client}/32`] }] }] }],
  }));
  t.teardown(() => { demo.mesh.remove('policy', 'demo/deny-client-ip'); bind(undefined); });
  const node = demo.mesh.node('node-b');
  const echo = `${IP.echo1}:${demo.ports.echo}`;
  const ignored = () => metricSum(node.registry, 'weft_ztunnel_forwarded_ignored_total', { reason: 'other_identity' });
  const asWaypoint = await session(t, IP.echo1, WP_ID);

  t.equal(await status(asWaypoint, echo, `${IP.client}:1000`), 200, 'not bound: the claim is ignored (so the DENY on the client\'s address does not match)');
  t.equal(await ignored(), 1, 'and counted');

  bind('waypoint');
  t.equal(await status(asWaypoint, echo, `${IP.client}:1000`), 401, 'bound: the client\'s address is believed, and the DENY on it holds through the waypoint');
  t.equal(await status(asWaypoint, echo, `${IP.client2}:1000`), 200, 'another client through the same waypoint passes');
  t.equal(await ignored(), 1, 'nothing more ignored');

  // The same claim from a mesh peer that is not the waypoint stays ignored.
  const asOther = await session(t, IP.echo1, ID.other);
  t.equal(await status(asOther, echo, `${IP.client}:1000`), 200);
  t.equal(await ignored(), 2);
  await until(() => node.connections.size === 0, 5000, 'inbound connections to finish');
});

t.test('the principal is the waypoint\'s: a policy naming only the original source denies the waypoint', T, async (t) => {
  bind('waypoint');
  demo.mesh.put('policy', policyRecord({
    name: 'allow-client', namespace: 'demo', action: 'ALLOW', rules: [{ clauses: [{ matches: [{ principals: [ID.client] }] }] }],
  }));
  t.teardown(() => { demo.mesh.remove('policy', 'demo/allow-client'); bind(undefined); });
  const echo = `${IP.echo1}:${demo.ports.echo}`;
  const asWaypoint = await session(t, IP.echo1, WP_ID);
  t.equal(await status(asWaypoint, echo, `${IP.client}:1000`), 401, 'the forwarded address does not lend the client\'s identity');
  demo.mesh.put('policy', policyRecord({
    name: 'allow-client', namespace: 'demo', action: 'ALLOW', rules: [{ clauses: [{ matches: [{ principals: [ID.client, WP_ID] }] }] }],
  }));
  t.equal(await status(asWaypoint, echo, `${IP.client}:1000`), 200, 'admitting the waypoint\'s principal lets it through');
});
