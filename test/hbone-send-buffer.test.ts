// The HBONE sockets' kernel send buffer (src/hbone/send-buffer.ts): the native helper
// sets it with SO_SNDBUFFORCE on real loopback sockets; every way it cannot is an
// outcome, never a throw; the first miss in a process is logged with what to do.
// The stall it prevents is shown end to end in test/e2e/hbone-bulk-both-ways.test.ts.
import t, { type Test } from 'tap';
import * as net from 'node:net';
import { once } from 'node:events';
import { loadSendBufferHelper, raiseHboneSendBuffer, raiseSendBuffer } from '../src/hbone/send-buffer';
import { DEFAULT_HBONE_TUNING, hboneTuning, sendBufferFor } from '../src/hbone/settings';
import { hasCapNetAdmin } from './helpers/netns';
import { LogLines } from './helpers/log-lines';
import { createLogger } from '../src/lib/log';

const MiB = 1024 * 1024;

async function loopbackPair(t: Test): Promise<{ client: net.Socket; accepted: net.Socket }> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const [accepted] = (await once(server, 'connection')) as [net.Socket];
  await once(client, 'connect');
  t.teardown(() => { client.destroy(); accepted.destroy(); server.close(); });
  return { client, accepted };
}

t.test('the native helper raises both ends of a real connection past the tuning\'s 16 MiB connection window (the kernel doubles it)', { skip: !hasCapNetAdmin() && 'SO_SNDBUFFORCE needs CAP_NET_ADMIN' }, async (t) => {
  const raise = loadSendBufferHelper() ?? null;
  // CI has a compiler: a missing helper is a failure there, not a skip.
  t.ok(raise, 'native/build/weft_send_buffer.node is built (npm run build)');
  const { client, accepted } = await loopbackPair(t);
  for (const [side, s] of [['dialled', client], ['accepted', accepted]] as const) {
    const out = raiseSendBuffer(s, DEFAULT_HBONE_TUNING.sendBuffer, raise);
    // Far above net.core.wmem_max, where plain SO_SNDBUF would have been capped.
    t.same(out, { applied: true, bytes: 2 * DEFAULT_HBONE_TUNING.sendBuffer }, `${side}: SO_SNDBUF reads back twice the value`);
    t.ok(out.applied && out.bytes >= 1.1 * DEFAULT_HBONE_TUNING.connectionWindow, `${side}: room for a 16 MiB window and a tenth more`);
  }
});

t.test('what keeps the kernel\'s buffer is an outcome, never a throw', async (t) => {
  const { client } = await loopbackPair(t);
  const fake = (code: string) => () => { throw Object.assign(new Error(`setsockopt: ${code}`), { code }); };
  t.same(raiseSendBuffer(client, 0, () => 1), { applied: false, reason: 'off' }, 'sendBuffer 0: left alone');
  t.same(raiseSendBuffer(client, MiB, null), { applied: false, reason: 'no_helper' }, 'no helper built');
  t.same(raiseSendBuffer(new net.Socket(), MiB, () => 1), { applied: false, reason: 'no_descriptor' }, 'a socket with no descriptor');
  t.same(raiseSendBuffer(client, MiB, fake('EPERM')), { applied: false, reason: 'not_permitted', detail: 'setsockopt: EPERM' }, 'no CAP_NET_ADMIN');
  t.same(raiseSendBuffer(client, MiB, fake('ESOCKOPT')), { applied: false, reason: 'failed', detail: 'setsockopt: ESOCKOPT' });
});

t.test('raiseHboneSendBuffer: applied once the dial has a descriptor; the first miss of the process is logged, with what to do', async (t) => {
  const sink = new LogLines();
  const log = createLogger({ level: 'info', component: 'hbone', destination: sink });
  const lines = () => sink.lines;
  const server = net.createServer((s) => s.destroy());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const seen: number[] = [];
  const dial = () => net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  const s1 = dial();
  raiseHboneSendBuffer(s1, 2 * MiB, log, (fd, bytes) => { seen.push(fd, bytes); return 2 * bytes; });
  await once(s1, 'connect');
  t.equal(seen[1], 2 * MiB, 'set on the dialled socket once it had a descriptor');
  t.ok(seen[0]! >= 0);
  t.same(lines(), [], 'applied: nothing logged');
  for (let i = 0; i < 3; i++) {
    const s = dial();
    raiseHboneSendBuffer(s, 2 * MiB, log, () => { throw Object.assign(new Error('Operation not permitted'), { code: 'EPERM' }); });
    await once(s, 'connect');
    s.destroy();
  }
  s1.destroy();
  const said = lines().filter((l) => l.reason !== undefined);
  t.equal(said.length, 1, 'three misses, one line');
  // Only a waypoint lacks CAP_NET_ADMIN (a ztunnel cannot run without it), and the ztunnel at the other end keeps its connections reading.
  t.equal(said[0]!.level, 'info', 'not permitted: info');
  t.equal(said[0]!.reason, 'not_permitted');
  t.match(String(said[0]!.msg), /CAP_NET_ADMIN.*can then stall it/);
});

t.test('sendBuffer follows the connection window; less than it needs is refused, naming both fields', async (t) => {
  t.equal(DEFAULT_HBONE_TUNING.sendBuffer, sendBufferFor(DEFAULT_HBONE_TUNING.connectionWindow), 'the default is sendBufferFor(16 MiB)');
  t.equal(hboneTuning({ connectionWindow: 32 * MiB }).sendBuffer, sendBufferFor(32 * MiB), 'a larger window, a larger buffer');
  t.equal(hboneTuning({ sendBuffer: 0 }).sendBuffer, 0, '0: the kernel\'s');
  t.equal(hboneTuning({ sendBuffer: 20 * MiB }).sendBuffer, 20 * MiB, 'more is allowed');
  t.throws(() => hboneTuning({ sendBuffer: 4 * MiB }), { code: 'WEFT_CONFIG_INVALID', message: /sendBuffer=4194304: with connectionWindow=16777216 it must be at least 9227469 .*or 0/ });
  t.throws(() => hboneTuning({ sendBuffer: -1 }), /invalid HBONE tuning sendBuffer=-1: must be an integer between 0 and 1073741823/);
  t.throws(() => hboneTuning({ sendBuffer: 2 ** 30 }), /sendBuffer/);
});
