// The waypoint's own HTTP/1.1 wire code, byte level: the strict head parser, framing
// decisions and the streaming body decoder. Each smuggling vector here is one a lenient
// parser reads two ways; each must be refused by its own check.
import t from 'tap';
import { BodyDecoder } from '../src/waypoint/http1-body';
import { HeadError, framingOf, parseHead, type HeadLimits } from '../src/waypoint/http1-head';

const L: HeadLimits = { maxHeaderBytes: 16 * 1024, maxHeaderCount: 100 };
const b = (s: string) => Buffer.from(s, 'latin1');
const req = (s: string, limits = L) => parseHead(b(s), 'request', limits);
const status = (fn: () => unknown): number | undefined => {
  try {
    fn();
  } catch (err) {
    if (err instanceof HeadError) return err.status;
    throw err;
  }
  return undefined;
};

t.test('a request head: method, target, version, lower-case names, repeats joined, size', async (t) => {
  const text = 'POST /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\nSet-Cookie: a\r\nSet-Cookie: b\r\nContent-Length: 3\r\n\r\nabc';
  const h = req(text)!;
  t.match(h, { method: 'POST', target: '/a?b=1', minor: 1, count: 6, size: text.length - 3 });
  t.same(h.headers, { host: 'x', 'x-a': '1, 2', 'set-cookie': ['a', 'b'], 'content-length': '3' });
  t.same(framingOf(h, 'request'), { kind: 'length', length: 3 });
  t.equal(req('GET / HTTP/1.1\r\nHost: x\r\n'), undefined, 'incomplete: no final empty line yet');
  t.equal(req('GET / HTTP/1.0\r\n\r\n')!.minor, 0);
});

t.test('header names that are Object.prototype members are plain headers', async (t) => {
  const h = req('GET / HTTP/1.1\r\nHost: x\r\nConstructor: a\r\n__proto__: b\r\ntoString: c\r\n\r\n')!;
  t.equal(h.headers['constructor'], 'a');
  t.equal(h.headers['__proto__'], 'b');
  t.equal(h.headers['tostring'], 'c');
  t.same(Object.keys(h.headers).sort(), ['__proto__', 'constructor', 'host', 'tostring']);
});

t.test('a response head: status, framing by method and status', async (t) => {
  const r = (s: string) => parseHead(b(s), 'response', L)!;
  t.equal(r('HTTP/1.1 204 No Content\r\n\r\n').status, 204);
  t.equal(r('HTTP/1.1 200\r\n\r\n').status, 200, 'a missing reason phrase is accepted');
  t.same(framingOf(r('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n'), 'response', 'HEAD'), { kind: 'none' }, 'HEAD');
  t.same(framingOf(r('HTTP/1.1 304 x\r\ncontent-length: 5\r\n\r\n'), 'response', 'GET'), { kind: 'none' }, '304');
  t.same(framingOf(r('HTTP/1.1 200 OK\r\n\r\n'), 'response', 'GET'), { kind: 'close' }, 'no framing: until close');
  t.same(framingOf(r('HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n'), 'response', 'GET'), { kind: 'chunked' });
  t.equal(status(() => parseHead(b('HTTP/1.1 20 OK\r\n\r\n'), 'response', L)), 502, 'a malformed status line');
});

/** Vectors: [name, head, status]; the head parses or frames to a refusal. */
const VECTORS: Array<[string, string, number]> = [
  ['CL.TE', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n', 400],
  ['TE.CL', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n', 400],
  ['differing Content-Lengths', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 40\r\n\r\n', 400],
  ['a Content-Length list that disagrees', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\n', 400],
  ['a signed Content-Length', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n', 400],
  ['a hex Content-Length', 'POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x5\r\n\r\n', 400],
  ['Transfer-Encoding not ending in chunked', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n', 501],
  ['obfuscated Transfer-Encoding', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n', 501],
  ['a coding besides chunked', 'POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n', 501],
  ['obs-fold', 'GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n', 400],
  ['whitespace before the colon', 'GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n', 400],
  ['a NUL in a value', 'GET / HTTP/1.1\r\nHost: x\r\nX-Bad: a\0b\r\n\r\n', 400],
  ['a bare LF ending a header line', 'GET / HTTP/1.1\r\nHost: x\nTransfer-Encoding: chunked\r\n\r\n', 400],
  ['a bare CR inside a value', 'GET / HTTP/1.1\r\nHost: x\rX: y\r\n\r\n', 400],
  ['a space in the request target', 'GET /a b HTTP/1.1\r\nHost: x\r\n\r\n', 400],
  ['an unknown version', 'GET / HTTP/1.2\r\nHost: x\r\n\r\n', 400],
  ['a field name with a separator', 'GET / HTTP/1.1\r\nHost: x\r\nX(y): 1\r\n\r\n', 400],
];

for (const [name, head, want] of VECTORS) {
  t.test(`refused: ${name} (${want})`, async (t) => {
    t.equal(status(() => framingOf(req(head)!, 'request')), want);
  });
}

t.test('limits: head size and field count give 431, also before the head is complete', async (t) => {
  const small: HeadLimits = { maxHeaderBytes: 1024, maxHeaderCount: 10 };
  t.equal(status(() => req(`GET / HTTP/1.1\r\nX: ${'a'.repeat(2000)}\r\n\r\n`, small)), 431);
  t.equal(status(() => req(`GET / HTTP/1.1\r\nX: ${'a'.repeat(2000)}`, small)), 431, 'an unterminated head past the limit');
  t.equal(status(() => req(`GET / HTTP/1.1\r\n${'X: 1\r\n'.repeat(11)}\r\n`, small)), 431);
  t.ok(req(`GET / HTTP/1.1\r\n${'X: 1\r\n'.repeat(10)}\r\n`, small), 'exactly at the count limit');
});

/** Feeds `parts` one by one; returns the body, trailers, and the bytes left after it. */
function decode(framing: ConstructorParameters<typeof BodyDecoder>[0], parts: string[]): { body: string; done: boolean; rest: string; trailers: unknown } {
  const d = new BodyDecoder(framing, L);
  let body = '';
  let rest = '';
  for (const p of parts) {
    const buf = b(p);
    const used = d.feed(buf, (c) => { body += c.toString('latin1'); });
    rest += buf.subarray(used).toString('latin1');
  }
  return { body, done: d.done, rest, trailers: d.trailers };
}

t.test('body: Content-Length stops at its length; the rest is the next message', async (t) => {
  t.same(decode({ kind: 'length', length: 5 }, ['hel', 'loGET /']), { body: 'hello', done: true, rest: 'GET /', trailers: undefined });
});

t.test('body: chunked, split anywhere, with extensions and trailers', async (t) => {
  const whole = '5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT';
  for (let cut = 1; cut < whole.length; cut++) {
    const r = decode({ kind: 'chunked' }, [whole.slice(0, cut), whole.slice(cut)]);
    t.same(r, { body: 'hello world', done: true, rest: 'NEXT', trailers: { 'x-t': '1' } }, `split at ${cut}`);
  }
  t.same(decode({ kind: 'chunked' }, ['0\r\n\r\n']), { body: '', done: true, rest: '', trailers: undefined });
});

t.test('body: close-delimited ends only with the connection', async (t) => {
  const d = new BodyDecoder({ kind: 'close' }, L);
  d.feed(b('abc'), () => {});
  t.notOk(d.done);
  t.ok(d.close(), 'the close ends it');
  const cut = new BodyDecoder({ kind: 'length', length: 5 }, L);
  cut.feed(b('ab'), () => {});
  t.notOk(cut.close(), 'a sized body cut short is not complete');
});

const BAD_CHUNKS: Array<[string, string]> = [
  ['a negative size', '-5\r\nhello\r\n0\r\n\r\n'],
  ['a size with a 0x prefix', '0x5\r\nhello\r\n0\r\n\r\n'],
  ['a size too large to be exact', 'fffffffffffffff\r\n'],
  ['a bare LF after the size', '5\nhello\r\n0\r\n\r\n'],
  ['data longer than its size', '3\r\nhello\r\n0\r\n\r\n'],
  ['data not followed by CRLF', '5\r\nhelloXY0\r\n\r\n'],
  ['a size line beyond the bound', `5;${'e'.repeat(2000)}\r\nhello\r\n`],
  ['a malformed trailer', '0\r\nX-T : 1\r\n\r\n'],
];

for (const [name, bytes] of BAD_CHUNKS) {
  t.test(`chunked refused: ${name}`, async (t) => {
    t.equal(status(() => decode({ kind: 'chunked' }, [bytes])), 400);
  });
}
