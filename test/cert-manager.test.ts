import t, { type Test } from 'tap';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { Registry } from 'prom-client';
import { freePort, redisFixture } from './helpers/redis';
import { waitFor } from './helpers/wait';
import { generateRootCa, Issuer } from '../src/ca/issuer';
import { CaServer } from '../src/ca/server';
import type { CaServerOptions } from '../src/ca/server-options';
import { CaClient } from '../src/ca/client';
import { CertificateManager, CertState, type CertificateManagerOptions, type WorkloadCert } from '../src/ca/cert-manager';
import { RedisJoinTokens, createJoinToken } from '../src/ca/join-tokens';
import { nodeIdentity } from '../src/ca/authorize';
import type { Clock } from '../src/lib/clock';
import { MeshState } from '../src/registry/state';
import { ambientNamespace, nodeRecord, workloadRecord } from '../src/registry/fixtures';
import { silentLogger } from '../src/lib/log';

const TD = 'cluster.local';
const ID_A = `spiffe://${TD}/ns/demo/sa/sa-a`;
const ID_C = `spiffe://${TD}/ns/demo/sa/sa-c`;
const ID_B = `spiffe://${TD}/ns/demo/sa/sa-b`; // on node-2 only

const fx = redisFixture(t);
let issuer: Issuer;
let token: string;

const state = new MeshState({ trustDomain: TD });
state.replaceAll({
  node: [nodeRecord('node-1', '198.51.100.11'), nodeRecord('node-2', '198.51.100.12')],
  namespace: [ambientNamespace('demo')],
  workload: [
    workloadRecord({ namespace: 'demo', name: 'a', node: 'node-1', serviceAccount: 'sa-a' }),
    workloadRecord({ namespace: 'demo', name: 'c', node: 'node-1', serviceAccount: 'sa-c' }),
    workloadRecord({ namespace: 'demo', name: 'b', node: 'node-2', serviceAccount: 'sa-b' }),
  ],
  service: [], policy: [], peerauth: [],
}, 1);

t.before(async () => {
  issuer = new Issuer(await generateRootCa({ trustDomain: TD }), { trustDomain: TD });
  token = (await createJoinToken(fx.client, 'node-1', 3600e3)).token;
});
async function startCa(t: Test, extra: Partial<CaServerOptions> = {}, port = 0): Promise<{ server: CaServer; address: string }> {
  const server = new CaServer({
    issuer, trustDomain: TD, authorizer: state, joinTokens: new RedisJoinTokens(fx.client),
    logger: silentLogger(), metrics: new Registry(), minCertTtlMs: 1000, ...extra,
  });
  const bound = await server.start({ host: '127.0.0.1', port });
  t.teardown(() => server.stop(100));
  return { server, address: `127.0.0.1:${bound}` };
}

/** A real clock that also tracks outstanding timers, to prove stop() leaves none. */
function trackingClock(): Clock & { live: Set<unknown> } {
  const live = new Set<unknown>();
  return {
    live,
    now: () => Date.now(),
    setTimeout: (fn, ms) => {
      const h = setTimeout(() => { live.delete(h); fn(); }, ms);
      live.add(h);
      return h;
    },
    clearTimeout: (h) => { live.delete(h); clearTimeout(h as NodeJS.Timeout); },
  };
}

function manager(t: Test, address: string, extra: Partial<CertificateManagerOptions> = {}) {
  const client = new CaClient({ address, rootPem: issuer.rootPem, trustDomain: TD, serverName: 'localhost' });
  const metrics = new Registry();
  const clock = trackingClock();
  const m = new CertificateManager({ client, nodeName: 'node-1', logger: silentLogger(), metrics, clock, joinToken: token, ...extra });
  t.teardown(() => { m.stop(); client.close(); });
  return { m, client, metrics, clock };
}

function nextUpdate(m: CertificateManager, identity: string): Promise<void> {
  return new Promise((resolve) => {
    const on = (id: string) => { if (id === identity) { m.off('updated', on); resolve(); } };
    m.on('updated', on);
  });
}

function nextState(m: CertificateManager, identity: string, to: CertState): Promise<void> {
  return new Promise((resolve) => {
    const on = (id: string, _from: CertState, s: CertState) => { if (id === identity && s === to) { m.off('state', on); resolve(); } };
    m.on('state', on);
  });
}

function checkCert(t: Test, cert: WorkloadCert, identity: string): void {
  const leaf = new X509Certificate(cert.certChainPem[0]!);
  t.equal(leaf.subjectAltName, `URI:${identity}`, `${identity} SAN`);
  t.ok(leaf.verify(new X509Certificate(issuer.rootPem).publicKey), 'chains to the root');
  t.ok(leaf.checkPrivateKey(createPrivateKey(cert.keyPem)), 'key matches');
  t.equal(cert.serial, leaf.serialNumber);
  t.equal(cert.notAfter.getTime(), Date.parse(leaf.validTo));
}

t.test('joins with the token, prefetches wanted identities, get() serves them', async (t) => {
  const { address } = await startCa(t);
  const { m, client, metrics, clock } = manager(t, address);
  await nextUpdate(m, m.nodeIdentity);
  t.equal(m.nodeIdentity, nodeIdentity(TD));
  t.ok(client.nodeCredentials, 'joined');
  const both = Promise.all([nextUpdate(m, ID_A), nextUpdate(m, ID_C)]);
  m.setWanted([ID_A, ID_C]);
  t.equal(m.list().find((s) => s.identity === ID_A)?.state, CertState.Pending);
  await both;
  checkCert(t, m.current(ID_A)!, ID_A);
  checkCert(t, m.current(ID_C)!, ID_C);
  t.equal(await m.get(ID_A), m.current(ID_A), 'get() returns the held certificate');
  t.equal(m.rootsPem, issuer.rootPem);
  t.same(m.list().map((s) => [s.identity, s.type, s.state]).sort(), [
    [ID_A, 'workload', 'Ready'], [ID_C, 'workload', 'Ready'], [nodeIdentity(TD), 'node', 'Ready'],
  ].sort());
  const text = await metrics.metrics();
  t.match(text, new RegExp(`weft_cert_expiry_seconds\\{identity="${ID_A.replace(/[/.]/g, '\\$&')}"\\} \\d+`));
  t.match(text, /weft_certs\{state="Ready"\} 3/);
  t.match(text, /weft_cert_fetches_total\{type="workload",result="ok"\} 2/);
  m.stop();
  t.equal(clock.live.size, 0, 'no timers left after stop()');
  await t.rejects(m.get(ID_B), { code: 'WEFT_CERT_UNAVAILABLE' }, 'get() after stop() fails fast');
});

t.test('get() fetches on demand; an identity not on this node ends in WEFT_CERT_UNAVAILABLE', async (t) => {
  const { address } = await startCa(t);
  const { m } = manager(t, address);
  const cert = await m.get(ID_A);
  checkCert(t, cert, ID_A);
  // The first get() starts the fetch; its own deadline is generous (a loaded machine
  // may take seconds for the CA's answer), and stop() in teardown rejects it.
  const refused = nextState(m, ID_B, CertState.Failed);
  const onDemand = m.get(ID_B, { timeoutMs: 60_000 }).then(() => undefined, (e: unknown) => e);
  await refused;
  // Once the CA has refused, a waiter that gives up reports the CA's reason.
  const err = await m.get(ID_B, { timeoutMs: 1 }).then(() => undefined, (e: unknown) => e);
  t.match(err, { code: 'WEFT_CERT_UNAVAILABLE', message: /WEFT_CA_PERMISSION_DENIED|no workload/ });
  m.stop();
  t.match(await onDemand, { code: 'WEFT_CERT_UNAVAILABLE' }, 'the on-demand waiter ends when the manager stops');
  t.equal(m.list().find((s) => s.identity === ID_B)?.state, CertState.Failed);
  t.ok((m.list().find((s) => s.identity === ID_B)?.failures ?? 0) >= 1);
});

t.test('setWanted drops identities no longer listed and rejects their waiters', async (t) => {
  const { address } = await startCa(t);
  const { m } = manager(t, address);
  m.setWanted([ID_A, ID_C]);
  await Promise.all([m.get(ID_A), m.get(ID_C)]);
  const waiting = m.get(ID_B, { timeoutMs: 30_000 });
  m.setWanted([ID_A]);
  await t.rejects(waiting, { code: 'WEFT_CERT_UNAVAILABLE', message: /no longer wanted/ });
  t.ok(m.current(ID_A));
  t.notOk(m.current(ID_C));
  t.same(m.list().map((s) => s.identity).sort(), [ID_A, nodeIdentity(TD)].sort());
});

t.test('rotation: with a short TTL a new serial arrives before the old certificate expires', async (t) => {
  // 10 s: renewal at half-life leaves 5 s for the CA's answer; a load of 20 stretched 2 s.
  const { address } = await startCa(t, { nodeCertTtlMs: 10_000 });
  const { m, client } = manager(t, address, { ttlSec: 10 });
  const first = await m.get(ID_A);
  const firstNode = client.nodeCredentials!.certChainPem[0];
  // Judged by the manager's own state, at the moment of the swap (not by a later
  // wall-clock read a loaded machine could delay): the old certificate never expired.
  const states: CertState[] = [];
  const onState = (id: string, _from: CertState, to: CertState) => { if (id === ID_A) states.push(to); };
  m.on('state', onState);
  let servedUntilSwap = true;
  const onUpdate = (id: string) => { if (id === ID_A && states.includes(CertState.Expired)) servedUntilSwap = false; };
  m.on('updated', onUpdate);
  await Promise.all([nextUpdate(m, ID_A), nextUpdate(m, m.nodeIdentity)]);
  m.off('updated', onUpdate);
  m.off('state', onState);
  const second = m.current(ID_A)!;
  t.not(second.serial, first.serial, 'new serial');
  t.ok(servedUntilSwap, 'replaced while the old one was still valid');
  t.notOk(states.includes(CertState.Expired), 'never expired on the way');
  checkCert(t, second, ID_A);
  const renewedNode = client.nodeCredentials!.certChainPem[0]!;
  t.not(renewedNode, firstNode, 'node certificate renewed through CreateCertificate');
  t.equal(new X509Certificate(renewedNode).subject, 'CN=node-1');
  // The renewed node certificate is the one now used to authenticate.
  await nextUpdate(m, ID_A);
  t.not(m.current(ID_A)!.serial, second.serial, 'issued again with the renewed node certificate');
});

t.test('while the CA is down the old certificate stays in use until it expires, then recovers', async (t) => {
  const port = await freePort();
  const ca = await startCa(t, {}, port);
  // 12 s: refresh at half-life leaves 6 s of validity for the failed attempts below,
  // against 0.2-0.8 s of backoff: room for a loaded machine (a load of 20 stretched 3 s).
  const { m } = manager(t, ca.address, { ttlSec: 12, backoff: { initialMs: 200, maxMs: 800 } });
  const first = await m.get(ID_A);
  await ca.server.stop(0);
  await nextState(m, ID_A, CertState.Refreshing);
  await waitFor('a refresh attempt to fail', () => (m.list().find((s) => s.identity === ID_A)?.failures ?? 0) >= 1);
  // Read together, in one turn: Refreshing (not Expired) means the expiry timer has not
  // fired, so this is the old certificate served after a failed refresh.
  const during = m.list().find((s) => s.identity === ID_A)!;
  t.equal(during.state, CertState.Refreshing, 'checked before the old certificate expired');
  t.equal(m.current(ID_A)?.serial, first.serial, 'old certificate still served after a failed refresh');
  await nextState(m, ID_A, CertState.Expired);
  t.notOk(m.current(ID_A), 'an expired certificate is never served');
  t.ok(m.list().find((s) => s.identity === ID_A)!.failures >= 1, 'failures counted');
  t.match(m.list().find((s) => s.identity === ID_A)!.lastError, /CA 127\.0\.0\.1/);
  const back = await startCa(t, {}, port);
  t.equal(back.address, ca.address);
  await nextUpdate(m, ID_A);
  const recovered = m.current(ID_A)!;
  t.not(recovered.serial, first.serial);
  t.equal(m.list().find((s) => s.identity === ID_A)!.state, CertState.Ready);
});

t.test('without a node certificate or token, workloads fail until the node joins', async (t) => {
  const { address } = await startCa(t);
  const client = new CaClient({ address, rootPem: issuer.rootPem, trustDomain: TD, serverName: 'localhost' });
  t.teardown(() => client.close());
  const m = new CertificateManager({
    client, nodeName: 'node-1', logger: silentLogger(), metrics: new Registry(), backoff: { initialMs: 100, maxMs: 300 },
  });
  t.teardown(() => m.stop());
  m.setWanted([ID_A]);
  await nextState(m, ID_A, CertState.Failed);
  t.match(m.list().find((s) => s.identity === ID_A)!.lastError, /join/);
  await client.join('node-1', token);
  await nextUpdate(m, ID_A);
  checkCert(t, m.current(ID_A)!, ID_A);
  t.equal(m.list().find((s) => s.type === 'node')!.state, CertState.Ready, 'adopted the externally joined node certificate');
});
