/**
 * A client for use inside lab pods, where curl may be missing:
 *
 *   request <url> [--method M] [--header 'k: v' ...] [--data TEXT] [--include] [--timeout 5s] [--count N]
 *     HTTP request; prints the body (with --include, the status line and headers
 *     first). Exit 0 on 2xx, 1 otherwise (status on stderr).
 *   tcp <host:port> [--bytes N | --file F] [--timeout 10s]
 *     Sends N random bytes (default 1 MiB) or a file, half-closes, reads everything
 *     back until the peer closes, and prints JSON {sent, received, sentSha256,
 *     receivedSha256, match, ms}. Exit 0 when what came back equals what was sent.
 *
 * Run as `node dist/lab/client.js request ...` or `weft lab request ...` / `weft lab tcp ...`.
 * Only Node builtins.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, statSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import { formatHostPort } from '../lib/address';
import { WeftError } from '../lib/errors';
import { parse, parseOptions } from '../lib/options';

const requestSpecs = {
  method: { flag: 'method', default: 'GET', description: 'HTTP method', parse: parse.string({ pattern: /^[A-Z]+$/, what: 'an upper-case HTTP method' }) },
  data: { flag: 'data', default: '', description: 'request body', parse: parse.string() },
  include: { flag: 'include', boolean: true, default: false, description: 'print the status line and headers before the body', parse: parse.bool() },
  timeout: { flag: 'timeout', default: 5000, description: 'give up after this long', parse: parse.duration({ min: 1 }) },
  count: { flag: 'count', default: 1, description: 'send this many requests and print a summary', parse: parse.int({ min: 1, max: 100_000 }) },
};

const tcpSpecs = {
  bytes: { flag: 'bytes', default: 1 << 20, description: 'random bytes to send', parse: parse.int({ min: 0 }) },
  file: { flag: 'file', default: '', description: 'send this file instead of random bytes', parse: parse.string() },
  timeout: { flag: 'timeout', default: 10_000, description: 'give up after this long', parse: parse.duration({ min: 1 }) },
};

export const CLIENT_HELP = `Usage:
  request <url> [--header 'name: value' ...] [flags]   HTTP request; prints the body
  tcp <host:port> [flags]                              byte-exact TCP round trip; prints sha256s

request flags:
  --method <M>      HTTP method (default GET)
  --header/-H <h>   'name: value'; repeatable
  --data <text>     request body
  --include         print the status line and headers first
  --timeout <d>     give up after this long (default 5s)
  --count <n>       send n requests one after another over keep-alive and print JSON
                    {requests, statuses, pods, errors, ms} (pods: the echo app's "pod")

tcp flags:
  --bytes <n>       random bytes to send (default 1048576)
  --file <path>     send this file instead
  --timeout <d>     give up after this long (default 10s)`;

/** Runs a parser on a positional argument; its complaint becomes a usage error. */
function usage<T>(fn: () => T, mode: string): T {
  try {
    return fn();
  } catch (err) {
    throw new WeftError('WEFT_USAGE', `${mode}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Pulls repeatable `--header v` / `-H v` / `--header=v` out of argv (also `weft lab grpc`'s metadata). */
export function takeHeaders(argv: string[]): { headers: Record<string, string>; rest: string[] } {
  const headers: Record<string, string> = {};
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    let value: string | undefined;
    if (a === '--header' || a === '-H') value = argv[++i];
    else if (a.startsWith('--header=')) value = a.slice('--header='.length);
    else { rest.push(a); continue; }
    const m = value === undefined ? null : /^([^:\s]+):\s*(.*)$/.exec(value);
    if (!m) throw new WeftError('WEFT_USAGE', `--header needs 'name: value', got ${JSON.stringify(value)}`);
    headers[m[1]!.toLowerCase()] = m[2]!;
  }
  return { headers, rest };
}

export async function requestMain(argv: string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  const { headers, rest } = takeHeaders(argv);
  const { values, positionals } = parseOptions(requestSpecs, rest, {});
  if (positionals.length !== 1) throw new WeftError('WEFT_USAGE', 'request needs exactly one URL, e.g. request http://echo.demo/');
  const url = usage(() => parse.url(['http:'])(positionals[0]!), 'request');
  if (values.count > 1) return requestMany(url, values, headers, out);
  return new Promise<number>((resolve) => {
    const body = values.data ? Buffer.from(values.data) : undefined;
    if (body) headers['content-length'] = String(body.length);
    const req = httpRequest(url, { method: values.method, headers, timeout: values.timeout, agent: false }, (res) => {
      if (values.include) {
        out.write(`HTTP/${res.httpVersion} ${res.statusCode} ${res.statusMessage}\n`);
        for (let i = 0; i < res.rawHeaders.length; i += 2) out.write(`${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\n`);
        out.write('\n');
      }
      res.on('data', (c: Buffer) => out.write(c));
      res.on('end', () => {
        const ok = (res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300;
        if (!ok) err.write(`request: ${url} answered ${res.statusCode}\n`);
        resolve(ok ? 0 : 1);
      });
      res.on('error', (e) => { err.write(`request: ${url}: ${e.message}\n`); resolve(1); });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${values.timeout} ms`)));
    req.on('error', (e: NodeJS.ErrnoException) => { err.write(`request: ${url}: ${e.code ?? e.message}${e.code ? ` (${e.message})` : ''}\n`); resolve(1); });
    req.end(body);
  });
}

/** What `request --count N` prints. */
export interface RequestSummary {
  requests: number;
  /** Status code → how many. */
  statuses: Record<string, number>;
  /** The echo app's `pod` field → how many (answers that are not echo JSON are not counted). */
  pods: Record<string, number>;
  /** Requests that got no HTTP answer: error code → how many. */
  errors: Record<string, number>;
  ms: number;
}

/**
 * N requests in one process, one at a time over one keep-alive connection (re-opened
 * when the peer closes it): a split over hundreds of requests in seconds, where a
 * process per request would take minutes. Exit 0 when every answer was 2xx.
 */
async function requestMany(url: string, values: { method: string; data: string; timeout: number; count: number }, headers: Record<string, string>, out: NodeJS.WritableStream): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const body = values.data ? Buffer.from(values.data) : undefined;
  if (body) headers['content-length'] = String(body.length);
  const sum: RequestSummary = { requests: values.count, statuses: {}, pods: {}, errors: {}, ms: 0 };
  const bump = (m: Record<string, number>, k: string) => { m[k] = (m[k] ?? 0) + 1; };
  const started = Date.now();
  for (let i = 0; i < values.count; i++) {
    await new Promise<void>((resolve) => {
      const req = httpRequest(url, { method: values.method, headers, timeout: values.timeout, agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          bump(sum.statuses, String(res.statusCode));
          try {
            const pod = (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { pod?: unknown }).pod;
            if (typeof pod === 'string') bump(sum.pods, pod);
          } catch { /* not the echo app's JSON: counted by status only */ }
          resolve();
        });
        res.on('error', (e: NodeJS.ErrnoException) => { bump(sum.errors, e.code ?? e.message); resolve(); });
      });
      req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${values.timeout} ms`), { code: 'ETIMEDOUT' })));
      req.on('error', (e: NodeJS.ErrnoException) => { bump(sum.errors, e.code ?? e.message); resolve(); });
      req.end(body);
    });
  }
  agent.destroy();
  sum.ms = Date.now() - started;
  out.write(JSON.stringify(sum) + '\n');
  const ok = Object.entries(sum.statuses).every(([code]) => code.startsWith('2')) && Object.keys(sum.errors).length === 0;
  return ok ? 0 : 1;
}

export interface TcpResult {
  sent: number;
  received: number;
  sentSha256: string;
  receivedSha256: string;
  match: boolean;
  ms: number;
}

/** Sends a source to host:port, half-closes, reads back until the peer ends. */
export function tcpRoundTrip(host: string, port: number, source: { bytes: number } | { file: string }, timeoutMs: number): Promise<TcpResult> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const sentHash = createHash('sha256');
    const recvHash = createHash('sha256');
    let sent = 0;
    let received = 0;
    const sock = connect({ host, port, allowHalfOpen: true });
    sock.setNoDelay(true);
    // The local address names the connection in the ztunnels' access lines (src.addr).
    let from = '';
    const timer = setTimeout(() => sock.destroy(new Error(`round trip${from} not finished within ${timeoutMs} ms (sent ${sent}, received ${received})`)), timeoutMs);
    sock.on('data', (c: Buffer) => { received += c.length; recvHash.update(c); });
    sock.on('error', (e) => {
      clearTimeout(timer);
      // Named, with the code kept (tcpMain prints it).
      reject(from && !e.message.includes(from) ? Object.assign(new Error(`round trip${from} failed: ${e.message}`, { cause: e }), { code: (e as NodeJS.ErrnoException).code }) : e);
    });
    sock.on('end', () => {
      clearTimeout(timer);
      sock.end();
      const sentSha256 = sentHash.digest('hex');
      const receivedSha256 = recvHash.digest('hex');
      resolve({ sent, received, sentSha256, receivedSha256, match: sent === received && sentSha256 === receivedSha256, ms: Date.now() - started });
    });
    sock.once('connect', () => {
      from = ` from ${formatHostPort(sock.localAddress ?? '?', sock.localPort ?? 0)}`;
      if ('file' in source) {
        const stream = createReadStream(source.file);
        stream.on('data', (c) => { const b = c as Buffer; sent += b.length; sentHash.update(b); });
        stream.on('error', (e) => sock.destroy(e));
        stream.pipe(sock);
        return;
      }
      let left = source.bytes;
      const pump = () => {
        while (left > 0) {
          const chunk = randomBytes(Math.min(left, 64 * 1024));
          left -= chunk.length;
          sent += chunk.length;
          sentHash.update(chunk);
          if (!sock.write(chunk)) { sock.once('drain', pump); return; }
        }
        sock.end();
      };
      pump();
    });
  });
}

export async function tcpMain(argv: string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  const { values, positionals } = parseOptions(tcpSpecs, argv, {});
  if (positionals.length !== 1) throw new WeftError('WEFT_USAGE', 'tcp needs exactly one host:port, e.g. tcp echo.demo:9000');
  const { host, port } = usage(() => parse.hostPort()(positionals[0]!), 'tcp');
  if (values.file) statSync(values.file);
  try {
    const result = await tcpRoundTrip(host, port, values.file ? { file: values.file } : { bytes: values.bytes }, values.timeout);
    out.write(JSON.stringify(result) + '\n');
    if (!result.match) err.write(`tcp: what came back differs from what was sent (${result.received} of ${result.sent} bytes)\n`);
    return result.match ? 0 : 1;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    err.write(`tcp: ${host}:${port}: ${code ? `${code} (${(e as Error).message})` : (e as Error).message}\n`);
    return 1;
  }
}

export async function clientMain(argv: string[]): Promise<number> {
  const [mode, ...rest] = argv;
  if (mode === 'request') return requestMain(rest);
  if (mode === 'tcp') return tcpMain(rest);
  process.stdout.write(CLIENT_HELP + '\n');
  return mode === '--help' || mode === '-h' ? 0 : 2;
}

if (require.main === module) {
  clientMain(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => {
    process.stderr.write(`client: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = e instanceof WeftError && e.code === 'WEFT_USAGE' ? 2 : 1;
  });
}
