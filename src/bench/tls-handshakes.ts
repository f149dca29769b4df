/**
 * Full mutual-TLS handshakes over loopback, both ends in this process (so the CPU
 * figure is the cost of one handshake on both sides: key exchange, CertificateVerify
 * signatures, chain verification). No session resumption: every connection is new, as
 * a new connection through the mesh is.
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';

export interface TlsIdentity {
  keyPem: string;
  /** Leaf first; the roots the peer trusts are given separately. */
  chain: string[];
}

export interface HandshakeResult {
  perSecond: number;
  /** Process CPU (user + system) per handshake, both ends. */
  cpuUsPerHandshake: number;
}

export async function measureHandshakes(opts: {
  server: TlsIdentity; client: TlsIdentity; roots: string[]; count: number; concurrency: number;
}): Promise<HandshakeResult> {
  // Contexts made once (a server makes its own), as a proxy holds them: parsing keys
  // per connection would swamp the figure.
  const server = tls.createServer({
    key: opts.server.keyPem, cert: opts.server.chain.join(''), ca: opts.roots,
    requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3',
  }, (sock) => { sock.on('error', () => undefined); sock.end(); });
  const clientContext = tls.createSecureContext({ key: opts.client.keyPem, cert: opts.client.chain.join(''), ca: opts.roots });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const connect = () => new Promise<void>((resolve, reject) => {
    const sock = tls.connect({
      host: '127.0.0.1', port, secureContext: clientContext,
      minVersion: 'TLSv1.3', checkServerIdentity: () => undefined,
    });
    // Done when the server ends the connection: it does so once it has verified the
    // client's certificate, so both ends' work falls inside the measure.
    sock.once('end', () => { sock.destroy(); resolve(); });
    sock.once('error', reject);
    sock.resume();
  });
  try {
    await connect(); // warm-up: contexts, first allocations
    let next = 0;
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    await Promise.all(Array.from({ length: Math.min(opts.concurrency, opts.count) }, async () => {
      while (next++ < opts.count) await connect();
    }));
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    return { perSecond: opts.count / seconds, cpuUsPerHandshake: (cpu.user + cpu.system) / opts.count };
  } finally {
    server.close();
  }
}
