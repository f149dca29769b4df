/**
 * `weft lab load <url> --rate R --duration D`: open-loop HTTP load from inside a pod
 * (bench/open-loop.ts schedules the sends, R per second whatever the answers take, over
 * `--conns` keep-alive connections), for the resilience demonstrations: how many were
 * accepted, limited or shed, and how long the accepted ones took. Prints one JSON line:
 *
 *   { requests, statuses: { "200": n, "429": n }, errors: { code: n }, elapsedMs,
 *     latencies: { "200": [ms, ...ascending], ... } }
 *
 * A latency counts from the send on its connection (a request waiting for a free
 * connection is the client's queue, not the server's). Bounded: at most 100,000
 * requests, and every request has a timeout.
 */
import { Agent, request as httpRequest } from 'node:http';
import { openLoop } from '../bench/open-loop';
import { WeftError } from '../lib/errors';
import { parse, parseOptions } from '../lib/options';
import { takeHeaders } from './client';

const specs = {
  rate: { flag: 'rate', default: 100, description: 'requests per second, sent on schedule', parse: parse.int({ min: 1, max: 10_000 }) },
  duration: { flag: 'duration', default: 2000, description: 'how long to send', parse: parse.duration({ min: 1, max: 120_000 }) },
  conns: { flag: 'conns', default: 32, description: 'keep-alive connections', parse: parse.int({ min: 1, max: 1024 }) },
  timeout: { flag: 'timeout', default: 10_000, description: 'give up on a request after this long', parse: parse.duration({ min: 1 }) },
};

export const LOAD_HELP = `  load <url> --rate R --duration D [--conns N] [-H 'k: v' ...] [--timeout 10s]
                                  open-loop HTTP load; statuses and latencies as JSON`;

export interface LoadSummary {
  requests: number;
  statuses: Record<string, number>;
  errors: Record<string, number>;
  elapsedMs: number;
  /** Per status, each answer's latency in ms (1 decimal), ascending. */
  latencies: Record<string, number[]>;
}

export async function loadMain(argv: string[], out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const { headers, rest } = takeHeaders(argv);
  const { values, positionals } = parseOptions(specs, rest, {});
  if (positionals.length !== 1 || !/^http:\/\//.test(positionals[0]!)) throw new WeftError('WEFT_USAGE', 'load needs one http:// URL, e.g. load http://echo.demo/ --rate 500 --duration 2s');
  if (values.rate * values.duration > 100_000_000) throw new WeftError('WEFT_USAGE', `load: --rate ${values.rate} for ${values.duration} ms is more than 100,000 requests`);
  const url = positionals[0]!;
  const agents = Array.from({ length: values.conns }, () => new Agent({ keepAlive: true, maxSockets: 1 }));
  const sum: LoadSummary = { requests: 0, statuses: {}, errors: {}, elapsedMs: 0, latencies: {} };
  const bump = (m: Record<string, number>, k: string) => { m[k] = (m[k] ?? 0) + 1; };
  const send = (agent: Agent) => new Promise<void>((resolve) => {
    const sent = performance.now();
    sum.requests++;
    const req = httpRequest(url, { headers, timeout: values.timeout, agent }, (res) => {
      res.resume();
      res.on('end', () => {
        const code = String(res.statusCode);
        bump(sum.statuses, code);
        (sum.latencies[code] ??= []).push(Math.round((performance.now() - sent) * 10) / 10);
        resolve();
      });
      res.on('error', (e: NodeJS.ErrnoException) => { bump(sum.errors, e.code ?? e.message); resolve(); });
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${values.timeout} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => { bump(sum.errors, e.code ?? e.message); resolve(); });
    req.end();
  });
  const result = await openLoop(agents, values.rate, values.duration, send);
  for (const a of agents) a.destroy();
  sum.elapsedMs = Math.round(result.elapsedMs);
  for (const l of Object.values(sum.latencies)) l.sort((a, b) => a - b);
  out.write(JSON.stringify(sum) + '\n');
  return Object.keys(sum.errors).length === 0 ? 0 : 1;
}
