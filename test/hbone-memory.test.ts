// Item 6 of issue 9: a peer writing into pods that never read must not grow the
// ztunnel's memory without bound. The HBONE server runs in a child process (real TLS,
// real HTTP/2, real upstream sockets) whose RSS is read from /proc; the test process
// is the attacker: 300 CONNECT streams to a sink that never reads, 8 MiB written on
// each. The assertion is a memory bound, not a timing.
import t from 'tap';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { rssBytes } from '../src/faults/observe';
import type { NodeProcess } from './helpers/netns';
import { childStats, open, podServer, pump, roundTrip, session, startInboundChild, type ChildStats, type Ready } from './helpers/inbound-child-client';
import { waitFor } from './helpers/wait';

const POD = '127.0.5.1';
const MiB = 1024 * 1024;
const STREAMS = 300;
const PER_STREAM = 8 * MiB;

const server = (onConnection: (s: net.Socket) => void) => podServer(POD, onConnection);

let child: NodeProcess;
let ready: Ready;
const sinks: net.Socket[] = [];
let sink: { port: number; server: net.Server };
let echo: { port: number; server: net.Server };

t.before(async () => {
  sink = await server((s) => { sinks.push(s); s.pause(); });
  echo = await server((s) => s.pipe(s));
  ({ child, ready } = await startInboundChild(POD));
});
t.teardown(async () => {
  for (const s of sinks) s.destroy();
  sink?.server.close();
  echo?.server.close();
  child?.child.stdin?.end();
  await child?.kill();
});

const stats = (): Promise<ChildStats> => childStats(child);
const echoWorks = (): Promise<boolean> => roundTrip(ready, `${POD}:${echo.port}`);

t.test(`${STREAMS} stalled streams × ${PER_STREAM / MiB} MiB raise the ztunnel's RSS by < 256 MiB; normal traffic keeps flowing`, { timeout: 60_000 }, async (t) => {
  t.ok(await echoWorks(), 'warm-up stream works');
  const before = rssBytes(child.pid);
  const sessions: http2.ClientHttp2Session[] = [];
  t.teardown(() => { for (const s of sessions) s.destroy(); });
  const progress = { bytes: 0 };
  const statuses = new Map<number, number>();
  let opened = 0;
  // Streams are opened on as many connections as the server's stream limit asks for.
  while (opened < STREAMS) {
    const s = session(ready);
    sessions.push(s);
    await new Promise<void>((resolve) => s.once('remoteSettings', () => resolve()));
    const room = Math.min(STREAMS - opened, s.remoteSettings.maxConcurrentStreams ?? STREAMS);
    const results = await Promise.all(Array.from({ length: room }, () => open(s, `${POD}:${sink.port}`)));
    for (const r of results) {
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      if (r.status === 200) pump(r.stream, PER_STREAM, progress);
    }
    opened += room;
  }
  // The attack has done what it can once every stream is stalled in the ztunnel: its
  // upstream socket queues past the pipe's high-water mark, so the pipe paused the
  // stream (no more HTTP/2 window), and the sink never reads, so it stays paused; or the
  // budget reset the stream. A state, not a quiet period: load only makes it come later.
  let end: ChildStats | undefined;
  await waitFor('every attacking stream stalled in the ztunnel or reset', async () => {
    end = await stats();
    return end.stalled === end.upstreams && end.stalled + (end.refused.buffer_budget ?? 0) === STREAMS;
  }, { timeoutMs: 40_000, intervalMs: 200 });
  const peak = rssBytes(child.pid, 'VmHWM');
  const grew = peak - before;
  t.comment(`RSS before ${(before / MiB).toFixed(0)} MiB, peak ${(peak / MiB).toFixed(0)} MiB: +${(grew / MiB).toFixed(0)} MiB for ${STREAMS} streams; ` +
    `attacker wrote ${(progress.bytes / MiB).toFixed(0)} MiB; statuses ${JSON.stringify([...statuses])}; sessions ${sessions.length}; refused ${JSON.stringify(end!.refused)}; stalled ${end!.stalled}`);
  t.equal(statuses.get(200), STREAMS, 'every stream was accepted (the budget acts on stalls, not on opens)');
  t.ok(progress.bytes > STREAMS * MiB, 'the attacker did write into them');
  t.ok(grew < 256 * MiB, `RSS grew by ${(grew / MiB).toFixed(0)} MiB (< 256 MiB)`);
  t.ok(await echoWorks(), 'a normal stream still works during the attack');
});
