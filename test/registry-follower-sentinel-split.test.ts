/**
 * The follower's two connections (snapshot and stream reader) each ask the Sentinels
 * for the primary. During a failover they can be told different servers; the follower
 * must then connect again rather than load (or check) its position on one server and
 * read the change stream from the other, which mixes two registries' changes.
 *
 * The Sentinel here is a stand-in speaking just the two commands ioredis sends: its
 * first answer names server B, every later one server A (the failover settling), so
 * the follower's first pair of connections is split. Both servers are real Redis.
 */
import t from 'tap';
import { createServer, type Socket } from 'node:net';
import { Redis } from 'ioredis';
import { freePort, startRedis } from './helpers/redis';
import { waitFor } from './helpers/wait';
import { RegistryStore } from '../src/registry/store';
import { RegistryFollower } from '../src/registry/follower';
import { MeshState } from '../src/registry/state';
import { namespaceRecord, workloadRecord } from '../src/registry/fixtures';

/** RESP arrays of bulk strings in, one reply per command out; `answer` names the primary. */
async function fakeSentinel(answer: () => number): Promise<{ port: number; asked: () => number; close(): Promise<void> }> {
  const port = await freePort();
  let asked = 0;
  const sockets = new Set<Socket>();
  const bulk = (s: string) => `$${Buffer.byteLength(s)}\r\n${s}\r\n`;
  const server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => sock.destroy());
    let buf = '';
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      for (;;) {
        const lines = buf.split('\r\n');
        const n = Number(lines[0]?.slice(1));
        if (!lines[0]?.startsWith('*') || lines.length < 1 + 2 * n + 1) return;
        const args = Array.from({ length: n }, (_, i) => lines[2 + 2 * i]!.toLowerCase());
        buf = lines.slice(1 + 2 * n).join('\r\n');
        if (args[0] === 'sentinel' && args[1] === 'get-master-addr-by-name') {
          asked++;
          sock.write(`*2\r\n${bulk('127.0.0.1')}${bulk(String(answer()))}`);
        } else if (args[0] === 'sentinel') {
          sock.write('*0\r\n');
        } else {
          sock.write('+OK\r\n');
        }
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', () => resolve()));
  return {
    port,
    asked: () => asked,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
}

t.test('connections named different primaries are made again, never mixed', async (t) => {
  const [a, b] = await Promise.all([startRedis(), startRedis()]);
  t.teardown(() => Promise.all([a.stop(), b.stop()]));
  const storeA = RegistryStore.connect(a.url);
  const storeB = RegistryStore.connect(b.url);
  t.teardown(() => Promise.all([storeA.close(), storeB.close()]));

  // A: one change. B: the same epoch (as a replica has) and two other changes, written
  // later, so B's stream ids are past A's and its revision one ahead.
  await storeA.apply([
    { op: 'put', kind: 'namespace', record: namespaceRecord('demo') },
    { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'on-a', node: 'n1', addresses: ['10.0.0.1'] }) },
  ]);
  const adminA = new Redis(a.url);
  const adminB = new Redis(b.url);
  t.teardown(() => { adminA.disconnect(); adminB.disconnect(); });
  await adminB.set('weft:epoch', (await adminA.get('weft:epoch'))!);
  await storeB.apply([
    { op: 'put', kind: 'namespace', record: namespaceRecord('demo') },
    { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'on-b', node: 'n1', addresses: ['10.0.0.2'] }) },
  ]);
  await storeB.put('workload', workloadRecord({ namespace: 'demo', name: 'on-b-later', node: 'n1', addresses: ['10.0.0.3'] }));

  let answers = 0;
  const sentinel = await fakeSentinel(() => (answers++ === 0 ? b.port : a.port));
  t.teardown(() => sentinel.close());

  const state = new MeshState({ trustDomain: 'cluster.local' });
  const follower = new RegistryFollower({
    url: { url: 'redis://127.0.0.1:1', sentinel: { addresses: [{ host: '127.0.0.1', port: sentinel.port }], masterName: 'weft-registry' } },
    state, blockMs: 200, timeoutMs: 1000, maxBackoffMs: 200,
  });
  t.teardown(() => follower.stop());
  await follower.start();

  // A change on A reaches the view only if the stream reader is on A too.
  await storeA.put('workload', workloadRecord({ namespace: 'demo', name: 'on-a-later', node: 'n1', addresses: ['10.0.0.4'] }));
  await waitFor('follower has the later change on A', () => state.workloadByAddress('10.0.0.4') !== undefined);
  t.ok(state.workloadByAddress('10.0.0.1'), 'A\'s snapshot');
  t.notOk(state.workloadByAddress('10.0.0.2'), 'nothing of B\'s snapshot');
  t.notOk(state.workloadByAddress('10.0.0.3'), 'nothing of B\'s stream');
  t.equal(state.revision, await storeA.revision(), 'at A\'s revision');
  t.ok(sentinel.asked() >= 4, 'the first, split pair was asked again');
});
