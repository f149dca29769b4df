// A section of test/e2e/mesh.test.ts (it was test/e2e/loop-guard.test.ts, with a lab of
// its own). Issue 9, items 5 and 11, on the lab. Item 5 was found here: one TCP
// connection from a
// pod to <node-1 IP>:15001 made node-1's ztunnel dial itself ~10,000 times in 2 s
// (each self-dial's original destination was again <node IP>:15001). Item 11: what a
// pod sends to a link-local address (cloud metadata 169.254.169.254, the pod gateway
// 169.254.1.1 on the node) must never be dialled by the ztunnel, which would reach it
// from the node's address.
//
// The probes are bounded: each client gives up after 2 s, so even the bug cannot run
// longer than that per probe.
import type { Test } from 'tap';
import { readFileSync } from 'node:fs';
import { counterSum, scrapeZtunnel } from '../../../src/faults/observe';
import type { LabHandle } from '../helpers/lab';
import { waitFor } from '../../helpers/wait';

const PROXY_PORTS = [15001, 15006, 15008, 15000, 15020, 15021];

/**
 * Node script for a pod: for each host:port argument in turn, connect, send one byte,
 * and report how it ended within 2 s; prints one JSON array.
 */
const PROBE = `
const net = require('node:net');
const targets = process.argv.slice(1);
const out = [];
function next() {
  const target = targets.shift();
  if (!target) return console.log(JSON.stringify(out));
  const i = target.lastIndexOf(':');
  const started = Date.now();
  let received = 0;
  let done = false;
  const s = net.connect({ host: target.slice(0, i), port: Number(target.slice(i + 1)) });
  const finish = (outcome) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    s.destroy();
    out.push({ target, outcome, received, ms: Date.now() - started });
    next();
  };
  const timer = setTimeout(() => finish('timeout'), 2000);
  s.on('connect', () => s.write('x'));
  s.on('data', (d) => { received += d.length; });
  s.on('error', (e) => finish(e.code || e.message));
  s.on('close', () => finish('closed'));
}
next();
`;

interface Probe { target: string; outcome: string; received: number; ms: number }

/** On the mesh lab (test/e2e/mesh.test.ts); changes nothing. */
export function section(t: Test, lab: LabHandle): Promise<unknown> {
  return t.test('the ztunnel never dials itself, its node or link-local for a pod', async (t) => {
    const ctx = lab.context;
    const node1 = ctx.nodes.find((n) => n.name === 'node-1')!;
    const client = ctx.pods.find((p) => p.uid === 'demo/client')!;
    t.equal(client.node, 'node-1', 'demo/client runs on node-1');
    const logFile = `${ctx.labDir}/logs/ztunnel-node-1.log`;
    // The ztunnel writes its log asynchronously (pino to a non-blocking fd): right after a
    // probe its lines may not be in the file yet, and the last line may be half written.
    // Only complete lines are parsed; callers wait (bounded) for the line they expect.
    const logLines = () => {
      const text = readFileSync(logFile, 'utf8');
      return text.slice(0, text.lastIndexOf('\n') + 1).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
    };
    type LogLine = Record<string, unknown>;
    const complete = (l: LogLine) => l.msg === 'connection complete';
    const metrics = () => scrapeZtunnel(node1.address);
    /** Every connection node-1's ztunnel accounted for, on every listener. */
    const accounted = (m: string) => ['opened', 'failed'].reduce((n, k) => n + counterSum(m, `istio_tcp_connections_${k}_total`), 0);
    const probe = async (targets: string[]): Promise<Probe[]> => {
      const r = await lab.exec('demo/client', ['node', '-e', PROBE, ...targets]);
      if (r.code !== 0) throw new Error(`probe failed (${r.code}): ${r.stderr}`);
      return JSON.parse(r.stdout) as Probe[];
    };

    await t.test('a pod connecting to <node IP>:<proxy port>: refused once, never a loop', async (t) => {
      const m0 = await metrics();
      const linesBefore = logLines().length;
      const results = await probe(PROXY_PORTS.map((p) => `${node1.address}:${p}`));
      // A refusal is counted before its reset is sent (lifecycle.end), so the LOOP counts
      // are complete once the probe is done; its log line may still be in flight.
      const m1 = await metrics();
      const to15001 = (l: LogLine) => complete(l) && l['dst.addr'] === `${node1.address}:15001`;
      await waitFor(`node-1's ztunnel logged the connection to ${node1.address}:15001 (${logFile})`, () => logLines().slice(linesBefore).some(to15001));
      const newLines = logLines().slice(linesBefore);
      t.comment(JSON.stringify(results));

      const accountedNew = accounted(m1) - accounted(m0);
      t.ok(accountedNew <= PROXY_PORTS.length, `node-1 accounted ${accountedNew} connections for ${PROXY_PORTS.length} probes (the loop made ~10,000)`);
      t.ok(newLines.length <= 3 * PROXY_PORTS.length, `node-1 wrote ${newLines.length} log lines for ${PROXY_PORTS.length} probes`);
      const loops = counterSum(m1, 'istio_tcp_connections_failed_total', { response_flags: 'LOOP' }) - counterSum(m0, 'istio_tcp_connections_failed_total', { response_flags: 'LOOP' });
      t.ok(loops >= 2 && loops <= PROXY_PORTS.length, `${loops} connections counted as LOOP (15001 and 15006 at least)`);

      // The reported case: exactly one refusal, a reset, nothing dialled.
      const at15001 = newLines.filter(to15001);
      t.equal(at15001.length, 1, 'one access-log line for the connection to :15001');
      t.match(at15001[0], { error: 'LOOP', reason: /refused to prevent a loop/, 'src.addr': new RegExp(`^${client.ip.replace(/\./g, '\\.')}:`) });
      const r15001 = results.find((r) => r.target.endsWith(':15001'))!;
      t.match(r15001, { outcome: 'ECONNRESET', received: 0 }, 'the client sees a reset');
      const r15006 = results.find((r) => r.target.endsWith(':15006'))!;
      t.match(r15006, { outcome: 'ECONNRESET', received: 0 }, ':15006 too');
      // 15008 is TLS (a byte of garbage fails the handshake); 15000 answers on loopback only;
      // 15020/15021 are captured to 15001 (refused) or, when capture leaves the node address
      // alone, reached directly as the pod itself. None of them may loop (checked above).
      for (const r of results) t.not(r.outcome, 'timeout', `${r.target} ended within 2 s`);
    });

    await t.test('link-local: cloud metadata and the pod gateway are never dialled by the ztunnel', async (t) => {
      const linesBefore = logLines().length;
      const results = await probe(['169.254.169.254:80', '169.254.1.1:80']);
      t.comment(JSON.stringify(results));
      // Either outcome (no line, or a refusal's line) is allowed, so there is no line to wait
      // for: a later connection is the barrier. A refusal is logged when the reset is sent,
      // before the probe returns; the ztunnel writes its lines in order, so once this later
      // connection's line is in the file, the probe's are too.
      const sentinel = await lab.request('demo/client', 'http://echo.demo/');
      t.match(sentinel.pod, /^echo-[12]$/, 'the barrier connection is answered');
      const barrier = (l: LogLine) => complete(l) && l.direction === 'outbound' && l.error === undefined && String(l['src.addr']).startsWith(`${client.ip}:`);
      await waitFor(`node-1's ztunnel logged demo/client's connection to echo.demo (${logFile})`, () => logLines().slice(linesBefore).some(barrier));
      const newLines = logLines().slice(linesBefore).filter(complete);
      for (const target of ['169.254.169.254:80', '169.254.1.1:80']) {
        const lines = newLines.filter((l) => l['dst.addr'] === target);
        // Either capture left it alone (no line), or the ztunnel refused it without dialling.
        t.ok(lines.length <= 1, `${target}: ${lines.length} access-log line(s)`);
        for (const l of lines) t.match(l, { error: /^(NO_ROUTE|LOOP)$/ }, `${target}: refused (${String(l.error)}), not dialled`);
        t.equal(results.find((r) => r.target === target)?.received, 0, `${target}: no answer`);
      }
    });

    await t.test('normal traffic keeps flowing', async (t) => {
      const answer = await lab.request('demo/client', 'http://echo.demo/');
      t.match(answer.pod, /^echo-[12]$/);
    });

    await t.test('weft explain shows the refusal', async (t) => {
      const r = await lab.weft(['explain', 'demo/client', `${node1.address}:15001`]);
      t.match(r.stdout, /LOOP|loop/);
      t.match(r.stdout, /refused to prevent a loop/);
    });
  });
}
