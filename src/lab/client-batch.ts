/**
 * `weft lab requests`: many HTTP requests from inside one pod in one process, each with
 * its own method, path, Host and headers, answered as one JSON array. The end-to-end
 * conformance tests send dozens of cases through the mesh; a process (and `ip netns
 * exec`) per request would cost far more than the requests themselves.
 *
 * Input (stdin, or --file): a JSON array of
 *   { "url": "http://echo/path?q", "method"?: "GET", "headers"?: { "name": "value" },
 *     "count"?: N, "timeoutMs"?: 5000 }
 * A `host` header replaces the URL's (Gateway API tests send a Host that differs from
 * the address dialled). Output: per request { status, headers, body } (body parsed as
 * JSON when it is, text otherwise) or { error }; with count > 1 a summary
 * { requests, statuses, pods, errors } instead. Requests go one at a time, each over a
 * fresh connection, so no case depends on a connection an earlier one left; the N of
 * a counted request share one keep-alive connection (re-opened if the peer closes it),
 * as a weighted split is decided per request, not per connection.
 */
import { readFileSync } from 'node:fs';
import { Agent, request as httpRequest, validateHeaderName, validateHeaderValue } from 'node:http';
import { WeftError } from '../lib/errors';
import { parse, parseOptions } from '../lib/options';

export interface BatchRequest {
  url: string;
  method?: string;
  headers?: Record<string, string>;
  count?: number;
  timeoutMs?: number;
}

export interface BatchAnswer {
  status?: number;
  /** Response headers, names lower-case. */
  headers?: Record<string, string | string[] | undefined>;
  body?: unknown;
  /** Set when no HTTP answer came: the error code or message. */
  error?: string;
}

export interface BatchSummary {
  requests: number;
  statuses: Record<string, number>;
  /** The echo app's `pod` field → how many. */
  pods: Record<string, number>;
  errors: Record<string, number>;
}

const specs = {
  file: { flag: 'file', default: '', description: 'read the requests from this file instead of stdin', parse: parse.string() },
};

/** Caps keep a mistaken input from running for hours inside a pod. */
const MAX_REQUESTS = 200;
const MAX_COUNT = 2000;

function validate(input: unknown): BatchRequest[] {
  if (!Array.isArray(input) || input.length === 0 || input.length > MAX_REQUESTS) {
    throw new WeftError('WEFT_USAGE', `requests needs a JSON array of 1 to ${MAX_REQUESTS} requests, e.g. [{"url": "http://echo/"}]`);
  }
  return input.map((r: unknown, i) => {
    const o = r as BatchRequest;
    if (typeof o?.url !== 'string' || !/^http:\/\//.test(o.url)) throw new WeftError('WEFT_USAGE', `requests[${i}].url: expected an http:// URL`);
    if (o.count !== undefined && (!Number.isInteger(o.count) || o.count < 1 || o.count > MAX_COUNT)) {
      throw new WeftError('WEFT_USAGE', `requests[${i}].count: expected a whole number from 1 to ${MAX_COUNT}`);
    }
    if (o.method !== undefined && (typeof o.method !== 'string' || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(o.method))) {
      throw new WeftError('WEFT_USAGE', `requests[${i}].method: expected an HTTP method such as "GET", got ${JSON.stringify(o.method)}`);
    }
    // Checked here, or node:http would throw inside send() without saying which request.
    for (const [name, value] of Object.entries(o.headers ?? {})) {
      try {
        validateHeaderName(name);
        if (typeof value !== 'string') throw new Error('the value is not a string');
        validateHeaderValue(name, value);
      } catch (e) {
        throw new WeftError('WEFT_USAGE', `requests[${i}].headers[${JSON.stringify(name)}]: ${(e as Error).message}; expected {"name": "value"} with HTTP header names and string values`);
      }
    }
    return o;
  });
}

/** One request; resolves with the answer or the error, never rejects. */
export function send(r: BatchRequest, agent: Agent | false = false): Promise<BatchAnswer> {
  return new Promise((resolve) => {
    const timeout = r.timeoutMs ?? 5000;
    const req = httpRequest(r.url, { method: r.method ?? 'GET', headers: r.headers ?? {}, timeout, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try { body = JSON.parse(text); } catch { /* not JSON: kept as text */ }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body });
      });
      res.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${timeout} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }));
    req.end();
  });
}

async function summary(r: BatchRequest): Promise<BatchSummary> {
  const sum: BatchSummary = { requests: r.count!, statuses: {}, pods: {}, errors: {} };
  const bump = (m: Record<string, number>, k: string) => { m[k] = (m[k] ?? 0) + 1; };
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  for (let i = 0; i < r.count!; i++) {
    const a = await send(r, agent);
    if (a.error !== undefined) bump(sum.errors, a.error);
    else bump(sum.statuses, String(a.status));
    const pod = (a.body as { pod?: unknown } | undefined)?.pod;
    if (typeof pod === 'string') bump(sum.pods, pod);
  }
  agent.destroy();
  return sum;
}

export async function requestsMain(argv: string[], out: NodeJS.WritableStream = process.stdout, stdin: () => string = () => readFileSync(0, 'utf8')): Promise<number> {
  const { values, positionals } = parseOptions(specs, argv, {});
  if (positionals.length) throw new WeftError('WEFT_USAGE', 'requests takes no arguments: the requests come as JSON on stdin (or --file)');
  let input: unknown;
  try {
    input = JSON.parse(values.file ? readFileSync(values.file, 'utf8') : stdin());
  } catch (e) {
    throw new WeftError('WEFT_USAGE', `requests: the input is not JSON (${(e as Error).message}); pass a JSON array of requests`);
  }
  const results: (BatchAnswer | BatchSummary)[] = [];
  for (const r of validate(input)) results.push((r.count ?? 1) > 1 ? await summary(r) : await send(r));
  out.write(JSON.stringify(results) + '\n');
  return 0;
}
