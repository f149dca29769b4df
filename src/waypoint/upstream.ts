/**
 * One attempt upstream, as the retry loop sees it, whatever the HTTP version: a request
 * goes out over a pooled connection and either a response head comes back or the
 * attempt fails with a kind (connect failure, reset before the head, aborted).
 */
import type { Readable } from 'node:stream';
import type { HeaderMap, UpstreamPoolLimits, UpstreamTarget } from './types';

export interface AttemptRequest {
  method: string;
  /** Path with query. */
  path: string;
  authority: string;
  /** Already stripped of hop-by-hop headers and edited. */
  headers: HeaderMap;
  /** null: no body (and none announced). */
  body: Readable | null;
  /** Aborts the attempt (per-attempt or overall timeout, downstream gone). */
  signal: AbortSignal;
  /** The Service's connection limits (TrafficPolicy connectionPool); absent: none. */
  pool?: UpstreamPoolLimits | undefined;
}

export interface UpstreamResponse {
  status: number;
  /** Response headers, lower-case, without pseudo-headers (not yet stripped). */
  headers: HeaderMap;
  /** The body; already ended when `endStream`. */
  body: Readable;
  /** The head ended the stream: no body, no trailers (gRPC trailers-only). */
  endStream: boolean;
  /** Trailers, once the body ended (if any came). */
  trailers(): HeaderMap | undefined;
  /** Drops the response (a retried attempt, a downstream gone): the connection is reused if it can be. */
  discard(): void;
}

export type AttemptFailure = 'connect' | 'reset' | 'aborted';

/** Why an attempt produced no response head. */
export class AttemptError extends Error {
  readonly kind: AttemptFailure;
  /** The request went out on a kept-alive connection the upstream may have closed meanwhile. */
  readonly reusedConnection: boolean;

  constructor(kind: AttemptFailure, message: string, opts: { cause?: unknown; reusedConnection?: boolean } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AttemptError';
    this.kind = kind;
    this.reusedConnection = opts.reusedConnection ?? false;
  }
}

/** An HTTP client for one version over pooled upstream connections. */
export interface UpstreamClient {
  request(target: UpstreamTarget, req: AttemptRequest): Promise<UpstreamResponse>;
  /** Closes every pooled connection. */
  close(): void;
}

/** The pool key of a target: connections are shared only for the same endpoint and identity. */
export function upstreamKey(t: UpstreamTarget): string {
  return `${t.transport}|${t.host}|${t.port}|${t.identity ?? ''}`;
}

/** host:port for logs (IPv6 in brackets). */
export function hostPort(t: { host: string; port: number }): string {
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}
