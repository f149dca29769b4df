/**
 * Root rotation without restarts, on real parts: `weft ca` (gRPC over TLS, real
 * Redis) reading its root from a directory as it would from the weft-ca-root Secret,
 * two nodes wired like the ztunnel (trust anchors from a polled file, a
 * CertificateManager, the ztunnel's own TLS context cache and server engines).
 *
 *   1. nodes trust A; the CA signs with A
 *   2. nodes trust A+B (the bundle file changes; no restart)
 *   3. the CA signs with B and still honours A (root-cert/key = B, trusted-roots = A)
 *   → a peer holding an A-signed certificate and one holding a B-signed certificate
 *     verify each other in both directions, and the A-signed node still renews
 *   4. nodes trust B only: an A-signed peer is refused.
 */
import t, { type Test } from 'tap';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import net from 'node:net';
import * as tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { redisFixture } from './helpers/redis';
import { waitFor } from './helpers/wait';
import { startCaApp, type CaApp } from '../src/ca/app';
import { CaClient } from '../src/ca/client';
import { CertificateManager, type WorkloadCert } from '../src/ca/cert-manager';
import { createJoinToken } from '../src/ca/join-tokens';
import { generateKeyAndCsr, Issuer } from '../src/ca/issuer';
import { initRoot, ROOT_CERT_FILE, ROOT_KEY_FILE, TRUSTED_ROOTS_FILE } from '../src/ca/root-store';
import { TrustAnchorFile, parseTrustBundle } from '../src/ca/trust-bundle';
import { SecureContextCache, ServerTlsEngines, clientTlsOptions } from '../src/hbone/tls';
import { RegistryStore } from '../src/registry/store';
import { ambientNamespace, nodeRecord, workloadRecord } from '../src/registry/fixtures';
import { silentLogger } from '../src/lib/log';
import { writeFileAtomic } from '../src/lib/files';

const TD = 'cluster.local';
const ID_A = `spiffe://${TD}/ns/demo/sa/sa-a`; // on node-1
const ID_B = `spiffe://${TD}/ns/demo/sa/sa-b`; // on node-2

const fx = redisFixture(t);
let dir: string;

t.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'weft-rotation-'));
  const store = RegistryStore.connect(fx.redis.url);
  await store.apply([
    { op: 'put', kind: 'node', record: nodeRecord('node-1', '198.51.100.11') },
    { op: 'put', kind: 'node', record: nodeRecord('node-2', '198.51.100.12') },
    { op: 'put', kind: 'namespace', record: ambientNamespace('demo') },
    { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'a', node: 'node-1', serviceAccount: 'sa-a', addresses: ['198.51.100.50'] }) },
    { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'b', node: 'node-2', serviceAccount: 'sa-b', addresses: ['198.51.100.51'] }) },
  ]);
  await store.close();
});
t.teardown(async () => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** One node as the ztunnel wires it: trust-anchor file → CaClient → CertificateManager. */
async function startNode(t: Test, app: CaApp, name: string, anchorFile: string) {
  const anchors = new TrustAnchorFile(anchorFile, { logger: silentLogger(), pollMs: 50 });
  const client = new CaClient({ address: `127.0.0.1:${app.port}`, rootPem: anchors.pem, trustDomain: TD, serverName: 'localhost' });
  anchors.on('change', (b) => client.setRootPem(b.pem));
  const { token } = await createJoinToken(fx.client, name, 3600e3);
  const m = new CertificateManager({ client, nodeName: name, logger: silentLogger(), metrics: new Registry(), joinToken: token });
  t.teardown(() => { m.stop(); client.close(); anchors.close(); });
  return { m, client, anchors };
}

/**
 * One HBONE-style mTLS handshake: `server` and `client` each present their certificate
 * and verify the other's against their node's current trust anchors, through the
 * ztunnel's own TLS caches. Resolves with what each side concluded.
 */
async function handshake(server: { cert: WorkloadCert; roots: () => string }, client: { cert: WorkloadCert; roots: () => string }) {
  let serverDone: (v: string) => void = () => undefined;
  const serverSaw = new Promise<string>((r) => { serverDone = r; });
  const engines = new ServerTlsEngines({
    handshakeTimeoutMs: 5000,
    onSecure: (s) => { serverDone(s.authorized ? 'authorized' : `unauthorized: ${String(s.authorizationError)}`); s.destroy(); },
    onError: (err) => { serverDone(`error: ${err.message}`); },
  });
  const listener = net.createServer((raw) => engines.accept(raw, server.cert, server.roots()));
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  try {
    const raw = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
    await once(raw, 'connect');
    const contexts = new SecureContextCache();
    const socket = tls.connect(clientTlsOptions(contexts.get(client.cert, client.roots()), raw));
    const clientSaw = await new Promise<string>((resolve) => {
      socket.once('secureConnect', () => resolve(socket.authorized ? 'authorized' : `unauthorized: ${String(socket.authorizationError)}`));
      socket.once('error', (err) => resolve(`error: ${err.message}`));
    });
    // The server concludes after the client's Finished: close only once it has.
    const serverResult = await Promise.race([serverSaw, new Promise<string>((r) => setTimeout(() => r('no result'), 5000).unref())]);
    socket.destroy();
    return { client: clientSaw, server: serverResult };
  } finally {
    listener.close();
  }
}

t.test('rotation: old and new roots trusted together, picked up without restarts, both generations verify', async (t) => {
  const rootDir = join(dir, 'ca-root');
  const rootA = await initRoot(rootDir, { trustDomain: TD });
  const rootB = await initRoot(join(dir, 'next-root'), { trustDomain: TD });
  const app = await startCaApp({
    redis: fx.redis.url, trustDomain: TD, listen: { host: '127.0.0.1', port: 0 }, root: { kind: 'dir', dir: rootDir },
    rootOut: join(dir, 'published.pem'), rootReloadMs: 50,
    dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], certTtlMs: 3600e3, maxCertTtlMs: 24 * 3600e3, nodeCertTtlMs: 3600e3,
  }, silentLogger());
  t.teardown(() => app.stop());
  const anchor1 = join(dir, 'node-1-anchors.pem');
  const anchor2 = join(dir, 'node-2-anchors.pem');
  writeFileSync(anchor1, rootA.certPem);
  writeFileSync(anchor2, rootA.certPem);

  // 1. Everything on root A.
  const n1 = await startNode(t, app, 'node-1', anchor1);
  n1.m.setWanted([ID_A]);
  const certA = await n1.m.get(ID_A, { timeoutMs: 20_000 });
  const xA = new X509Certificate(certA.certChainPem[0]!);
  t.ok(xA.verify(new X509Certificate(rootA.certPem).publicKey), 'node-1\'s workload certificate is signed by root A');

  // 2. The nodes' bundle becomes A+B (a ConfigMap update): picked up by polling.
  const bundle = `${rootA.certPem.trim()}\n${rootB.certPem.trim()}\n`;
  writeFileAtomic(anchor1, bundle);
  writeFileAtomic(anchor2, bundle);
  await waitFor('node-1 to trust A+B', () => parseTrustBundle(n1.m.rootsPem, 'x').roots.length === 2);

  // 3. The CA switches to B and keeps honouring A (a Secret update): no restart.
  writeFileAtomic(join(rootDir, TRUSTED_ROOTS_FILE), rootA.certPem);
  writeFileAtomic(join(rootDir, ROOT_KEY_FILE), rootB.keyPem, 0o600);
  writeFileAtomic(join(rootDir, ROOT_CERT_FILE), rootB.certPem);
  await waitFor('the CA to sign with root B', () => app.rootPem.trim() === rootB.certPem.trim());
  t.equal(parseTrustBundle(readFileSync(join(dir, 'published.pem'), 'utf8'), 'x').roots.length, 2, '--root-out now holds B and A');

  const n2 = await startNode(t, app, 'node-2', anchor2);
  n2.m.setWanted([ID_B]);
  const certB = await n2.m.get(ID_B, { timeoutMs: 20_000 });
  const xB = new X509Certificate(certB.certChainPem[0]!);
  t.ok(xB.verify(new X509Certificate(rootB.certPem).publicKey), 'node-2 (joined after the switch) gets B-signed certificates');
  t.notOk(xB.verify(new X509Certificate(rootA.certPem).publicKey));

  const peerA = { cert: certA, roots: () => n1.m.rootsPem };
  const peerB = { cert: certB, roots: () => n2.m.rootsPem };
  t.same(await handshake(peerA, peerB), { client: 'authorized', server: 'authorized' }, 'B-signed client → A-signed server: both verify');
  t.same(await handshake(peerB, peerA), { client: 'authorized', server: 'authorized' }, 'A-signed client → B-signed server: both verify');

  // node-1 still holds an A-signed node certificate: the CA accepts it during the
  // overlap and issues B-signed certificates to it.
  const renewed = await n1.client.createCertificate((await generateKeyAndCsr()).csrPem, 0, ID_A);
  t.ok(new X509Certificate(renewed[0]!).verify(new X509Certificate(rootB.certPem).publicKey), 'the A-signed node still renews, now from B');
  t.ok(new X509Certificate(n1.client.nodeCredentials!.certChainPem[0]!).verify(new X509Certificate(rootA.certPem).publicKey), '(its node certificate was A-signed)');

  // 4. Overlap over: nodes trust B only; an A-signed peer is refused.
  writeFileAtomic(anchor2, rootB.certPem);
  await waitFor('node-2 to trust B only', () => parseTrustBundle(n2.m.rootsPem, 'x').roots.length === 1);
  const after = await handshake(peerB, peerA);
  t.not(after.server, 'authorized', `an A-signed client is refused once A is no longer trusted (${after.server})`);
});

t.test('trust anchors: a bad file never replaces a good one; bundles hold CA certificates only', async (t) => {
  const root = await initRoot(join(dir, 'anchors-root'), { trustDomain: TD });
  const file = join(dir, 'anchors.pem');
  writeFileSync(file, root.certPem);
  const anchors = new TrustAnchorFile(file, { logger: silentLogger(), pollMs: 3_600_000 });
  t.teardown(() => anchors.close());
  let changes = 0;
  anchors.on('change', () => { changes++; });
  writeFileAtomic(file, 'not a certificate\n');
  t.equal(await anchors.poll(), false, 'garbage is ignored');
  t.equal(anchors.pem.trim(), root.certPem.trim(), 'the last good bundle stays');
  rmSync(file);
  t.equal(await anchors.poll(), false, 'a missing file is ignored');
  writeFileAtomic(file, root.certPem);
  t.equal(await anchors.poll(), false, 'the bundle in force is back: nothing to change');
  t.equal(changes, 0);
  const root2 = await initRoot(join(dir, 'anchors-root-2'), { trustDomain: TD });
  writeFileAtomic(file, 'not a certificate\n');
  t.equal(await anchors.poll(), false, 'garbage again');
  writeFileAtomic(file, root2.certPem);
  t.equal(await anchors.poll(), true, 'a valid file is taken again');
  t.equal(anchors.pem.trim(), root2.certPem.trim());
  t.equal(changes, 1);
  t.throws(() => new TrustAnchorFile(join(dir, 'nope.pem'), { logger: silentLogger() }), { code: 'WEFT_CONFIG_INVALID', message: /--trust-anchor-file=.*nope\.pem.*ENOENT/ });
  const { csrPem } = await generateKeyAndCsr();
  const leaf = new Issuer(root, { trustDomain: TD }).signCsr(csrPem, { identity: ID_A, ttlMs: 3600e3 })[0]!;
  t.throws(() => parseTrustBundle(`${root.certPem}${leaf}`, 'bundle.pem'), { code: 'WEFT_CA_ROOT_INVALID', message: /bundle\.pem: certificate 2.*not a CA certificate/ });
  t.throws(() => parseTrustBundle('', 'empty.pem'), { code: 'WEFT_CA_ROOT_INVALID', message: /no PEM certificate/ });
});
