import t, { type Test } from 'tap';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { generateRootCa, Issuer } from '../src/ca/issuer';
import { isWeftError } from '../src/lib/errors';
import type { WorkloadCert } from '../src/hbone/contracts';
import { clientTlsOptions, peerUriSans, SecureContextCache, ServerTlsEngines, verifyClientIdentity, verifyServerIdentity } from '../src/hbone/tls';
import { IssuerCertSource } from '../src/ztunnel/testing/issuer-certs';
import { until } from '../src/ztunnel/testing/sockets';

const ECHO = 'spiffe://cluster.local/ns/demo/sa/echo';
const CLIENT = 'spiffe://cluster.local/ns/demo/sa/client';

interface Accepted { socket: tls.TLSSocket; localIdentity: string }

/** A raw TCP listener whose sockets go through ServerTlsEngines with `serverCert`. */
async function tlsServer(t: Test, serverCert: WorkloadCert, roots: string) {
  const accepted: Accepted[] = [];
  const errors: Error[] = [];
  const waiters: Array<() => void> = [];
  const raws = new Set<net.Socket>();
  const engines = new ServerTlsEngines({
    handshakeTimeoutMs: 5000,
    onSecure: (socket, localIdentity) => {
      // The TLS socket now owns the raw one's handle: never destroy both.
      for (const r of raws) if (r.remotePort === socket.remotePort) raws.delete(r);
      accepted.push({ socket, localIdentity });
      waiters.splice(0).forEach((w) => w());
    },
    onError: (err, socket) => { errors.push(err); socket.destroy(); waiters.splice(0).forEach((w) => w()); },
  });
  const srv = net.createServer((raw) => {
    raws.add(raw);
    raw.on('close', () => raws.delete(raw));
    engines.accept(raw, serverCert, roots);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => { for (const r of raws) r.destroy(); for (const a of accepted) a.socket.destroy(); srv.close(); });
  const port = (srv.address() as net.AddressInfo).port;
  const settled = () => new Promise<void>((r) => waiters.push(r));
  return { port, accepted, errors, settled, engines };
}

/** Client handshake with `cert` (or none); resolves with the socket or the error. */
function dial(port: number, opts: tls.ConnectionOptions): Promise<tls.TLSSocket | Error> {
  return new Promise((resolve) => {
    const raw = net.connect({ host: '127.0.0.1', port });
    const s = tls.connect({ ...opts, socket: raw });
    s.once('secureConnect', () => resolve(s));
    s.once('error', (err) => { raw.destroy(); resolve(err); });
    s.once('close', () => resolve(new Error('closed')));
  });
}

t.test('mutual TLS between workload certificates, as HBONE uses it', async (t) => {
  const ca = await IssuerCertSource.create();
  const echo = await ca.get(ECHO);
  const client = await ca.get(CLIENT);
  const server = await tlsServer(t, echo, ca.rootsPem);
  const contexts = new SecureContextCache();
  const raw = net.connect({ host: '127.0.0.1', port: server.port });
  const sock = await new Promise<tls.TLSSocket>((resolve, reject) => {
    const s = tls.connect(clientTlsOptions(contexts.get(client, ca.rootsPem), raw));
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
  });
  t.teardown(() => sock.destroy());
  t.equal(contexts.size, 1);
  t.equal(contexts.get(client, ca.rootsPem), contexts.get(client, ca.rootsPem), 'one context per identity, reused');
  contexts.retain(new Set([ECHO]));
  t.equal(contexts.size, 0, 'retain drops identities that left the node');
  t.equal(sock.getProtocol(), 'TLSv1.3');
  t.equal(sock.alpnProtocol, 'h2');
  t.equal(sock.getCipher().name, 'TLS_AES_128_GCM_SHA256', 'the cheapest AEAD with AES-NI');
  t.same(peerUriSans(sock), [ECHO]);
  t.doesNotThrow(() => verifyServerIdentity(sock, ECHO, 'peer'));
  const err = t.throws(() => verifyServerIdentity(sock, 'spiffe://cluster.local/ns/demo/sa/other', '127.0.0.1:1'));
  t.ok(isWeftError(err, 'WEFT_HBONE_IDENTITY_MISMATCH'));
  t.match((err as Error).message, /presented spiffe:\/\/cluster.local\/ns\/demo\/sa\/echo but spiffe:\/\/cluster.local\/ns\/demo\/sa\/other was expected/);
  while (server.accepted.length === 0) await server.settled();
  const accepted = server.accepted[0]!;
  t.equal(accepted.localIdentity, ECHO);
  t.equal(accepted.socket.servername, false, 'the client sent no SNI');
  t.equal(verifyClientIdentity(accepted.socket, 'cluster.local'), CLIENT);
  t.throws(() => verifyClientIdentity(accepted.socket, 'other.domain'), { code: 'WEFT_HBONE_IDENTITY_MISMATCH' });
  t.equal(sock.isSessionReused(), false);
});

t.test('the server refuses clients without a certificate or from another CA', async (t) => {
  const ca = await IssuerCertSource.create();
  const foreign = await IssuerCertSource.create();
  const echo = await ca.get(ECHO);
  const server = await tlsServer(t, echo, ca.rootsPem);
  const contexts = new SecureContextCache();

  const noCert = await dial(server.port, { ca: ca.rootsPem, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined, minVersion: 'TLSv1.3' });
  // TLS 1.3: the client may finish its side before the server rejects; either way it must not stay usable.
  if (!(noCert instanceof Error)) {
    await new Promise<void>((r) => { noCert.once('close', () => r()); noCert.resume(); });
  }
  while (server.errors.length < 1) await server.settled();
  t.equal(server.accepted.length, 0, 'no client certificate: refused');

  const stranger = await foreign.get(CLIENT);
  const s2 = await dial(server.port, {
    secureContext: contexts.get(stranger, ca.rootsPem), ALPNProtocols: ['h2'], checkServerIdentity: () => undefined,
  });
  if (!(s2 instanceof Error)) await new Promise<void>((r) => { s2.once('close', () => r()); s2.resume(); });
  while (server.errors.length < 2) await server.settled();
  t.equal(server.accepted.length, 0, 'certificate from another CA: refused');
});

t.test('the client refuses a server from another CA; the server refuses another trust domain', async (t) => {
  const root = await generateRootCa({ trustDomain: 'cluster.local' });
  const ca = new IssuerCertSource(new Issuer(root, { trustDomain: 'cluster.local' }), root.certPem);
  const foreign = await IssuerCertSource.create();
  const server = await tlsServer(t, await foreign.get(ECHO), foreign.rootsPem);
  const contexts = new SecureContextCache();
  const res = await dial(server.port, clientTlsOptions(contexts.get(await ca.get(CLIENT), ca.rootsPem), undefined as unknown as net.Socket));
  t.ok(res instanceof Error, 'handshake fails');
  t.match((res as Error & { code?: string }).code ?? '', /CERT|SIGNATURE|ERR_TLS|UNABLE/);

  // Same root, other trust domain: chains fine, but is not one of ours.
  const otherTd = new IssuerCertSource(new Issuer(root, { trustDomain: 'other.local' }), root.certPem);
  const server2 = await tlsServer(t, await ca.get(ECHO), ca.rootsPem);
  const s = await dial(server2.port, {
    secureContext: contexts.get(await otherTd.get('spiffe://other.local/ns/demo/sa/client'), root.certPem),
    ALPNProtocols: ['h2'], checkServerIdentity: () => undefined,
  });
  t.notOk(s instanceof Error);
  t.teardown(() => { if (!(s instanceof Error)) s.destroy(); });
  while (server2.accepted.length === 0) await server2.settled();
  t.throws(() => verifyClientIdentity(server2.accepted[0]!.socket, 'cluster.local'), { code: 'WEFT_HBONE_IDENTITY_MISMATCH' },
    'a foreign trust domain is refused even with a valid chain');
});

t.test('contexts are cached per certificate serial', async (t) => {
  const ca = await IssuerCertSource.create();
  const c1 = await ca.get(CLIENT);
  const cache = new SecureContextCache();
  const a = cache.get(c1, ca.rootsPem);
  t.equal(cache.get(c1, ca.rootsPem), a, 'same serial: same context');
  const c2 = await ca.rotate(CLIENT);
  t.not(c2.serial, c1.serial);
  const b = cache.get(c2, ca.rootsPem);
  t.not(b, a, 'new serial: new context');
  t.equal(cache.size, 1, 'one entry per identity');
  cache.forget(CLIENT);
  t.equal(cache.size, 0);
});

t.test('server engines are per identity and pick up rotated certificates', async (t) => {
  const ca = await IssuerCertSource.create();
  const first = await ca.get(ECHO);
  const server = await tlsServer(t, first, ca.rootsPem);
  const contexts = new SecureContextCache();
  const client = contexts.get(await ca.get(CLIENT), ca.rootsPem);
  const s1 = await dial(server.port, { secureContext: client, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
  t.notOk(s1 instanceof Error);
  const serial1 = (s1 as tls.TLSSocket).getPeerCertificate().serialNumber;
  (s1 as tls.TLSSocket).destroy();
  const rotated = await ca.rotate(ECHO);
  // The next accept uses the rotated certificate (same engine, new context).
  const srv = net.createServer((raw) => server.engines.accept(raw, rotated, ca.rootsPem));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => srv.close());
  const s2 = await dial((srv.address() as net.AddressInfo).port, { secureContext: client, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined });
  t.notOk(s2 instanceof Error);
  const serial2 = (s2 as tls.TLSSocket).getPeerCertificate().serialNumber;
  (s2 as tls.TLSSocket).destroy();
  t.not(serial2, serial1);
  t.equal(server.engines.size, 1);
});

t.test('no session resumption: a ticket from one tunnel never skips the next handshake, before or after rotation', async (t) => {
  const ca = await IssuerCertSource.create();
  const echo = await ca.get(ECHO);
  const server = await tlsServer(t, echo, ca.rootsPem);
  const contexts = new SecureContextCache();
  const client = contexts.get(await ca.get(CLIENT), ca.rootsPem);
  const opts = { secureContext: client, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined };

  /** A real client: keep every session/ticket the server sends, offer the last one back. */
  const connectKeeping = async (port: number, session?: Buffer) => {
    const tickets: Buffer[] = [];
    const before = server.accepted.length;
    const raw = net.connect({ host: '127.0.0.1', port });
    const s = tls.connect({ ...opts, socket: raw, ...(session ? { session } : {}) });
    s.on('session', (b: Buffer) => tickets.push(b));
    await new Promise<void>((resolve, reject) => { s.once('secureConnect', () => resolve()); s.once('error', reject); });
    await until(() => server.accepted.length > before, 5000, 'the server to accept');
    // TLS 1.3 tickets follow the handshake, before any application data: once a byte
    // the server wrote arrives, every ticket it sent has been seen.
    const got = new Promise<void>((r) => s.once('data', () => r()));
    server.accepted.at(-1)!.socket.write('k');
    await got;
    const reused = s.isSessionReused();
    s.destroy();
    return { tickets, reused };
  };

  const first = await connectKeeping(server.port);
  t.equal(first.reused, false);
  // Node cannot stop OpenSSL from sending TLS 1.3 NewSessionTicket messages; what
  // matters is that none of them can be redeemed.
  for (const ticket of first.tickets) {
    const again = await connectKeeping(server.port, ticket);
    t.equal(again.reused, false, 'the offered ticket is refused: a full handshake with the client certificate');
  }
  t.ok(first.tickets.length >= 1, `the client kept ${first.tickets.length} ticket(s) to offer`);
  t.equal(server.accepted.at(-1)?.socket.getPeerCertificate().subject !== undefined, true, 'the server saw the client certificate again');

  // After a rotation (setSecureContext) too.
  await ca.rotate(ECHO);
  const rotated = await ca.get(ECHO);
  const srv = net.createServer((raw) => server.engines.accept(raw, rotated, ca.rootsPem));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => srv.close());
  const port2 = (srv.address() as net.AddressInfo).port;
  const r1 = await connectKeeping(port2);
  t.ok(r1.tickets.length >= 1, `after the rotation the client kept ${r1.tickets.length} ticket(s) to offer`);
  for (const ticket of r1.tickets) t.equal((await connectKeeping(port2, ticket)).reused, false, 'no resumption after rotation');
});
