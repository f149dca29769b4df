/**
 * After a long CA outage the per-identity backoff has grown to minutes; when the CA
 * answers again (its channel READY, or any certificate issued) the identities waiting
 * for it retry at once (jittered), not when their backoff ends. Real CA, real TLS; the
 * manager's clock is manual, so "at once" is checked as "without advancing the clock
 * anywhere near the pending backoff", never as a duration.
 */
import t, { type Test } from 'tap';
import { Registry } from 'prom-client';
import { ManualClock } from './helpers/clock';
import { freePort, redisFixture } from './helpers/redis';
import { waitFor } from './helpers/wait';
import { generateRootCa, Issuer } from '../src/ca/issuer';
import { CaServer } from '../src/ca/server';
import { CaClient } from '../src/ca/client';
import { CertificateManager, type CertificateSource } from '../src/ca/cert-manager';
import { RedisJoinTokens, createJoinToken } from '../src/ca/join-tokens';
import { MeshState } from '../src/registry/state';
import { ambientNamespace, nodeRecord, workloadRecord } from '../src/registry/fixtures';
import { silentLogger } from '../src/lib/log';

const TD = 'cluster.local';
const ID_A = `spiffe://${TD}/ns/demo/sa/sa-a`;
const ID_C = `spiffe://${TD}/ns/demo/sa/sa-c`;
/** Consecutive failures before the CA returns: the next retry is then ≥ 0.8 × 0.5 s × 2^8 ≈ 102 s away. */
const FAILURES = 9;
const PENDING_BACKOFF_MS = 0.8 * 500 * 2 ** (FAILURES - 1);
/** Recovery jitter (2 s default) plus slack for the request in flight while the clock moves on. */
const ADVANCE_LIMIT_MS = 5_000;

const redis = redisFixture(t);
let issuer: Issuer;
let token: string;

const state = new MeshState({ trustDomain: TD });
state.replaceAll({
  node: [nodeRecord('node-1', '198.51.100.11')],
  namespace: [ambientNamespace('demo')],
  workload: [
    workloadRecord({ namespace: 'demo', name: 'a', node: 'node-1', serviceAccount: 'sa-a' }),
    workloadRecord({ namespace: 'demo', name: 'c', node: 'node-1', serviceAccount: 'sa-c' }),
  ],
  service: [], policy: [], peerauth: [],
}, 1);

t.before(async () => {
  issuer = new Issuer(await generateRootCa({ trustDomain: TD }), { trustDomain: TD });
  token = (await createJoinToken(redis.client, 'node-1', 3600e3)).token;
});

async function startCa(t: Test, port: number): Promise<CaServer> {
  const server = new CaServer({
    issuer, trustDomain: TD, authorizer: state, joinTokens: new RedisJoinTokens(redis.client),
    logger: silentLogger(), metrics: new Registry(),
  });
  await server.start({ host: '127.0.0.1', port });
  t.teardown(() => server.stop(100));
  return server;
}

function failures(m: CertificateManager, identity: string): number {
  return m.list().find((s) => s.identity === identity)?.failures ?? 0;
}

/** Lets the CA stay away until `identity` has failed FAILURES times, advancing the clock through each backoff. */
async function growBackoff(m: CertificateManager, clock: ManualClock, identity: string): Promise<void> {
  await waitFor('the first failed request', () => failures(m, identity) >= 1);
  while (failures(m, identity) < FAILURES) {
    const before = failures(m, identity);
    clock.advance(180_000); // past any step of the 150 s cap (+20 % jitter is clamped to it)
    await waitFor(`failure ${before + 1}`, () => failures(m, identity) > before);
  }
}

/**
 * Moves the clock in small steps, at most ADVANCE_LIMIT_MS in all, until `identity` has a
 * certificate; returns how far it moved. The limit is far below the retry pending when
 * the CA came back (≥ 102 s), so only an early retry can issue it.
 */
async function advanceUntilIssued(m: CertificateManager, clock: ManualClock, identity: string): Promise<number> {
  const start = clock.advanced;
  await waitFor(`a certificate for ${identity}`, () => {
    if (m.current(identity)) return true;
    if (clock.advanced - start < ADVANCE_LIMIT_MS) clock.advance(100);
    return false;
  }, { timeoutMs: 20_000, intervalMs: 50 });
  return clock.advanced - start;
}

t.test('CA down until the backoff is long: the waiting identity is issued soon after the CA is back (channel READY)', async (t) => {
  const port = await freePort();
  let server = await startCa(t, port);
  const client = new CaClient({ address: `127.0.0.1:${port}`, rootPem: issuer.rootPem, trustDomain: TD, serverName: 'localhost' });
  const clock = new ManualClock(Date.now());
  const m = new CertificateManager({ client, nodeName: 'node-1', logger: silentLogger(), metrics: new Registry(), clock, joinToken: token });
  t.teardown(() => { m.stop(); client.close(); });
  await waitFor('the node certificate', () => m.current(m.nodeIdentity) !== undefined);

  await server.stop(0);
  m.setWanted([ID_A]);
  await growBackoff(m, clock, ID_A);
  t.notOk(m.current(ID_A), 'no certificate while the CA is down');

  server = await startCa(t, port);
  // The proof is advanceUntilIssued's waitFor: it moves the clock at most
  // ADVANCE_LIMIT_MS, far below the pending retry, so only the early retry can issue it.
  const moved = await advanceUntilIssued(m, clock, ID_A);
  t.ok(m.current(ID_A), `issued after the CA came back, the clock moved ${moved} ms (the pending retry is ≥ ${PENDING_BACKOFF_MS} ms away)`);
  t.equal(failures(m, ID_A), 0);
});

t.test('without a probe, another identity issued is the sign: the waiting one retries too', async (t) => {
  const port = await freePort();
  let server = await startCa(t, port);
  const real = new CaClient({ address: `127.0.0.1:${port}`, rootPem: issuer.rootPem, trustDomain: TD, serverName: 'localhost' });
  // The same client minus waitReachable: only a successful call can show the CA is back.
  const client: CertificateSource = {
    get rootPem() { return real.rootPem; },
    get trustDomain() { return real.trustDomain; },
    get nodeCredentials() { return real.nodeCredentials; },
    setNodeCredentials: (c) => real.setNodeCredentials(c),
    join: (n, c) => real.join(n, c),
    createCertificate: (csr, ttl, id, o) => real.createCertificate(csr, ttl, id, o),
  };
  const clock = new ManualClock(Date.now());
  const m = new CertificateManager({ client, nodeName: 'node-1', logger: silentLogger(), metrics: new Registry(), clock, joinToken: token, recoveryJitterMs: 500 });
  t.teardown(() => { m.stop(); real.close(); });
  await waitFor('the node certificate', () => m.current(m.nodeIdentity) !== undefined);

  await server.stop(0);
  m.setWanted([ID_A]);
  await growBackoff(m, clock, ID_A);

  server = await startCa(t, port);
  const back = clock.advanced;
  m.setWanted([ID_A, ID_C]); // a new identity: issued as soon as the client reaches the CA again
  // grpc-js may still be in its own reconnect backoff, so the new identity's first try
  // can fail and back off (0.5 s, 1 s, ... on the test clock): move the clock in small
  // steps, bounded far below the waiting identity's pending retry.
  await waitFor('the new identity', () => {
    if (m.current(ID_C)) return true;
    if (clock.advanced - back < ADVANCE_LIMIT_MS) clock.advance(100);
    return false;
  }, { timeoutMs: 30_000, intervalMs: 50 });
  // As above, the proof is the waitFor: the clock moves at most 2 × ADVANCE_LIMIT_MS in
  // all, far below the waiting identity's pending retry.
  await advanceUntilIssued(m, clock, ID_A);
  t.ok(m.current(ID_A), `the waiting identity issued after the clock moved ${clock.advanced - back} ms, not its pending backoff (≥ ${PENDING_BACKOFF_MS} ms)`);
});
