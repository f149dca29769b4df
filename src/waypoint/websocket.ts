/**
 * WebSocket through the waypoint (HTTP/1.1 Upgrade). Node hands an upgrade request to
 * the server's 'upgrade' listener with the raw connection (without one it destroys
 * the socket). The router decides as for any request; the handshake goes upstream on a
 * connection of its own (an upgraded connection is never pooled), and once the upstream
 * answers 101 the bytes are piped both ways until either side closes. An upstream that
 * refuses the upgrade (any other status) has its answer relayed, then the connection
 * closes. Upgrades other than `websocket` are refused with 400.
 *
 * A TrafficPolicy's admission (faults, rate limit, load shedding) applies to the
 * handshake as to any request: an Upgrade header is no way around a limit. A
 * concurrency slot is held only until the handshake settles (the 101, a refusal, a
 * failure or the client leaving), not for the life of the connection.
 */
import * as http from 'node:http';
import type { Duplex } from 'node:stream';
import { sampleLatency } from './admission';
import { authorizeThenDecide, directFlag, report, requestFacts, type Downstream, type ExchangeDeps } from './exchange';
import { addForwarded, applyHeaderEdits, asList, first, stripHopByHop } from './headers';
import { traceRequest } from '../telemetry/tracer';
import { RequestSpans } from './tracing';
import { StreamSocket } from './stream-socket';
import { hostPort } from './upstream';
import type { HeaderMap, RequestRecord, ResponseFlag, StreamContext } from './types';

export async function handleUpgrade(deps: ExchangeDeps, ctx: StreamContext, req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  const start = deps.clock.now();
  socket.on('error', () => {});
  // A client may leave while the upstream is dialled or answers: listeners added later
  // would never hear its 'close', so it is noted once here.
  let clientGone = false;
  socket.once('close', () => { clientGone = true; });
  if ((first(req.headers.upgrade) ?? '').toLowerCase() !== 'websocket') {
    writeHead(socket, 400, { 'content-type': 'text/plain', connection: 'close' }, 'only WebSocket upgrades are proxied\n');
    return;
  }
  const headers = stripHopByHop(req.headers, { keepUpgrade: true });
  delete headers.host;
  const tracer = deps.telemetry?.tracer;
  const trace = traceRequest(headers, tracer);
  const down = { protocol: 'http1', ctx, method: req.method ?? 'GET', authority: first(req.headers.host) ?? '', target: req.url ?? '/' } as Downstream;
  // The handshake is the span's request; the upstream handshake is sent as its child.
  const spans = trace.sampled && tracer ? new RequestSpans(tracer, trace, down.method, ctx.destination.service) : undefined;
  const facts = requestFacts(down, headers);
  const decision = authorizeThenDecide(deps, facts, false);
  const record: RequestRecord = {
    protocol: 'http1', grpc: false, method: down.method, authority: down.authority, path: facts.path, status: 0, durationMs: 0, route: decision.route,
    attempts: 0, sourceAddress: ctx.source.address, sourceIdentity: ctx.source.identity, destinationService: ctx.destination.service, traceId: trace.traceId, responseFlag: '-', requestBytes: 0, responseBytes: 0,
  };
  if (spans) {
    record.sampled = true;
    record.spanId = spans.server.spanId;
  }
  const finish = (status: number, flag: ResponseFlag) => {
    record.status = status;
    record.responseFlag = flag;
    record.durationMs = deps.clock.now() - start;
    spans?.end(record, deps.workloads);
    report(deps, record);
  };
  if (decision.kind === 'respond') {
    writeHead(socket, decision.status, { ...decision.headers, connection: 'close' }, decision.body ?? '');
    return finish(decision.status, directFlag(decision));
  }
  const plan = decision;
  // Admission, as handleExchange asks it; `settle` gives back the concurrency slot once.
  let settle: (status: number | undefined, local: boolean) => void = () => {};
  let delayed = false;
  const gate = deps.admission?.gate(ctx.destination.service);
  if (gate) {
    const gone = new AbortController();
    socket.once('close', () => gone.abort());
    const a = await deps.admission!.admit(gate, facts, false, gone.signal);
    if (a.kind === 'gone') return finish(0, 'DC');
    if (a.kind === 'refuse') {
      writeHead(socket, a.status, { ...a.headers, 'content-type': 'text/plain', connection: 'close' }, a.body);
      return finish(a.status, a.flag);
    }
    delayed = a.delayed;
    const sentAt = deps.clock.now();
    let held = true;
    settle = (status, local) => {
      if (!held) return;
      held = false;
      a.done(sampleLatency(status, local, deps.clock.now() - sentAt));
    };
    // Whatever else happens (an exception, a handshake that never settles), the client's close gives the slot back.
    socket.once('close', () => settle(undefined, true));
  }
  const finishAdmitted = (status: number, flag: ResponseFlag, local: boolean) => {
    settle(status, local);
    finish(status, flag === '-' && delayed ? 'DI' : flag);
  };
  record.backend = plan.backend;
  record.upstream = hostPort(plan.upstream);
  record.destinationIdentity = plan.upstream.identity;
  record.upstreamTarget = plan.upstream;
  record.attempts = 1;
  const up = applyHeaderEdits({ ...headers }, plan.requestHeaders);
  addForwarded(up, ctx.source);
  if (spans) up.traceparent = spans.traceparent();
  const limitMs = plan.attemptTimeoutMs || plan.timeoutMs || 0;
  let timedOut = false;
  let upstreamSock: StreamSocket | undefined;
  const timer = limitMs ? deps.clock.setTimeout(() => { timedOut = true; upstreamSock?.destroy(); }, limitMs) : undefined;
  try {
    upstreamSock = new StreamSocket(await deps.dialer.dial(plan.upstream), { remoteAddress: plan.upstream.host, remotePort: plan.upstream.port });
  } catch (err) {
    deps.clock.clearTimeout(timer);
    writeHead(socket, timedOut ? 504 : 503, { connection: 'close' }, timedOut ? 'upstream request timeout\n' : 'no healthy upstream\n');
    deps.logger.debug({ err: (err as Error).message, upstream: record.upstream }, 'WebSocket upstream unreachable');
    return finishAdmitted(timedOut ? 504 : 503, timedOut ? 'UT' : 'UF', true);
  }
  const sock = upstreamSock;
  if (clientGone) {
    // Nothing is sent upstream for a client that left: the handshake would open a
    // WebSocket there that nobody reads.
    deps.clock.clearTimeout(timer);
    sock.destroy();
    return finishAdmitted(0, 'DC', true);
  }
  if (timedOut) {
    sock.destroy();
    writeHead(socket, 504, { connection: 'close' }, 'upstream request timeout\n');
    return finishAdmitted(504, 'UT', true);
  }
  const ureq = http.request({
    createConnection: () => sock, method: down.method, path: plan.path ?? down.target,
    headers: { ...up, host: plan.authority ?? down.authority } as http.OutgoingHttpHeaders, setHost: false,
  });
  socket.once('close', () => { if (!ureq.destroyed && !ureq.socket?.destroyed) ureq.destroy(); });
  ureq.on('upgrade', (ures: http.IncomingMessage, usock: Duplex, uhead: Buffer) => {
    deps.clock.clearTimeout(timer);
    settle(101, false);
    const out = applyHeaderEdits(stripHopByHop(ures.headers, { keepUpgrade: true }), plan.responseHeaders);
    writeHead(socket, 101, out, undefined);
    if (uhead.length) socket.write(uhead);
    if (head.length) usock.write(head);
    usock.on('error', () => {});
    let closed = 0;
    const onClose = () => {
      socket.destroy();
      usock.destroy();
      if (++closed === 1) {
        record.requestBytes = (sock.bytesWritten ?? 0);
        record.responseBytes = (sock.bytesRead ?? 0);
        finish(101, delayed ? 'DI' : '-');
      }
    };
    socket.pipe(usock);
    usock.pipe(socket);
    socket.once('close', onClose);
    usock.once('close', onClose);
  });
  ureq.on('response', (ures: http.IncomingMessage) => {
    // The upstream declined the upgrade: relay its answer, close-delimited, and close.
    deps.clock.clearTimeout(timer);
    const out = applyHeaderEdits(stripHopByHop(ures.headers), plan.responseHeaders);
    delete out['content-length'];
    out.connection = 'close';
    writeHead(socket, ures.statusCode ?? 502, out, undefined);
    ures.pipe(socket);
    ures.once('end', () => sock.destroy());
    finishAdmitted(ures.statusCode ?? 502, '-', false);
  });
  ureq.on('error', (err) => {
    deps.clock.clearTimeout(timer);
    if (record.status !== 0 || record.responseFlag !== '-') return;
    // The client left (its close destroyed this request): cancelled, not an upstream failure.
    if (clientGone && !timedOut) return finishAdmitted(0, 'DC', true);
    const status = timedOut ? 504 : 503;
    writeHead(socket, status, { connection: 'close' }, timedOut ? 'upstream request timeout\n' : 'upstream reset the connection\n');
    deps.logger.debug({ err: err.message, upstream: record.upstream }, 'WebSocket handshake failed upstream');
    finishAdmitted(status, timedOut ? 'UT' : 'UC', true);
  });
  ureq.end();
}

/** A response head (and optional complete body) on a raw connection; a body means the connection then closes. */
function writeHead(socket: Duplex, status: number, headers: HeaderMap | Record<string, string>, body: string | undefined): void {
  if (!socket.writable) return;
  const lines = [`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}`];
  const h: HeaderMap = { ...headers };
  if (body !== undefined) h['content-length'] = String(Buffer.byteLength(body));
  for (const [name, value] of Object.entries(h)) {
    for (const v of asList(value)) {
      // Never let a value (from a route edit or an upstream) split the head.
      if (!/[\r\n]/.test(v) && !/[\r\n:]/.test(name)) lines.push(`${name}: ${v}`);
    }
  }
  const text = `${lines.join('\r\n')}\r\n\r\n`;
  if (body === undefined) socket.write(text);
  else socket.end(text + body);
}
