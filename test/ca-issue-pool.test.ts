import t from 'tap';
import { X509Certificate, createPrivateKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { generateKeyAndCsr, generateRootCa, Issuer, poolSlots, type KeyType, type SignOptions } from '../src/ca/issuer';
import { signInPool } from '../src/ca/der';
import { STATUS_FOR } from '../src/ca/refusals';
import { Registry } from 'prom-client';
import { CaServer } from '../src/ca/server';
import { newCaClient, refusal } from './helpers/ca-client';
import type { JoinTokenVerifier } from '../src/ca/join-tokens';
import { MeshState } from '../src/registry/state';
import { ambientNamespace, workloadRecord } from '../src/registry/fixtures';
import { silentLogger } from '../src/lib/log';
import { isWeftError } from '../src/lib/errors';
import { opensslCsr } from './helpers/openssl-csr';

/**
 * Issuer.issue(): signCsr with the CSR check and the root's signature in libuv's
 * threadpool (what the CA's gRPC server calls). Same certificates, same refusals.
 */

const TD = 'cluster.local';
const ID = (i: number) => `spiffe://${TD}/ns/demo/sa/sa-${i}`;

function tamper(csrPem: string, fromEnd: number): string {
  const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  der[der.length - fromEnd] ^= 0xff;
  return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`;
}

/** The CSR with its P-256 point moved off the curve (last octet of y changed). */
function offCurve(csrPem: string): string {
  const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const at = der.indexOf(Buffer.from([0x03, 0x42, 0x00, 0x04])); // BIT STRING of 66 octets: 0, then the uncompressed point
  der[at + 4 + 63] ^= 0x01;
  return `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`;
}

/** The error code a call ends with, thrown or rejected; 'ok' when it issued. */
async function outcome(f: () => unknown): Promise<string> {
  try {
    await f();
    return 'ok';
  } catch (err) {
    return isWeftError(err) ? err.code : `not a WeftError: ${String(err)}`;
  }
}

for (const rootType of ['rsa', 'ec'] as const) {
  t.test(`concurrent issue() with a ${rootType} root: valid, distinct leaves, each for its own key and identity, chained to the root`, async (t) => {
    const issuer = new Issuer(await generateRootCa({ trustDomain: TD, keyType: rootType }), { trustDomain: TD });
    const rootX = new X509Certificate(issuer.rootPem);
    const types: KeyType[] = ['ec', 'ec', 'ec', 'rsa'];
    const keys = await Promise.all(Array.from({ length: 24 }, (_, i) => generateKeyAndCsr({ keyType: types[i % types.length] })));
    const started = process.hrtime.bigint();
    const chains = await Promise.all(keys.map((k, i) => issuer.issue(k.csrPem, { identity: ID(i), ttlMs: 3600e3 })));
    t.comment(`${chains.length} certificates issued concurrently in ${(Number(process.hrtime.bigint() - started) / 1e6).toFixed(1)} ms`);
    const serials = new Set<string>();
    chains.forEach((chain, i) => {
      t.equal(chain[1], issuer.rootPem, 'root last');
      const leaf = new X509Certificate(chain[0]!);
      t.ok(leaf.verify(rootX.publicKey) && leaf.checkIssued(rootX), `leaf ${i} signed by the root`);
      t.ok(leaf.checkPrivateKey(createPrivateKey(keys[i]!.keyPem)), `leaf ${i} certifies its own CSR's key`);
      t.equal(leaf.subjectAltName, `URI:${ID(i)}`, `leaf ${i} names its own identity`);
      serials.add(leaf.serialNumber);
    });
    t.equal(serials.size, chains.length, 'every serial distinct');
  });
}

t.test('issue() refuses exactly what signCsr refuses, with the same codes', async (t) => {
  const issuer = new Issuer(await generateRootCa({ trustDomain: TD }), { trustDomain: TD });
  const ec = await generateKeyAndCsr();
  const rsa = await generateKeyAndCsr({ keyType: 'rsa' });
  const cases: Array<[string, string, Partial<SignOptions>, string]> = [
    ['an ECDSA CSR', ec.csrPem, {}, 'ok'],
    ['an RSA CSR', rsa.csrPem, {}, 'ok'],
    ['garbage', 'not a csr', {}, 'WEFT_CA_CSR_INVALID'],
    ['a tampered ECDSA signature (checked in the pool)', tamper(ec.csrPem, 5), {}, 'WEFT_CA_CSR_INVALID'],
    ['a tampered RSA signature (checked in the pool)', tamper(rsa.csrPem, 1), {}, 'WEFT_CA_CSR_INVALID'],
    ['an ECDSA point off the curve', offCurve(ec.csrPem), {}, 'WEFT_CA_CSR_INVALID'],
    ['a P-256 CSR made by openssl', opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256']), {}, 'ok'],
    ['an ECDSA P-384 key', opensslCsr(['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384']), {}, 'WEFT_CA_CSR_KEY_WEAK'],
    ['another trust domain', ec.csrPem, { identity: 'spiffe://other.domain/ns/a/sa/b' }, 'WEFT_CA_PERMISSION_DENIED'],
    ['a zero lifetime', ec.csrPem, { ttlMs: 0 }, 'WEFT_CA_TTL_INVALID'],
  ];
  // Refused by the key import (the point is checked), before any signature check.
  t.throws(() => issuer.signCsr(offCurve(ec.csrPem), { identity: ID(0), ttlMs: 60e3 }), { code: 'WEFT_CA_CSR_INVALID', message: /cannot be parsed/ });
  for (const [name, csr, over, code] of cases) {
    const opts = { identity: ID(0), ttlMs: 60e3, ...over };
    t.equal(await outcome(() => issuer.signCsr(csr, opts)), code, `signCsr: ${name}`);
    t.equal(await outcome(() => issuer.issue(csr, opts)), code, `issue: ${name}`);
  }
});

t.test('a root key that cannot sign in the pool fails closed with WEFT_CA_SIGN_FAILED, answered as INTERNAL', async (t) => {
  const issuer = new Issuer(await generateRootCa({ trustDomain: TD }), { trustDomain: TD });
  const { csrPem } = await generateKeyAndCsr();
  // An X25519 key cannot make signatures: the fault an unusable root key would cause.
  // Swapped in behind loadRootCa's checks, which would refuse it up front.
  (issuer as unknown as { rootKey: KeyObject }).rootKey = generateKeyPairSync('x25519').privateKey;
  await t.rejects(issuer.issue(csrPem, { identity: ID(0), ttlMs: 60e3 }),
    { code: 'WEFT_CA_SIGN_FAILED', message: /could not sign the certificate with its root key \(.+\); check the root key/ });
  t.notOk(STATUS_FOR.WEFT_CA_SIGN_FAILED, 'not a refusal of the caller: the server answers INTERNAL and logs the cause');
  await t.rejects(signInPool(Buffer.from('x'), generateKeyPairSync('x25519').privateKey), 'signInPool rejects, never throws');
  // The CSR's signature is checked before the root signs: a tampered CSR is refused as
  // such even by a root that could not have signed it.
  await t.rejects(issuer.issue(tamper(csrPem, 5), { identity: ID(0), ttlMs: 60e3 }), { code: 'WEFT_CA_CSR_INVALID' },
    'a tampered CSR with that root: CSR_INVALID, not SIGN_FAILED (verified first, nothing signed)');
});

t.test('over gRPC, a root that cannot sign answers INTERNAL, counted as internal, and issues nothing', async (t) => {
  const issuer = new Issuer(await generateRootCa({ trustDomain: TD }), { trustDomain: TD });
  const state = new MeshState({ trustDomain: TD });
  state.replaceAll({
    node: [], namespace: [ambientNamespace('demo')], service: [], policy: [], peerauth: [],
    workload: [workloadRecord({ namespace: 'demo', name: 'w', node: 'node-1', serviceAccount: 'sa-0' })],
  }, 1);
  // Join tokens are tested with Redis elsewhere; this one admits node-1 with 'token'.
  const joinTokens: JoinTokenVerifier = { verify: async (node, token) => { if (node !== 'node-1' || token !== 'token') throw new Error('bad token'); } };
  const metrics = new Registry();
  const server = new CaServer({ issuer, trustDomain: TD, authorizer: state, joinTokens, logger: silentLogger(), metrics });
  const port = await server.start({ host: '127.0.0.1', port: 0 });
  t.teardown(() => server.stop(100));
  const client = newCaClient(t, `127.0.0.1:${port}`, issuer.rootPem, TD);
  await client.join('node-1', 'token');
  const { csrPem } = await generateKeyAndCsr();
  t.equal((await client.createCertificate(csrPem, 0, ID(0))).length, 2, 'issued while the root key works');
  (issuer as unknown as { rootKey: KeyObject }).rootKey = generateKeyPairSync('x25519').privateKey;
  const err = await refusal(client.createCertificate(csrPem, 0, ID(0)));
  t.match(err.message, /internal CA error/, 'refused, no certificate: the caller is told it is the CA\'s fault');
  t.match(await metrics.metrics(), /weft_ca_requests_total\{method="CreateCertificate",result="internal"\} 1/);
});

t.test('pool slots: one per core, never all of the threadpool', async (t) => {
  t.equal(poolSlots(2, 4), 2, '2 cores, default threadpool');
  t.equal(poolSlots(16, 4), 3, 'many cores: one thread left for file reads and DNS');
  t.equal(poolSlots(1, 4), 1);
  t.equal(poolSlots(8, 1), 1, 'a threadpool of one thread still signs (then the whole pool: UV_THREADPOOL_SIZE=1 asks for it)');
  t.equal(poolSlots(8, 16), 8);
});
