/**
 * A request body that can be sent more than once, within a bound. The body streams to
 * the current attempt as it arrives (no store-and-forward delay, and gRPC streaming
 * keeps working) while a copy of up to `cap` bytes is kept. A retry replays the copy,
 * then continues with the live rest. Once the body outgrows the cap the copy is dropped
 * and the request can no longer be retried (Linkerd and Envoy do the same): memory per
 * request stays bounded whatever the client sends.
 *
 * With nothing to keep (cap 0: no retry policy, no mirror) and `direct`, the attempt
 * reads the source itself instead of a PassThrough fed from it (a stream and two extra
 * turns per request). Only for a reader that cuts its attempt when the source closes
 * before its end and resumes what it reads (the HTTP/1.1 upstream connection does): the
 * PassThrough turned that close into an error, and flowed by itself, for the others.
 */
import { PassThrough, type Readable } from 'node:stream';

export class ReplayableBody {
  private readonly source: Readable;
  private readonly cap: number;
  private chunks: Buffer[] = [];
  private recorded = 0;
  private overflowed = false;
  private ended = false;
  private failed = false;
  private current: PassThrough | undefined;
  private readonly direct: boolean;
  /** The source itself is the current attempt's reader (direct). */
  private handed = false;
  private readonly waiters: ((body: Buffer | undefined) => void)[] = [];
  /** Bytes read from the downstream so far. */
  bytes = 0;

  constructor(source: Readable, cap: number, direct = false) {
    this.source = source;
    this.cap = cap;
    this.direct = direct && cap === 0;
    source.pause();
    source.on('data', (chunk: Buffer) => this.onData(chunk));
    source.on('end', () => {
      this.ended = true;
      this.current?.end();
      this.settle();
    });
    const fail = () => {
      if (this.ended) return;
      this.failed = true;
      this.current?.destroy(new Error('downstream request body aborted'));
      this.settle();
    };
    source.on('error', fail);
    source.on('aborted', fail);
    source.on('close', fail);
  }

  /** Whether a new attempt can still get the whole body. */
  get replayable(): boolean {
    return !this.overflowed && !this.failed;
  }

  /**
   * A fresh reader for one attempt: the kept copy, then the live rest. The previous
   * reader is cut off (its attempt was abandoned). Call only while `replayable`.
   */
  open(): Readable {
    if (!this.replayable) throw new Error('request body is no longer replayable');
    this.detach();
    // Nothing read yet (else it would not be replayable at cap 0) and more to come: the
    // source as it is, still paused: the reader resumes it once its listeners are on (the
    // connection may still be being dialed, and bytes flowing before would be lost).
    if (this.direct && !this.ended) {
      this.handed = true;
      return this.source;
    }
    const pt = new PassThrough({ highWaterMark: 64 * 1024 });
    this.current = pt;
    for (const c of this.chunks) pt.write(c);
    if (this.ended) pt.end();
    else this.source.resume();
    return pt;
  }

  /** Stops feeding the current reader (between attempts); the source waits meanwhile. */
  detach(): void {
    if (this.handed) {
      this.handed = false;
      this.source.pause();
      return;
    }
    if (!this.current) return;
    const prev = this.current;
    this.current = undefined;
    this.source.pause();
    prev.removeAllListeners('drain');
  }

  /** The whole body once it ended, if it fit the cap (for mirrors); undefined otherwise. */
  complete(): Promise<Buffer | undefined> {
    if (this.ended || this.failed || this.overflowed) return Promise.resolve(this.result());
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  private result(): Buffer | undefined {
    return this.ended && !this.overflowed && !this.failed ? Buffer.concat(this.chunks, this.recorded) : undefined;
  }

  private settle(): void {
    const r = this.result();
    for (const w of this.waiters.splice(0)) w(r);
  }

  private onData(chunk: Buffer): void {
    this.bytes += chunk.length;
    if (!this.overflowed) {
      if (this.recorded + chunk.length > this.cap) {
        this.overflowed = true;
        this.chunks = [];
        this.recorded = 0;
        this.settle();
      } else {
        this.chunks.push(chunk);
        this.recorded += chunk.length;
      }
    }
    if (this.handed) return;
    const pt = this.current;
    if (!pt) {
      this.source.pause();
      return;
    }
    if (!pt.write(chunk)) {
      this.source.pause();
      pt.once('drain', () => {
        if (this.current === pt) this.source.resume();
      });
    }
  }
}
