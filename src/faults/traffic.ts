/**
 * The fault suite's steady traffic, run inside a lab pod (`ip netns exec <pod> node
 * dist/faults/traffic.js ...`) against the lab's echo apps only. It prints JSON lines
 * as things happen, so the suite can line flows up with the faults it injects.
 *
 *   flows --target host:port --rate N --duration MS [--timeout MS]
 *     Open loop: a new connection every 1000/N ms, one HTTP GET each (no keep-alive);
 *     one line per flow {flow, start, ms, ok, peer?, err?}. `peer` is what the echo app
 *     saw: a pod address there means the flow skipped the ztunnels (plaintext).
 *   hold --target host:port --count N --duration MS
 *     Opens N TCP connections (64 at a time), each round-trips 64 bytes, prints
 *     {held, failed}; holds them; at the end round-trips 16 bytes on each again and
 *     prints {alive, dead}; closes them all and prints {closed}.
 *   live --target host:port --count N --duration MS
 *     N connections that round-trip 64 bytes every 100 ms until they end or the
 *     duration is up; prints {open} once all are established and one line per end
 *     {conn, how: 'fin'|'reset'|<error code>|'done', rounds, ms}.
 *
 * Bounded by --duration and the flow rate; every socket has a timeout.
 */
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

function args(argv: string[]): { mode: string; opts: Record<string, string> } {
  const opts: Record<string, string> = {};
  let mode = '';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a.startsWith('--')) { opts[a.slice(2)] = argv[i + 1] ?? ''; i++; } else mode = a;
  }
  return { mode, opts };
}

const print = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');

function oneGet(host: string, port: number, timeoutMs: number): Promise<{ ok: boolean; peer?: string; err?: string }> {
  return new Promise((resolve) => {
    const req = request({ host, port, path: '/', agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => { body += d.toString(); });
      res.on('end', () => {
        try {
          const a = JSON.parse(body) as { peer?: string };
          resolve({ ok: res.statusCode === 200, peer: a.peer, ...(res.statusCode === 200 ? {} : { err: `status ${res.statusCode}` }) });
        } catch { resolve({ ok: false, err: 'bad body' }); }
      });
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, err: e.code ?? e.message }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ ok: false, err: e.code ?? e.message }));
    req.end();
  });
}

async function flows(host: string, port: number, rate: number, durationMs: number, timeoutMs: number): Promise<void> {
  const interval = 1000 / rate;
  const total = Math.floor((rate * durationMs) / 1000);
  const start = Date.now();
  const inflight: Promise<void>[] = [];
  for (let i = 0; i < total && !stopping; i++) {
    const due = start + i * interval;
    if (due > Date.now()) await sleep(due - Date.now());
    const began = Date.now();
    inflight.push(oneGet(host, port, timeoutMs).then((r) => { print({ flow: i, start: began, ms: Date.now() - began, ...r }); }));
  }
  await Promise.all(inflight);
  print({ done: true });
}

function roundTrip(s: Socket, size: number, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let got = 0;
    const timer = setTimeout(() => done(new Error('timeout')), timeoutMs);
    const onData = (b: Buffer) => { got += b.length; if (got >= size) done(); };
    const onEnd = () => done(new Error('closed'));
    const done = (err?: Error) => {
      clearTimeout(timer);
      s.off('data', onData); s.off('error', onEnd); s.off('close', onEnd);
      if (err) reject(err); else resolve();
    };
    s.on('data', onData);
    s.once('error', onEnd);
    s.once('close', onEnd);
    s.write(Buffer.alloc(size, 0x61));
  });
}

function open(host: string, port: number, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host, port });
    const timer = setTimeout(() => { s.destroy(); reject(new Error('connect timeout')); }, timeoutMs);
    s.once('connect', () => { clearTimeout(timer); s.off('error', reject); resolve(s); });
    s.once('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

async function hold(host: string, port: number, count: number, durationMs: number): Promise<void> {
  const held: Socket[] = [];
  let failed = 0;
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      try {
        const s = await open(host, port, 10_000);
        s.on('error', () => { /* judged at the end */ });
        await roundTrip(s, 64, 10_000);
        held.push(s);
      } catch { failed++; }
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  print({ held: held.length, failed });
  const until = Date.now() + durationMs;
  while (Date.now() < until && !stopping) await sleep(Math.min(200, until - Date.now()));
  let alive = 0;
  for (let i = 0; i < held.length; i += 256) {
    const batch = held.slice(i, i + 256);
    const ok = await Promise.all(batch.map((s) => roundTrip(s, 16, 10_000).then(() => true, () => false)));
    alive += ok.filter(Boolean).length;
  }
  print({ alive, dead: held.length - alive });
  await Promise.all(held.map((s) => new Promise<void>((r) => { s.once('close', () => r()); s.end(); s.resume(); setTimeout(() => { s.destroy(); r(); }, 5000); })));
  print({ closed: held.length });
}

async function live(host: string, port: number, count: number, durationMs: number): Promise<void> {
  const conns = await Promise.all(Array.from({ length: count }, () => open(host, port, 10_000)));
  for (const s of conns) await roundTrip(s, 64, 10_000);
  print({ open: conns.length });
  const until = Date.now() + durationMs;
  await Promise.all(conns.map((s, conn) => new Promise<void>((resolve) => {
    const began = Date.now();
    let rounds = 0;
    let how: string | undefined;
    const finish = (h: string) => {
      if (how) return;
      how = h;
      print({ conn, how, rounds, ms: Date.now() - began });
      s.destroy();
      resolve();
    };
    s.on('end', () => finish('fin'));
    s.on('error', (e: NodeJS.ErrnoException) => finish(e.code === 'ECONNRESET' ? 'reset' : (e.code ?? e.message)));
    s.on('close', () => finish('fin'));
    const loop = async () => {
      while (!how) {
        if (Date.now() >= until || stopping) return finish('done');
        try { await roundTrip(s, 64, 5000); rounds++; } catch (e) { if (!how) setTimeout(() => finish((e as Error).message), 50); return; }
        await sleep(100);
      }
    };
    void loop();
  })));
}

let stopping = false;

async function main(): Promise<void> {
  const { mode, opts } = args(process.argv.slice(2));
  const [host, portText] = (opts.target ?? '').split(':');
  const port = Number(portText);
  if (!host || !port) throw new Error('usage: traffic flows|hold|live --target host:port [...]');
  const duration = Number(opts.duration ?? 10_000);
  process.on('SIGTERM', () => { stopping = true; });
  if (mode === 'flows') await flows(host, port, Number(opts.rate ?? 20), duration, Number(opts.timeout ?? 3000));
  else if (mode === 'hold') await hold(host, port, Number(opts.count ?? 1000), duration);
  else if (mode === 'live') await live(host, port, Number(opts.count ?? 4), duration);
  else throw new Error(`unknown mode ${JSON.stringify(mode)}`);
}

if (require.main === module) {
  main().then(() => process.exit(0), (err: unknown) => { process.stderr.write(`traffic: ${String(err)}\n`); process.exit(1); });
}
