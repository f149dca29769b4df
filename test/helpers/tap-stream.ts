import type { Test } from 'tap';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { closeServer, listenTcp, serve } from '../../src/lib/http-endpoints';
import { createLogger } from '../../src/lib/log';
import type { TapHub } from '../../src/telemetry/tap-hub';
import { TAP_PATH } from '../../src/telemetry/types';

/** One `GET /debug/tap` stream read line by line. */
export interface TapStream {
  res: http.IncomingMessage;
  req: http.ClientRequest;
  /** Lines received and not yet taken by next(). */
  lines: string[];
  /** The next line (waits for it). */
  next(): Promise<string>;
}

/** Serves `hub`'s handler on a loopback port (closed at teardown); returns the port. */
export async function serveTap(t: Test, hub: TapHub): Promise<number> {
  const server = serve({ [TAP_PATH]: hub.handler }, createLogger({ level: 'silent', component: 'test' }));
  await listenTcp(server, '127.0.0.1', 0);
  t.teardown(async () => { hub.close(); await closeServer(server); });
  return (server.address() as AddressInfo).port;
}

/** Subscribes to the tap on `port`; resolves with the response (the first line is still to be read). */
export function subscribeTap(port: number, query = ''): Promise<TapStream> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: `${TAP_PATH}${query}` }, (res) => {
      const lines: string[] = [];
      const waiters: Array<(l: string) => void> = [];
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          const w = waiters.shift();
          if (w) w(line); else lines.push(line);
        }
      });
      res.on('error', () => {});
      resolve({
        res, req, lines,
        next: () => new Promise((r) => { const l = lines.shift(); if (l !== undefined) r(l); else waiters.push(r); }),
      });
    });
    req.on('error', reject);
  });
}
