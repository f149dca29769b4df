/**
 * mTLS for HBONE. Certificates are the workloads' own (client side: the source
 * workload's; server side: the destination workload's). Verification is Istio's:
 * chains to the mesh roots, then identity by URI SAN — the client wants the
 * destination workload's identity, the server wants any identity of its own trust
 * domain (who may connect is authorization's business). DNS names and CN are ignored.
 */
import { constants as cryptoConstants } from 'node:crypto';
import * as tls from 'node:tls';
import { WeftError } from '../lib/errors';
import { parseIdentity } from '../lib/identity';
import type { WorkloadCert } from './contracts';

export const HBONE_ALPN = ['h2'];

/**
 * TLS 1.3 suites, AES-128-GCM first: with AES-NI it is the cheapest per byte, and
 * single-stream throughput is bound by the cipher.
 */
const CIPHER_SUITES = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256';

interface CacheEntry {
  serial: string;
  roots: string;
  context: tls.SecureContext;
}

/**
 * TLS material kept per local identity. Each entry holds a private key, so the owner
 * drops the identities whose workloads left the node (`retain`).
 */
abstract class PerIdentity<E> {
  protected readonly byIdentity = new Map<string, E>();

  forget(identity: string): void {
    this.byIdentity.delete(identity);
  }

  /** Drops the entries of identities not in `keep`. */
  retain(keep: ReadonlySet<string>): void {
    for (const id of this.byIdentity.keys()) if (!keep.has(id)) this.byIdentity.delete(id);
  }

  get size(): number {
    return this.byIdentity.size;
  }
}

/**
 * SecureContexts by certificate: building one parses the key (~1 ms), far too slow
 * per connection. One entry per identity, replaced when the serial (rotation) or the
 * roots change.
 */
export class SecureContextCache extends PerIdentity<CacheEntry> {
  get(cert: WorkloadCert, rootsPem: string): tls.SecureContext {
    const hit = this.byIdentity.get(cert.identity);
    if (hit && hit.serial === cert.serial && hit.roots === rootsPem) return hit.context;
    const context = tls.createSecureContext(contextOptions(cert, rootsPem));
    this.byIdentity.set(cert.identity, { serial: cert.serial, roots: rootsPem, context });
    return context;
  }
}

/**
 * Options for the client side of an HBONE connection over an already connected TCP
 * socket. No SNI (`servername: ''`) and no session resumption (no `session`), as
 * Istio's ztunnel: the server chooses its certificate from the destination address.
 * Hostname checking is off because identity is checked by URI SAN afterwards.
 */
export function clientTlsOptions(context: tls.SecureContext, socket: import('node:net').Socket): tls.ConnectionOptions {
  return {
    socket,
    secureContext: context,
    ALPNProtocols: HBONE_ALPN,
    servername: '',
    rejectUnauthorized: true,
    checkServerIdentity: () => undefined,
    minVersion: 'TLSv1.3',
  };
}

/** Every URI SAN of the peer's leaf certificate. */
export function peerUriSans(socket: tls.TLSSocket): string[] {
  // getPeerCertificate, not getPeerX509Certificate: on Node 20 the latter leaves the
  // socket's peer certificate unreadable for every later call (found by the tests).
  const san = socket.getPeerCertificate()?.subjectaltname;
  if (!san) return [];
  const out: string[] = [];
  // Node renders SANs as `URI:a, DNS:b`; values that need it are JSON-quoted.
  for (const part of splitSan(san)) {
    if (!part.startsWith('URI:')) continue;
    let v = part.slice(4);
    if (v.startsWith('"')) {
      try { v = JSON.parse(v) as string; } catch { continue; }
    }
    out.push(v);
  }
  return out;
}

function splitSan(san: string): string[] {
  const parts: string[] = [];
  let cur = '';
  let quoted = false;
  for (let i = 0; i < san.length; i++) {
    const c = san[i]!;
    if (c === '"' && san[i - 1] !== '\\') quoted = !quoted;
    if (!quoted && c === ',' && san[i + 1] === ' ') {
      parts.push(cur);
      cur = '';
      i++;
      continue;
    }
    cur += c;
  }
  if (cur) parts.push(cur);
  return parts;
}

/**
 * Client-side check after the handshake: the chain was verified against the roots
 * (rejectUnauthorized), now some URI SAN must equal the identity we expect.
 */
export function verifyServerIdentity(socket: tls.TLSSocket, expected: string, peer: string): void {
  const sans = peerUriSans(socket);
  if (!sans.includes(expected)) {
    throw new WeftError('WEFT_HBONE_IDENTITY_MISMATCH',
      `HBONE peer ${peer} presented ${sans.length ? sans.join(', ') : 'no URI SAN'} but ${expected} was expected; ` +
      'the destination node serves another certificate for this workload: check the workload\'s service account in the registry and that the right node owns its IP',
      { details: { expected, presented: sans, peer } });
  }
}

/**
 * Server-side check after the handshake: the client certificate chains to the mesh
 * roots and carries a SPIFFE identity of our trust domain. Returns that identity.
 */
export function verifyClientIdentity(socket: tls.TLSSocket, trustDomain: string): string {
  if (!socket.authorized) {
    throw new WeftError('WEFT_HBONE_IDENTITY_MISMATCH',
      `HBONE client ${socket.remoteAddress} presented a certificate that does not chain to the mesh roots (${String(socket.authorizationError)}); ` +
      'peers must use certificates issued by this mesh\'s CA',
      { details: { reason: String(socket.authorizationError) } });
  }
  for (const uri of peerUriSans(socket)) {
    const id = parseIdentity(uri);
    if (id && id.trustDomain === trustDomain) return uri;
  }
  throw new WeftError('WEFT_HBONE_IDENTITY_MISMATCH',
    `HBONE client ${socket.remoteAddress} presented no spiffe://${trustDomain}/ns/<ns>/sa/<sa> identity; ` +
    'only workloads of this trust domain may open tunnels',
    { details: { presented: peerUriSans(socket) } });
}

interface ServerEntry {
  serial: string;
  roots: string;
  server: tls.Server;
}

/**
 * Server-side TLS for accepted raw sockets, one never-listening tls.Server per local
 * identity used as the handshake engine (`emit('connection', raw)`): tls.Server is
 * what implements `requestCert` + `rejectUnauthorized` verification and the
 * handshake timeout, which a bare `new TLSSocket({isServer})` does not do.
 * A rotation swaps the certificate in place with setSecureContext.
 */
export class ServerTlsEngines extends PerIdentity<ServerEntry> {
  constructor(private readonly opts: {
    handshakeTimeoutMs: number;
    /** A handshake completed with a client certificate that chains to the roots. */
    onSecure: (socket: tls.TLSSocket, localIdentity: string) => void;
    /** A handshake failed (bad or missing client certificate, timeout, not TLS). */
    onError: (err: Error, socket: tls.TLSSocket, localIdentity: string) => void;
  }) {
    super();
  }

  accept(raw: import('node:net').Socket, cert: WorkloadCert, rootsPem: string): void {
    this.engine(cert, rootsPem).emit('connection', raw);
  }

  private engine(cert: WorkloadCert, rootsPem: string): tls.Server {
    const hit = this.byIdentity.get(cert.identity);
    // setSecureContext builds a new context from these options alone, so the no-ticket
    // option travels with the material, not only with createServer.
    const material = { ...contextOptions(cert, rootsPem), secureOptions: NO_RESUMPTION };
    if (hit) {
      if (hit.serial !== cert.serial || hit.roots !== rootsPem) {
        hit.server.setSecureContext(material);
        hit.serial = cert.serial;
        hit.roots = rootsPem;
      }
      return hit.server;
    }
    const identity = cert.identity;
    const server = tls.createServer({
      ...material,
      requestCert: true,
      rejectUnauthorized: true,
      ALPNProtocols: HBONE_ALPN,
      handshakeTimeout: this.opts.handshakeTimeoutMs,
    });
    server.on('secureConnection', (s: tls.TLSSocket) => this.opts.onSecure(s, identity));
    server.on('tlsClientError', (err: Error, s: tls.TLSSocket) => this.opts.onError(err, s, identity));
    this.byIdentity.set(identity, { serial: cert.serial, roots: rootsPem, server });
    return server;
  }

}

/**
 * No session resumption on the server. A resumed TLS 1.3 session skips the client
 * certificate: a peer could keep opening tunnels as an identity whose certificate has
 * since been rotated away or whose roots are no longer trusted, and stateless tickets
 * are encrypted with a process-wide key that undoes forward secrecy. SSL_OP_NO_TICKET
 * makes OpenSSL issue stateful tickets instead, which point into a session cache that
 * Node keeps only through the 'newSession' event — never listened to here — so no
 * ticket can ever be redeemed and every handshake is a full one. (OpenSSL still sends
 * those useless NewSessionTicket messages: Node does not expose SSL_CTX_set_num_tickets.)
 */
const NO_RESUMPTION = cryptoConstants.SSL_OP_NO_TICKET;

/** Leaf and intermediates are sent; the root is the peer's own trust anchor. */
function contextOptions(cert: WorkloadCert, rootsPem: string): tls.SecureContextOptions {
  return {
    key: cert.keyPem,
    cert: cert.certChainPem.length > 1 ? cert.certChainPem.slice(0, -1).join('\n') : cert.certChainPem.join('\n'),
    ca: rootsPem,
    minVersion: 'TLSv1.3',
    ciphers: CIPHER_SUITES,
  };
}
