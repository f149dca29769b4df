/**
 * Consistent-hash tables: a request's key hash → one endpoint, so that the same key
 * keeps going to the same endpoint and a change of the endpoint set moves only the keys
 * it must (removing one of n endpoints moves about 1/n of the keys, those it had).
 *
 * - Ring (ketama, as Envoy's ring_hash): each endpoint owns ~size/n points on a 32-bit
 *   circle; a key goes to the first point at or after its hash. Minimal remapping by
 *   construction; balance within a few % at 1024 points for a handful of endpoints.
 * - Maglev (Eisenbud et al., NSDI'16, as Envoy's maglev): a prime-sized lookup table
 *   each endpoint fills along its own permutation, in turns. O(1) lookup and near-perfect
 *   balance; slightly more than minimal remapping (the paper's figures: a few %).
 *
 * Endpoints are identified by their address (what survives a change of the others);
 * tables index into the address list they were built from.
 */
import { createHash } from 'node:crypto';

/** A built table: a key hash → an index into the addresses it was built from. */
export interface HashTable {
  /** The endpoint index for `hash`. */
  lookup(hash: number): number;
  /**
   * The endpoint index for `hash` skipping those `skip` refuses (a retry elsewhere,
   * deterministic per key); undefined when every endpoint is refused.
   */
  lookupSkipping(hash: number, skip: (index: number) => boolean): number | undefined;
}

/** 32-bit hash of a request's key: FNV-1a over the UTF-16 code units, then murmur3's finaliser (FNV alone clusters similar keys such as user-1, user-2). */
export function hashKey(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Four 32-bit words of md5(s): ketama's points (table builds only, never per request). */
function md5Words(s: string): [number, number, number, number] {
  const d = createHash('md5').update(s).digest();
  return [d.readUInt32LE(0), d.readUInt32LE(4), d.readUInt32LE(8), d.readUInt32LE(12)];
}

/** Endpoints a ring can hold: their rank is packed under each point's 32-bit hash. */
const MAX_RING_ENDPOINTS = 2 ** 21;

/**
 * Ketama ring over `addresses`, `perHost` points each. An endpoint's points depend only
 * on its address and perHost, so the caller keeps perHost fixed across endpoint changes
 * (balance.ts: from the most endpoints seen) and a removal moves only the removed
 * endpoint's keys (Envoy resizes per host count, which moves others' keys too).
 */
export function buildRing(addresses: readonly string[], perHost: number): HashTable {
  const n = addresses.length;
  if (n > MAX_RING_ENDPOINTS) throw new RangeError(`buildRing: ${n} endpoints, at most ${MAX_RING_ENDPOINTS}`);
  // Ties (a collision of two endpoints' points) go to the lower address, whatever the
  // input order: each point is packed as hash × 2^21 + its endpoint's address rank (an
  // exact integer below 2^53), so one numeric sort of a typed array orders by both
  // (an array of objects sorted with a comparator took 5 s for a million points).
  const byAddress = addresses.map((_, i) => i).sort((x, y) => (addresses[x]! < addresses[y]! ? -1 : addresses[x]! > addresses[y]! ? 1 : 0));
  const rank = new Uint32Array(n);
  byAddress.forEach((i, r) => { rank[i] = r; });
  const packed = new Float64Array(n * perHost);
  let p = 0;
  addresses.forEach((a, i) => {
    // Each md5 gives four points, as ketama does.
    for (let r = 0; r * 4 < perHost; r++) {
      const w = md5Words(`${a}-${r}`);
      for (let k = 0; k < 4 && r * 4 + k < perHost; k++) packed[p++] = w[k]! * MAX_RING_ENDPOINTS + rank[i]!;
    }
  });
  packed.sort();
  const hashes = new Uint32Array(packed.length);
  const owners = new Uint32Array(packed.length);
  for (let j = 0; j < packed.length; j++) {
    const r = packed[j]! % MAX_RING_ENDPOINTS;
    hashes[j] = (packed[j]! - r) / MAX_RING_ENDPOINTS;
    owners[j] = byAddress[r]!;
  }
  const at = (hash: number): number => {
    let lo = 0;
    let hi = hashes.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (hashes[mid]! < hash) lo = mid + 1;
      else hi = mid;
    }
    return lo === hashes.length ? 0 : lo;
  };
  return {
    lookup: (hash) => owners[at(hash >>> 0)]!,
    lookupSkipping(hash, skip) {
      // Walk on along the ring: the next distinct endpoint the key would fall to.
      const start = at(hash >>> 0);
      for (let k = 0; k < owners.length; k++) {
        const owner = owners[(start + k) % owners.length]!;
        if (!skip(owner)) return owner;
      }
      return undefined;
    },
  };
}

/** Maglev lookup table of prime size `size` over `addresses`. */
export function buildMaglev(addresses: readonly string[], size: number): HashTable {
  const n = addresses.length;
  const table = new Int32Array(size).fill(-1);
  if (n > 0) {
    const offset = new Array<number>(n);
    const skipBy = new Array<number>(n);
    const pos = new Array<number>(n);
    addresses.forEach((a, i) => {
      const [h1, h2] = md5Words(a);
      offset[i] = h1 % size;
      skipBy[i] = (h2 % (size - 1)) + 1;
      pos[i] = offset[i]!;
    });
    // Endpoints take turns claiming their next free slot along their own permutation.
    let filled = 0;
    for (;;) {
      for (let i = 0; i < n; i++) {
        let c = pos[i]!;
        while (table[c]! >= 0) c = (c + skipBy[i]!) % size;
        table[c] = i;
        pos[i] = (c + skipBy[i]!) % size;
        if (++filled === size) break;
      }
      if (filled === size) break;
    }
  }
  return {
    lookup: (hash) => table[(hash >>> 0) % size]!,
    lookupSkipping(hash, skip) {
      // Rehash until an acceptable endpoint comes up: deterministic per key, and as
      // balanced as the table; bounded, then a scan for any acceptable one.
      let h = hash >>> 0;
      for (let k = 0; k < 32; k++) {
        const i = table[h % size]!;
        if (i >= 0 && !skip(i)) return i;
        h = fmix32(h + 0x9e3779b9);
      }
      for (let i = 0; i < n; i++) if (!skip(i)) return i;
      return undefined;
    },
  };
}
