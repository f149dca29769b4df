// Pure parts of the waypoint's L7 path: header work, the config edge, the replay buffer.
import t from 'tap';
import { PassThrough } from 'node:stream';
import { ReplayableBody } from '../src/waypoint/body';
import { DEFAULT_L7_CONFIG, validateL7Config } from '../src/waypoint/config';
import { splitTarget } from '../src/waypoint/exchange';
import { addForwarded, applyHeaderEdits, forwardedFor, stripHopByHop } from '../src/waypoint/headers';
import { isWeftError } from '../src/lib/errors';

t.test('stripHopByHop: fixed hop-by-hop names, names listed in Connection, pseudo-headers; te keeps only trailers', async (t) => {
  const h = stripHopByHop({
    connection: 'close, X-Listed', 'x-listed': '1', 'keep-alive': 'timeout=5', 'proxy-connection': 'x', 'transfer-encoding': 'chunked',
    upgrade: 'websocket', 'http2-settings': 'AA', te: 'gzip, trailers', ':path': '/', 'x-app': 'kept',
  }, { keepTeTrailers: true });
  t.same(h, { te: 'trailers', 'x-app': 'kept' });
  t.same(stripHopByHop({ te: 'gzip' }, { keepTeTrailers: true }), {}, 'te without trailers goes');
  t.same(stripHopByHop({ te: 'trailers' }), {}, 'te goes unless asked to keep trailers');
  t.same(stripHopByHop({ connection: 'Upgrade', upgrade: 'websocket', 'x-a': '1' }, { keepUpgrade: true }), { connection: 'upgrade', upgrade: 'websocket', 'x-a': '1' });
});

t.test('applyHeaderEdits: set replaces, add appends, remove deletes, names case-insensitive', async (t) => {
  const h = applyHeaderEdits({ 'x-a': 'old', 'x-b': 'one', 'x-c': 'bye' }, {
    set: [{ name: 'X-A', value: 'new' }], add: [{ name: 'X-B', value: 'two' }, { name: 'x-new', value: 'n' }], remove: ['X-C'],
  });
  t.same(h, { 'x-a': 'new', 'x-b': ['one', 'two'], 'x-new': 'n' });
  t.same(applyHeaderEdits({ a: '1' }, undefined), { a: '1' });
});

t.test('forwarded: RFC 7239 node syntax, appended to what came', async (t) => {
  t.equal(forwardedFor({ address: '10.0.0.1', port: 3456 }), 'for="10.0.0.1:3456"');
  t.equal(forwardedFor({ address: 'fd00::1', port: 80 }), 'for="[fd00::1]:80"');
  const h: Record<string, string | string[] | undefined> = { forwarded: 'for="1.2.3.4:1"', 'x-forwarded-for': '1.2.3.4' };
  addForwarded(h, { address: '10.0.0.1', port: 5 });
  t.equal(h.forwarded, 'for="1.2.3.4:1", for="10.0.0.1:5"');
  t.equal(h['x-forwarded-for'], '1.2.3.4, 10.0.0.1');
  t.equal(h['x-forwarded-proto'], 'http');
});

t.test('splitTarget: origin-form, absolute-form, asterisk', async (t) => {
  t.same(splitTarget('/a/b?x=1&y'), { path: '/a/b', query: 'x=1&y' });
  t.same(splitTarget('/'), { path: '/', query: '' });
  t.same(splitTarget('http://echo.demo/p?q'), { path: '/p', query: 'q' });
  t.same(splitTarget('*'), { path: '*', query: '' });
});

t.test('config: defaults, and every field refused out of bounds by name', async (t) => {
  t.same(validateL7Config(), DEFAULT_L7_CONFIG);
  t.ok(Object.isFrozen(validateL7Config({ maxHeaderCount: 50 })));
  t.equal(validateL7Config({ retryBufferBytes: 0 }).retryBufferBytes, 0);
  for (const field of Object.keys(DEFAULT_L7_CONFIG)) {
    for (const bad of [-1, 1.5, 'x', 1e12]) {
      try {
        validateL7Config({ [field]: bad });
        t.fail(`${field}=${bad} accepted`);
      } catch (err) {
        t.ok(isWeftError(err, 'WEFT_CONFIG_INVALID') && (err as Error).message.includes(field), `${field}=${bad} refused by name`);
      }
    }
  }
  t.throws(() => validateL7Config({ nope: 1 } as never), /unknown field "nope"/);
});

t.test('ReplayableBody: a retry replays the kept copy then the live rest; past the cap it is not replayable', async (t) => {
  const src = new PassThrough();
  const body = new ReplayableBody(src, 10);
  const first = body.open();
  const got1: Buffer[] = [];
  first.on('data', (c: Buffer) => got1.push(c));
  src.write('abc');
  await new Promise((r) => setImmediate(r));
  const second = body.open();
  const got2: Buffer[] = [];
  second.on('data', (c: Buffer) => got2.push(c));
  src.end('def');
  await new Promise((r) => second.on('end', r));
  t.equal(Buffer.concat(got1).toString(), 'abc', 'the abandoned attempt got no more');
  t.equal(Buffer.concat(got2).toString(), 'abcdef');
  t.equal((await body.complete())?.toString(), 'abcdef');
  const big = new PassThrough();
  const capped = new ReplayableBody(big, 4);
  capped.open().resume();
  big.end('0123456789');
  await new Promise((r) => setImmediate(r));
  t.notOk(capped.replayable);
  t.equal(await capped.complete(), undefined, 'no copy for mirrors either');
  t.equal(capped.bytes, 10);
});

t.test('ReplayableBody, direct: with nothing to keep the attempt reads the source itself, counted, replayable until its first byte', async (t) => {
  const src = new PassThrough();
  const body = new ReplayableBody(src, 0, true);
  const first = body.open();
  t.equal(first, src, 'no stream in between');
  t.ok(body.replayable, 'nothing read yet');
  body.detach();
  const second = body.open();
  t.equal(second, src, 'handed again (a stale pooled connection retried before any byte)');
  const got: Buffer[] = [];
  second.on('data', (c: Buffer) => got.push(c));
  src.write('abc');
  await new Promise((r) => setImmediate(r));
  t.same(got, [], 'handed paused: nothing flows before the reader resumes it');
  second.resume();
  src.end('def');
  await new Promise((r) => src.on('end', r));
  t.equal(Buffer.concat(got).toString(), 'abcdef');
  t.equal(body.bytes, 6);
  t.notOk(body.replayable, 'read: no copy, so no retry');
  t.equal(await body.complete(), undefined, 'no copy for mirrors either');
  const kept = new ReplayableBody(new PassThrough(), 10, true);
  t.not(kept.open(), src, 'a body that keeps a copy for a retry still gets a reader of its own');
});
