/**
 * Single-identity callers (a waypoint) in the lab: a real gRPC CA over TLS, identity
 * tokens and join tokens in a real redis-server, the waypoint's certificate source
 * (the node's CertificateManager in single-identity mode) calling without any client
 * certificate. It gets exactly its own identity; everything else is a coded refusal.
 */
import t, { type Test } from 'tap';
import { X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Registry } from 'prom-client';
import { redisFixture } from './helpers/redis';
import { waitFor } from './helpers/wait';
import { identityRefusals as refusals, newCaClient, refusal } from './helpers/ca-client';
import { ManualClock } from './helpers/clock';
import { generateKeyAndCsr, generateRootCa, Issuer } from '../src/ca/issuer';
import { CaServer } from '../src/ca/server';
import type { CaServerOptions } from '../src/ca/server-options';
import { CaClient } from '../src/ca/client';
import { CertState } from '../src/ca/cert-manager';
import { identityCertSource } from '../src/ca/identity-certs';
import { IDENTITY_KEY_PREFIX, RedisIdentityTokens, createIdentityToken, revokeIdentityToken } from '../src/ca/identity-tokens';
import { RedisJoinTokens, createJoinToken } from '../src/ca/join-tokens';
import { limitsFor } from '../src/ca/rate-limit';
import { identityTokenCommand } from '../src/ca/command';
import { MeshState } from '../src/registry/state';
import { ambientNamespace, nodeRecord, workloadRecord } from '../src/registry/fixtures';
import { silentLogger } from '../src/lib/log';

const TD = 'cluster.local';
const WAYPOINT = `spiffe://${TD}/ns/demo/sa/waypoint`;
const OTHER = `spiffe://${TD}/ns/demo/sa/sa-a`;

const fx = redisFixture(t);
let issuer: Issuer;
let dir: string;

const state = new MeshState({ trustDomain: TD });
state.replaceAll({
  node: [nodeRecord('node-1', '198.51.100.11')],
  namespace: [ambientNamespace('demo')],
  workload: [workloadRecord({ namespace: 'demo', name: 'a', node: 'node-1', serviceAccount: 'sa-a' })],
  service: [], policy: [], peerauth: [],
}, 1);

t.before(async () => {
  issuer = new Issuer(await generateRootCa({ trustDomain: TD }), { trustDomain: TD });
  dir = mkdtempSync(join(tmpdir(), 'weft-ca-identity-'));
});
t.teardown(() => { if (dir) rmSync(dir, { recursive: true, force: true }); });

async function startCa(t: Test, extra: Partial<CaServerOptions> = {}): Promise<{ address: string; metrics: Registry }> {
  const metrics = new Registry();
  const server = new CaServer({
    issuer, trustDomain: TD, authorizer: state, logger: silentLogger(), metrics,
    joinTokens: new RedisJoinTokens(fx.client), identityTokens: new RedisIdentityTokens(fx.client),
    joinLimits: limitsFor(1000), csrLimits: limitsFor(1000), minCertTtlMs: 1000, ...extra,
  });
  const port = await server.start({ host: '127.0.0.1', port: 0 });
  t.teardown(() => server.stop(100));
  return { address: `127.0.0.1:${port}`, metrics };
}

function newClient(t: Test, address: string): CaClient {
  return newCaClient(t, address, issuer.rootPem, TD);
}

/** A CSR made by the openssl CLI naming `san` (e.g. "URI:a,DNS:b"), for CSRs our own code would never write. */
function opensslCsrWith(san: string): string {
  return execFileSync('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', '/dev/null',
    '-subj', '/', '-addext', `subjectAltName=${san}`, '-sha256'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();
}

t.test('a lab waypoint with an identity token gets exactly its own identity, without any node credential', async (t) => {
  const { address } = await startCa(t);
  const { token } = await createIdentityToken(fx.client, { namespace: 'demo', serviceAccount: 'waypoint', ttlMs: 3600e3 });
  t.match(token, /^weft-id\.[A-Za-z0-9_-]{43}$/, '256 random bits');
  const keys = await fx.client.keys(`${IDENTITY_KEY_PREFIX}*`);
  const stored = await Promise.all(keys.map((k) => fx.client.get(k)));
  t.ok(stored.some((v) => v?.includes('"serviceAccount":"waypoint"')), 'Redis holds the binding');
  t.notOk(stored.some((v) => v?.includes(token)) || keys.some((k) => k.includes(token)), 'but never the token');

  const client = newClient(t, address);
  const certs = identityCertSource({ client, identity: WAYPOINT, token, logger: silentLogger(), metrics: new Registry() });
  t.teardown(() => certs.stop());
  const cert = await certs.get(WAYPOINT);
  const leaf = new X509Certificate(cert.certChainPem[0]!);
  t.equal(leaf.subjectAltName, `URI:${WAYPOINT}`, 'its identity and no other name');
  t.notOk(leaf.subject, 'no subject (as every workload certificate)');
  t.same([...(leaf.keyUsage ?? [])].sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], 'server and client use: it serves HBONE and dials upstream');
  t.ok(leaf.checkIssued(new X509Certificate(issuer.rootPem)), 'signed by the mesh root');
  t.notOk(client.nodeCredentials, 'no node certificate was ever involved');
  t.equal(certs.current(WAYPOINT)?.serial, cert.serial, 'current() serves it to the HBONE hot path');
  t.equal(certs.rootsPem, issuer.rootPem, 'and the roots peers must chain to');
  const other = await refusal(certs.get(OTHER));
  t.equal(other.code, 'WEFT_CERT_UNAVAILABLE', 'any other identity is refused by the source itself');
  t.match(other.message, /holds only its own identity/);
  t.same(certs.list().map((s) => s.identity), [WAYPOINT], 'one certificate, no node entry');
});

t.test('refusals: another identity, extra names, node credentials, unknown or expired tokens', async (t) => {
  const { address, metrics } = await startCa(t);
  const client = newClient(t, address);
  const { token } = await createIdentityToken(fx.client, { namespace: 'demo', serviceAccount: 'waypoint', ttlMs: 3600e3 });
  const expired = (await createIdentityToken(fx.client, { namespace: 'demo', serviceAccount: 'waypoint', ttlMs: 60_000 }, Date.now() - 120_000)).token;
  const revoked = (await createIdentityToken(fx.client, { namespace: 'demo', serviceAccount: 'waypoint', ttlMs: 60_000 })).token;
  t.ok(await revokeIdentityToken(fx.client, revoked), 'revoked');
  const joinToken = (await createJoinToken(fx.client, 'node-1', 60_000)).token;
  const mine = (await generateKeyAndCsr({ uri: WAYPOINT })).csrPem;
  const others = (await generateKeyAndCsr({ uri: OTHER })).csrPem;
  const unnamed = (await generateKeyAndCsr()).csrPem;

  type Case = [name: string, csr: string, token: string, code: string, grpcCode: grpc.status, reason: string, says: RegExp];
  const cases: Case[] = [
    ['another service account', others, token, 'WEFT_CA_IDENTITY_DENIED', grpc.status.PERMISSION_DENIED, 'identity',
      /asks for "spiffe:\/\/cluster\.local\/ns\/demo\/sa\/sa-a", but the credential is for spiffe:\/\/cluster\.local\/ns\/demo\/sa\/waypoint only/],
    ['a DNS SAN besides the identity', opensslCsrWith(`URI:${WAYPOINT},DNS:waypoint.demo`), token, 'WEFT_CA_IDENTITY_DENIED', grpc.status.PERMISSION_DENIED,
      'csr_names', /also asks for DNS:waypoint\.demo.*only subject alternative name is the URI/],
    ['two URI SANs', opensslCsrWith(`URI:${WAYPOINT},URI:${OTHER}`), token, 'WEFT_CA_IDENTITY_DENIED', grpc.status.PERMISSION_DENIED,
      'csr_names', /asks for 2 URI names/],
    ['no SAN at all', unnamed, token, 'WEFT_CA_IDENTITY_DENIED', grpc.status.PERMISSION_DENIED, 'csr_names', /asks for 0 URI names/],
    ['a node join token', mine, joinToken, 'WEFT_CA_IDENTITY_TOKEN_INVALID', grpc.status.UNAUTHENTICATED, 'node_credential',
      /node join token was sent as a waypoint credential/],
    ['an unknown identity token', mine, 'weft-id.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', 'WEFT_CA_IDENTITY_TOKEN_INVALID', grpc.status.UNAUTHENTICATED,
      'unknown', /unknown \(never created, expired or revoked\).*weft ca identity-token/],
    ['a revoked identity token', mine, revoked, 'WEFT_CA_IDENTITY_TOKEN_INVALID', grpc.status.UNAUTHENTICATED, 'unknown', /unknown/],
    ['an expired identity token', mine, expired, 'WEFT_CA_IDENTITY_TOKEN_INVALID', grpc.status.UNAUTHENTICATED, 'expired', /expired at/],
    ['a ServiceAccount token on a CA without TokenReview', mine, 'eyJhbGciOiJSUzI1NiJ9.e30.sig', 'WEFT_CA_IDENTITY_TOKEN_INVALID', grpc.status.UNAUTHENTICATED,
      'disabled', /does not verify ServiceAccount tokens.*weft ca identity-token/],
  ];
  for (const [name, csr, tok, code, grpcCode, reason, says] of cases) {
    const before = await refusals(metrics, reason);
    const err = await refusal(client.createOwnCertificate(csr, 0, tok));
    t.equal(err.code, code, `${name}: ${code}`);
    t.equal(err.details?.grpcCode, grpcCode, `${name}: ${grpc.status[grpcCode]}`);
    t.match(err.message, says, `${name}: says what was wrong and what to do`);
    t.equal(await refusals(metrics, reason), before + 1, `${name}: counted as ${reason}`);
  }
  t.ok(await client.createOwnCertificate(mine, 0, token), 'the same client with its own CSR and token: issued');

  // A node certificate together with an identity token: neither a node call nor a waypoint's.
  await client.join('node-1', joinToken);
  const { csrPem } = await generateKeyAndCsr();
  const mixed = await refusal(client.createCertificate(csrPem, 0, OTHER, { saToken: token }));
  t.equal(mixed.code, 'WEFT_CA_IDENTITY_TOKEN_INVALID', 'identity token with a node certificate');
  t.equal(mixed.details?.grpcCode, grpc.status.UNAUTHENTICATED);
  t.match(mixed.message, /node node-1 sent an identity token with its node certificate/);
  t.ok(await client.createCertificate(csrPem, 0, OTHER), 'the node\'s own CSR without it: issued as before');
  // No credential at all: the node path's refusal, unchanged.
  const bare = newClient(t, address);
  const none = await refusal(bare.createOwnCertificate(mine, 0, ''));
  t.equal(none.code, 'WEFT_CA_UNAUTHENTICATED', 'no client certificate and no bearer credential');
});

t.test('identity tokens are created for one identity of a served namespace only', async (t) => {
  for (const [req, says] of [
    [{ namespace: 'weft-system', serviceAccount: 'ztunnel' }, /--namespace=weft-system: the mesh's own identities are never issued/],
    [{ namespace: 'Demo', serviceAccount: 'waypoint' }, /--namespace="Demo"/],
    [{ namespace: 'demo', serviceAccount: 'way/point' }, /--service-account="way\/point"/],
  ] as const) {
    await t.rejects(createIdentityToken(fx.client, { ...req, ttlMs: 1000 }), { code: 'WEFT_CONFIG_INVALID', message: says });
  }
  await t.rejects(createIdentityToken(fx.client, { namespace: 'demo', serviceAccount: 'waypoint', ttlMs: 0 }), { code: 'WEFT_CONFIG_INVALID', message: /--ttl/ });
});

t.test('weft ca identity-token prints a token the CA takes for that identity', async (t) => {
  const { address } = await startCa(t);
  const lines: string[] = [];
  t.equal(await identityTokenCommand(['--namespace', 'demo', '--service-account', 'waypoint', '--ttl', '10m', '--redis-url', fx.redis.url], (s) => lines.push(s)), 0);
  t.match(lines, [/^weft-id\./], 'one line: the token');
  const client = newClient(t, address);
  const chain = await client.createOwnCertificate((await generateKeyAndCsr({ uri: WAYPOINT })).csrPem, 0, lines[0]!);
  t.equal(new X509Certificate(chain[0]!).subjectAltName, `URI:${WAYPOINT}`);
  await t.rejects(identityTokenCommand(['--service-account', 'waypoint', '--redis-url', fx.redis.url], () => undefined), { code: 'WEFT_CONFIG_INVALID', message: /--namespace/ });
  await t.rejects(identityTokenCommand(['--namespace', 'demo', '--service-account', 'Way', '--redis-url', fx.redis.url], () => undefined), { code: 'WEFT_CONFIG_INVALID', message: /--service-account/ });
});

t.test('a TokenReview CA cannot be given identity tokens', async (t) => {
  t.throws(() => new CaServer({
    issuer, trustDomain: TD, authorizer: state, logger: silentLogger(), metrics: new Registry(),
    identityTokens: new RedisIdentityTokens(fx.client),
    saJoin: { enabled: true, verify: () => Promise.reject(new Error('unused')) },
  }), { code: 'WEFT_CONFIG_INVALID', message: /identity tokens cannot be accepted together with --kube-token-review/ });
});

t.test('single-identity callers are rate-limited per address like other callers', async (t) => {
  // limitsFor(0.1): bursts of 1 per caller.
  const { address } = await startCa(t, { csrLimits: limitsFor(0.1) });
  const client = newClient(t, address);
  const { token } = await createIdentityToken(fx.client, { namespace: 'demo', serviceAccount: 'waypoint', ttlMs: 60_000 });
  const { csrPem } = await generateKeyAndCsr({ uri: WAYPOINT });
  t.ok(await client.createOwnCertificate(csrPem, 0, token), 'first: issued');
  const err = await refusal(client.createOwnCertificate(csrPem, 0, token));
  t.equal(err.code, 'WEFT_CA_RATE_LIMITED');
  t.equal(err.details?.grpcCode, grpc.status.RESOURCE_EXHAUSTED);
});

t.test('rotation: the waypoint certificate is renewed at half-life, re-reading its token file each time', async (t) => {
  const { address } = await startCa(t);
  const tokenFile = join(dir, 'token');
  const first = (await createIdentityToken(fx.client, { namespace: 'demo', serviceAccount: 'waypoint', ttlMs: 600_000 })).token;
  writeFileSync(tokenFile, first + '\n');
  const client = newClient(t, address);
  // The manager's time is a manual clock: the half-life passes when the test says so,
  // whatever the machine's load (the CA's certificates are real: 1 h).
  const clock = new ManualClock(Date.now());
  const certs = identityCertSource({ client, identity: WAYPOINT, tokenFile, ttlSec: 3600, clock, logger: silentLogger(), metrics: new Registry() });
  t.teardown(() => certs.stop());
  const a = await certs.get(WAYPOINT);
  t.equal(Math.round((a.notAfter.getTime() - a.notBefore.getTime()) / 1000), 3600 + 300, 'lifetime as asked (plus the 5 min backdating)');

  // The credential rotates (as the kubelet rotates a projected token): the old one is
  // revoked, so only a request that re-read the file can succeed.
  const second = (await createIdentityToken(fx.client, { namespace: 'demo', serviceAccount: 'waypoint', ttlMs: 600_000 })).token;
  writeFileSync(tokenFile, second + '\n');
  await revokeIdentityToken(fx.client, first);
  const states: CertState[] = [];
  certs.on('state', (_id, _from, to) => states.push(to));
  const updated = new Promise<void>((resolve) => certs.once('updated', () => resolve()));
  clock.advance(1799_000);
  t.same(states, [], 'nothing before half-life');
  clock.advance(2_000);
  // Settled either way: issued, or a failed attempt (whose retry the manual clock would hold back).
  let settled = false;
  const failure = waitFor('the refresh to settle', () => settled || (certs.list()[0]?.failures ?? 0) > 0, { timeoutMs: 60_000 });
  await Promise.race([updated, failure]);
  settled = true;
  await failure;
  t.equal(certs.list()[0]?.failures, 0, `no failed attempt (${certs.list()[0]?.lastError ?? ''})`);
  const b = certs.current(WAYPOINT)!;
  t.not(b.serial, a.serial, 'a new certificate');
  t.not(b.keyPem, a.keyPem, 'with a new key');
  t.equal(new X509Certificate(b.certChainPem[0]!).subjectAltName, `URI:${WAYPOINT}`);
  t.same(states, [CertState.Refreshing, CertState.Ready], 'refreshed while the old one was valid, never expired');
});

t.test('the source refuses a bad configuration', async (t) => {
  const client = new CaClient({ address: '127.0.0.1:1', rootPem: issuer.rootPem, trustDomain: TD });
  t.teardown(() => client.close());
  const base = { client, logger: silentLogger(), metrics: new Registry() };
  t.throws(() => identityCertSource({ ...base, identity: 'waypoint' , token: 'x' }), { code: 'WEFT_CONFIG_INVALID', message: /expected spiffe:/ });
  t.throws(() => identityCertSource({ ...base, identity: 'spiffe://other.td/ns/demo/sa/waypoint', token: 'x' }), { code: 'WEFT_CONFIG_INVALID', message: /trust domain/ });
  t.throws(() => identityCertSource({ ...base, identity: WAYPOINT }), { code: 'WEFT_CONFIG_INVALID', message: /got neither/ });
  t.throws(() => identityCertSource({ ...base, identity: WAYPOINT, token: 'x', tokenFile: '/x' }), { code: 'WEFT_CONFIG_INVALID', message: /got both/ });
});
