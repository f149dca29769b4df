import t from 'tap';
import { X509Certificate, createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { fromDer, spkiAsn1, toDer } from '../src/ca/der';
import { csrSubjectAltNames } from '../src/ca/csr-names';
import { generateKeyAndCsr, generateRootCa, Issuer, loadRootCa, type CaKeyPair, type KeyType } from '../src/ca/issuer';

/**
 * The DER that der.ts builds, read back by other implementations: Node's X509Certificate
 * and the openssl command line (strict chain verification), and used for real TLS.
 */

const TD = 'cluster.local';
const dir = mkdtempSync(join(tmpdir(), 'weft-der-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function file(content: string): string {
  const p = join(dir, `f${n++}.pem`);
  writeFileSync(p, content);
  return p;
}

function openssl(args: string[]): string {
  return execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

function pemDer(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
}

/** The AlgorithmIdentifier after the signed body: [oid] for ECDSA, [oid, NULL] for RSA. */
function outerAlgorithm(pem: string): number {
  const top = fromDer(pemDer(pem)).value as Array<{ value: unknown[] }>;
  return top[1]!.value.length;
}

const roots: Partial<Record<KeyType, CaKeyPair>> = {};
t.before(async () => {
  roots.rsa = await generateRootCa({ trustDomain: TD, keyType: 'rsa' });
  roots.ec = await generateRootCa({ trustDomain: TD, keyType: 'ec' });
});

t.test('a P-256 SubjectPublicKeyInfo built from the JWK is byte for byte what OpenSSL encodes', async (t) => {
  // 600 keys: coordinates with leading zero octets (1 in 256 each) come up, and must keep their full 32 octets.
  let mismatches = 0;
  for (let i = 0; i < 600; i++) {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    if (!toDer(spkiAsn1(publicKey)).equals(publicKey.export({ type: 'spki', format: 'der' }))) mismatches++;
  }
  t.equal(mismatches, 0);
  const { publicKey: rsa } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  t.ok(toDer(spkiAsn1(rsa)).equals(rsa.export({ type: 'spki', format: 'der' })), 'other keys: OpenSSL\'s encoding');
});

t.test('CSRs: ECDSA P-256 by default, RSA on request; openssl verifies their self-signature', async (t) => {
  for (const keyType of [undefined, 'ec', 'rsa'] as const) {
    const { keyPem, csrPem } = await generateKeyAndCsr({ commonName: 'node-1', ...(keyType ? { keyType } : {}) });
    const key = createPrivateKey(keyPem);
    t.equal(key.asymmetricKeyType, keyType ?? 'ec', `key type ${keyType ?? 'default'}`);
    if (key.asymmetricKeyType === 'ec') t.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    const text = openssl(['req', '-in', file(csrPem), '-verify', '-noout', '-text']);
    t.match(text, /Subject: CN ?= ?node-1/);
    t.match(text, keyType === 'rsa' ? /Signature Algorithm: sha256WithRSAEncryption/ : /Signature Algorithm: ecdsa-with-SHA256/);
    const pub = openssl(['req', '-in', file(csrPem), '-noout', '-pubkey']);
    t.ok(createPublicKey(pub).equals(createPublicKey(key)), 'the CSR carries the generated key');
    t.equal(outerAlgorithm(csrPem), keyType === 'rsa' ? 2 : 1, 'ECDSA algorithm without parameters, RSA with NULL');
  }
});

t.test('a CSR with a URI names exactly that URI; without one, nothing', async (t) => {
  const uri = `spiffe://${TD}/ns/demo/sa/waypoint`;
  const { csrPem } = await generateKeyAndCsr({ uri });
  t.same(csrSubjectAltNames(csrPem), { uris: [uri], others: [] });
  t.match(openssl(['req', '-in', file(csrPem), '-verify', '-noout', '-text']), `URI:${uri}`);
  t.same(csrSubjectAltNames((await generateKeyAndCsr()).csrPem), { uris: [], others: [] });
  const noName = openssl(['req', '-in', file((await generateKeyAndCsr()).csrPem), '-verify', '-noout', '-text']);
  t.notMatch(noName, /Subject Alternative Name/);
});

t.test('roots of both key types: self-signed CAs that openssl accepts strictly', async (t) => {
  for (const keyType of ['rsa', 'ec'] as const) {
    const root = roots[keyType]!;
    const x = new X509Certificate(root.certPem);
    t.ok(x.ca, `${keyType}: a CA`);
    t.ok(x.verify(x.publicKey), `${keyType}: self-signed`);
    t.ok(x.checkPrivateKey(createPrivateKey(root.keyPem)), `${keyType}: the key belongs to it`);
    t.equal(x.publicKey.asymmetricKeyType, keyType);
    t.same(loadRootCa(root), root, `${keyType}: loadRootCa accepts it`);
    const rootFile = file(root.certPem);
    t.match(openssl(['verify', '-x509_strict', '-CAfile', rootFile, rootFile]), /OK/, `${keyType}: openssl verify -x509_strict`);
    const text = openssl(['x509', '-in', rootFile, '-noout', '-text']);
    t.match(text, /Subject: O ?= ?cluster\.local, CN ?= ?Weft mesh root CA/);
    t.match(text, /X509v3 Subject Key Identifier/);
    t.equal(outerAlgorithm(root.certPem), keyType === 'rsa' ? 2 : 1);
  }
});

t.test('a root valid past 2049 carries GeneralizedTime, still read by Node and openssl', async (t) => {
  const root = await generateRootCa({ trustDomain: TD, keyType: 'ec', ttlMs: 40 * 365 * 24 * 3600e3 });
  const x = new X509Certificate(root.certPem);
  t.ok(new Date(x.validTo).getUTCFullYear() >= 2060, x.validTo);
  t.match(openssl(['verify', '-x509_strict', '-CAfile', file(root.certPem), file(root.certPem)]), /OK/);
});

t.test('leaves for ECDSA and RSA CSRs under ECDSA and RSA roots chain strictly', async (t) => {
  const id = `spiffe://${TD}/ns/demo/sa/echo`;
  for (const rootType of ['rsa', 'ec'] as const) {
    const issuer = new Issuer(roots[rootType]!, { trustDomain: TD });
    const rootX = new X509Certificate(issuer.rootPem);
    const rootSki = openssl(['x509', '-in', file(issuer.rootPem), '-noout', '-ext', 'subjectKeyIdentifier']).split('\n')[1]!.trim();
    for (const keyType of ['rsa', 'ec'] as const) {
      const what = `${keyType} leaf, ${rootType} root`;
      const { keyPem, csrPem } = await generateKeyAndCsr({ keyType });
      const [leafPem] = issuer.signCsr(csrPem, { identity: id, ttlMs: 3600e3, commonName: 'node-1', dnsNames: ['a.demo'], ipAddresses: ['10.0.0.1'] });
      const leaf = new X509Certificate(leafPem!);
      t.ok(leaf.verify(rootX.publicKey), `${what}: signed by the root`);
      t.ok(leaf.checkIssued(rootX), `${what}: issued by the root`);
      t.ok(leaf.checkPrivateKey(createPrivateKey(keyPem)), `${what}: certifies the CSR's key`);
      t.equal(leaf.subjectAltName, `URI:${id}, DNS:a.demo, IP Address:10.0.0.1`);
      t.equal(leaf.issuer, rootX.subject);
      t.match(openssl(['verify', '-x509_strict', '-purpose', 'sslclient', '-CAfile', file(issuer.rootPem), file(leafPem!)]), /OK/, `${what}: openssl verify`);
      const text = openssl(['x509', '-in', file(leafPem!), '-noout', '-text', '-ext', 'keyUsage,authorityKeyIdentifier']);
      t.match(text, keyType === 'rsa' ? /Digital Signature, Key Encipherment/ : /Digital Signature\s*\n/, `${what}: key usage fits the key`);
      t.match(text, rootSki, `${what}: authorityKeyIdentifier is the root's key identifier`);
      t.equal(outerAlgorithm(leafPem!), rootType === 'rsa' ? 2 : 1);
    }
  }
});

t.test('a root made elsewhere: its own subject and key identifier are used verbatim', async (t) => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const certPem = openssl(['req', '-x509', '-new', '-key', file(keyPem), '-days', '1', '-sha256',
    '-subj', `/O=${TD}/OU=platform/CN=Corp Root`, '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-addext', 'subjectKeyIdentifier=0102030405060708']);
  const issuer = new Issuer({ certPem, keyPem }, { trustDomain: TD });
  const [leafPem] = issuer.signCsr((await generateKeyAndCsr()).csrPem, { identity: `spiffe://${TD}/ns/a/sa/b`, ttlMs: 60e3 });
  t.equal(new X509Certificate(leafPem!).issuer, new X509Certificate(certPem).issuer);
  t.match(openssl(['x509', '-in', file(leafPem!), '-noout', '-ext', 'authorityKeyIdentifier']), /01:02:03:04:05:06:07:08/);
  // checkIssued compares the leaf's authorityKeyIdentifier with the root's subjectKeyIdentifier (X509_check_issued).
  t.ok(new X509Certificate(leafPem!).checkIssued(new X509Certificate(certPem)), 'issued by that root');
  t.ok(new X509Certificate(leafPem!).verify(new X509Certificate(certPem).publicKey), 'signed by that root');
});

t.test('roots on other curves are refused, saying what is accepted', async (t) => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  const keyPem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const certPem = openssl(['req', '-x509', '-new', '-key', file(keyPem), '-days', '1', '-subj', '/CN=p384', '-addext', 'basicConstraints=critical,CA:TRUE']);
  t.throws(() => loadRootCa({ certPem, keyPem }), { code: 'WEFT_CA_ROOT_INVALID', message: /secp384r1.*RSA or ECDSA P-256/ });
});

/** One mutual-TLS handshake; each side's view of the other's URI SAN. */
async function handshake(server: { keyPem: string; cert: string }, client: { keyPem: string; cert: string }, ca: string[]): Promise<{ serverSaw: string; clientSaw: string }> {
  const srv = tls.createServer({ key: server.keyPem, cert: server.cert, ca, requestCert: true, rejectUnauthorized: true }, (sock) => {
    sock.end(sock.getPeerX509Certificate()?.subjectAltName ?? 'none');
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  try {
    const sock = tls.connect({ host: '127.0.0.1', port: (srv.address() as AddressInfo).port, key: client.keyPem, cert: client.cert, ca, checkServerIdentity: () => undefined });
    await once(sock, 'secureConnect');
    const clientSaw = sock.getPeerX509Certificate()?.subjectAltName ?? 'none';
    let serverSaw = '';
    sock.setEncoding('utf8').on('data', (d: string) => { serverSaw += d; });
    await once(sock, 'end');
    sock.destroy();
    return { serverSaw, clientSaw };
  } finally {
    srv.close();
  }
}

t.test('real mutual TLS: ECDSA↔ECDSA, ECDSA↔RSA leaves, and across an RSA and an ECDSA root', async (t) => {
  const leafOf = async (root: KeyType, key: KeyType, sa: string) => {
    const issuer = new Issuer(roots[root]!, { trustDomain: TD });
    const { keyPem, csrPem } = await generateKeyAndCsr({ keyType: key });
    return { keyPem, cert: issuer.signCsr(csrPem, { identity: `spiffe://${TD}/ns/demo/sa/${sa}`, ttlMs: 60e3 })[0]! };
  };
  const cases: Array<[string, [KeyType, KeyType], [KeyType, KeyType], string[]]> = [
    ['ECDSA leaves, ECDSA root', ['ec', 'ec'], ['ec', 'ec'], [roots.ec!.certPem]],
    ['ECDSA leaves, RSA root', ['rsa', 'ec'], ['rsa', 'ec'], [roots.rsa!.certPem]],
    ['ECDSA server, RSA client', ['rsa', 'ec'], ['rsa', 'rsa'], [roots.rsa!.certPem]],
    ['RSA server, ECDSA client', ['rsa', 'rsa'], ['rsa', 'ec'], [roots.rsa!.certPem]],
    ['ECDSA root server, RSA root client, both roots trusted', ['ec', 'ec'], ['rsa', 'rsa'], [roots.ec!.certPem, roots.rsa!.certPem]],
  ];
  for (const [name, [sRoot, sKey], [cRoot, cKey], ca] of cases) {
    const got = await handshake(await leafOf(sRoot, sKey, 'server'), await leafOf(cRoot, cKey, 'client'), ca);
    t.same(got, { serverSaw: `URI:spiffe://${TD}/ns/demo/sa/client`, clientSaw: `URI:spiffe://${TD}/ns/demo/sa/server` }, name);
  }
  // And the chain is checked: an ECDSA leaf from a root the peer does not trust is refused.
  await t.rejects(handshake(await leafOf('ec', 'ec', 'server'), await leafOf('rsa', 'ec', 'client'), [roots.rsa!.certPem]), 'untrusted ECDSA root refused');
});
