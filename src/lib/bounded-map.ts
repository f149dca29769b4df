/**
 * A Map that holds at most `max` entries and forgets the least recently used one to
 * make room. State keyed by something a peer chooses (an address, a node, a token)
 * must stay bounded however many keys arrive; a forgotten key simply starts afresh.
 * Recency is the Map's insertion order: a read re-inserts the key at the end.
 */
export class BoundedMap<K, V> {
  private readonly map = new Map<K, V>();
  readonly max: number;

  constructor(max: number) {
    if (!(max >= 1)) throw new Error(`invalid bound ${max}: a bounded map holds at least one entry`);
    this.max = Math.floor(max);
  }

  /** The value of `key`, which becomes the most recently used. */
  get(key: K): V | undefined {
    const value = this.map.get(key);
    if (value !== undefined) {
      this.map.delete(key);
      this.map.set(key, value);
    }
    return value;
  }

  /** The value of `key`, without touching its recency. */
  peek(key: K): V | undefined {
    return this.map.get(key);
  }

  /** Sets `key` as the most recently used, forgetting the least recently used one if full. */
  set(key: K, value: V): void {
    this.map.delete(key);
    if (this.map.size >= this.max) this.map.delete(this.map.keys().next().value!);
    this.map.set(key, value);
  }

  delete(key: K): void {
    this.map.delete(key);
  }

  get size(): number {
    return this.map.size;
  }

  /** The entries, least recently used first, without touching their recency. */
  entries(): IterableIterator<[K, V]> {
    return this.map.entries();
  }
}
