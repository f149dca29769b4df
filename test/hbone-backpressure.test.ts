// Connection-level backpressure of the HBONE server (src/hbone/window-share.ts): the
// streams of one tunnel whose destinations all stop reading (iperf3 -P 8 into a pod
// that reads slower than the tunnel delivers) must park no more than the connection's
// buffer budget, and none of them may be reset for it; once the pods read again, every
// byte arrives. A peer that sends past the window it was given is still cut off. The
// server runs in a child process (real TLS, real HTTP/2, real upstream sockets); the
// test process is the peer and the pods. Bounds on bytes, no timing.
import t from 'tap';
import * as net from 'node:net';
import * as http2 from 'node:http2';
import type { NodeProcess } from './helpers/netns';
import { childStats, open, podServer, session, startInboundChild, tlsToChild, type ChildStats, type Ready } from './helpers/inbound-child-client';
import * as H from './helpers/h2-frames';
import { DEFAULT_HBONE_LIMITS } from '../src/hbone/limits';
import { DEFAULT_HBONE_TUNING } from '../src/hbone/settings';
import { waitFor } from './helpers/wait';

const POD = '127.0.5.1';
const MiB = 1024 * 1024;
const STREAMS = 8;
const PER_STREAM = 16 * MiB;
const BUDGET = DEFAULT_HBONE_LIMITS.connectionBufferBytes;

let child: NodeProcess;
let ready: Ready;
const sinks: net.Socket[] = [];
let sink: { port: number; server: net.Server };

t.before(async () => {
  sink = await podServer(POD, (s) => { sinks.push(s); s.pause(); });
  ({ child, ready } = await startInboundChild(POD));
});
t.teardown(async () => {
  for (const s of sinks) s.destroy();
  sink?.server.close();
  child?.child.stdin?.end();
  await child?.kill();
});

const stats = (): Promise<ChildStats> => childStats(child);

/** Writes `total` bytes as fast as flow control allows, then ends the stream. */
function send(stream: http2.ClientHttp2Stream, total: number): void {
  const chunk = Buffer.alloc(64 * 1024, 5);
  let sent = 0;
  const go = () => {
    while (sent < total && !stream.destroyed) {
      sent += chunk.length;
      if (!stream.write(chunk)) return;
    }
    if (sent >= total) stream.end();
  };
  stream.on('drain', go);
  go();
}

t.test(`${STREAMS} bulk streams on one tunnel into pods that stop reading: parked ≤ the connection budget, no reset, every byte delivered`, { timeout: 120_000 }, async (t) => {
  const s = session(ready);
  t.teardown(() => s.destroy());
  const streams = await Promise.all(Array.from({ length: STREAMS }, () => open(s, `${POD}:${sink.port}`)));
  t.same(streams.map((x) => x.status), Array(STREAMS).fill(200), 'every CONNECT answered 200');
  const resets: number[] = [];
  for (const { stream } of streams) {
    stream.once('close', () => { if (stream.rstCode) resets.push(stream.rstCode); });
    send(stream, PER_STREAM);
  }
  // The peer has sent all it may: every upstream socket queues past the high-water mark
  // (its pod does not read), so every stream is paused, and no stream has window left.
  let full: ChildStats | undefined;
  // (Or a stream was reset: then the assertions below say so, without waiting.)
  await waitFor('every stream stalled with its window used up', async () => {
    full = await stats();
    return (full.stalled === STREAMS && full.openWindow === 0) || resets.length > 0 || (full.refused.buffer_budget ?? 0) > 0;
  }, { timeoutMs: 90_000, intervalMs: 100 });
  t.comment(`stalled: parked ${(full!.parked / MiB).toFixed(2)} MiB (peak ${(full!.peakParked / MiB).toFixed(2)} MiB), ` +
    `reserved ${(full!.reserved / MiB).toFixed(2)} MiB (peak ${(full!.peakReserved / MiB).toFixed(2)} MiB), budget ${BUDGET / MiB} MiB; refused ${JSON.stringify(full!.refused)}`);
  t.equal(full!.refused.buffer_budget ?? 0, 0, 'no stream reset for the budget');
  t.same(resets, [], 'no stream reset at all');
  t.ok(full!.parked > STREAMS * DEFAULT_HBONE_TUNING.pipeHighWaterMark, 'the streams did park bytes (the test stalls them for real)');
  t.ok(full!.peakParked <= BUDGET, `peak parked ${full!.peakParked} ≤ the connection budget ${BUDGET}`);
  t.ok(full!.peakReserved <= BUDGET, `peak reserved ${full!.peakReserved} ≤ the connection budget`);

  // The pods read again: every byte of every stream arrives, and each stream ends cleanly.
  const got = sinks.map((k) => new Promise<number>((resolve) => {
    let n = 0;
    k.on('data', (d: Buffer) => { n += d.length; });
    k.once('end', () => resolve(n));
    k.once('close', () => resolve(n));
    k.resume();
  }));
  t.same(await Promise.all(got), Array(STREAMS).fill(PER_STREAM), `each pod received its ${PER_STREAM / MiB} MiB`);
  t.same(resets, [], 'still no reset');
  const after = await stats();
  t.equal(after.refused.buffer_budget ?? 0, 0);
  t.ok(after.peakParked <= BUDGET, `peak parked over the whole transfer ${(after.peakParked / MiB).toFixed(2)} MiB ≤ ${BUDGET / MiB} MiB`);
  sinks.splice(0);
});

t.test('a peer that sends past the lowered window is cut off (FLOW_CONTROL_ERROR), parked bytes stay bounded', { timeout: 60_000 }, async (t) => {
  const c = new H.RawH2(tlsToChild(ready));
  t.teardown(() => c.socket.destroy());
  await c.until(() => c.frames.some((x) => x.type === H.FRAME.SETTINGS && !(x.flags & H.FLAG.ACK)), 10_000);
  // Open the streams: the server lowers their window (4 MiB → 1 MiB) for their number,
  // and RawH2 acknowledges that SETTINGS; this peer then sends as if each stream still
  // had 4 MiB (plus the WINDOW_UPDATEs it got), and never more than 32 MiB a stream.
  const ids = Array.from({ length: STREAMS }, (_, i) => 2 * i + 1);
  c.write(...ids.map((id) => H.headers(id, H.connectHeaders(`${POD}:${sink.port}`))));
  await c.until(() => c.frames.filter((x) => x.type === H.FRAME.HEADERS).length === STREAMS, 10_000);
  const windows = c.frames.filter((x) => x.type === H.FRAME.SETTINGS && !(x.flags & H.FLAG.ACK))
    .flatMap((x) => Array.from({ length: x.payload.length / 6 }, (_, i) => [x.payload.readUInt16BE(i * 6), x.payload.readUInt32BE(i * 6 + 2)] as const))
    .filter(([id]) => id === H.SETTING.INITIAL_WINDOW_SIZE).map(([, v]) => v);
  t.comment(`INITIAL_WINDOW_SIZE values the server sent: ${windows.join(', ')}`);
  t.ok(windows.at(-1)! < DEFAULT_HBONE_TUNING.streamWindow, 'the server lowered the stream window for 8 streams');
  const granted = (id: number) => c.frames.filter((x) => x.type === H.FRAME.WINDOW_UPDATE && x.streamId === id).reduce((a, x) => a + x.payload.readUInt32BE(0), 0);
  const sent = new Map(ids.map((id) => [id, 0]));
  const piece = Buffer.alloc(16 * 1024, 1);
  while (!c.closed && !c.goaway() && c.resets().size === 0 && [...sent.values()].some((n) => n < 32 * MiB)) {
    const seen = c.frames.length;
    let wrote = false;
    for (const id of ids) {
      if (DEFAULT_HBONE_TUNING.streamWindow + granted(id) - sent.get(id)! < piece.length || sent.get(id)! >= 32 * MiB) continue;
      c.write(H.data(id, piece));
      sent.set(id, sent.get(id)! + piece.length);
      wrote = true;
    }
    if (wrote) await new Promise<void>((resolve) => setImmediate(resolve));
    else await c.until(() => c.frames.length > seen, 10_000).catch(() => {});
  }
  await c.until(() => c.goaway() !== undefined || c.resets().size > 0, 20_000).catch(() => {});
  const goaway = c.goaway();
  const codes = [...c.resets().values()];
  t.comment(`GOAWAY ${JSON.stringify(goaway)}; RST_STREAM codes ${JSON.stringify(codes)}`);
  const FLOW_CONTROL_ERROR = 3;
  t.ok(goaway?.code === FLOW_CONTROL_ERROR || codes.includes(FLOW_CONTROL_ERROR), 'the excess is a flow-control error');
  const st = await stats();
  t.ok(st.peakParked <= BUDGET, `peak parked ${(st.peakParked / MiB).toFixed(2)} MiB ≤ ${BUDGET / MiB} MiB`);
  for (const s of sinks.splice(0)) s.destroy();
});

t.test('staggered stalls: three streams fill their windows, five more open; the later stalls that do not fit are reset, parked ≤ the budget, reserved ≥ parked', { timeout: 120_000 }, async (t) => {
  const s = session(ready);
  t.teardown(() => s.destroy());
  const resets: number[] = [];
  const start = async (n: number) => {
    const opened = await Promise.all(Array.from({ length: n }, () => open(s, `${POD}:${sink.port}`)));
    for (const { stream } of opened) {
      stream.once('close', () => { if (stream.rstCode) resets.push(stream.rstCode); });
      send(stream, PER_STREAM);
    }
  };
  // Three streams alone keep the 4 MiB window, and fill it: the pods do not read.
  await start(3);
  await waitFor('three streams stalled with their 4 MiB windows used', async () => {
    const st = await stats();
    return st.stalled >= 3 && st.openWindow === 0;
  }, { timeoutMs: 60_000, intervalMs: 100 });
  const three = await stats();
  // Five more: the window drops to 1 MiB, but what the first three hold stays queued.
  await start(5);
  let st!: ChildStats;
  // A reset stream's upstream socket closes a moment after the peer sees the reset;
  // until then its queue counts as parked with nothing reserved for it (the reservation
  // went with the refusal). So: wait until only the stalled streams' upstreams are left
  // (a reset that left its upstream open would hold parked bytes for good, and fail here).
  await waitFor('the later streams stalled too, or were reset and their upstreams closed', async () => {
    st = await stats();
    return st.stalled + resets.length >= 8 && st.openWindow === 0 && st.upstreams === st.stalled;
  }, { timeoutMs: 60_000, intervalMs: 100 });
  t.comment(`three first: parked ${(three.parked / MiB).toFixed(2)} MiB; all eight: parked ${(st.parked / MiB).toFixed(2)} MiB (peak ${(st.peakParked / MiB).toFixed(2)}), ` +
    `reserved ${(st.reserved / MiB).toFixed(2)} MiB (peak ${(st.peakReserved / MiB).toFixed(2)}); ${st.stalled} stalled, ${resets.length} reset; refused ${JSON.stringify(st.refused)}`);
  // How much of the first three windows sits in this process rather than in the pods'
  // kernel socket buffers depends on the kernel's buffer autotuning, so it is reported,
  // not asserted; the unit test (hbone-window-share) pins the accounting itself.
  t.comment(`the first three held ${(three.parked / MiB).toFixed(2)} MiB of their 12 MiB windows in the ztunnel when the window dropped`);
  t.ok(st.peakParked <= BUDGET, `peak parked ${(st.peakParked / MiB).toFixed(2)} MiB ≤ the connection budget ${BUDGET / MiB} MiB`);
  t.ok(st.reserved >= st.parked, `what is reserved (${st.reserved}) covers what is parked (${st.parked})`);
  t.ok(st.peakReserved <= BUDGET, 'the account never went past the budget');
  for (const k of sinks.splice(0)) k.destroy();
});
