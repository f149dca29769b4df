import t from 'tap';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { once } from 'node:events';
import * as tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import forge from 'node-forge';
import { generateRootCa, loadRootCa, Issuer, generateKeyAndCsr, type CaKeyPair } from '../src/ca/issuer';
import { isWeftError } from '../src/lib/errors';

const TD = 'cluster.local';
const ID = `spiffe://${TD}/ns/demo/sa/echo`;

let root: CaKeyPair;
let issuer: Issuer;
let key: { keyPem: string; csrPem: string };

t.before(async () => {
  root = await generateRootCa({ trustDomain: TD });
  issuer = new Issuer(root, { trustDomain: TD });
  key = await generateKeyAndCsr();
});

t.test('root is a self-signed CA naming the trust domain', async (t) => {
  const x = new X509Certificate(root.certPem);
  t.ok(x.ca);
  t.match(x.subject, /O=cluster\.local/);
  t.ok(x.verify(x.publicKey), 'self-signed');
  t.ok(Date.parse(x.validTo) > Date.now() + 9 * 365 * 24 * 3600e3, 'default lifetime is about ten years');
  t.ok(x.checkPrivateKey(createPrivateKey(root.keyPem)));
  const short = await generateRootCa({ trustDomain: TD, ttlMs: 3600e3 });
  t.ok(Date.parse(new X509Certificate(short.certPem).validTo) < Date.now() + 2 * 3600e3, 'ttlMs is honoured');
});

t.test('loadRootCa refuses broken roots', async (t) => {
  const other = await generateRootCa({ trustDomain: TD });
  const leafChain = issuer.signCsr(key.csrPem, { identity: ID, ttlMs: 3600e3 });
  const cases: Array<[string, CaKeyPair]> = [
    ['garbage certificate', { certPem: 'nope', keyPem: root.keyPem }],
    ['garbage key', { certPem: root.certPem, keyPem: 'nope' }],
    ['key of another root', { certPem: root.certPem, keyPem: other.keyPem }],
    ['a leaf instead of a CA', { certPem: leafChain[0]!, keyPem: key.keyPem }],
  ];
  for (const [name, pair] of cases) {
    t.throws(() => loadRootCa(pair), { code: 'WEFT_CA_ROOT_INVALID' }, name);
    t.throws(() => new Issuer(pair, { trustDomain: TD }), { code: 'WEFT_CA_ROOT_INVALID' }, `${name} (Issuer)`);
  }
  t.same(loadRootCa(root), root);
});

t.test('signCsr issues a leaf for exactly the identity, chained to the root', async (t) => {
  const before = Date.now();
  const chain = issuer.signCsr(key.csrPem, { identity: ID, ttlMs: 3600e3 });
  t.equal(chain.length, 2);
  t.equal(chain[1], issuer.rootPem, 'root last');
  const leaf = new X509Certificate(chain[0]!);
  const rootX = new X509Certificate(chain[1]!);
  t.ok(leaf.verify(rootX.publicKey), 'signed by the root');
  t.ok(leaf.checkIssued(rootX));
  t.equal(leaf.subjectAltName, `URI:${ID}`);
  t.notOk(leaf.ca);
  t.same(leaf.keyUsage?.sort(), ['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2'], 'serverAuth + clientAuth');
  t.ok(leaf.checkPrivateKey(createPrivateKey(key.keyPem)), 'certifies the CSR key');
  t.ok(Date.parse(leaf.validFrom) < before, 'backdated for clock skew');
  const notAfter = Date.parse(leaf.validTo);
  t.ok(notAfter > before + 3590e3 && notAfter < Date.now() + 3610e3, 'lifetime is the ttl');
  const again = new X509Certificate(issuer.signCsr(key.csrPem, { identity: ID, ttlMs: 3600e3 })[0]!);
  t.not(again.serialNumber, leaf.serialNumber, 'serials are random');
});

t.test('signCsr options: common name, DNS/IP SANs, clientAuth only', async (t) => {
  const chain = issuer.signCsr(key.csrPem, {
    identity: `spiffe://${TD}/ns/weft-system/sa/ztunnel`, ttlMs: 60e3, commonName: 'node-1',
    serverAuth: false, dnsNames: ['ca.weft-system'], ipAddresses: ['127.0.0.1'],
  });
  const leaf = new X509Certificate(chain[0]!);
  t.equal(leaf.subject, 'CN=node-1');
  t.match(leaf.subjectAltName!, /URI:spiffe:\/\/cluster\.local\/ns\/weft-system\/sa\/ztunnel/);
  t.match(leaf.subjectAltName!, /DNS:ca\.weft-system/);
  t.match(leaf.subjectAltName!, /IP Address:127\.0\.0\.1/);
  t.same(leaf.keyUsage, ['1.3.6.1.5.5.7.3.2']);
});

t.test('the CSR names nothing: its SANs and subject are ignored', async (t) => {
  const keys = forge.pki.rsa.generateKeyPair({ bits: 1024, e: 0x10001 });
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = keys.publicKey;
  csr.setSubject([{ name: 'commonName', value: 'evil' }]);
  csr.setAttributes([{
    name: 'extensionRequest',
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 6, value: `spiffe://${TD}/ns/kube-system/sa/admin` }] }],
  }]);
  csr.sign(keys.privateKey, forge.md.sha256.create());
  const leaf = new X509Certificate(issuer.signCsr(forge.pki.certificationRequestToPem(csr), { identity: ID, ttlMs: 60e3 })[0]!);
  t.equal(leaf.subjectAltName, `URI:${ID}`);
  t.notOk(leaf.subject, 'empty subject');
});

t.test('bad CSRs are refused with WEFT_CA_CSR_INVALID', async (t) => {
  const der = Buffer.from(key.csrPem.replace(/-----[^-]+-----/g, '').replace(/\s/g, ''), 'base64');
  der[der.length - 1] ^= 0xff;
  const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n')}\n-----END CERTIFICATE REQUEST-----\n`;
  for (const [name, pem] of [['garbage', 'not a csr'], ['a certificate', root.certPem], ['tampered signature', tampered]] as const) {
    try {
      issuer.signCsr(pem, { identity: ID, ttlMs: 60e3 });
      t.fail(`${name} accepted`);
    } catch (err) {
      t.ok(isWeftError(err, 'WEFT_CA_CSR_INVALID'), name);
      t.match((err as Error).message, /send|sign/, 'says what to do');
    }
  }
});

t.test('CSRs signed with anything but SHA-2/RSA are refused', async (t) => {
  const keys = forge.pki.rsa.generateKeyPair({ bits: 1024, e: 0x10001 });
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = keys.publicKey;
  csr.sign(keys.privateKey, forge.md.sha1.create());
  t.throws(() => issuer.signCsr(forge.pki.certificationRequestToPem(csr), { identity: ID, ttlMs: 60e3 }),
    { code: 'WEFT_CA_CSR_INVALID', message: /unsupported algorithm.*SHA-256/ });
  csr.sign(keys.privateKey, forge.md.sha384.create());
  t.ok(issuer.signCsr(forge.pki.certificationRequestToPem(csr), { identity: ID, ttlMs: 60e3 }), 'SHA-384 is fine');
});

t.test('identities outside the trust domain and bad TTLs are refused', async (t) => {
  t.throws(() => issuer.signCsr(key.csrPem, { identity: 'spiffe://other.domain/ns/a/sa/b', ttlMs: 60e3 }),
    { code: 'WEFT_CA_PERMISSION_DENIED' });
  t.throws(() => issuer.signCsr(key.csrPem, { identity: 'https://example.com', ttlMs: 60e3 }),
    { code: 'WEFT_CA_PERMISSION_DENIED' });
  t.throws(() => issuer.signCsr(key.csrPem, { identity: ID, ttlMs: 0 }), { code: 'WEFT_CA_TTL_INVALID' });
});

t.test('a leaf never outlives its root', async (t) => {
  const shortRoot = await generateRootCa({ trustDomain: TD, ttlMs: 3600e3 });
  const short = new Issuer(shortRoot, { trustDomain: TD });
  const leaf = new X509Certificate(short.signCsr(key.csrPem, { identity: ID, ttlMs: 30 * 24 * 3600e3 })[0]!);
  t.equal(leaf.validTo, new X509Certificate(shortRoot.certPem).validTo);
});

t.test('issued certificates work for mutual TLS with Node', async (t) => {
  const server = await generateKeyAndCsr();
  const client = await generateKeyAndCsr();
  const serverChain = issuer.signCsr(server.csrPem, { identity: `spiffe://${TD}/ns/demo/sa/server`, ttlMs: 60e3 });
  const clientChain = issuer.signCsr(client.csrPem, { identity: `spiffe://${TD}/ns/demo/sa/client`, ttlMs: 60e3 });
  const srv = tls.createServer({
    key: server.keyPem, cert: serverChain[0], ca: [issuer.rootPem], requestCert: true, rejectUnauthorized: true,
  }, (sock) => {
    sock.end(sock.getPeerX509Certificate()?.subjectAltName ?? 'none');
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  t.teardown(() => { srv.close(); });
  const sock = tls.connect({
    host: '127.0.0.1', port: (srv.address() as AddressInfo).port, key: client.keyPem, cert: clientChain[0],
    ca: [issuer.rootPem], checkServerIdentity: () => undefined,
  });
  await once(sock, 'secureConnect');
  t.equal(sock.getPeerX509Certificate()?.subjectAltName, `URI:spiffe://${TD}/ns/demo/sa/server`);
  let got = '';
  sock.setEncoding('utf8').on('data', (d: string) => { got += d; });
  await once(sock, 'end');
  t.equal(got, `URI:spiffe://${TD}/ns/demo/sa/client`, 'server saw the client identity');
  sock.destroy();
});
