/**
 * The test side of test/helpers/inbound-child.ts: starts that child HBONE server, asks
 * it for its counters, opens well-behaved client sessions and CONNECT streams to it, and
 * resets the child's peak RSS (CPU and RSS: cpuSeconds, rssBytes in src/faults/observe.ts), so a
 * test can attack the server from its own process and see what that cost the server.
 */
import * as http2 from 'node:http2';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startNodeIn, type NodeProcess } from './netns';

/** Where the child's HBONE server listens (inbound-child.ts imports it from here). */
export const CHILD_NODE_IP = '127.0.0.3';

/** The child's `{"ready":true,...}` line. */
export interface Ready { port: number; rootsPem: string; client: { keyPem: string; certChainPem: string[] } }

/**
 * The child's answer to `stats`: refusal counters, upstream sockets open and stalled
 * (queued past the pipe's high-water mark), bytes parked (upstream queues + unread
 * HTTP/2 stream data) now and at the peak, the node budget's reservations, and the
 * bytes the peer may still send on open streams without a WINDOW_UPDATE.
 */
export interface ChildStats {
  sessions: number; connections: number; refused: Record<string, number>; upstreams: number; stalled: number;
  parked: number; peakParked: number; reserved: number; peakReserved: number; openWindow: number;
}

/** Starts inbound-child.ts with every connection meant for `pod`; resolves once it listens. */
export async function startInboundChild(pod: string): Promise<{ child: NodeProcess; ready: Ready }> {
  const child = startNodeIn(undefined, { file: join(__dirname, 'inbound-child.ts'), stdin: true, env: { WEFT_CHILD_POD: pod } });
  const ready = JSON.parse(await child.waitForLine(/"ready":true/, 30_000)) as Ready;
  return { child, ready };
}

let statsAsked = 0;

/** The child's counters, each answer told apart by its tag (an earlier answer is stale). */
export async function childStats(child: NodeProcess): Promise<ChildStats> {
  const tag = String(++statsAsked);
  child.send(`stats ${tag}\n`);
  const line = await child.waitForLine(new RegExp(`"tag":"${tag}"`));
  return (JSON.parse(line) as { stats: ChildStats }).stats;
}

/**
 * Resets the process's peak RSS (VmHWM) to its current RSS (Linux ≥ 4.0, writing 5 to
 * clear_refs), so a peak read later belongs to what ran since. False when refused.
 */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** A pod-side TCP server at `host` (half-open allowed, socket errors ignored): what the child's streams dial. */
export async function podServer(host: string, onConnection: (s: net.Socket) => void): Promise<{ port: number; server: net.Server }> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); onConnection(s); });
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return { port: (server.address() as net.AddressInfo).port, server };
}

/** An mTLS connection to the child as identity `client` (h2); `localAddress` picks the peer address the server sees. */
export function tlsToChild(ready: Ready, localAddress?: string): tls.TLSSocket {
  return tls.connect({
    host: CHILD_NODE_IP, port: ready.port, key: ready.client.keyPem, cert: ready.client.certChainPem.join('\n'), ca: ready.rootsPem,
    ALPNProtocols: ['h2'], servername: '', checkServerIdentity: () => undefined, ...(localAddress ? { localAddress } : {}),
  });
}

/** A client session to the child over tlsToChild. */
export function session(ready: Ready, localAddress?: string): http2.ClientHttp2Session {
  const s = http2.connect(`https://${CHILD_NODE_IP}:${ready.port}`, { createConnection: () => tlsToChild(ready, localAddress) });
  s.on('error', () => {});
  return s;
}

/** Opens a CONNECT stream; resolves with it and its status (0 when reset before an answer). */
export function open(s: http2.ClientHttp2Session, authority: string): Promise<{ stream: http2.ClientHttp2Stream; status: number }> {
  return new Promise((resolve) => {
    let stream: http2.ClientHttp2Stream;
    try {
      stream = s.request({ ':method': 'CONNECT', ':authority': authority }, { endStream: false });
    } catch {
      resolve({ stream: undefined as unknown as http2.ClientHttp2Stream, status: 0 });
      return;
    }
    stream.on('error', () => {});
    stream.once('response', (h) => resolve({ stream, status: Number(h[':status']) }));
    stream.once('close', () => resolve({ stream, status: 0 }));
  });
}

/** Writes `total` bytes in 64 KiB pieces as fast as flow control allows, adding what it wrote to `progress.bytes`. */
export function pump(stream: http2.ClientHttp2Stream, total: number, progress: { bytes: number }): void {
  const chunk = Buffer.alloc(64 * 1024, 7);
  let sent = 0;
  const go = () => {
    while (sent < total && !stream.destroyed) {
      sent += chunk.length;
      progress.bytes += chunk.length;
      if (!stream.write(chunk)) return;
    }
  };
  stream.on('drain', go);
  go();
}

/**
 * One legitimate round trip: a new session, a CONNECT to `authority` (an echo server),
 * a few bytes there and back. False when anything on the way fails, or when it has not
 * finished within `boundMs` (a bound against hanging, not a timing claim).
 */
export async function roundTrip(ready: Ready, authority: string, opts: { localAddress?: string; boundMs?: number } = {}): Promise<boolean> {
  const s = session(ready, opts.localAddress);
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), opts.boundMs ?? 10_000); });
  const trip = (async () => {
    const { stream, status } = await open(s, authority);
    if (status !== 200) return false;
    const got = new Promise<string>((resolve) => { let b = ''; stream.on('data', (d: Buffer) => { b += d.toString(); }); stream.on('end', () => resolve(b)); stream.on('close', () => resolve(b)); });
    stream.end('still flowing');
    return (await got) === 'still flowing';
  })();
  try {
    return await Promise.race([trip, bound]);
  } finally {
    clearTimeout(timer);
    s.destroy();
  }
}
