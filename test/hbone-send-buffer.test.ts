// The HBONE sockets' kernel send buffer (src/hbone/send-buffer.ts): the native helper
// sets it with SO_SNDBUFFORCE on real loopback sockets; every way it cannot is an
// outcome, never a throw; the first miss of each kind is logged with what to do.
// The stall it prevents is shown end to end in test/e2e/hbone-bulk-both-ways.test.ts.
import t, { type Test } from 'tap';
import * as net from 'node:net';
import { once } from 'node:events';
import { loadSendBufferHelper, raiseSendBuffer, SendBuffers } from '../src/hbone/send-buffer';
import { DEFAULT_HBONE_TUNING, hboneTuning, sendBufferFor } from '../src/hbone/settings';
import { LogLines } from './helpers/log-lines';
import { createLogger } from '../src/lib/log';
import { sendBufferForceRefused } from './helpers/netns';

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

t.test('the native helper raises both ends of a real connection past the tuning\'s 16 MiB connection window (the kernel doubles it)', async (t) => {
  const refused = await sendBufferForceRefused();
  if (refused) return void t.plan(0, refused);
  const raise = loadSendBufferHelper() ?? null;
  const { client, accepted } = await loopbackPair(t);
  // CI has a compiler: a missing helper is a failure there, not a skip.
  t.ok(raise, 'native/build/weft_send_buffer.node is built (npm run build)');
  for (const [side, s] of [['dialled', client], ['accepted', accepted]] as const) {
    const out = raiseSendBuffer(s, DEFAULT_HBONE_TUNING.sendBuffer, raise);
    // Far above net.core.wmem_max, where plain SO_SNDBUF would have been capped.
    t.same(out, { applied: true, bytes: 2 * DEFAULT_HBONE_TUNING.sendBuffer }, `${side}: SO_SNDBUF reads back twice the value, ${((2 * DEFAULT_HBONE_TUNING.sendBuffer) / MiB).toFixed(1)} MiB`);
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

t.test('SendBuffers: applied once the dial has a descriptor; each kind of miss logged once, saying what to do; no helper call after an EPERM', async (t) => {
  const sink = new LogLines();
  const log = createLogger({ level: 'info', component: 'hbone', destination: sink });
  const said = () => sink.lines.filter((l) => l.reason !== undefined);
  const server = net.createServer((s) => s.destroy());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const dial = () => net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');

  const seen: number[] = [];
  const s1 = dial();
  new SendBuffers((fd, bytes) => { seen.push(fd, bytes); return 2 * bytes; }).apply(s1, 2 * MiB, log);
  await once(s1, 'connect');
  t.equal(seen[1], 2 * MiB, 'set on the dialled socket once it had a descriptor');
  t.ok(seen[0]! >= 0);
  t.same(said(), [], 'applied: nothing logged');
  s1.destroy();

  let calls = 0;
  const denied = new SendBuffers(() => { calls++; throw Object.assign(new Error('Operation not permitted'), { code: 'EPERM' }); });
  for (let i = 0; i < 3; i++) {
    const s = dial();
    denied.apply(s, 2 * MiB, log);
    await once(s, 'connect');
    s.destroy();
  }
  t.equal(calls, 1, 'after one EPERM the helper is not called again');
  t.equal(said().length, 1, 'three misses, one line');
  t.equal(said()[0]!.level, 'warn');
  t.equal(said()[0]!.reason, 'not_permitted');
  t.match(String(said()[0]!.msg), /lacks CAP_NET_ADMIN.*capabilities\.add.*can then stall it/, 'what is wrong and what to do');

  const failing = new SendBuffers(() => { throw Object.assign(new Error('No buffer space available'), { code: 'ESOCKOPT' }); });
  const s2 = dial();
  failing.apply(s2, 2 * MiB, log);
  await once(s2, 'connect');
  s2.destroy();
  t.match(said()[1], { level: 'warn', reason: 'failed', msg: /setsockopt\(SO_SNDBUFFORCE, 2097152\) failed: No buffer space available/ }, 'the kernel\'s reason in the line');

  const closed = dial();
  await once(closed, 'connect');
  closed.destroy();
  new SendBuffers(null).apply(closed, 2 * MiB, log);
  t.equal(said().length, 2, 'a socket already closed: nothing to raise, no line');
});

t.test('sendBuffer follows the connection window; less than it needs is refused, naming both fields', async (t) => {
  t.equal(2 * sendBufferFor(16 * MiB), 18_454_938, 'doubled by the kernel, 16 MiB and a tenth (17.6 MiB)');
  t.equal(hboneTuning({ connectionWindow: 32 * MiB }).sendBuffer, sendBufferFor(32 * MiB), 'a larger window, a larger buffer');
  t.equal(hboneTuning({ sendBuffer: 0 }).sendBuffer, 0, '0: the kernel\'s');
  t.equal(hboneTuning({ sendBuffer: 20 * MiB }).sendBuffer, 20 * MiB, 'more is allowed');
  t.throws(() => hboneTuning({ sendBuffer: 4 * MiB }), { code: 'WEFT_CONFIG_INVALID', message: /sendBuffer=4194304: with connectionWindow=16777216 it must be at least 9227469 .*or 0/ });
  t.throws(() => hboneTuning({ sendBuffer: -1 }), /invalid HBONE tuning sendBuffer=-1: must be an integer between 0 and 1073741823/);
  t.throws(() => hboneTuning({ sendBuffer: 2 ** 30 }), /sendBuffer/);
  t.throws(() => hboneTuning({ connectionWindow: 2 ** 31 - 1 }), { code: 'WEFT_CONFIG_INVALID', message: /connectionWindow=2147483647: the send buffer it needs \(1181116006\) is more than a socket takes; set a smaller connectionWindow, or sendBuffer: 0/ });
  t.equal(hboneTuning({ connectionWindow: 2 ** 31 - 1, sendBuffer: 0 }).sendBuffer, 0, 'that window with the kernel\'s buffer');
});
