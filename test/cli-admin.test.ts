import t from 'tap';
import * as net from 'node:net';
import { join } from 'node:path';
import { RegistryStore } from '../src/registry/store';
import type { ConfigDump, ConnectionsResponse, TunnelsResponse } from '../src/ztunnel/admin-types';
import { IssuerCertSource } from '../src/ztunnel/testing/issuer-certs';
import { Registry } from 'prom-client';
import { silentLogger } from '../src/lib/log';
import { adminServer } from '../src/ztunnel/admin';
import { closeServer, listenUnix } from '../src/lib/http-endpoints';
import { adminGet, queryNodes } from '../src/cli/admin-client';
import { captureIo, demoMesh, startAdminStub, tempDir, writeContextFile } from './helpers/cli';
import certs from '../src/cli/commands/certs';
import connections from '../src/cli/commands/connections';
import status from '../src/cli/commands/status';
import tunnels from '../src/cli/commands/tunnels';
import { startRedis } from './helpers/redis';
import { caught } from './helpers/wait';

const ID = (ns: string, sa: string) => `spiffe://cluster.local/ns/${ns}/sa/${sa}`;
const ago = (ms: number) => new Date(Date.now() - ms).toISOString();

t.test('admin-based commands', async (t) => {
  const tmp = tempDir();
  t.teardown(tmp.remove);
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const store = RegistryStore.connect(redis.url);
  t.teardown(() => store.close());
  await store.apply(demoMesh());
  const revision = await store.revision();

  const certSource = await IssuerCertSource.create();
  const clientCert = await certSource.get(ID('demo', 'client'));
  const echoCert = await certSource.get(ID('demo', 'echo'));

  const tunnelsBody: TunnelsResponse = {
    node: 'node-1',
    tunnels: [{
      id: '1', state: 'READY', localAddress: '198.18.0.11:40000', peerAddress: '198.19.2.11:15008', peerNode: 'node-2',
      sourceIdentity: ID('demo', 'client'), destinationIdentity: ID('demo', 'echo'),
      activeStreams: 2, totalStreams: 7, bytesSent: 1536, bytesReceived: 10 * 1024 * 1024,
      openedAt: ago(192_000), lastActivityAt: ago(5_000),
    }],
  };
  const connectionsBody: ConnectionsResponse = {
    node: 'node-1',
    connections: [
      {
        id: '10', direction: 'outbound', protocol: 'hbone', sourceWorkload: 'demo/client', sourceAddress: '198.19.1.10:51000',
        sourceIdentity: ID('demo', 'client'), destinationWorkload: 'demo/echo-2', destinationAddress: '198.19.2.11:8080',
        destinationService: 'demo/echo', tunnelId: '1', bytesSent: 100, bytesReceived: 2048, openedAt: ago(3_000),
      },
      {
        id: '11', direction: 'inbound-plaintext', protocol: 'plaintext', sourceAddress: '198.19.2.20:40404',
        destinationWorkload: 'demo/echo-1', destinationAddress: '198.19.1.11:8080', bytesSent: 0, bytesReceived: 0, openedAt: ago(1_000),
      },
    ],
  };
  const dump = (node: string, opts: { ready?: boolean; rev?: number; stale?: number } = {}): ConfigDump => ({
    node, version: '0.1.0', config: {},
    status: {
      node, version: '0.1.0', ready: opts.ready ?? true, registryRevision: opts.rev ?? revision,
      registryStalenessSeconds: opts.stale ?? 0.4, startedAt: ago(300_000),
    },
    workloads: [], services: [], policies: [],
    certificates: [
      { identity: clientCert.identity, state: 'Ready', serial: clientCert.serial, notBefore: clientCert.notBefore.toISOString(), notAfter: clientCert.notAfter.toISOString(), certChainPem: clientCert.certChainPem },
      { identity: echoCert.identity, state: 'Refreshing', certChainPem: echoCert.certChainPem },
      { identity: ID('demo', 'intruder'), state: 'Pending' },
    ],
  });

  const sock = (n: string) => join(tmp.dir, `${n}.sock`);
  const node1 = await startAdminStub(sock('node-1'), {
    '/tunnels': tunnelsBody, '/connections': connectionsBody, '/config_dump': dump('node-1'),
    '/certs': { node: 'node-1', certificates: dump('node-1').certificates },
  });
  t.teardown(() => node1.close());
  // node-2's ztunnel is not running: its socket does not exist.
  const hung = await startAdminStub(sock('node-3'), {}, { hang: true });
  t.teardown(() => hung.close());
  const ca = net.createServer((s) => s.destroy());
  await new Promise<void>((r) => ca.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => ca.close());
  const caAddress = `127.0.0.1:${(ca.address() as net.AddressInfo).port}`;

  const contextFile = (nodes: string[], extra: Record<string, unknown> = {}) => writeContextFile(join(tmp.dir, `ctx-${nodes.join('-')}.json`), {
    kind: 'lab', version: 1, redisUrl: redis.url, caAddress, trustDomain: 'cluster.local', labDir: tmp.dir,
    nodes: nodes.map((n) => ({ name: n, address: '198.18.0.1', netns: `weft-${n}`, adminSocket: sock(n) })), ...extra,
  });
  const twoNodes = contextFile(['node-1', 'node-2']);
  const run = async (cmd: { runWith: typeof tunnels.runWith }, argv: string[], ctx = twoNodes) => {
    const cap = captureIo({ HOME: tmp.dir, WEFT_CONTEXT: ctx });
    const code = await cmd.runWith(argv, cap.io);
    return { code, out: cap.stdout(), err: cap.stderr() };
  };

  t.test('admin client: JSON from a unix socket; failures say why', async (t) => {
    const data = await adminGet<TunnelsResponse>({ name: 'node-1', admin: { socketPath: sock('node-1') } }, '/tunnels');
    t.equal(data.tunnels[0]!.id, '1');
    t.match((await caught(() => adminGet({ name: 'node-2', admin: { socketPath: sock('node-2') } }, '/tunnels'))).message,
      /no admin socket at .*node-2\.sock; is the ztunnel on this node running\?/);
    t.match((await caught(() => adminGet({ name: 'node-1', admin: { socketPath: sock('node-1') } }, '/nope'))).message,
      /answered HTTP 404 to GET \/nope/);
    t.match((await caught(() => adminGet({ name: 'node-x' }, '/tunnels'))).message, /no admin endpoint .*adminSocket/);
    t.match((await caught(() => adminGet({ name: 'node-3', admin: { socketPath: sock('node-3') } }, '/tunnels', { timeoutMs: 50 }))).message,
      /no answer from .*node-3\.sock within 50 ms/);
    const r = await queryNodes<TunnelsResponse>([
      { name: 'node-1', admin: { socketPath: sock('node-1') } }, { name: 'node-2', admin: { socketPath: sock('node-2') } },
    ], '/connections', (d) => (Array.isArray((d as { tunnels?: unknown }).tunnels) ? undefined : 'no "tunnels" list'));
    t.same(r.answers, []);
    t.same(r.failures.map((f) => f.node), ['node-1', 'node-2']);
    t.match(r.failures[0]!.error, /unexpected answer to GET \/connections: no "tunnels" list/);
  });

  t.test('tunnels: rows from answering nodes, the silent node reported', async (t) => {
    const { code, out, err } = await run(tunnels, []);
    t.equal(code, 0, 'some nodes answered');
    t.match(out, /^NODE\s+SOURCE IDENTITY\s+DESTINATION IDENTITY\s+PEER\s+STATE\s+STREAMS\s+SENT\s+RECEIVED\s+AGE\s+IDLE\n/);
    t.match(out, /node-1\s+spiffe:\/\/cluster\.local\/ns\/demo\/sa\/client\s+spiffe:\/\/cluster\.local\/ns\/demo\/sa\/echo\s+198\.19\.2\.11:15008 \(node-2\)\s+READY\s+2\/7\s+1\.5 KiB\s+10 MiB\s+3m1[12]s\s+[45]s\n/);
    t.match(err, /^warning: node-2: not answering \(no admin socket at .*node-2\.sock; is the ztunnel on this node running\?\)\n$/);
    const json = JSON.parse((await run(tunnels, ['-o', 'json'])).out);
    t.equal(json.items[0].node, 'node-1');
    t.equal(json.items[0].bytesReceived, 10 * 1024 * 1024, 'json keeps raw numbers');
    t.same(json.unreachable.map((f: { node: string }) => f.node), ['node-2']);
  });

  t.test('tunnels --node picks one node; an unknown node is named', async (t) => {
    const one = await run(tunnels, ['--node', 'node-1']);
    t.equal(one.err, '');
    const only2 = await run(tunnels, ['--node', 'node-2']);
    t.equal(only2.code, 1, 'no node answered at all');
    t.equal(only2.out, 'No open tunnels.\n');
    const err = await caught(() => run(tunnels, ['--node', 'node-9']));
    t.equal(err.code, 'WEFT_CONFIG_INVALID');
    t.match(err.message, /nodes: node-1, node-2/);
  });

  t.test('connections: local/remote from the workload\'s side', async (t) => {
    const { out } = await run(connections, ['--node', 'node-1']);
    t.match(out, /^NODE\s+WORKLOAD\s+DIRECTION\s+LOCAL\s+REMOTE\s+REMOTE TARGET\s+PROTOCOL\s+SENT\s+RECEIVED\s+AGE\n/);
    t.match(out, /node-1\s+demo\/client\s+outbound\s+198\.19\.1\.10:51000\s+198\.19\.2\.11:8080\s+demo\/echo\s+HBONE\s+100 B\s+2 KiB\s+\d+s\n/);
    t.match(out, /node-1\s+demo\/echo-1\s+inbound-plaintext\s+198\.19\.1\.11:8080\s+198\.19\.2\.20:40404\s+-\s+PLAINTEXT\s+0 B\s+0 B/);
    const filtered = JSON.parse((await run(connections, ['--node', 'node-1', '--workload', 'demo/echo-1', '-o', 'json'])).out);
    t.same(filtered.items.map((c: { id: string }) => c.id), ['11']);
    const ns = JSON.parse((await run(connections, ['--node', 'node-1', '-n', 'legacy', '-o', 'json'])).out);
    t.same(ns.items, []);
  });

  t.test('certs: leaf then CA rows, state, validity, serial', async (t) => {
    const { out, err } = await run(certs, []);
    t.match(err, /node-2: not answering/);
    t.match(out, /^NODE\s+NAME\s+TYPE\s+STATUS\s+VALID CERT\s+SERIAL NUMBER\s+NOT AFTER\s+NOT BEFORE\n/);
    t.match(out, new RegExp(`node-1\\s+spiffe://cluster\\.local/ns/demo/sa/client\\s+Leaf\\s+Ready\\s+true\\s+${clientCert.serial}\\s+${clientCert.notAfter.toISOString().replace(/\./g, '\\.')}`));
    t.match(out, /node-1\s+spiffe:\/\/cluster\.local\/ns\/demo\/sa\/client\s+Root\s+Ready\s+true\s+[0-9A-F]+/);
    t.match(out, /node-1\s+spiffe:\/\/cluster\.local\/ns\/demo\/sa\/echo\s+Leaf\s+Refreshing\s+true\s+[0-9A-F]+\s+20\d\d-/, 'serial and validity read from the PEM when not given');
    t.match(out, /node-1\s+spiffe:\/\/cluster\.local\/ns\/demo\/sa\/intruder\s+Leaf\s+Pending\s+false\s+-\s+-\s+-/);
    const leaf = JSON.parse((await run(certs, ['--leaf-only', '-o', 'json'])).out);
    t.same(leaf.items.map((r: { type: string }) => r.type), ['Leaf', 'Leaf', 'Leaf']);
  });

  t.test('status: registry, CA and each ztunnel in one table', async (t) => {
    const { code, out } = await run(status, []);
    t.equal(code, 1, 'node-2 is down, so the mesh is not healthy');
    t.match(out, /^COMPONENT\s+NAME\s+STATUS\s+VERSION\s+REVISION\s+DETAIL\n/);
    t.match(out, new RegExp(`registry\\s+redis://127\\.0\\.0\\.1:${redis.port}\\s+reachable\\s+-\\s+${revision}\\s+2 nodes, 8 workloads \\(5 in mesh\\), 2 services, 3 policies`));
    t.match(out, new RegExp(`ca\\s+${caAddress.replace(/\./g, '\\.')}\\s+reachable`));
    t.match(out, new RegExp(`ztunnel\\s+node-1\\s+ready\\s+0\\.1\\.0\\s+${revision}\\s+registry view 0\\.4s old, up 5m, 3 certs \\(1 Pending, 1 Ready, 1 Refreshing\\)`));
    t.match(out, /ztunnel\s+node-2\s+not answering\s+-\s+-\s+no admin socket/);
    const json = JSON.parse((await run(status, ['-o', 'json', '--node', 'node-1'])).out);
    t.equal(json.healthy, true);
    t.equal(json.registry.revision, revision);
    t.equal(json.ztunnels[0].behind, 0);
  });

  t.test('status: stale and lagging ztunnels, an unreachable registry and CA are rows, not crashes', async (t) => {
    const lagging = await startAdminStub(sock('node-4'), { '/config_dump': dump('node-4', { rev: revision - 1, stale: 42 }) });
    t.teardown(() => lagging.close());
    const ctx = writeContextFile(join(tmp.dir, 'ctx-broken.json'), {
      kind: 'lab', redisUrl: 'redis://127.0.0.1:1', redisUsername: 'weft-operator', caAddress: '127.0.0.1:1',
      nodes: [{ name: 'node-4', adminSocket: sock('node-4') }],
    });
    const { code, out } = await run(status, [], ctx);
    t.equal(code, 1);
    // Named as when reachable: URL and ACL user.
    t.match(out, /registry\s+redis:\/\/127\.0\.0\.1:1 \(user weft-operator\)\s+unreachable\s+-\s+-\s+cannot reach the registry/);
    t.match(out, /ca\s+127\.0\.0\.1:1\s+unreachable\s+-\s+-\s+ECONNREFUSED/);
    t.match(out, new RegExp(`ztunnel\\s+node-4\\s+stale\\s+0\\.1\\.0\\s+${revision - 1}\\s+registry view 42\\.0s old`));
  });

  t.test('status: registry nodes missing from the context are listed', async (t) => {
    const json = JSON.parse((await run(status, ['-o', 'json'], contextFile(['node-1']))).out);
    t.same(json.ztunnels.map((z: { node: string; status: string }) => `${z.node}:${z.status}`), ['node-1:ready', 'node-2:not in context']);
  });

  t.test('a node that hangs is cut off by the deadline and the others still show', async (t) => {
    const ctx = contextFile(['node-1', 'node-3']);
    const { code, out, err } = await run(tunnels, [], ctx);
    t.equal(code, 0);
    t.match(out, /node-1\s+spiffe/);
    t.match(err, /node-3: not answering \(no answer from .*node-3\.sock within 2000 ms\)/);
  });

  t.test("against the ztunnel's own admin server (src/ztunnel/admin.ts), not only the stub", async (t) => {
    const d = dump('node-5');
    const server = adminServer({
      status: () => d.status,
      tunnels: () => ({ ...tunnelsBody, node: 'node-5' }),
      connections: () => ({ ...connectionsBody, node: 'node-5' }),
      certificates: () => ({ node: 'node-5', certificates: d.certificates }),
      configDump: () => d,
      registry: () => ({ node: 'node-5', trustDomain: 'cluster.local', revision: 1, records: {} }),
      logger: silentLogger(),
      metrics: new Registry(),
    });
    await listenUnix(server, sock('node-5'));
    t.teardown(() => closeServer(server));
    const ctx = contextFile(['node-5']);
    t.match((await run(tunnels, [], ctx)).out, /node-5\s+spiffe:\/\/cluster\.local\/ns\/demo\/sa\/client\s+spiffe/);
    t.match((await run(connections, [], ctx)).out, /node-5\s+demo\/client\s+outbound/);
    t.match((await run(certs, ['--leaf-only'], ctx)).out, /node-5\s+spiffe:\/\/cluster\.local\/ns\/demo\/sa\/echo\s+Leaf\s+Refreshing/);
    const st = JSON.parse((await run(status, ['-o', 'json'], ctx)).out);
    t.same(st.ztunnels.map((z: { node: string; status: string }) => `${z.node}:${z.status}`), ['node-1:not in context', 'node-2:not in context', 'node-5:ready']);
  });

  t.test('admin commands without nodes in the context say so', async (t) => {
    const cap = captureIo({ HOME: tmp.dir });
    const err = await caught(() => tunnels.runWith(['--redis-url', redis.url], cap.io));
    t.equal(err.code, 'WEFT_CONTEXT_MISSING');
    t.match(err.message, /names no nodes/);
  });
});
