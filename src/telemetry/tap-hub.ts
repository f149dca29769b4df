/**
 * STUB (skeleton): the tap helper (h-tap) replaces this file.
 *
 * The live tap of one proxy: `GET /debug/tap?namespace=&service=&path=&status=` streams
 * every finished request/connection matching the filter as one JSON line (TapEvent).
 * Publishing costs one boolean check when nobody listens; a subscriber that reads too
 * slowly is dropped, never buffered without bound.
 */
import type { Handler } from '../lib/http-endpoints';
import type { TapEvent } from './types';

export class TapHub {
  /** True while a subscriber listens: build TapEvents only then. */
  get active(): boolean {
    return false;
  }

  publish(_event: TapEvent): void {}

  /** The `GET /debug/tap` handler. */
  readonly handler: Handler = (_req, _url, res) => {
    res.writeHead(501, { 'content-type': 'text/plain' });
    res.end('tap: not built yet\n');
  };

  /** Ends every subscriber's stream (shutdown). */
  close(): void {}
}
