// The waypoint's HTTP/1.1 path with real sockets: a TCP listener (or an h2c CONNECT
// stream, HBONE's shape) feeding WaypointL7, real node http servers as upstreams.
import t from 'tap';
import * as http from 'node:http';
import { StreamSocket } from '../src/waypoint/stream-socket';
import { CLIENT_ID, ECHO_ID, connectStream, echoHandler, httpUpstream, plan, request, startWaypoint } from './helpers/waypoint';

const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/;

t.test('a request goes upstream with forwarded, x-forwarded-for and a new traceparent; one access line', async (t) => {
  const up = await httpUpstream(t, echoHandler());
  const h = await startWaypoint(t, () => plan(up.port));
  const r = await request(h.port, { path: '/api/x?y=1' });
  t.equal(r.status, 200);
  const seen = JSON.parse(r.body);
  t.equal(seen.url, '/api/x?y=1');
  t.equal(seen.headers.host, 'echo.demo', 'authority kept');
  t.match(seen.headers.forwarded, /^for="127\.0\.0\.1:\d+"$/);
  t.equal(seen.headers['x-forwarded-for'], '127.0.0.1');
  t.match(seen.headers.traceparent, TRACEPARENT);
  t.equal(h.router.seen[0]!.path, '/api/x');
  t.equal(h.router.seen[0]!.query, 'y=1');
  t.equal(h.router.seen[0]!.authority, 'echo.demo');
  t.equal(h.router.seen[0]!.source.identity, CLIENT_ID);
  t.equal(h.records.length, 1);
  const rec = h.records[0]!;
  t.match(rec, { method: 'GET', authority: 'echo.demo', path: '/api/x', status: 200, route: 'demo/echo', backend: 'demo/echo-v1:8080', attempts: 1, upstream: `127.0.0.1:${up.port}`, sourceIdentity: CLIENT_ID, destinationIdentity: ECHO_ID, responseFlag: '-' });
  t.equal(rec.traceId, (seen.headers.traceparent as string).slice(3, 35), 'the logged trace id is the one sent upstream');
  const access = h.log.lines.filter((l) => l.msg === 'access');
  t.equal(access.length, 1, 'one access-log line');
  t.match(access[0], { method: 'GET', authority: 'echo.demo', path: '/api/x', status: 200, route: 'demo/echo', backend: 'demo/echo-v1:8080', attempts: 1, source_identity: CLIENT_ID, destination_identity: ECHO_ID, trace_id: rec.traceId });
});

t.test('a valid traceparent passes unchanged; an invalid one is replaced', async (t) => {
  const up = await httpUpstream(t, echoHandler());
  const h = await startWaypoint(t, () => plan(up.port));
  const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
  const a = JSON.parse((await request(h.port, { headers: { traceparent: tp, tracestate: 'x=1' } })).body);
  t.equal(a.headers.traceparent, tp);
  t.equal(a.headers.tracestate, 'x=1');
  const b = JSON.parse((await request(h.port, { headers: { traceparent: '00-00000000000000000000000000000000-00f067aa0ba902b7-01', tracestate: 'x=1' } })).body);
  t.match(b.headers.traceparent, TRACEPARENT);
  t.not(b.headers.traceparent.slice(3, 35), '0'.repeat(32));
  t.equal(b.headers.tracestate, undefined, 'the tracestate of an invalid parent is dropped');
});

t.test('keep-alive: many requests, one stream, one upstream connection', async (t) => {
  const up = await httpUpstream(t, echoHandler());
  const h = await startWaypoint(t, () => plan(up.port));
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => agent.destroy());
  for (let i = 0; i < 5; i++) {
    const r = await request(h.port, { path: `/n/${i}`, agent, method: 'POST', body: `body ${i}` });
    t.equal(JSON.parse(r.body).body, `body ${i}`);
  }
  t.equal(h.streams, 1, 'one downstream connection');
  t.equal(h.dialer.count(up.port), 1, 'one pooled upstream connection');
});

t.test('hop-by-hop headers are stripped both ways; te: trailers crosses', async (t) => {
  const up = await httpUpstream(t, (req, res) => {
    res.writeHead(200, { connection: 'x-up-hop, keep-alive', 'x-up-hop': '1', 'keep-alive': 'timeout=5', 'proxy-connection': 'keep-alive', 'x-kept': 'yes' });
    res.end(JSON.stringify(req.headers));
  });
  const h = await startWaypoint(t, () => plan(up.port));
  const r = await request(h.port, { headers: { connection: 'x-secret', 'x-secret': 'hidden', 'keep-alive': 'timeout=9', 'proxy-connection': 'keep-alive', te: 'trailers, deflate', upgrade: 'foo' } });
  const seen = JSON.parse(r.body);
  for (const name of ['x-secret', 'keep-alive', 'proxy-connection', 'upgrade']) t.equal(seen[name], undefined, `${name} not forwarded`);
  t.equal(seen.te, 'trailers');
  t.equal(r.headers['x-up-hop'], undefined, 'a header the upstream named in Connection is not relayed');
  t.equal(r.headers['proxy-connection'], undefined);
  t.equal(r.headers['x-kept'], 'yes');
  t.equal(h.router.seen[0]!.headers['x-secret'], undefined, 'the router sees the stripped headers too');
});

t.test('plan edits: request and response headers, rewritten authority and path', async (t) => {
  const up = await httpUpstream(t, (req, res) => {
    res.writeHead(200, { 'x-remove-me': '1', 'x-set-me': 'old' });
    res.end(JSON.stringify({ url: req.url, headers: req.headers }));
  });
  const h = await startWaypoint(t, () => plan(up.port, {
    authority: 'rewritten.demo', path: '/new/path?q=2',
    requestHeaders: { set: [{ name: 'X-Set', value: 'set' }], add: [{ name: 'x-add', value: 'added' }], remove: ['x-gone'] },
    responseHeaders: { set: [{ name: 'x-set-me', value: 'new' }], add: [], remove: ['x-remove-me'] },
  }));
  const r = await request(h.port, { path: '/old', headers: { 'x-set': 'orig', 'x-add': 'first', 'x-gone': 'bye' } });
  const seen = JSON.parse(r.body);
  t.equal(seen.url, '/new/path?q=2');
  t.equal(seen.headers.host, 'rewritten.demo');
  t.equal(seen.headers['x-set'], 'set');
  t.equal(seen.headers['x-add'], 'first, added');
  t.equal(seen.headers['x-gone'], undefined);
  t.equal(r.headers['x-set-me'], 'new');
  t.equal(r.headers['x-remove-me'], undefined);
});

t.test('direct responses: 404 and a redirect, no upstream contact', async (t) => {
  const h = await startWaypoint(t, (f) => (f.path === '/old'
    ? { kind: 'respond', status: 301, headers: { location: 'http://echo.demo/new' }, route: 'demo/redirect' }
    : { kind: 'respond', status: 404, body: 'no route\n' }));
  const a = await request(h.port, { path: '/nothing' });
  t.equal(a.status, 404);
  t.equal(a.body, 'no route\n');
  const b = await request(h.port, { path: '/old' });
  t.equal(b.status, 301);
  t.equal(b.headers.location, 'http://echo.demo/new');
  t.equal(h.dialer.dials.size, 0);
  t.match(h.records, [{ status: 404, responseFlag: 'NR', attempts: 0 }, { status: 301, responseFlag: '-', route: 'demo/redirect' }]);
});

t.test('a router that throws answers 500, and the next request still works', async (t) => {
  const up = await httpUpstream(t, echoHandler());
  let fail = true;
  const h = await startWaypoint(t, () => {
    if (fail) { fail = false; throw new Error('boom'); }
    return plan(up.port);
  });
  t.equal((await request(h.port)).status, 500);
  t.equal((await request(h.port)).status, 200);
});

t.test('HEAD, 204 and 304 carry no body; Content-Length and chunked never together', async (t) => {
  const up = await httpUpstream(t, (req, res) => {
    if (req.url === '/204') return void res.writeHead(204).end();
    if (req.url === '/304') return void res.writeHead(304, { etag: '"x"' }).end();
    res.writeHead(200, { 'content-length': 11 });
    res.end(req.method === 'HEAD' ? undefined : 'hello world');
  });
  const h = await startWaypoint(t, () => plan(up.port));
  const head = await request(h.port, { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(head.headers['content-length'], '11');
  t.equal(head.body, '');
  const r204 = await request(h.port, { path: '/204' });
  t.equal(r204.status, 204);
  t.equal(r204.headers['content-length'], undefined);
  t.equal(r204.headers['transfer-encoding'], undefined);
  const r304 = await request(h.port, { path: '/304' });
  t.equal(r304.status, 304);
  t.equal(r304.body, '');
  const get = await request(h.port);
  t.equal(get.body, 'hello world');
  t.equal(get.headers['transfer-encoding'], undefined, 'a sized body is not chunked as well');
});

t.test('request bodies cross intact: sized and chunked, 300 KiB', async (t) => {
  const up = await httpUpstream(t, echoHandler());
  const h = await startWaypoint(t, () => plan(up.port));
  const big = Buffer.alloc(300 * 1024, 'a');
  const sized = JSON.parse((await request(h.port, { method: 'PUT', body: big })).body);
  t.equal(sized.bodyLength, big.length);
  t.equal(sized.headers['content-length'], String(big.length));
  const chunked = await new Promise<{ bodyLength: number; headers: Record<string, string> }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: h.port, method: 'POST', path: '/', headers: { host: 'echo.demo' }, agent: false }, (res) => {
      let s = '';
      res.on('data', (c) => { s += c; });
      res.on('end', () => resolve(JSON.parse(s)));
    });
    req.on('error', reject);
    req.write(big.subarray(0, 1000));
    setImmediate(() => req.end(big.subarray(1000)));
  });
  t.equal(chunked.bodyLength, big.length);
  t.equal(chunked.headers['transfer-encoding'], 'chunked');
  t.equal(chunked.headers['content-length'], undefined);
});

t.test('trailers of a chunked upstream response reach the client', async (t) => {
  const up = await httpUpstream(t, (_req, res) => {
    res.writeHead(200, { trailer: 'x-checksum' });
    res.write('part');
    res.addTrailers({ 'x-checksum': 'abc' });
    res.end();
  });
  const h = await startWaypoint(t, () => plan(up.port));
  const trailers = await new Promise<http.IncomingHttpHeaders>((resolve, reject) => {
    http.get({ host: '127.0.0.1', port: h.port, path: '/', headers: { host: 'echo.demo' }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.trailers));
    }).on('error', reject);
  });
  t.same(trailers, { 'x-checksum': 'abc' });
});

t.test('over an HTTP/2 CONNECT stream (HBONE shape): keep-alive requests with bodies, first bytes intact', async (t) => {
  const up = await httpUpstream(t, echoHandler());
  const h = await startWaypoint(t, () => plan(up.port), { viaConnect: true });
  const stream = await connectStream(t, h.port);
  const sock = new StreamSocket(stream);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  agent.createConnection = () => sock;
  t.teardown(() => agent.destroy());
  for (let i = 0; i < 3; i++) {
    const r = await request(h.port, { method: 'POST', path: `/c/${i}`, body: `payload-${i}`, agent, headers: { 'x-n': String(i) } });
    const seen = JSON.parse(r.body);
    t.equal(seen.url, `/c/${i}`);
    t.equal(seen.body, `payload-${i}`);
    t.equal(seen.headers['x-n'], String(i));
  }
  t.equal(h.streams, 1);
});
