// dialTcp (src/mesh/dial.ts) cancelled by onClose(stream): the ztunnel's inbound cancels
// a dial when the peer resets its CONNECT stream. A plain TCP server on loopback.
import t from 'tap';
import * as net from 'node:net';
import { EventEmitter } from 'node:events';
import { defaultUpstreamFactory, dialTcp, onClose } from '../src/mesh/dial';

/** Stands for an HTTP/2 stream: `closed` and a 'close' event. */
class FakeStream extends EventEmitter {
  closed = false;
  destroyed = false;
  close(): void {
    this.closed = true;
    this.emit('close');
  }
}

t.test('closing the stream cancels a dial under way: the socket is destroyed, reason cancelled', async (t) => {
  const held: net.Socket[] = [];
  // A socket that never connects: the dial stays under way until cancelled.
  const factory = () => { const s = new net.Socket(); held.push(s); return s; };
  const stream = new FakeStream();
  const dial = dialTcp(factory, { ip: '127.0.0.1', port: 9 }, 10_000, onClose(stream));
  stream.close();
  await t.rejects(dial, { code: 'WEFT_HBONE_UPSTREAM_UNREACHABLE', details: { reason: 'cancelled' } });
  t.ok(held[0]!.destroyed, 'the dialling socket is destroyed');
  t.equal(stream.listenerCount('close'), 0, 'no listener left on the stream');
});

t.test('a stream already closed is not dialled for', async (t) => {
  let dialled = 0;
  const stream = new FakeStream();
  stream.close();
  await t.rejects(dialTcp(() => { dialled++; return new net.Socket(); }, { ip: '127.0.0.1', port: 9 }, 10_000, onClose(stream)),
    { code: 'WEFT_HBONE_UPSTREAM_UNREACHABLE', details: { reason: 'cancelled' } });
  t.equal(dialled, 0);
});

t.test('a dial that connects leaves no listener on the stream; a later close does nothing to the socket', async (t) => {
  const server = net.createServer((s) => s.end());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => server.close());
  const stream = new FakeStream();
  const sock = await dialTcp(defaultUpstreamFactory, { ip: '127.0.0.1', port: (server.address() as net.AddressInfo).port }, 10_000, onClose(stream));
  t.equal(stream.listenerCount('close'), 0);
  stream.close();
  t.notOk(sock.destroyed);
  sock.destroy();
});
