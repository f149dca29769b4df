/**
 * HTTP/1.1 upstream: one keep-alive pool (an http.Agent) per upstream key, whose
 * connections come from the injected dialer (an HBONE stream or a TCP socket), each
 * wrapped in a StreamSocket so Node's client writes Buffers only.
 */
import * as http from 'node:http';
import type { Duplex } from 'node:stream';
import { StreamSocket } from './stream-socket';
import { AttemptError, hostPort, upstreamKey, type AttemptRequest, type UpstreamClient, type UpstreamResponse } from './upstream';
import type { HeaderMap, UpstreamDialer, UpstreamTarget } from './types';

/** An Agent whose connections are dialed by the waypoint's dialer (asynchronously: the callback form). */
class DialingAgent extends http.Agent {
  constructor(private readonly target: UpstreamTarget, private readonly dialer: UpstreamDialer, opts: http.AgentOptions) {
    super(opts);
  }

  override createConnection(_opts: http.ClientRequestArgs, cb?: (err: Error | null, stream: Duplex) => void): Duplex | null | undefined {
    const target = this.target;
    this.dialer.dial(target).then(
      (d) => cb?.(null, new StreamSocket(d, { remoteAddress: target.host, remotePort: target.port })),
      (err: unknown) => cb?.(new AttemptError('connect', `connection to ${hostPort(target)} failed: ${(err as Error)?.message ?? err}`, { cause: err }), undefined as unknown as Duplex),
    );
    return undefined;
  }
}

export interface Http1UpstreamOptions {
  dialer: UpstreamDialer;
  /** Idle pooled connections close after this, ms. */
  idleMs: number;
  /** Idle connections kept per upstream. */
  maxFreeSockets?: number;
  /** Upstream pools kept at once (least recently used dropped beyond). */
  maxPools?: number;
}

export class Http1Upstream implements UpstreamClient {
  /** Pools by upstream key, in least-recently-created order (bounded: endpoints come and go). */
  private readonly agents = new Map<string, DialingAgent>();

  constructor(private readonly opts: Http1UpstreamOptions) {}

  private agentFor(target: UpstreamTarget): DialingAgent {
    const key = upstreamKey(target);
    let agent = this.agents.get(key);
    if (!agent) {
      // LIFO: the most recently used connection is the least likely to have been closed by the upstream.
      agent = new DialingAgent(target, this.opts.dialer, {
        keepAlive: true, timeout: this.opts.idleMs, maxFreeSockets: this.opts.maxFreeSockets ?? 64, scheduling: 'lifo',
      });
      if (this.agents.size >= (this.opts.maxPools ?? 4096)) {
        const [oldKey, old] = this.agents.entries().next().value!;
        this.agents.delete(oldKey);
        // Its requests in flight finish; only idle connections go.
        for (const list of Object.values(old.freeSockets)) for (const sock of list ?? []) sock.destroy();
      }
      this.agents.set(key, agent);
    }
    return agent;
  }

  request(target: UpstreamTarget, a: AttemptRequest): Promise<UpstreamResponse> {
    const headers: HeaderMap = { ...a.headers, host: a.authority };
    // A body without a length goes chunked, whatever the method: Node sends a GET body
    // unframed otherwise, and the upstream would read it as the next request.
    if (a.body && headers['content-length'] === undefined) headers['transfer-encoding'] = 'chunked';
    return new Promise((resolve, reject) => {
      let settled = false;
      const req = http.request({
        agent: this.agentFor(target), method: a.method, path: a.path,
        headers: headers as http.OutgoingHttpHeaders, setHost: false,
      });
      const onAbort = () => req.destroy(new AttemptError('aborted', 'attempt aborted'));
      if (a.signal.aborted) onAbort();
      else a.signal.addEventListener('abort', onAbort, { once: true });
      req.on('error', (err) => {
        a.signal.removeEventListener('abort', onAbort);
        if (settled) return;
        settled = true;
        reject(err instanceof AttemptError ? err
          : new AttemptError('reset', `${hostPort(target)} closed the connection before a response: ${err.message}`, { cause: err, reusedConnection: req.reusedSocket }));
      });
      req.on('response', (res) => {
        settled = true;
        res.on('end', () => a.signal.removeEventListener('abort', onAbort));
        // A reset mid-body reaches the writer as 'aborted'/'error' on the body.
        res.on('error', () => {});
        resolve({
          status: res.statusCode ?? 502,
          headers: res.headers,
          body: res,
          endStream: false,
          trailers: () => (res.complete && Object.keys(res.trailers).length ? res.trailers : undefined),
          discard: () => {
            a.signal.removeEventListener('abort', onAbort);
            // Drain to keep the connection; a body that does not end is cut with it.
            res.resume();
          },
        });
      });
      if (a.body) {
        a.body.on('error', (err) => req.destroy(err));
        a.body.pipe(req);
      } else {
        req.end();
      }
    });
  }

  close(): void {
    for (const [, agent] of this.agents) agent.destroy();
    this.agents.clear();
  }
}
