// The HBONE server (15008) as a peer sees it: hand-made HTTP/2 requests over mTLS,
// checking each answer of reference §1 (400 / 401 / 503 / 200).
import t, { type Test } from 'tap';
import * as http2 from 'node:http2';
import * as tls from 'node:tls';
import { HBONE_PORT } from '../src/hbone/contracts';
import { SecureContextCache } from '../src/hbone/tls';
import { startDemoMesh, IP, ID, type DemoMesh } from '../src/ztunnel/testing/demo-mesh';
import { policyRecord, workloadRecord } from '../src/ztunnel/testing/records';
import { metricSum } from '../src/ztunnel/testing/metric-values';
import { ending, until } from '../src/ztunnel/testing/sockets';

const T = { timeout: 30_000 };
let demo: DemoMesh;
let dbPort = 0;
t.before(async () => {
  demo = await startDemoMesh();
  // A mesh workload on node-b with another identity than echo's.
  dbPort = await demo.mesh.pod('127.0.2.3', (s) => s.pipe(s));
  demo.mesh.put('workload', workloadRecord({ name: 'db', namespace: 'demo', node: 'node-b', ip: '127.0.2.3', sa: 'db' }));
});
t.teardown(async () => { await demo?.close(); });

const contexts = new SecureContextCache();

/** An HTTP/2 session to node-b's 15008 as if dialling `<podIp>:15008`, with `identity`'s certificate. */
async function session(t: Test, podIp: string, identity: string = ID.client): Promise<http2.ClientHttp2Session> {
  const cert = await demo.mesh.ca.get(identity);
  const context = contexts.get(cert, demo.mesh.ca.rootsPem);
  const node = demo.mesh.node('node-b');
  const s = http2.connect(`https://${IP.nodeB}:${node.ports.inbound}`, {
    createConnection: () => tls.connect({
      socket: demo.mesh.conntrack.dial({ host: IP.nodeB, port: node.ports.inbound }, { ip: podIp, port: HBONE_PORT }, { allowHalfOpen: false }),
      secureContext: context, ALPNProtocols: ['h2'], servername: '', checkServerIdentity: () => undefined,
    }),
  });
  s.on('error', () => {});
  t.teardown(() => s.destroy());
  return s;
}

/** Sends one request; resolves with the answer's status. */
function status(s: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = s.request(headers, { endStream: false });
    req.on('response', (h) => { resolve(Number(h[':status'])); req.destroy(); });
    req.on('error', reject);
  });
}

const connect = (authority: string, extra: http2.OutgoingHttpHeaders = {}) => ({ ':method': 'CONNECT', ':authority': authority, ...extra });

t.test('answers per reference §1', T, async (t) => {
  const s = await session(t, IP.echo1);
  const echo = `${IP.echo1}:${demo.ports.echo}`;
  const cases: Array<[string, http2.OutgoingHttpHeaders, number]> = [
    ['GET is not CONNECT', { ':method': 'GET', ':path': '/' }, 400],
    ['authority is not ip:port', connect('echo.demo.svc:80'), 400],
    ['authority port out of range', connect(`${IP.echo1}:70000`), 400],
    ['loop guard: 15008', connect(`${IP.echo1}:15008`), 400],
    ['loop guard: 15001', connect(`${IP.echo1}:15001`), 400],
    ['loop guard: 15006', connect(`${IP.echo1}:15006`), 400],
    ['another identity than the tunnel authenticated', connect(`127.0.2.3:${dbPort}`), 400],
    ['not a workload', connect(`${IP.external}:${demo.ports.echo}`), 503],
    ['a workload outside the mesh', connect(`${IP.legacy}:${demo.ports.echo}`), 503],
    ['a workload on another node', connect(`${IP.client}:80`), 503],
    ['nothing listens on the target port', connect(`${IP.echo1}:1`), 503],
    ['valid', connect(echo), 200],
    ['many valid streams on one connection', connect(echo), 200],
  ];
  for (const [name, headers, want] of cases) t.equal(await status(s, headers), want, name);
});

t.test('200, then bytes both ways on the stream', T, async (t) => {
  const s = await session(t, IP.echo1);
  const req = s.request(connect(`${IP.echo1}:${demo.ports.echo}`, { forwarded: `for="${IP.client}:4242"` }), { endStream: false });
  const got: Buffer[] = [];
  req.on('data', (d: Buffer) => got.push(d));
  const [h] = await Promise.all([new Promise<http2.IncomingHttpHeaders>((r) => req.once('response', r))]);
  t.equal(h[':status'], 200);
  req.end('ping');
  await new Promise<void>((r) => req.once('end', () => r()));
  t.equal(Buffer.concat(got).toString(), 'ping', 'echoed, then END_STREAM after ours');
});

t.test('authorization uses the client certificate, and forwarded only from the identity it names', T, async (t) => {
  demo.mesh.put('policy', policyRecord({
    name: 'deny-client-ip', namespace: 'demo', action: 'DENY', rules: [{ clauses: [{ matches: [{ sourceIps: [`${IP.client}/32`] }] }] }],
  }));
  t.teardown(() => demo.mesh.remove('policy', 'demo/deny-client-ip'));
  const echo = `${IP.echo1}:${demo.ports.echo}`;
  const node = demo.mesh.node('node-b');
  const ignored = (reason: string) => metricSum(node.registry, 'weft_ztunnel_forwarded_ignored_total', { reason });
  const asClient = await session(t, IP.echo1);
  t.equal(await status(asClient, connect(echo, { forwarded: `for="${IP.client}:1000"` })), 401, 'client\'s own address in forwarded: believed, so denied');
  t.equal(await ignored('other_identity'), 0);
  t.equal(await status(asClient, connect(echo)), 200, 'no forwarded: the peer address, not denied');
  // client2 runs as `other`: a peer holding client's certificate must not speak for it.
  const asOther = await session(t, IP.echo1, ID.other);
  t.equal(await status(asOther, connect(echo, { forwarded: `for="${IP.client}:1000"` })), 200, 'another identity claiming client\'s address: ignored, not denied');
  t.equal(await ignored('other_identity'), 1, 'counted');
  t.equal(await status(asOther, connect(echo, { forwarded: 'for="127.0.1.99:1000"' })), 200, 'an address of no workload: ignored');
  t.equal(await ignored('unknown_workload'), 1, 'counted');

  // An ALLOW on client2's address cannot be reached by claiming it from another identity.
  demo.mesh.put('policy', policyRecord({
    name: 'allow-client2-ip', namespace: 'demo', action: 'ALLOW', rules: [{ clauses: [{ matches: [{ sourceIps: [`${IP.client2}/32`] }] }] }],
  }));
  t.teardown(() => demo.mesh.remove('policy', 'demo/allow-client2-ip'));
  const spoof = await session(t, IP.echo1, 'spiffe://cluster.local/ns/demo/sa/echo');
  t.equal(await status(spoof, connect(echo, { forwarded: `for="${IP.client2}:1000"` })), 401, 'spoofed forwarded: denied');
  t.equal(await status(asOther, connect(echo, { forwarded: `for="${IP.client2}:1000"` })), 200, 'client2\'s own identity: allowed');
  await until(() => node.connections.size === 0, 2000, 'inbound connections to finish');
});

t.test('TLS-level refusals', T, async (t) => {
  const node = demo.mesh.node('node-b');
  // No client certificate.
  const noCert = tls.connect({
    socket: demo.mesh.conntrack.dial({ host: IP.nodeB, port: node.ports.inbound }, { ip: IP.echo1, port: HBONE_PORT }, { allowHalfOpen: false }),
    ca: demo.mesh.ca.rootsPem, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined,
  });
  noCert.on('error', () => {});
  noCert.resume();
  const e1 = await ending(noCert);
  t.equal(e1.received.length, 0, 'no client certificate: closed');
  // The original destination is not a mesh workload of this node: closed before TLS.
  const sock = demo.mesh.connectHbone('node-b', IP.external);
  const e2 = await ending(sock);
  t.equal(e2.received.length, 0, 'unknown original destination: closed without a byte');
  const other = demo.mesh.connectHbone('node-b', IP.client);
  t.equal((await ending(other)).received.length, 0, 'a workload of another node: closed');
});

t.test('live streams and sessions are gone after the clients leave', T, async (t) => {
  const node = demo.mesh.node('node-b');
  await until(() => node.inbound.sessionCount === 0 && node.connections.size === 0, 3000, 'sessions to close');
  t.equal(node.inbound.policies.size, 0);
});

t.test('certificates of identities that left the node are let go', T, async (t) => {
  const node = demo.mesh.node('node-b');
  t.ok(node.inbound.tlsIdentities >= 1, 'echo\'s certificate is loaded');
  demo.mesh.remove('workload', 'demo/echo-1');
  t.ok(node.inbound.tlsIdentities >= 1, 'echo-2 still runs as echo');
  demo.mesh.remove('workload', 'demo/echo-2');
  t.equal(node.inbound.tlsIdentities, 0);
});
