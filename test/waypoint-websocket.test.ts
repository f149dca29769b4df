// WebSocket through the waypoint: the HTTP/1.1 Upgrade handshake forwarded upstream,
// then frames both ways. The RFC 6455 pieces are hand-made (accept key, small frames).
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import * as http from 'node:http';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { StreamSocket } from '../src/waypoint/stream-socket';
import { realClock } from '../src/lib/clock';
import { validateFaults } from '../src/resilience/fault-spec';
import { validateRateLimit } from '../src/resilience/rate-limit-spec';
import { validateLoadShedding } from '../src/resilience/shedding-spec';
import type { TrafficPolicySpec } from '../src/resilience/spec';
import { Admission } from '../src/waypoint/admission';
import { connectStream, httpUpstream, plan, startWaypoint } from './helpers/waypoint';
import { waitFor } from './helpers/wait';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const acceptOf = (key: string) => createHash('sha1').update(key + GUID).digest('base64');

/** A text frame with payload < 126 bytes; masked as a client must send it. */
function frame(text: string, masked: boolean): Buffer {
  const payload = Buffer.from(text);
  const mask = masked ? Buffer.from([1, 2, 3, 4]) : Buffer.alloc(0);
  const body = masked ? payload.map((b, i) => b ^ mask[i % 4]!) : payload;
  return Buffer.concat([Buffer.from([0x81, (masked ? 0x80 : 0) | payload.length]), mask, Buffer.from(body)]);
}

function unframe(buf: Buffer): string {
  const len = buf[1]! & 0x7f;
  const masked = (buf[1]! & 0x80) !== 0;
  const mask = masked ? buf.subarray(2, 6) : undefined;
  const payload = buf.subarray(masked ? 6 : 2, (masked ? 6 : 2) + len);
  return Buffer.from(mask ? payload.map((b, i) => b ^ mask[i % 4]!) : payload).toString();
}

/** An upstream WebSocket echo server: answers the handshake, then echoes each frame unmasked. */
async function wsUpstream(t: Test) {
  const seen: http.IncomingHttpHeaders[] = [];
  const up = await httpUpstream(t, (_req, res) => res.writeHead(426).end('upgrade required'));
  up.server.on('upgrade', (req: http.IncomingMessage, sock: Duplex, head: Buffer) => {
    seen.push(req.headers);
    if (req.url === '/forbidden') return void sock.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 7\r\n\r\ndenied!');
    sock.write(`HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: ${acceptOf(req.headers['sec-websocket-key'] as string)}\r\n\r\n`);
    const echo = (d: Buffer) => { if (d.length) sock.write(frame(`echo ${unframe(d)}`, false)); };
    echo(head);
    sock.on('data', echo);
    sock.on('end', () => sock.end());
    sock.on('error', () => {});
  });
  return { port: up.port, seen };
}

interface Handshake { status: number; headers: http.IncomingHttpHeaders; socket?: Duplex; head?: Buffer; body?: string }

/** Sends the opening handshake; resolves with the 101 and its socket, or the refusal. */
function open(port: number, path = '/chat', extra: Record<string, string> = {}, createConnection?: () => Duplex): Promise<Handshake> {
  const key = Buffer.from('0123456789abcdef').toString('base64');
  return new Promise((resolve, reject) => {
    const req = http.request({
      // Node ignores createConnection unless `agent` is left out entirely.
      host: '127.0.0.1', port, path, ...(createConnection ? { createConnection: createConnection as never } : { agent: false }),
      headers: { host: 'echo.demo', connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': key, ...extra },
    });
    req.on('upgrade', (res, socket, head) => resolve({ status: res.statusCode!, headers: res.headers, socket, head }));
    req.on('response', (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function nextMessage(sock: Duplex): Promise<string> {
  return new Promise((r) => sock.once('data', (d: Buffer) => r(unframe(d))));
}

t.test('the handshake goes upstream and frames flow both ways; a close crosses', async (t) => {
  const up = await wsUpstream(t);
  const h = await startWaypoint(t, () => plan(up.port));
  const hs = await open(h.port);
  t.equal(hs.status, 101);
  t.equal(hs.headers['sec-websocket-accept'], acceptOf(Buffer.from('0123456789abcdef').toString('base64')), 'the upstream answered the key');
  t.equal(up.seen[0]!.upgrade, 'websocket');
  t.match(up.seen[0]!.connection, /upgrade/i);
  t.match(up.seen[0]!.forwarded, /^for="127\.0\.0\.1:\d+"$/);
  t.ok(up.seen[0]!.traceparent);
  const sock = hs.socket!;
  for (const m of ['one', 'two']) {
    sock.write(frame(m, true));
    t.equal(await nextMessage(sock), `echo ${m}`);
  }
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  sock.end();
  await closed;
  while (h.records.length === 0) await new Promise((r) => setTimeout(r, 5));
  t.match(h.records[0], { status: 101, route: 'demo/echo', attempts: 1, upstream: `127.0.0.1:${up.port}` });
});

t.test('an upstream that declines the upgrade has its answer relayed', async (t) => {
  const up = await wsUpstream(t);
  const h = await startWaypoint(t, () => plan(up.port));
  const hs = await open(h.port, '/forbidden');
  t.equal(hs.status, 403);
  t.equal(hs.body, 'denied!');
});

t.test('the router decides upgrades too: a direct 404, and 503 for a dead upstream', async (t) => {
  const h = await startWaypoint(t, (f) => (f.path === '/none' ? { kind: 'respond', status: 404, body: 'no route\n' } : plan(1)));
  const a = await open(h.port, '/none');
  t.equal(a.status, 404);
  t.equal(a.body, 'no route\n');
  const b = await open(h.port, '/dead');
  t.equal(b.status, 503);
});

t.test('upgrades other than websocket are refused', async (t) => {
  const h = await startWaypoint(t, () => plan(1));
  const reply = await new Promise<string>((resolve) => {
    const s = net.connect(h.port, '127.0.0.1');
    let got = '';
    s.on('data', (c) => { got += c; });
    s.on('close', () => resolve(got));
    s.write('GET / HTTP/1.1\r\nHost: echo.demo\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n');
  });
  t.match(reply, /^HTTP\/1\.1 400 /);
  t.equal(h.router.seen.length, 0);
});

/** Admission whose policy for demo/echo is `spec`. */
function admissionOf(spec: Omit<TrafficPolicySpec, 'targetRefs'>): Admission {
  const full: TrafficPolicySpec = { targetRefs: [{ group: '', kind: 'Service', name: 'echo' }], ...spec };
  return new Admission({ policies: { forService: (ns, name) => (ns === 'demo' && name === 'echo' ? full : undefined) }, clock: realClock });
}

t.test('a TrafficPolicy rate limit applies to upgrades: an Upgrade header is no way around it', async (t) => {
  const up = await wsUpstream(t);
  const h = await startWaypoint(t, () => plan(up.port), { admission: admissionOf({ rateLimit: validateRateLimit({ requestsPerSecond: 0.1, burst: 1 }, 'r', 'reject') }) });
  const first = await open(h.port);
  t.equal(first.status, 101);
  first.socket!.destroy();
  const second = await open(h.port);
  t.equal(second.status, 429);
  // One token per 10 s: 10 s less the (under a loaded CI, perhaps several seconds) between the two handshakes.
  t.match(second.headers['retry-after'], /^([1-9]|10)$/, 'retry-after: whole seconds until the next token');
  t.equal(up.seen.length, 1, 'the refused handshake never went upstream');
  t.match(h.records.find((r) => r.status === 429), { responseFlag: 'RL' });
});

t.test('a fault abort applies to upgrades', async (t) => {
  const up = await wsUpstream(t);
  const h = await startWaypoint(t, () => plan(up.port), { admission: admissionOf({ faults: validateFaults({ abort: { httpStatus: 503, percentage: 100 } }, 'f', 'reject') }) });
  const hs = await open(h.port);
  t.equal(hs.status, 503);
  t.equal(hs.body, 'fault filter abort\n');
  t.equal(up.seen.length, 0);
  t.match(h.records[0], { status: 503, responseFlag: 'FI' });
});

t.test('an upgrade holds a concurrency slot only until its handshake settles, on each path', async (t) => {
  const up = await wsUpstream(t);
  const admission = admissionOf({ loadShedding: validateLoadShedding({ minLimit: 1, maxLimit: 1 }, 's', 'reject') });
  const h = await startWaypoint(t, (f) => (f.path === '/dead' ? plan(1) : plan(up.port)), { admission });
  const inFlight = () => admission.views()[0]!.concurrency!.inFlight;
  const a = await open(h.port);
  t.equal(a.status, 101);
  t.equal(inFlight(), 0, 'the 101 gave the slot back while the connection stays open');
  const b = await open(h.port, '/forbidden');
  t.equal(b.status, 403);
  t.equal(inFlight(), 0, 'a declined upgrade gave it back');
  const c = await open(h.port, '/dead');
  t.equal(c.status, 503);
  t.equal(inFlight(), 0, 'an unreachable upstream gave it back');
  const d = await open(h.port);
  t.equal(d.status, 101, 'the one slot is free for the next handshake');
  a.socket!.destroy();
  d.socket!.destroy();
});

t.test('WebSocket inside an HTTP/2 CONNECT stream (HBONE shape)', async (t) => {
  const up = await wsUpstream(t);
  const h = await startWaypoint(t, () => plan(up.port), { viaConnect: true });
  const tunnel = new StreamSocket(await connectStream(t, h.port));
  const hs = await open(h.port, '/chat', {}, () => tunnel);
  t.equal(hs.status, 101);
  hs.socket!.write(frame('via hbone', true));
  t.equal(await nextMessage(hs.socket!), 'echo via hbone');
  hs.socket!.destroy();
});

t.test('a client reset while the upstream is dialled: nothing goes upstream, the record is DC (once), no upstream socket left open', async (t) => {
  const up = await wsUpstream(t);
  const h = await startWaypoint(t, () => plan(up.port));
  let release!: () => void;
  const gate = new Promise<void>((r) => { release = r; });
  const dial = h.dialer.dial.bind(h.dialer);
  let dialing!: () => void;
  const dialStarted = new Promise<void>((r) => { dialing = r; });
  h.dialer.dial = async (target) => { dialing(); await gate; return dial(target); };
  const client = net.connect(h.port, '127.0.0.1');
  client.on('error', () => {});
  client.write('GET /chat HTTP/1.1\r\nhost: echo.demo\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: MDEyMzQ1Njc4OWFiY2RlZg==\r\n\r\n');
  await dialStarted;
  // A reset (a half-close leaves the downstream open: it is a half-open stream, as HBONE's are).
  client.resetAndDestroy();
  await waitFor('the waypoint saw the client leave', () => h.l7.load().downstream === 0);
  release();
  await waitFor('the request is recorded', () => h.records.length > 0);
  t.match(h.records[0], { status: 0, responseFlag: 'DC' });
  t.equal(up.seen.length, 0, 'no handshake sent for a client that left');
  t.equal(h.records.length, 1);
});
