// The shared HBONE server on its own, as a waypoint embeds it: one fixed identity for
// every connection and its own per-stream handler. Real mTLS and HTTP/2 on loopback.
import t, { type Test } from 'tap';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as tls from 'node:tls';
import pino from 'pino';
import { HboneServer, type HboneServerOptions, type HboneStreamContext } from '../src/hbone/server';
import { clientTlsOptions, peerUriSans, SecureContextCache } from '../src/hbone/tls';
import { IssuerCertSource } from '../src/ztunnel/testing/issuer-certs';

const T = { timeout: 30_000 };
const WAYPOINT = 'spiffe://cluster.local/ns/demo/sa/waypoint';
const CLIENT = 'spiffe://cluster.local/ns/demo/sa/client';

let certs: IssuerCertSource;
t.before(async () => { certs = await IssuerCertSource.create('cluster.local'); });
const contexts = new SecureContextCache();

/** A server on 127.0.0.1:0 presenting WAYPOINT, with `handler` (and any other options). */
async function server(t: Test, opts: Partial<HboneServerOptions>): Promise<{ server: HboneServer; port: number }> {
  const s = new HboneServer({
    logger: pino({ level: 'silent' }), certs, trustDomain: 'cluster.local',
    identityFor: () => WAYPOINT,
    handler: () => { throw new Error('no handler in this test'); },
    ...opts,
  });
  t.teardown(() => s.close());
  return { server: s, port: (await s.listen('127.0.0.1', 0)).port };
}

/** An mTLS + HTTP/2 session as CLIENT; resolves with it and the identities the server presented. */
async function session(t: Test, port: number): Promise<{ session: http2.ClientHttp2Session; presented: string[] }> {
  const context = contexts.get(await certs.get(CLIENT), certs.rootsPem);
  const sock = tls.connect(clientTlsOptions(context, net.connect(port, '127.0.0.1')));
  await new Promise<void>((resolve, reject) => { sock.once('secureConnect', resolve); sock.once('error', reject); });
  const presented = peerUriSans(sock);
  const s = http2.connect('https://127.0.0.1', { createConnection: () => sock });
  s.on('error', () => {});
  t.teardown(() => s.destroy());
  return { session: s, presented };
}

/** One request; resolves with the status and the body read until the stream ends. */
function request(s: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string): Promise<{ status: number; body: string; rst: number }> {
  return new Promise((resolve) => {
    const req = s.request(headers, { endStream: false });
    let status = 0;
    const chunks: Buffer[] = [];
    req.on('response', (h) => { status = Number(h[':status']); });
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('error', () => {});
    req.on('close', () => resolve({ status, body: Buffer.concat(chunks).toString(), rst: req.rstCode ?? 0 }));
    req.end(body);
  });
}

t.test('a fixed identity, and each validated CONNECT handed to the handler with its context', T, async (t) => {
  const seen: HboneStreamContext[] = [];
  const { port } = await server(t, {
    handler: (stream, ctx) => {
      seen.push(ctx);
      stream.respond({ ':status': 200 });
      // An L7 handler reads the tunnelled bytes and answers on the stream.
      const got: Buffer[] = [];
      stream.on('data', (d: Buffer) => got.push(d));
      stream.on('end', () => stream.end(`got ${Buffer.concat(got).toString()}`));
    },
  });
  const { session: s, presented } = await session(t, port);
  t.same(presented, [WAYPOINT], 'the server presents the identity identityFor chose');
  const res = await request(s, { ':method': 'CONNECT', ':authority': '10.0.0.7:8080', forwarded: 'for="10.0.0.9:4242"', traceparent: 'tp' }, 'GET / HTTP/1.1\r\n\r\n');
  t.equal(res.status, 200);
  t.equal(res.body, 'got GET / HTTP/1.1\r\n\r\n');
  t.equal(seen.length, 1);
  const ctx = seen[0]!;
  t.same(ctx.target, { ip: '10.0.0.7', port: 8080 });
  t.equal(ctx.peerIdentity, CLIENT, 'the peer identity comes from its certificate');
  t.equal(ctx.localIdentity, WAYPOINT);
  t.equal(ctx.peerAddr.ip, '127.0.0.1');
  t.equal(ctx.peer, `127.0.0.1:${ctx.peerAddr.port}`);
  t.equal(ctx.forwarded, 'for="10.0.0.9:4242"', 'forwarded as sent (untrusted)');
  t.equal(ctx.headers.traceparent, 'tp');
  t.ok(ctx.guard, 'the session guard');
});

t.test('CONNECT validation answers 400 before the handler; refuse() and a throwing handler', T, async (t) => {
  let calls = 0;
  const { port } = await server(t, {
    handler: (_stream, ctx) => {
      calls++;
      if (ctx.target.port === 1) return ctx.refuse(403, 'port 1 is not served here');
      if (ctx.target.port === 2) ctx.respond(503);
      if (ctx.target.port === 3) throw new Error('handler bug');
    },
  });
  const { session: s } = await session(t, port);
  t.equal((await request(s, { ':method': 'GET', ':path': '/' })).status, 400, 'not CONNECT');
  t.equal((await request(s, { ':method': 'CONNECT', ':authority': 'echo.demo:80' })).status, 400, 'a name, not an address');
  t.equal(calls, 0, 'invalid requests never reach the handler');
  t.equal((await request(s, { ':method': 'CONNECT', ':authority': '10.0.0.7:1' })).status, 403);
  t.equal((await request(s, { ':method': 'CONNECT', ':authority': '10.0.0.7:2' })).status, 503);
  const thrown = await request(s, { ':method': 'CONNECT', ':authority': '10.0.0.7:3' });
  t.equal(thrown.status, 0, 'no answer');
  t.not(thrown.rst, 0, 'the stream is reset');
  t.equal(calls, 3);
});

t.test('identityFor: undefined closes the connection before any TLS', T, async (t) => {
  let asked = 0;
  const { server: s, port } = await server(t, { identityFor: () => { asked++; return undefined; } });
  const context = contexts.get(await certs.get(CLIENT), certs.rootsPem);
  const sock = tls.connect(clientTlsOptions(context, net.connect(port, '127.0.0.1')));
  const err = await new Promise<Error | undefined>((resolve) => { sock.once('secureConnect', () => resolve(undefined)); sock.once('error', resolve); sock.once('close', () => resolve(new Error('closed'))); });
  t.ok(err, 'no handshake');
  t.equal(asked, 1);
  t.equal(s.tlsIdentities, 0, 'no certificate loaded');
  sock.destroy();
});
