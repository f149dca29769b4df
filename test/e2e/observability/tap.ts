/**
 * The tap section of test/e2e/observability.test.ts: `weft tap` (the built CLI, on the
 * lab's host) streaming from every proxy while the demo traffic runs, plus two failing
 * requests from demo/client: echo's `?status=503` (the upstream answers 503 itself:
 * routed) and a request whose connections the echo pod resets (`?uuid=&succeedAfter=3`:
 * failed).
 * Checks the waypoint's request events (verdicts routed and failed, the two-hop chain,
 * trace ids, no query strings), the ztunnels' connection events, and the proxies'
 * filter (`--status 5xx -n demo`). The text output is kept in the artefacts (tap.txt).
 */
import type { Test } from 'tap';
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ObservabilityLab } from '../helpers/observability-lab';
import type { TapEvent } from '../../../src/telemetry/types';
import { DIST } from '../../../src/lab/paths';
import type { RunResult } from '../../../src/lab/run';
import { waitFor } from '../../helpers/wait';

/** The proxy's weft_tap_subscribers, read from the lab's host (its root namespace reaches node and pod addresses). */
async function subscribers(address: string): Promise<number> {
  try {
    const text = await (await fetch(`http://${address}:15020/metrics`)).text();
    return Number(/^weft_tap_subscribers (\d+)/m.exec(text)?.[1] ?? 0);
  } catch {
    return 0;
  }
}

function events(stdout: string): TapEvent[] {
  return stdout.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as TapEvent);
}

/**
 * `weft tap <args>` (the built CLI) that can be ended by Ctrl-C (SIGINT), as an operator
 * ends it: `stdout()` is what it printed so far (whole lines), `stop()` resolves with its
 * result.
 */
function interruptibleTap(o: ObservabilityLab, args: string[]): { stdout(): string; stop(): Promise<RunResult> } {
  const child = spawn(process.execPath, [DIST.main, 'tap', ...args], { env: o.lab.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c; });
  child.stderr.setEncoding('utf8').on('data', (c: string) => { err += c; });
  const done = new Promise<RunResult>((r) => child.once('close', (code) => r({ code: code ?? 1, stdout: out, stderr: err })));
  return {
    stdout: () => out.slice(0, out.lastIndexOf('\n') + 1),
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      return done;
    },
  };
}

function countBy<T>(items: T[], key: (i: T) => string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const i of items) out[key(i)] = (out[key(i)] ?? 0) + 1;
  return out;
}

export async function section(t: Test, o: ObservabilityLab): Promise<void> {
  const { lab } = o;
  // The whole stream, until every event this section looks for has come (at most 12 s).
  const all = interruptibleTap(o, ['-o', 'json', '--max', '5000', '--duration', '12s']);
  const tapStarted = Date.now();
  const errors = lab.weft(['tap', '-o', 'json', '-n', 'demo', '--status', '5xx', '--max', '2', '--duration', '12s']);
  const text = lab.weft(['tap', '-n', 'demo', '--max', '8', '--duration', '12s']);
  // The taps are listening once the waypoint and a ztunnel count their subscribers.
  const node = Object.values(o.nodes)[0]!;
  for (let i = 0; i < 100 && ((await subscribers(o.waypointIp)) < 3 || (await subscribers(node)) < 3); i++) await new Promise((r) => setTimeout(r, 100));
  t.equal(await subscribers(o.waypointIp), 3, 'three taps listen to the waypoint');
  const uuid = `weft-tap-${process.pid}`;
  const [loads, refused, reset] = await Promise.all([
    o.traffic({ seconds: 3 }),
    lab.exec('demo/client', ['weft', 'lab', 'request', 'http://echo.demo/status-check?status=503']),
    // Reset more than once: a reset on a reused pooled connection is sent again once on a new one (not an attempt).
    lab.exec('demo/client', ['weft', 'lab', 'request', `http://echo.demo/reset-check?uuid=${uuid}&succeedAfter=3`]),
  ]);
  t.comment(`traffic: ${loads.map((l) => JSON.stringify(l).slice(0, 160)).join(' | ')}; 503 request exit ${refused.code}, reset request exit ${reset.code}`);
  // The traffic has ended: once the stream holds the events asserted below, or 12 s after
  // the tap started (its own --duration, as before), Ctrl-C.
  // The same predicates as the assertions below, so the tap is never stopped before an
  // event they need has arrived.
  const routedEcho = (ev: TapEvent) => ev.kind === 'request' && ev.verdict === 'routed' && ev.status === 200 && ev.destination.service === 'demo/echo' && ev.source.workload === 'client';
  const toFrontend = (ev: TapEvent) => ev.kind === 'request' && ev.destination.service === 'demo/frontend' && ev.source.workload === 'client';
  const fromFrontend = (ev: TapEvent) => ev.kind === 'request' && ev.destination.service === 'demo/echo' && ev.source.workload === 'frontend';
  const upstream503 = (ev: TapEvent) => ev.kind === 'request' && ev.path === '/status-check' && ev.status === 503 && ev.verdict === 'routed';
  const resetCheck = (ev: TapEvent) => ev.kind === 'request' && ev.path === '/reset-check';
  const ztunnelMtls = (ev: TapEvent) => ev.kind === 'connection' && ev.proxy.startsWith('ztunnel ') && ev.verdict === 'routed' && ev.mtls;
  const complete = (evs: TapEvent[]) => [routedEcho, toFrontend, fromFrontend, upstream503, resetCheck, ztunnelMtls].every((p) => evs.some(p));
  await waitFor('weft tap has the events of the traffic', () => complete(events(all.stdout())), { timeoutMs: Math.max(0, tapStarted + 12_000 - Date.now()), intervalMs: 100 })
    .catch(() => { /* the assertions below say what is missing */ });
  const [a, e, x] = await Promise.all([all.stop(), errors, text]);
  const tapMs = Date.now() - tapStarted;
  t.equal(a.code, 0, `weft tap exits 0 (${a.stderr.trim()})`);
  t.equal(e.code, 0, `weft tap --status 5xx exits 0 (${e.stderr.trim()})`);
  const got = events(a.stdout);
  const requests = got.filter((ev) => ev.kind === 'request');
  const connections = got.filter((ev) => ev.kind === 'connection');
  t.comment(`weft tap: ${got.length} events in ${(tapMs / 1000).toFixed(1)} s; by proxy ${JSON.stringify(countBy(got, (ev) => ev.proxy))}; by verdict ${JSON.stringify(countBy(got, (ev) => `${ev.kind}:${ev.verdict}`))}`);
  t.ok(requests.length > 0 && requests.every((ev) => ev.proxy === 'waypoint demo/waypoint'), 'requests come from the waypoint');
  t.ok(requests.some(routedEcho), 'routed: demo/client → demo/echo 200');
  t.ok(requests.some(toFrontend) && requests.some(fromFrontend), 'both hops of the chain (client → frontend → echo)');
  t.ok(requests.some(upstream503), 'the upstream\'s own 503: routed, status 503');
  const failed = requests.find(resetCheck);
  t.match(failed, { verdict: 'failed' }, 'the reset connection: failed');
  t.comment(`the reset request: ${JSON.stringify(failed)}`);
  t.ok(requests.every((ev) => /^[0-9a-f]{32}$/.test(ev.traceId ?? '')), 'every request carries its trace id');
  t.notOk(a.stdout.includes('uuid=') || a.stdout.includes('status=503'), 'no query string in any event');
  t.ok(connections.some(ztunnelMtls), 'routed mTLS connections from the ztunnels');
  const errs = events(e.stdout);
  t.equal(errs.length, 2, '--max 2 stopped the filtered tap');
  t.ok(errs.every((ev) => ev.kind === 'request' && (ev.status ?? 0) >= 500), `--status 5xx: only 5xx requests (${errs.map((ev) => `${ev.path} ${ev.status} ${ev.verdict}`).join(', ')})`);
  t.equal(x.code, 0);
  t.equal(x.stdout.trim().split('\n').length, 8, 'text: one line per event');
  mkdirSync(o.artefactDir, { recursive: true });
  writeFileSync(join(o.artefactDir, 'tap.txt'), `$ weft tap -n demo --max 8\n${x.stdout}`);
  writeFileSync(join(o.artefactDir, 'tap.jsonl'), a.stdout);
  t.comment(`weft tap -n demo --max 8:\n${x.stdout}`);
}
