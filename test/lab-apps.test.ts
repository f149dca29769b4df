// The lab's echo app and pod client on loopback (port 0), and the state file and
// process bookkeeping that `down` relies on after a crash.
import t, { type Test } from 'tap';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { requestMain, tcpMain, tcpRoundTrip, type RequestSummary } from '../src/lab/client';
import { requestsMain, type BatchAnswer, type BatchSummary } from '../src/lab/client-batch';
import { grpcMain, type GrpcCallResult, type GrpcSummary } from '../src/lab/client-grpc';
import { wsRoundTrip } from '../src/lab/client-ws';
import { startEcho, type EchoAnswer } from '../src/lab/echo';
import { planLab } from '../src/lab/plan';
import { isAlive, readStartTime, startProcess, stopProcesses } from '../src/lab/procs';
import { readState, StateStore, stateFile } from '../src/lab/state';
import { parseTopology } from '../src/lab/topology';
import { waitFor } from './helpers/wait';

function sink(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({ write(c: Buffer, _e, cb) { chunks.push(c); cb(); } });
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') };
}

async function echo(t: Test) {
  const servers = await startEcho({ pod: 'echo-1', namespace: 'demo', node: 'node-1' }, { host: '127.0.0.1', httpPort: 0, tcpPort: 0, grpcPort: 0 });
  t.teardown(() => servers.close());
  return servers;
}

t.test('HTTP: the answer describes the pod and what it saw', async (t) => {
  const { httpPort } = await echo(t);
  const out = sink();
  const err = sink();
  const code = await requestMain([`http://127.0.0.1:${httpPort}/hello?x=1`, '-H', 'x-test: yes', '--header=x-other: 2'], out.stream, err.stream);
  t.equal(code, 0, err.text());
  const a = JSON.parse(out.text()) as EchoAnswer;
  t.same({ pod: a.pod, namespace: a.namespace, node: a.node, method: a.method, path: a.path }, {
    pod: 'echo-1', namespace: 'demo', node: 'node-1', method: 'GET', path: '/hello?x=1',
  });
  t.equal(a.headers['x-test'], 'yes');
  t.equal(a.headers['x-other'], '2');
  t.match(a.peer, /^127\.0\.0\.1:\d+$/);
  t.equal(a.local, `127.0.0.1:${httpPort}`);
  t.notOk('httpPort' in a, 'only the documented fields');
});

t.test('HTTP: POST body size, ?status, --include, non-2xx exit code', async (t) => {
  const { httpPort } = await echo(t);
  const out = sink();
  t.equal(await requestMain([`http://127.0.0.1:${httpPort}/`, '--method', 'POST', '--data', 'abcdef'], out.stream, sink().stream), 0);
  t.equal((JSON.parse(out.text()) as EchoAnswer).bodyBytes, 6);
  t.equal((JSON.parse(out.text()) as EchoAnswer).method, 'POST');
  const out2 = sink();
  const err2 = sink();
  t.equal(await requestMain([`http://127.0.0.1:${httpPort}/?status=503`, '--include'], out2.stream, err2.stream), 1);
  t.match(out2.text(), /^HTTP\/1\.1 503 Service Unavailable\n/);
  t.match(out2.text(), /content-type: application\/json/i);
  t.match(err2.text(), /answered 503/);
});

t.test('HTTP: --count sends N requests in one process and summarises statuses and answering pods', async (t) => {
  const { httpPort } = await echo(t);
  const out = sink();
  t.equal(await requestMain([`http://127.0.0.1:${httpPort}/`, '--count', '25'], out.stream, sink().stream), 0);
  const sum = JSON.parse(out.text()) as RequestSummary;
  t.same({ requests: sum.requests, statuses: sum.statuses, pods: sum.pods, errors: sum.errors }, { requests: 25, statuses: { 200: 25 }, pods: { 'echo-1': 25 }, errors: {} });
  const out2 = sink();
  t.equal(await requestMain([`http://127.0.0.1:${httpPort}/?status=503`, '--count', '3'], out2.stream, sink().stream), 1, 'a non-2xx answer makes the exit code 1');
  t.same((JSON.parse(out2.text()) as RequestSummary).statuses, { 503: 3 });
  await t.rejects(requestMain(['http://x/', '--count', '0'], sink().stream, sink().stream), { code: 'WEFT_CONFIG_INVALID', message: /--count/ });
});

t.test('client: unreachable targets and bad usage', async (t) => {
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)); });
  });
  const err = sink();
  t.equal(await requestMain([`http://127.0.0.1:${port}/`], sink().stream, err.stream), 1);
  t.match(err.text(), /ECONNREFUSED/);
  const tcpErr = sink();
  t.equal(await tcpMain([`127.0.0.1:${port}`, '--bytes', '10'], sink().stream, tcpErr.stream), 1);
  t.match(tcpErr.text(), /ECONNREFUSED/);
  await t.rejects(requestMain([], sink().stream, sink().stream), { code: 'WEFT_USAGE' });
  await t.rejects(requestMain(['http://x/', '-H', 'nocolon'], sink().stream, sink().stream), { code: 'WEFT_USAGE' });
  await t.rejects(tcpMain(['nohostport'], sink().stream, sink().stream), { code: 'WEFT_USAGE', message: /host:port/ });
  await t.rejects(requestMain(['ftp://x/'], sink().stream, sink().stream), { code: 'WEFT_USAGE', message: /http: URL/ });
});

t.test('TCP: byte-exact round trip of random bytes and of a file', async (t) => {
  const { tcpPort } = await echo(t);
  const r = await tcpRoundTrip('127.0.0.1', tcpPort, { bytes: 3_000_001 }, 20_000);
  t.equal(r.sent, 3_000_001);
  t.equal(r.received, 3_000_001);
  t.equal(r.sentSha256, r.receivedSha256);
  t.ok(r.match);
  const dir = mkdtempSync(join(tmpdir(), 'weft-lab-tcp-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'data');
  writeFileSync(file, 'hello weft\n'.repeat(1000));
  const out = sink();
  t.equal(await tcpMain([`127.0.0.1:${tcpPort}`, '--file', file], out.stream, sink().stream), 0);
  const res = JSON.parse(out.text()) as { sent: number; received: number; match: boolean };
  t.same([res.sent, res.received, res.match], [11000, 11000, true]);
  const empty = await tcpRoundTrip('127.0.0.1', tcpPort, { bytes: 0 }, 5000);
  t.same([empty.sent, empty.received, empty.match], [0, 0, true], 'zero bytes: the echo still half-closes back');
});

t.test('TCP: a round trip that does not finish names its local address (the ztunnels log it as src.addr)', async (t) => {
  const held: Socket[] = [];
  const silent = createServer((s) => { held.push(s); });
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => { for (const s of held) s.destroy(); silent.close(); });
  const port = (silent.address() as { port: number }).port;
  await t.rejects(tcpRoundTrip('127.0.0.1', port, { bytes: 10 }, 200), /^round trip from 127\.0\.0\.1:\d+ not finished within 200 ms \(sent 10, received 0\)$/);
});

t.test('TCP: the echo keeps sending after the client half-closes, then ends', async (t) => {
  const { tcpPort } = await echo(t);
  const got = await new Promise<string>((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port: tcpPort, allowHalfOpen: true });
    let data = '';
    s.on('data', (c: Buffer) => { data += c.toString(); });
    s.on('end', () => { s.end(); resolve(data); });
    s.on('error', reject);
    s.write('first ');
    setTimeout(() => s.end('last'), 20);
  });
  t.equal(got, 'first last');
});

t.test('HTTP: the conformance retry simulation fails the first N requests per uuid, with a status or a reset', async (t) => {
  const { httpPort } = await echo(t);
  const base = `http://127.0.0.1:${httpPort}/retry`;
  const out = sink();
  const reqs = [
    ...[1, 2, 3].map(() => ({ url: `${base}?uuid=a&succeedAfter=2&responseCode=503` })),
    ...[1, 2].map(() => ({ url: `${base}?uuid=b&succeedAfter=1` })),
    { url: `${base}?delay=1s`, timeoutMs: 100 },
  ];
  t.equal(await requestsMain([], out.stream, () => JSON.stringify(reqs)), 0);
  const got = JSON.parse(out.text()) as BatchAnswer[];
  t.same(got.map((a) => a.status ?? a.error), [503, 503, 200, 'ECONNRESET', 200, 'ETIMEDOUT'], 'per uuid; reset without a responseCode; delay=1s is a second');
  t.equal((got[2]!.body as EchoAnswer).pod, 'echo-1');
});

t.test('requests: a JSON batch with Host override, methods, headers and counted requests', async (t) => {
  const { httpPort } = await echo(t);
  const out = sink();
  const reqs = [
    { url: `http://127.0.0.1:${httpPort}/a?x=1`, method: 'PUT', headers: { host: 'echo-v2', 'x-one': '1' } },
    { url: `http://127.0.0.1:${httpPort}/?status=404` },
    { url: `http://127.0.0.1:${httpPort}/many`, count: 5 },
  ];
  t.equal(await requestsMain([], out.stream, () => JSON.stringify(reqs)), 0);
  const [a, b, c] = JSON.parse(out.text()) as [BatchAnswer, BatchAnswer, BatchSummary];
  const body = a.body as EchoAnswer;
  t.same([a.status, body.method, body.path, body.headers.host, body.headers['x-one']], [200, 'PUT', '/a?x=1', 'echo-v2', '1']);
  t.equal(a.headers?.['content-type'], 'application/json');
  t.equal(b.status, 404);
  t.same(c, { requests: 5, statuses: { 200: 5 }, pods: { 'echo-1': 5 }, errors: {} });
  await t.rejects(requestsMain([], sink().stream, () => '[]'), { code: 'WEFT_USAGE' });
  await t.rejects(requestsMain([], sink().stream, () => '[{"url": "ftp://x"}]'), { code: 'WEFT_USAGE', message: /requests\[0\]\.url/ });
  await t.rejects(requestsMain([], sink().stream, () => '[{"url": "http://x/"}, {"url": "http://x/", "headers": {"bad name": "v"}}]'), { code: 'WEFT_USAGE', message: /requests\[1\]\.headers\["bad name"\]/ });
  await t.rejects(requestsMain([], sink().stream, () => '[{"url": "http://x/", "headers": {"x-n": 1}}]'), { code: 'WEFT_USAGE', message: /requests\[0\]\.headers\["x-n"\]: the value is not a string/ });
  await t.rejects(requestsMain([], sink().stream, () => '[{"url": "http://x/", "method": "GE T"}]'), { code: 'WEFT_USAGE', message: /requests\[0\]\.method/ });
  await t.rejects(requestsMain([], sink().stream, () => 'nope'), { code: 'WEFT_USAGE', message: /not JSON/ });
});

t.test('WebSocket: the echo upgrades and sends every byte back; the client closes cleanly', async (t) => {
  const { httpPort } = await echo(t);
  const r = await wsRoundTrip(`http://127.0.0.1:${httpPort}/ws`, 300_001, 16 * 1024, 10_000);
  t.same({ status: r.status, pod: r.pod, sent: r.sent, received: r.received, match: r.match, closeCode: r.closeCode },
    { status: 101, pod: 'echo-1', sent: 300_001, received: 300_001, match: true, closeCode: 1000 });
  const none = await wsRoundTrip(`http://127.0.0.1:${httpPort}/ws`, 0, 1024, 5000);
  t.same([none.status, none.match, none.closeCode], [101, true, 1000], 'zero bytes: just the close handshake');
});

t.test('gRPC: the echo answers a grpc-js client with what it saw, and trailers; an asked-for status ends the call', async (t) => {
  const { grpcPort } = await echo(t);
  const out = sink();
  t.equal(await grpcMain([`127.0.0.1:${grpcPort}`, '-H', 'x-test: yes'], out.stream), 0);
  const r = JSON.parse(out.text()) as GrpcCallResult;
  t.equal(r.code, 0);
  t.same([r.answer?.pod, r.answer?.method, r.answer?.authority, r.answer?.metadata['x-test'], r.answer?.request], ['echo-1', '/weft.lab.Echo/Echo', `127.0.0.1:${grpcPort}`, 'yes', { hello: 'weft' }]);
  t.equal(r.trailers['x-echo-trailer'], 'echo-1', 'the trailers arrived');
  const bad = sink();
  t.equal(await grpcMain([`127.0.0.1:${grpcPort}`, '-H', 'x-echo-grpc-status: 5'], bad.stream), 1);
  const b = JSON.parse(bad.text()) as GrpcCallResult;
  t.same([b.code, b.details, b.trailers['x-echo-trailer']], [5, 'asked for status 5', 'echo-1']);
  const only = sink();
  t.equal(await grpcMain([`127.0.0.1:${grpcPort}`, '-H', 'x-echo-grpc-status: 7', '-H', 'x-echo-trailers-only: 1'], only.stream), 1);
  const o = JSON.parse(only.text()) as GrpcCallResult;
  t.same([o.code, o.details, o.trailers['x-echo-trailer']], [7, 'asked for status 7', 'echo-1'], 'Trailers-Only');
  const many = sink();
  t.equal(await grpcMain([`127.0.0.1:${grpcPort}`, '--count', '4'], many.stream), 0);
  t.same(JSON.parse(many.text()) as GrpcSummary, { requests: 4, codes: { 0: 4 }, pods: { 'echo-1': 4 } });
});

t.test('state file: records survive a reload, setPid, retain, remove', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-lab-state-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  t.equal(readState(dir), undefined);
  const plan = planLab(parseTopology('nodes: [{ name: a }]'));
  const store = StateStore.create({ labDir: dir, repo: '/repo', topologyFile: 'x.yaml', startedAt: 'now', plan });
  store.record({ type: 'netns', name: 'weft-a' }, { type: 'link', name: 'weft-n1' });
  store.record({ type: 'process', name: 'p', role: 'app', argv: ['x'], log: '/dev/null' });
  store.setPid('p', 42, '123');
  t.throws(() => store.setPid('nope', 1, undefined));
  const back = readState(dir)!;
  t.equal(back.phase, 'starting');
  t.same(back.resources.map((r) => r.type), ['netns', 'link', 'process']);
  t.same(back.resources[2], { type: 'process', name: 'p', role: 'app', argv: ['x'], log: '/dev/null', pid: 42, startTime: '123' });
  store.retain((r) => r.type === 'link');
  t.same(readState(dir)!.resources, [{ type: 'link', name: 'weft-n1' }]);
  store.update({ phase: 'up', upMs: 5 });
  t.equal(readState(dir)!.phase, 'up');
  store.remove();
  t.equal(readState(dir), undefined);
  writeFileSync(stateFile(dir), '{"version": 1, "resources": ');
  t.throws(() => readState(dir), { code: 'WEFT_CONFIG_INVALID', message: /invalid lab state file/ });
});

t.test('processes: started detached and recorded, stopped by PID, a reused PID is not ours', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-lab-proc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const plan = planLab(parseTopology('nodes: [{ name: a }]'));
  const store = StateStore.create({ labDir: dir, repo: '/repo', topologyFile: 'x.yaml', startedAt: 'now', plan });
  const log = join(dir, 'logs', 'sleeper.log');
  const p = startProcess(store, { name: 'sleeper', role: 'app', log, argv: [process.execPath, '-e', 'console.log("up"); setInterval(() => {}, 1000)'] });
  t.teardown(() => { if (isAlive(p)) process.kill(p.pid!, 'SIGKILL'); });
  const recorded = readState(dir)!.resources.find((r) => r.type === 'process');
  t.same(recorded, p, 'recorded with its PID and start time');
  t.ok(p.pid && p.startTime, 'pid and start time known');
  t.ok(isAlive(p));
  t.notOk(isAlive({ ...p, startTime: '1' }), 'same PID, other start time: not ours');
  await waitFor('the sleeper is up', () => readFileSync(log, 'utf8').includes('up'), { timeoutMs: 4000, intervalMs: 20 });
  t.equal(readStartTime(process.pid) !== undefined, true);
  const stuck = await stopProcesses([p], { graceMs: 2000 });
  t.same(stuck, []);
  t.notOk(isAlive(p));
  t.match(readFileSync(log, 'utf8'), /up/, 'stdout went to the log');
});

t.test('processes: one ignoring SIGTERM is killed after the grace period', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-lab-proc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const plan = planLab(parseTopology('nodes: [{ name: a }]'));
  const store = StateStore.create({ labDir: dir, repo: '/repo', topologyFile: 'x.yaml', startedAt: 'now', plan });
  const p = startProcess(store, {
    name: 'stubborn', role: 'app', log: join(dir, 'stubborn.log'),
    argv: [process.execPath, '-e', 'process.on("SIGTERM", () => {}); console.log("ready"); setInterval(() => {}, 1000)'],
  });
  t.teardown(() => { if (isAlive(p)) process.kill(p.pid!, 'SIGKILL'); });
  // Wait until the handler is installed, or SIGTERM would kill it at once.
  await waitFor('the SIGTERM handler is installed', () => readFileSync(join(dir, 'stubborn.log'), 'utf8').includes('ready'), { timeoutMs: 4000, intervalMs: 20 });
  t.same(await stopProcesses([p], { graceMs: 200 }), []);
  t.notOk(isAlive(p));
});


t.test('processes: firstToProcessOnly sends the first signal to the process, not to a child in its group', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'weft-lab-proc-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const plan = planLab(parseTopology('nodes: [{ name: a }]'));
  const store = StateStore.create({ labDir: dir, repo: '/repo', topologyFile: 'x.yaml', startedAt: 'now', plan });
  const log = join(dir, 'parent.log');
  // A parent that drains for 300 ms on SIGTERM while its child (an iptables-restore in
  // the ztunnel's case) reports any SIGTERM it gets.
  const child = 'process.on("SIGTERM", () => { console.log("child got SIGTERM"); process.exit(0) }); console.log("child ready"); setInterval(() => {}, 1000)';
  const parent = `const c = require("child_process").spawn(process.execPath, ["-e", ${JSON.stringify(child)}], { stdio: "inherit" });
process.on("SIGTERM", () => setTimeout(() => { console.log("parent drained"); process.exit(0) }, 300)); setInterval(() => {}, 1000)`;
  const p = startProcess(store, { name: 'parent', role: 'app', log, argv: [process.execPath, '-e', parent] });
  t.teardown(() => { try { process.kill(-p.pid!, 'SIGKILL'); } catch { /* gone */ } });
  await waitFor('the child is up', () => readFileSync(log, 'utf8').includes('child ready'), { timeoutMs: 4000, intervalMs: 20 });
  t.same(await stopProcesses([p], { graceMs: 2000, firstToProcessOnly: true }), []);
  const text = readFileSync(log, 'utf8');
  t.match(text, /parent drained/, 'the process got its SIGTERM and drained');
  t.notMatch(text, /child got SIGTERM/, 'its child did not get the SIGTERM');
});
