// `weft tap` (src/cli/commands/tap.ts) against real tap streams: two TapHubs served on
// loopback standing in for a waypoint's and a ztunnel's metrics ports, and a proxy that
// cannot be reached. The streams are merged, --max stops, -o json prints TapEvents, the
// filter is the proxies', an unreachable proxy is one warning.
import t from 'tap';
import { TapHub } from '../src/telemetry/tap-hub';
import type { TapEvent } from '../src/telemetry/types';
import tapCommand, { formatTapLine, runTap, tapFilter } from '../src/cli/commands/tap';
import type { ProxyTarget } from '../src/cli/proxy-targets';
import type { CliIo } from '../src/cli/io';
import { isWeftError } from '../src/lib/errors';
import { serveTap } from './helpers/tap-stream';
import { captureIo, tempDir } from './helpers/cli';
import { startRedis } from './helpers/redis';
import { caught } from './helpers/wait';
import type { AddressInfo } from 'node:net';
import { closeServer, json, listenTcp, serve } from '../src/lib/http-endpoints';
import { createLogger } from '../src/lib/log';

const request: TapEvent = {
  time: '2026-12-01T01:40:00.123Z', proxy: 'waypoint demo/waypoint', kind: 'request', verdict: 'routed',
  source: { address: '10.0.1.2', workload: 'client', namespace: 'demo' },
  destination: { address: '10.0.2.3', workload: 'echo', namespace: 'demo', service: 'demo/echo' },
  method: 'GET', authority: 'echo.demo', path: '/hello', status: 200, responseFlag: '-', durationMs: 3.25, attempts: 1,
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736', mtls: true,
};
const connection: TapEvent = {
  time: '2026-12-01T01:40:00.200Z', proxy: 'ztunnel node-1', kind: 'connection', verdict: 'denied',
  source: { address: '10.0.3.2', workload: 'client', namespace: 'legacy' }, destination: { address: '10.0.2.3', workload: 'echo', namespace: 'demo', service: 'demo/echo' },
  responseFlag: 'DENY', durationMs: 0.4, direction: 'inbound', bytesSent: 0, bytesReceived: 0, mtls: true,
};

function capture(signal?: AbortSignal): CliIo & { out: string[]; err: string[] } {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, env: {}, stdout: (s) => out.push(s), stderr: (s) => err.push(s), ...(signal ? { signal } : {}) };
}

async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 5));
}

t.test('merges every proxy\'s stream until --max; an unreachable proxy is one warning', async (t) => {
  const waypoint = new TapHub({ proxy: 'waypoint demo/waypoint' });
  const ztunnel = new TapHub({ proxy: 'ztunnel node-1' });
  const targets: ProxyTarget[] = [
    { kind: 'waypoint', proxy: 'waypoint demo/waypoint', baseUrl: `http://127.0.0.1:${await serveTap(t, waypoint)}` },
    { kind: 'ztunnel', proxy: 'ztunnel node-1', baseUrl: `http://127.0.0.1:${await serveTap(t, ztunnel)}` },
    // Port 1 on loopback: nothing listens (connection refused).
    { kind: 'ztunnel', proxy: 'ztunnel node-2', baseUrl: 'http://127.0.0.1:1' },
  ];
  const io = capture();
  const done = runTap({ targets: async () => targets, filter: {}, format: 'json', max: 3, durationMs: 0, io, retryMs: 20 });
  await until(() => waypoint.active && ztunnel.active);
  waypoint.publish(request);
  ztunnel.publish(connection);
  await until(() => io.out.length === 2);
  waypoint.publish({ ...request, path: '/third' });
  waypoint.publish({ ...request, path: '/fourth' });
  t.equal(await done, 0);
  t.same(io.out.map((l) => JSON.parse(l)), [request, connection, { ...request, path: '/third' }], 'three events, JSON lines, then it stopped');
  t.equal(io.err.length, 1, 'one warning for the unreachable proxy, however often it was asked');
  t.match(io.err[0], /^warning: ztunnel node-2: http:\/\/127\.0\.0\.1:1\/debug\/tap: .*ECONNREFUSED/);
  await until(() => !waypoint.active && !ztunnel.active);
  t.pass('the streams were closed');
});

t.test('the filter goes to the proxies; --duration and the signal stop the stream', async (t) => {
  const hub = new TapHub({ proxy: 'waypoint demo/waypoint' });
  const targets: ProxyTarget[] = [{ kind: 'waypoint', proxy: 'waypoint demo/waypoint', baseUrl: `http://127.0.0.1:${await serveTap(t, hub)}` }];
  const io = capture();
  const started = Date.now();
  const done = runTap({ targets: async () => targets, filter: tapFilter({ namespace: 'demo', service: '', path: '', status: '5xx' }), format: 'text', max: 0, durationMs: 300, io });
  await until(() => hub.active);
  hub.publish(request);
  hub.publish({ ...request, status: 503, verdict: 'routed' });
  t.equal(await done, 0);
  t.comment(`stopped after ${Date.now() - started} ms (--duration 300ms)`);
  t.equal(io.out.length, 1, 'only the 503');
  t.match(io.out[0], / GET \/hello 503 /);
  const ac = new AbortController();
  const io2 = capture(ac.signal);
  const done2 = runTap({ targets: async () => targets, filter: {}, format: 'text', max: 0, durationMs: 0, io: io2 });
  await until(() => hub.active);
  ac.abort();
  t.equal(await done2, 0, 'Ctrl-C (the io signal) ends it');
});

t.test('one line per event, and a bad --status is a usage error', async (t) => {
  t.equal(formatTapLine(request),
    '01:40:00.123  waypoint demo/waypoint    routed     demo/client → demo/echo  GET /hello 200  3.3ms  -  mTLS  4bf92f3577b34da6a3ce929d0e0e4736\n');
  t.equal(formatTapLine({ ...request, verdict: 'retried', attempts: 2, durationMs: 1500 }).includes('GET /hello 200 (2 attempts)  1.50s'), true);
  t.equal(formatTapLine(connection),
    '01:40:00.200  ztunnel node-1            denied     legacy/client → demo/echo  TCP inbound 0B↑ 0B↓  0.4ms  DENY  mTLS  -\n');
  t.same(tapFilter({ namespace: 'demo', service: 'echo', path: '/api', status: '5XX' }), { namespace: 'demo', service: 'echo', path: '/api', status: '5xx' });
  let err: unknown;
  try { tapFilter({ namespace: '', service: '', path: '', status: 'bad' }); } catch (e) { err = e; }
  t.ok(isWeftError(err) && err.code === 'WEFT_USAGE');
  t.match((err as Error).message, /--status must be a class such as 5xx/);
});

t.test('a proxy that refuses the tap: its stated reason is in the warning (a ztunnel with --workers says what to do)', async (t) => {
  const reason = 'this ztunnel runs 2 worker processes (--workers 2) and their live tap is not relayed; run it with --workers 1 to tap it';
  const server = serve({
    '/refusing/debug/tap': (_req, _url, res) => json(res, 501, { error: reason }),
    '/plain/debug/tap': (_req, _url, res) => { res.writeHead(503, { 'content-type': 'text/plain' }); res.end('x'.repeat(10_000)); },
  }, createLogger({ level: 'silent', component: 'test' }));
  await listenTcp(server, '127.0.0.1', 0);
  t.teardown(() => closeServer(server));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const targets: ProxyTarget[] = [
    { kind: 'ztunnel', proxy: 'ztunnel node-1', baseUrl: `${base}/refusing` },
    { kind: 'ztunnel', proxy: 'ztunnel node-2', baseUrl: `${base}/plain` },
  ];
  const io = capture();
  const done = runTap({ targets: async () => targets, filter: {}, format: 'text', max: 0, durationMs: 300, io, retryMs: 20 });
  t.equal(await done, 0);
  t.same(io.err.sort(), [
    `warning: ztunnel node-1: HTTP 501 to GET ${base}/refusing/debug/tap: ${reason}\n`,
    `warning: ztunnel node-2: HTTP 503 to GET ${base}/plain/debug/tap\n`,
  ], 'one warning each, however often asked: the reason when the body states one, the status alone otherwise');
});

t.test('nothing to tap (no node with an address, no ready waypoint): WEFT_CONTEXT_MISSING, saying how to get a proxy', async (t) => {
  const redis = await startRedis();
  t.teardown(() => redis.stop());
  const tmp = tempDir();
  t.teardown(tmp.remove);
  const cap = captureIo({ HOME: tmp.dir });
  const err = await caught(() => tapCommand.runWith(['--redis-url', redis.url], cap.io));
  t.equal(err.code, 'WEFT_CONTEXT_MISSING');
  t.match(err.message, /no proxy to tap: .*start the lab \(scripts\/lab up\) or pick a context whose nodes run a ztunnel \(--context\)/);
});
