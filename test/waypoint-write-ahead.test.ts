// Writes that run ahead of the stream beneath (src/waypoint/write-ahead.ts,
// StreamSocket's writeAhead): they complete at once within the per-session and total
// bounds, wait for the inner stream beyond them, and give their bytes back when the
// inner stream writes them or the socket is destroyed. The stall they prevent is in
// test/waypoint-h2-both-ways.test.ts.
import t from 'tap';
import { Duplex } from 'node:stream';
import * as http2 from 'node:http2';
import type * as net from 'node:net';
import { WriteAhead } from '../src/waypoint/write-ahead';
import { StreamSocket } from '../src/waypoint/stream-socket';
import { waitFor } from './helpers/wait';

t.test('WriteAhead: within the session\'s bound and the total, or not at all', async (t) => {
  const w = new WriteAhead(100, 150);
  t.ok(w.take(0, 100), 'a session up to its bound');
  t.notOk(w.take(100, 1), 'not one byte past it');
  t.ok(w.take(0, 50), 'another session, up to the total');
  t.notOk(w.take(0, 1), 'the total is full');
  t.equal(w.inUse, 150);
  w.give(100);
  t.ok(w.take(0, 60));
  w.give(110);
  t.equal(w.inUse, 0);
});

/** An inner stream whose writes complete only when the test says so. */
function heldInner(): { inner: Duplex; held: Array<{ bytes: number; done: () => void }> } {
  const held: Array<{ bytes: number; done: () => void }> = [];
  const inner = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) { held.push({ bytes: chunk.length, done: () => cb() }); },
  });
  return { inner, held };
}

/** Writes `buf`; `done` turns true when its callback runs; resolves after a turn with whether it ran already (what "completes at once" means here). */
function completesNow(sock: StreamSocket, buf: Buffer, log: number[] = []): Promise<boolean> {
  return new Promise((resolve) => {
    let done = false;
    sock.write(buf, () => { done = true; log.push(buf.length); });
    setImmediate(() => resolve(done));
  });
}

const turn = () => new Promise((r) => setImmediate(r));

t.test('StreamSocket: writes run ahead within the bound, then wait for the inner stream; bytes come back in order', async (t) => {
  const budget = new WriteAhead(100, 1_000);
  const { inner, held } = heldInner();
  const sock = new StreamSocket(inner, { writeAhead: budget });
  const completed: number[] = [];
  t.ok(await completesNow(sock, Buffer.alloc(60), completed), '60 bytes: done before the inner stream wrote them');
  t.ok(await completesNow(sock, Buffer.alloc(40), completed), '40 more: still within 100');
  t.notOk(await completesNow(sock, Buffer.alloc(10), completed), 'past the bound: waits for the inner stream');
  t.equal(budget.inUse, 100);
  held[0]!.done();
  t.equal(budget.inUse, 40, 'the first write, written: its 60 bytes back');
  held[1]!.done();
  t.same(completed, [60, 40], 'the write past the bound still waits');
  held[2]!.done();
  await turn();
  t.same(completed, [60, 40, 10], 'and completes once the inner stream wrote it');
  t.same(held.map((h) => h.bytes), [60, 40, 10], 'the inner stream got the three writes, in order');
  t.equal(budget.inUse, 0);
  sock.destroy();
});

t.test('StreamSocket: what ran ahead goes back when the socket is destroyed, and late callbacks change nothing', async (t) => {
  const budget = new WriteAhead(100, 1_000);
  const { inner, held } = heldInner();
  const sock = new StreamSocket(inner, { writeAhead: budget });
  await completesNow(sock, Buffer.alloc(70));
  t.equal(budget.inUse, 70);
  sock.destroy();
  t.equal(budget.inUse, 0, 'given back at destroy');
  held[0]?.done();
  t.equal(budget.inUse, 0, 'a late callback gives nothing twice');
});

t.test('StreamSocket: end() finishes only once what ran ahead is written; a destroy meanwhile gives it back', async (t) => {
  const budget = new WriteAhead(100, 1_000);
  const { inner, held } = heldInner();
  const sock = new StreamSocket(inner, { writeAhead: budget });
  await completesNow(sock, Buffer.alloc(50));
  let finished = false;
  sock.once('finish', () => { finished = true; });
  sock.end();
  await new Promise((r) => setImmediate(r));
  t.notOk(finished, 'not finished while 50 bytes are ahead');
  held[0]!.done();
  await new Promise((r) => setImmediate(r));
  t.ok(finished, 'finished once the inner stream wrote them');

  const { inner: inner2 } = heldInner();
  const sock2 = new StreamSocket(inner2, { writeAhead: budget });
  await completesNow(sock2, Buffer.alloc(40));
  sock2.end();
  sock2.destroy();
  t.equal(budget.inUse, 0, 'ended, then destroyed with 40 ahead: all given back');
});

t.test('an HTTP/2 session destroyed over a StreamSocket with writes ahead: the stream beneath stays until they are written, or until the deadline', async (t) => {
  const session = (budget: WriteAhead) => {
    const { inner, held } = heldInner();
    const sock = new StreamSocket(inner, { writeAhead: budget });
    const s = http2.connect('http://x', { createConnection: () => sock as unknown as net.Socket });
    s.on('error', () => {});
    return { s, inner, held };
  };
  // The session's preface and SETTINGS run ahead of an inner stream that does not write them yet.
  const a = session(new WriteAhead(1_000, 10_000));
  await new Promise((r) => setImmediate(r));
  t.ok(a.held.length > 0, 'the preface ran ahead');
  a.s.destroy();
  await new Promise((r) => setTimeout(r, 20));
  t.notOk(a.inner.destroyed, 'Node ends the socket first: the bytes ahead are not dropped');
  for (const h of a.held) h.done();
  await waitFor('the stream beneath destroyed once written', () => a.inner.destroyed, { timeoutMs: 5_000 });

  const b = session(new WriteAhead(1_000, 10_000, 50));
  await new Promise((r) => setImmediate(r));
  b.s.destroy();
  await waitFor('the stream beneath destroyed at the deadline, though nothing was written', () => b.inner.destroyed, { timeoutMs: 5_000 });
});

t.test('StreamSocket without writeAhead: a write completes when the inner stream\'s does', async (t) => {
  const { inner, held } = heldInner();
  const sock = new StreamSocket(inner);
  const completed: number[] = [];
  t.notOk(await completesNow(sock, Buffer.alloc(10), completed), 'not before the inner stream wrote it');
  held[0]!.done();
  await turn();
  t.same(completed, [10], 'once it did');
  sock.destroy();
});
