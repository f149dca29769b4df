// The HTTP/1.1 fast path (http1-serve.ts) and the waypoint's own upstream client
// (upstream-conn.ts), at their edges: what is handed to the Node-based front end
// mid-connection, and upstream answers the client must refuse rather than relay.
import t, { type Test } from 'tap';
import * as net from 'node:net';
import { echoHandler, httpUpstream, plan, raw, startWaypoint, tcpUpstream } from './helpers/waypoint';
import { UpstreamConnection } from '../src/waypoint/upstream-conn';

const statuses = (reply: string) => [...reply.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1]));

t.test('a fast-path request, then an HTTP/1.0 one on the same connection: both answered, in order', async (t) => {
  const up = await httpUpstream(t, echoHandler());
  const h = await startWaypoint(t, () => plan(up.port));
  const reply = await raw(h.port, 'GET /one HTTP/1.1\r\nHost: echo.demo\r\n\r\nGET /two HTTP/1.0\r\nHost: echo.demo\r\n\r\n');
  t.same(statuses(reply), [200, 200]);
  t.ok(reply.indexOf('"/one"') < reply.indexOf('"/two"'), 'in order');
  t.same(h.records.map((r) => r.path), ['/one', '/two']);
});

t.test('Expect: 100-continue is answered by the front end, then the body crosses', async (t) => {
  const up = await httpUpstream(t, echoHandler());
  const h = await startWaypoint(t, () => plan(up.port));
  const reply = await raw(h.port, 'POST /e HTTP/1.1\r\nHost: echo.demo\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello');
  t.same(statuses(reply), [100, 200]);
  t.match(reply, /"body":"hello"/);
});

t.test('pipelined fast-path requests with bodies are answered in order, bodies not mixed', async (t) => {
  const up = await httpUpstream(t, echoHandler());
  const h = await startWaypoint(t, () => plan(up.port));
  const one = (i: number) => `POST /p${i} HTTP/1.1\r\nHost: echo.demo\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nb-${i}\r\n0\r\n\r\n`;
  const reply = await raw(h.port, `${one(1)}${one(2)}${one(3)}` + 'GET /last HTTP/1.1\r\nHost: echo.demo\r\nConnection: close\r\n\r\n');
  t.same(statuses(reply), [200, 200, 200, 200]);
  const bodies = [...reply.matchAll(/"url":"(\/\w+)".*?"body":"([^"]*)"/g)].map((m) => `${m[1]}=${m[2]}`);
  t.same(bodies, ['/p1=b-1', '/p2=b-2', '/p3=b-3', '/last=']);
});

/** An upstream speaking raw bytes: answers every request head with `answer`. */
function rawUpstream(t: Test, answer: string): Promise<number> {
  return tcpUpstream(t, (sock) => sock.on('data', (d: Buffer) => { if (d.includes('\r\n\r\n')) sock.write(answer); }));
}

const BAD_UPSTREAM: Array<[string, string]> = [
  ['Content-Length with Transfer-Encoding', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
  ['differing Content-Lengths', 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd'],
  ['obs-fold', 'HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 0\r\n\r\n'],
  ['a malformed status line', 'HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n'],
];

for (const [name, answer] of BAD_UPSTREAM) {
  t.test(`an upstream response with ${name} is not relayed: 503 UC`, async (t) => {
    const port = await rawUpstream(t, answer);
    const h = await startWaypoint(t, () => plan(port));
    const reply = await raw(h.port, 'GET / HTTP/1.1\r\nHost: echo.demo\r\nConnection: close\r\n\r\n');
    t.same(statuses(reply), [503]);
    t.match(h.records[0], { status: 503, responseFlag: 'UC' });
  });
}

t.test('an upstream body delimited by close reaches the client whole', async (t) => {
  const port = await tcpUpstream(t, (sock) => sock.on('data', (d: Buffer) => { if (d.includes('\r\n\r\n')) sock.end('HTTP/1.1 200 OK\r\n\r\nuntil-close'); }));
  const h = await startWaypoint(t, () => plan(port));
  const reply = await raw(h.port, 'GET / HTTP/1.1\r\nHost: echo.demo\r\nConnection: close\r\n\r\n');
  t.same(statuses(reply), [200]);
  t.match(reply, /transfer-encoding: chunked\r\n\r\nb\r\nuntil-close\r\n0\r\n\r\n$/);
});

t.test('large upstream bodies back to back on one kept-alive upstream connection: the second is read too', async (t) => {
  const big = Buffer.alloc(1024 * 1024, 0x61);
  const up = await httpUpstream(t, (req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-length': big.length }).end(big));
  });
  const h = await startWaypoint(t, () => plan(up.port));
  // A client that reads late: the waypoint pauses the upstream body meanwhile.
  const slow = (): Promise<string> => new Promise((resolve) => {
    const s = net.connect(h.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    s.pause();
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => {});
    const timer = setTimeout(() => s.destroy(), 3000);
    s.on('close', () => { clearTimeout(timer); resolve(Buffer.concat(chunks).toString('latin1')); });
    s.write('GET /big HTTP/1.1\r\nHost: echo.demo\r\nConnection: close\r\n\r\n');
    setTimeout(() => s.resume(), 200);
  });
  for (let i = 0; i < 3; i++) {
    const reply = await slow();
    t.equal(statuses(reply.slice(0, 100))[0], 200, `download ${i}`);
    t.ok(reply.length > big.length, `download ${i} whole`);
  }
  t.equal(h.dialer.count(up.port), 1, 'one upstream connection, reused');
});

t.test('a client pipelining requests without reading the answers is not served further than its socket drains', async (t) => {
  // Each answer is written whole at once, so only the socket's need to drain can stop
  // the next pipelined request from being served (and its answer buffered in memory).
  const body = 'x'.repeat(16 * 1024);
  const h = await startWaypoint(t, () => ({ kind: 'respond', status: 200, body }));
  const total = 2000;
  const s = net.connect(h.port, '127.0.0.1');
  s.on('error', () => {});
  t.teardown(() => s.destroy());
  s.pause();
  s.write('GET / HTTP/1.1\r\nHost: echo.demo\r\n\r\n'.repeat(total));
  // Served until the kernel's buffers are full (a few MB); then nothing more until read.
  let last = -1;
  for (let i = 0; i < 100 && h.router.seen.length !== last; i++) {
    last = h.router.seen.length;
    await new Promise((r) => setTimeout(r, 200));
  }
  t.ok(h.router.seen.length < total, `stopped at ${h.router.seen.length} of ${total} requests while the client read nothing`);
  // Reading resumes the service: every request is answered, in order.
  let got = 0;
  let tail = '';
  await new Promise<void>((resolve) => {
    s.on('data', (d: Buffer) => {
      const text = tail + d.toString('latin1');
      got += (text.match(/HTTP\/1\.1 200 /g) ?? []).length;
      tail = text.slice(-12);
      if (got >= total) resolve();
    });
    s.resume();
  });
  t.equal(got, total, 'all answered once the client reads');
  t.equal(h.router.seen.length, total);
});

t.test('a head sent slowly, a line at a time, is refused after the headers timeout counted from its first byte (408)', async (t) => {
  const h = await startWaypoint(t, () => ({ kind: 'respond', status: 200 }), { config: { headersTimeoutMs: 300, keepAliveTimeoutMs: 60_000 } });
  const s = net.connect(h.port, '127.0.0.1');
  s.on('error', () => {});
  t.teardown(() => s.destroy());
  let reply = '';
  let closed = false;
  s.on('data', (d: Buffer) => { reply += d.toString('latin1'); });
  s.on('close', () => { closed = true; });
  s.write('GET / HTTP/1.1\r\nHost: echo.demo\r\n');
  // Each line comes well within the timeout of the one before (a timer re-armed per
  // line would never fire); the head never ends. Bounded: 60 lines, 6 s.
  let sent = 0;
  while (!closed && sent < 60) {
    await new Promise((r) => setTimeout(r, 100));
    if (!closed) s.write(`X-Slow-${sent++}: 1\r\n`);
  }
  t.ok(closed, `the connection closed while the head was still coming (after ${sent} lines)`);
  t.match(reply, /^HTTP\/1\.1 408 /);
});

t.test('an upstream connection whose response ran until the upstream ended its side is closed, not left half-open', async (t) => {
  // Half-open streams (an HBONE stream is one) are not ended for us by the stream itself.
  let ended!: () => void;
  const upstreamSawEnd = new Promise<void>((r) => { ended = r; });
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    sock.on('data', (d: Buffer) => { if (d.includes('\r\n\r\n')) sock.end('HTTP/1.1 200 OK\r\n\r\nuntil-close'); });
    sock.on('end', () => ended());
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const sock = net.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, allowHalfOpen: true });
  await new Promise((r) => sock.once('connect', r));
  t.teardown(() => sock.destroy());
  const conn = new UpstreamConnection(sock, () => t.fail('released for reuse'), 'test');
  const res = await conn.request({ method: 'GET', path: '/', authority: 'echo.demo', headers: {}, body: null, signal: new AbortController().signal }, 'echo.demo');
  const chunks: Buffer[] = [];
  res.body.on('data', (c: Buffer) => chunks.push(c));
  await new Promise((r) => res.body.once('end', r));
  t.equal(Buffer.concat(chunks).toString(), 'until-close');
  // Bounded wait: without the close the upstream would wait for our end forever.
  const outcome = await Promise.race([upstreamSawEnd.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open after 3 s'), 3000))]);
  t.equal(outcome, 'closed');
  t.notOk(conn.usable);
});

t.test('a client gone in the middle of an endless upstream response (route with timeouts): the upstream connection is closed, not drained forever', async (t) => {
  let upstreamClosed!: () => void;
  const closed = new Promise<void>((r) => { upstreamClosed = r; });
  const up = await httpUpstream(t, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    // Bounded: at most 200 events, 20 s.
    let n = 0;
    const timer = setInterval(() => { if (n++ < 200) res.write(`data: ${n}\n\n`); }, 100);
    res.on('close', () => { clearInterval(timer); upstreamClosed(); });
  });
  const h = await startWaypoint(t, () => plan(up.port, { timeoutMs: 60_000, attemptTimeoutMs: 60_000 }));
  const s = net.connect(h.port, '127.0.0.1');
  s.on('error', () => {});
  s.write('GET /events HTTP/1.1\r\nHost: echo.demo\r\n\r\n');
  let seen = '';
  await new Promise<void>((r) => s.on('data', (d: Buffer) => { seen += d.toString('latin1'); if (seen.includes('data: 2')) r(); }));
  s.destroy();
  const outcome = await Promise.race([closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still streaming after 5 s'), 5000))]);
  t.equal(outcome, 'closed');
});

t.test('an absolute-form request target goes upstream in origin form: the upstream sees the path the route matched, not another host', async (t) => {
  const up = await httpUpstream(t, echoHandler());
  const h = await startWaypoint(t, () => plan(up.port));
  for (const version of ['1.1', '1.0']) {
    const reply = await raw(h.port, `GET http://other.host/x?y=1 HTTP/${version}\r\nHost: echo.demo\r\nConnection: close\r\n\r\n`);
    t.same(statuses(reply), [200], `HTTP/${version}`);
    t.match(reply, /"url":"\/x\?y=1"/, `HTTP/${version}: origin form upstream`);
    t.match(reply, /"host":"echo\.demo"/, `HTTP/${version}: the Host routed on`);
  }
  t.same(h.router.seen.map((f) => `${f.authority}${f.path}?${f.query}`), ['echo.demo/x?y=1', 'echo.demo/x?y=1']);
});

t.test('an upstream response with agreeing repeated Content-Lengths reaches the client with one (a client refuses a list)', async (t) => {
  const port = await rawUpstream(t, 'HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc');
  const h = await startWaypoint(t, () => plan(port));
  const reply = await raw(h.port, 'GET / HTTP/1.1\r\nHost: echo.demo\r\nConnection: close\r\n\r\n');
  t.same(statuses(reply), [200]);
  t.same([...reply.matchAll(/^content-length: (.*)\r$/gim)].map((m) => m[1]), ['3']);
  t.match(reply, /\r\n\r\nabc$/);
});

t.test('a route header edit cannot change how a body is framed: Content-Length and Transfer-Encoding stay the message\'s own', async (t) => {
  const up = await httpUpstream(t, echoHandler());
  const edits = { set: [{ name: 'Content-Length', value: '1' }], add: [{ name: 'Transfer-Encoding', value: 'chunked' }], remove: [] };
  const h = await startWaypoint(t, () => plan(up.port, { requestHeaders: edits, responseHeaders: edits }));
  const reply = await raw(h.port, 'POST /a HTTP/1.1\r\nHost: echo.demo\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: echo.demo\r\nConnection: close\r\n\r\n');
  t.same(statuses(reply), [200, 200]);
  t.same([...reply.matchAll(/"url":"([^"]*)","headers":.*?"bodyLength":(\d+)/g)].map((m) => `${m[1]}=${m[2]}`), ['/a=5', '/b=0']);
  t.notMatch(reply, /content-length: 1\r\n/i, 'the response keeps its own length');
});

// With no retry and no mirror the request body goes to the upstream connection without
// a copy (body.ts, direct): a body cut short, by the client leaving or by a framing
// error, must still reset that upstream connection: a truncated request left on a
// kept-alive connection would frame the next one (request smuggling).
for (const [name, head, part, end] of [
  ['the client leaves mid-body', 'Content-Length: 100', 'first-half', (s: net.Socket) => s.destroy()],
  ['a chunked body turns malformed mid-body', 'Transfer-Encoding: chunked', 'a\r\nfirst-half\r\n', (s: net.Socket) => s.write('zz\r\n')],
] as const) {
  t.test(`no retry, no mirror: ${name}: the upstream connection is closed, never reused`, async (t) => {
    let got = '';
    let connections = 0;
    let sawPart!: () => void;
    const partSeen = new Promise<void>((r) => { sawPart = r; });
    let upstreamClosed!: () => void;
    const closed = new Promise<void>((r) => { upstreamClosed = r; });
    const port = await tcpUpstream(t, (sock) => {
      connections++;
      sock.on('data', (d: Buffer) => { got += d.toString('latin1'); if (got.includes('first-half')) sawPart(); });
      sock.on('close', () => upstreamClosed());
    });
    const h = await startWaypoint(t, () => plan(port));
    const s = net.connect(h.port, '127.0.0.1');
    s.on('error', () => {});
    t.teardown(() => s.destroy());
    s.write(`POST /u HTTP/1.1\r\nHost: echo.demo\r\n${head}\r\n\r\n${part}`);
    await partSeen;
    end(s);
    const outcome = await Promise.race([closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('still open after 5 s'), 5000))]);
    t.equal(outcome, 'closed');
    t.equal(connections, 1);
    t.equal(got.match(/HTTP\/1\.1\r\n/g)?.length, 1, 'one request head only');
    t.comment(`upstream got ${got.length} bytes, then its connection was closed`);
  });
}

// Without the copy's PassThrough in between (body.ts, direct), the upstream connection
// pauses the client's request body itself: an upstream that stops reading must stop the
// waypoint reading from the client, not make it hold the body in memory.
t.test('no retry, no mirror: a request body to an upstream that stops reading is held back at the client, then crosses whole', async (t) => {
  const TOTAL = 96 * 1024 * 1024;
  const CHUNK = Buffer.alloc(1024 * 1024, 'w');
  let received = 0;
  let upstreamSock!: net.Socket;
  let bodyDone!: () => void;
  const whole = new Promise<void>((r) => { bodyDone = r; });
  const port = await tcpUpstream(t, (sock) => {
    upstreamSock = sock;
    sock.pause(); // reads nothing until told
    let head = true;
    sock.on('data', (d: Buffer) => {
      if (head) {
        const at = d.indexOf('\r\n\r\n');
        if (at < 0) return;
        head = false;
        d = d.subarray(at + 4);
      }
      received += d.length;
      if (received >= TOTAL) {
        sock.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
        bodyDone();
      }
    });
  });
  const h = await startWaypoint(t, () => plan(port));
  const s = net.connect(h.port, '127.0.0.1');
  s.on('error', () => {});
  t.teardown(() => s.destroy());
  await new Promise<void>((r) => s.once('connect', () => r()));
  s.write(`POST /big HTTP/1.1\r\nHost: echo.demo\r\nContent-Length: ${TOTAL}\r\n\r\n`);
  let sent = 0;
  const fill = () => {
    while (sent < TOTAL && s.writableLength < 4 * CHUNK.length) {
      s.write(CHUNK);
      sent += CHUNK.length;
    }
  };
  s.on('drain', fill);
  fill();
  // Until the client's bytes stop moving into the kernel: every buffer on the way is full.
  const inKernel = () => s.bytesWritten - s.writableLength;
  let last = -1;
  for (let still = 0; still < 5;) {
    await new Promise((r) => setTimeout(r, 100));
    still = inKernel() === last ? still + 1 : 0;
    last = inKernel();
  }
  t.ok(last < TOTAL / 2, `the client could hand over only ${(last / 1048576).toFixed(1)} MiB of ${TOTAL / 1048576} MiB while the upstream read nothing`);
  t.equal(received, 0);
  upstreamSock.resume();
  await whole;
  t.equal(received, TOTAL, 'then the whole body crossed');
  t.comment(`held back at ${(last / 1048576).toFixed(1)} MiB (socket buffers and stream buffers on the way)`);
});
