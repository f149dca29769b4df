/**
 * One bounded HTTP GET for the CLI's reads of the proxies (admin API, metrics port):
 * one deadline for connect + answer (a stopped proxy's socket may accept but never
 * answer, and must not hold the whole command) and a size cap on the body.
 */
import * as http from 'node:http';
import { VERSION } from '../lib/version';

export interface BoundedGet {
  /** Where the request goes (url or http.request options); `method` is GET. */
  target: string | http.RequestOptions;
  /** The endpoint as the messages name it. */
  where: string;
  accept: string;
  timeoutMs: number;
  maxBytes: number;
  /** The message for a failed connect (default `${where}: ${err.message}`). */
  connectFailure?: (err: NodeJS.ErrnoException) => string;
}

/** Resolves with the status and body of any complete answer; rejects with an Error whose message is written for the operator. */
export function boundedGet(g: BoundedGet): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (msg: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      reject(new Error(msg));
    };
    const options: http.RequestOptions = {
      method: 'GET', headers: { accept: g.accept, 'user-agent': `weft-cli/${VERSION}` }, agent: false,
    };
    const onResponse = (res: http.IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > g.maxBytes) fail(`answer from ${g.where} exceeds ${g.maxBytes} bytes`);
        else chunks.push(c);
      });
      res.on('error', (err) => fail(`${g.where}: ${err.message}`));
      res.on('end', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
      });
    };
    const req = typeof g.target === 'string'
      ? http.request(g.target, options, onResponse)
      : http.request({ ...g.target, ...options }, onResponse);
    const timer = setTimeout(() => fail(`no answer from ${g.where} within ${g.timeoutMs} ms`), g.timeoutMs);
    req.on('error', (err: NodeJS.ErrnoException) => fail(g.connectFailure ? g.connectFailure(err) : `${g.where}: ${err.message}`));
    req.end();
  });
}
