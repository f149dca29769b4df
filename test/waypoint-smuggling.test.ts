// Request smuggling and header abuse, written as raw bytes on a socket: the waypoint's
// strict parser must refuse each one (and forward nothing of it) rather than guess.
import t from 'tap';
import { until } from '../src/ztunnel/testing/sockets';
import { echoHandler, httpUpstream, plan, raw, startWaypoint } from './helpers/waypoint';

const statusOf = (reply: string) => Number(/^HTTP\/1\.1 (\d{3})/.exec(reply)?.[1] ?? 0);

/** Each case: bytes that a lenient parser could read two ways. */
const REFUSED: Array<[string, string, number]> = [
  ['Content-Length with Transfer-Encoding (CL.TE)',
    'POST / HTTP/1.1\r\nHost: echo.demo\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: echo.demo\r\n\r\n', 400],
  ['Transfer-Encoding with Content-Length (TE.CL)',
    'POST / HTTP/1.1\r\nHost: echo.demo\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n', 400],
  ['two differing Content-Lengths',
    'POST / HTTP/1.1\r\nHost: echo.demo\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\nhelloGET /smuggled HTTP/1.1\r\nHost: echo.demo\r\n\r\n', 400],
  ['Transfer-Encoding not ending in chunked',
    'POST / HTTP/1.1\r\nHost: echo.demo\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n', 400],
  ['obfuscated Transfer-Encoding',
    'POST / HTTP/1.1\r\nHost: echo.demo\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n', 501],
  ['a transfer coding other than chunked',
    'POST / HTTP/1.1\r\nHost: echo.demo\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 501],
  ['obs-fold (a header continued on the next line)',
    'GET / HTTP/1.1\r\nHost: echo.demo\r\nX-Folded: a\r\n b\r\n\r\n', 400],
  ['whitespace before the colon',
    'GET / HTTP/1.1\r\nHost: echo.demo\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n', 400],
  ['a NUL in a header value',
    'GET / HTTP/1.1\r\nHost: echo.demo\r\nX-Bad: a\0b\r\n\r\n', 400],
  ['bad chunk size',
    'POST / HTTP/1.1\r\nHost: echo.demo\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n', 400],
  ['no Host header', 'GET / HTTP/1.1\r\n\r\n', 400],
  ['headers larger than the limit',
    `GET / HTTP/1.1\r\nHost: echo.demo\r\nX-Big: ${'a'.repeat(20 * 1024)}\r\n\r\n`, 431],
  ['more header fields than the limit',
    `GET / HTTP/1.1\r\nHost: echo.demo\r\n${Array.from({ length: 120 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`, 431],
];

for (const [name, bytes, status] of REFUSED) {
  t.test(`refused: ${name}`, async (t) => {
    let complete = 0;
    const up = await httpUpstream(t, (req, res) => {
      req.resume();
      req.on('end', () => { complete++; res.end('upstream'); });
    });
    const h = await startWaypoint(t, () => plan(up.port));
    const reply = await raw(h.port, bytes);
    t.equal(statusOf(reply), status, reply.split('\r\n')[0]);
    t.match(reply, /connection: close/i, 'the connection is closed after a refusal');
    t.notOk(h.router.seen.some((f) => f.path === '/smuggled'), 'nothing smuggled reached the router');
    t.equal(complete, 0, 'no complete request reached the upstream');
    // A body refused after its head was handed over is reported when its exchange ends.
    await until(() => h.records.length > 0, 5000, 'the record');
    t.match(h.records.at(-1), { status, responseFlag: 'DPE' }, 'counted as a refused request');
  });
}

t.test('within the limits is fine: 100 header fields, 15 KiB of headers', async (t) => {
  const up = await httpUpstream(t, echoHandler());
  const h = await startWaypoint(t, () => plan(up.port));
  const many = `GET / HTTP/1.1\r\nHost: echo.demo\r\nConnection: close\r\n${Array.from({ length: 98 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`;
  t.equal(statusOf(await raw(h.port, many)), 200);
  const big = `GET / HTTP/1.1\r\nHost: echo.demo\r\nConnection: close\r\nX-Big: ${'a'.repeat(15 * 1024)}\r\n\r\n`;
  t.equal(statusOf(await raw(h.port, big)), 200);
});

t.test('limits come from config: maxHeaderCount 20 refuses 25 fields', async (t) => {
  const up = await httpUpstream(t, echoHandler());
  const h = await startWaypoint(t, () => plan(up.port), { config: { maxHeaderCount: 20 } });
  const req = `GET / HTTP/1.1\r\nHost: echo.demo\r\n${Array.from({ length: 24 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`;
  t.equal(statusOf(await raw(h.port, req)), 431);
  t.equal(h.dialer.count(up.port), 0);
  const refusals = h.log.lines.filter((l) => l.msg === 'refused an HTTP/1 request');
  t.ok(refusals.length >= 1, 'the refusal is logged');
});

t.test('a pipelined second request on a clean connection is served in order, not mixed', async (t) => {
  const up = await httpUpstream(t, echoHandler());
  const h = await startWaypoint(t, () => plan(up.port));
  const reply = await raw(h.port, 'POST /a HTTP/1.1\r\nHost: echo.demo\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\nHost: echo.demo\r\nConnection: close\r\n\r\n');
  const bodies = [...reply.matchAll(/\{.*?"url":"(\/[ab])".*?\}/g)].map((m) => m[1]);
  t.same(bodies, ['/a', '/b']);
  t.same(h.router.seen.map((f) => f.path), ['/a', '/b']);
});
