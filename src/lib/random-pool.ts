/**
 * Cryptographically random bytes for per-request ids (W3C traceparent), drawn from a
 * pooled buffer refilled 4 KiB at a time. `crypto.randomBytes(24)` per request was ~6 %
 * of the waypoint's CPU in the L7 benchmark: each call allocates a Buffer and crosses
 * into OpenSSL for 24 bytes. The bytes are the same CSPRNG's; only the call is amortised.
 */
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;
const pool = Buffer.allocUnsafe(POOL_BYTES);
let offset = POOL_BYTES;

/**
 * `n` fresh random bytes (n ≤ 4096) as a view into the pool: read them before the next
 * call (each byte is handed out once, but the memory is reused after a refill).
 */
export function pooledRandomBytes(n: number): Buffer {
  if (n > POOL_BYTES) throw new RangeError(`pooledRandomBytes: at most ${POOL_BYTES} bytes, asked for ${n}`);
  if (offset + n > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const out = pool.subarray(offset, offset + n);
  offset += n;
  return out;
}

/** `n` random bytes as lower-case hex (2n characters), read straight off the pool (no Buffer view per call: span ids are made per traced request). */
export function randomHex(n: number): string {
  if (n > POOL_BYTES) throw new RangeError(`randomHex: at most ${POOL_BYTES} bytes, asked for ${n}`);
  if (offset + n > POOL_BYTES) {
    randomFillSync(pool);
    offset = 0;
  }
  const start = offset;
  offset += n;
  return pool.toString('hex', start, offset);
}
