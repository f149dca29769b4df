// L7 authorization in the waypoint's request path (exchange.ts, websocket.ts): the
// authorizer is asked BEFORE the router, so a denied request never reaches the route
// logic or an upstream; HTTP/1.1 gets 403 `RBAC: access denied`, a grpc-js client
// PERMISSION_DENIED (trailers-only), a WebSocket upgrade the same 403; the access log
// record carries the status.
import t, { type Test } from 'tap';
import * as grpc from '@grpc/grpc-js';
import * as net from 'node:net';
import pino from 'pino';
import { policyRecord as fixturePolicy } from '../src/registry/fixtures';
import { MeshState } from '../src/registry/state';
import { validateRecord } from '../src/registry/validate';
import { WaypointAuthorizer } from '../src/waypoint/authorizer';
import { echoHandler, httpUpstream, plan, request, startWaypoint } from './helpers/waypoint';

function authorizer(): WaypointAuthorizer {
  const state = new MeshState({ trustDomain: 'cluster.local' });
  state.replaceAll({
    policy: [validateRecord('policy', fixturePolicy({
      namespace: 'demo', name: 'deny-admin', action: 'DENY', targetRefs: [{ kind: 'Service', name: 'echo' }],
      rules: [{ clauses: [{ matches: [{ paths: ['/admin*', '/test.Echo/Admin'] }] }] }],
    }), { unknownKeys: 'reject' })],
  }, 1);
  return new WaypointAuthorizer({ state, waypoint: { namespace: 'demo', name: 'waypoint' }, logger: pino({ level: 'silent' }) });
}

t.test('HTTP/1.1: denied before the router with 403 RBAC: access denied; allowed requests routed as before', async (t) => {
  const up = await httpUpstream(t, echoHandler());
  const h = await startWaypoint(t, () => plan(up.port), { authorizer: authorizer() });
  const ok = await request(h.port, { path: '/public' });
  t.equal(ok.status, 200);
  const denied = await request(h.port, { method: 'POST', path: '/admin/users', body: 'x' });
  t.equal(denied.status, 403);
  t.equal(denied.body, 'RBAC: access denied');
  t.same(h.router.seen.map((f) => f.path), ['/public'], 'the router never saw the denied request');
  t.equal(h.dialer.count(up.port), 1, 'no upstream connection for it');
  t.match(h.records[1], { status: 403, path: '/admin/users', responseFlag: '-' });
  const ws = await new Promise<string>((resolve) => {
    const s = net.connect(h.port, '127.0.0.1');
    let out = '';
    s.on('data', (c: Buffer) => { out += c.toString('latin1'); });
    s.on('close', () => resolve(out));
    s.on('error', () => {});
    s.write('GET /admin/ws HTTP/1.1\r\nhost: echo.demo\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
  });
  t.match(ws, /^HTTP\/1\.1 403 /, 'a WebSocket upgrade is judged too');
  t.match(ws, /RBAC: access denied$/);
});

const bytes = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const unary = (path: string) => ({ path, requestStream: false, responseStream: false, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize });
const SERVICE = { say: unary('/test.Echo/Say'), admin: unary('/test.Echo/Admin') } as grpc.ServiceDefinition;

async function grpcUpstream(t: Test): Promise<number> {
  const server = new grpc.Server();
  const reply = (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from('hello'));
  server.addService(SERVICE, { say: reply, admin: reply });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  t.teardown(() => server.forceShutdown());
  return port;
}

t.test('gRPC: a denied call ends with PERMISSION_DENIED (trailers-only), the allowed one succeeds', async (t) => {
  const up = await grpcUpstream(t);
  const h = await startWaypoint(t, () => plan(up), { destination: { appProtocol: 'grpc' }, authorizer: authorizer() });
  const Ctor = grpc.makeGenericClientConstructor(SERVICE, 'Echo');
  const c = new Ctor(`127.0.0.1:${h.port}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, CallableFunction>;
  t.teardown(() => c.close());
  const call = (m: string) => new Promise<{ err: grpc.ServiceError | null; res?: Buffer }>((resolve) => c[m]!(Buffer.from('x'), (err: grpc.ServiceError | null, res?: Buffer) => resolve({ err, res })));
  const ok = await call('say');
  t.equal(ok.err, null);
  t.equal(ok.res?.toString(), 'hello');
  const denied = await call('admin');
  t.equal(denied.err?.code, grpc.status.PERMISSION_DENIED);
  t.equal(denied.err?.details, 'RBAC: access denied');
  t.match(h.records.at(-1), { status: 200, grpc: true, grpcStatus: '7', path: '/test.Echo/Admin' });
});
