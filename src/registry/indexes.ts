/**
 * Small multi-valued index used by MeshState. Kept apart so the state file reads as
 * the registry's semantics rather than as bookkeeping.
 */

/** key → set of members; empty sets are dropped so the index never grows with churn. */
export class SetIndex<V = string> {
  private readonly map = new Map<string, Set<V>>();

  add(key: string, member: V): void {
    let set = this.map.get(key);
    if (!set) {
      set = new Set();
      this.map.set(key, set);
    }
    set.add(member);
  }

  remove(key: string, member: V): void {
    const set = this.map.get(key);
    if (!set) return;
    set.delete(member);
    if (set.size === 0) this.map.delete(key);
  }

  /** Never undefined, so callers can iterate without a guard. */
  get(key: string): ReadonlySet<V> {
    return this.map.get(key) ?? EMPTY;
  }

  size(key: string): number {
    return this.map.get(key)?.size ?? 0;
  }

  clear(): void {
    this.map.clear();
  }
}

const EMPTY: ReadonlySet<never> = new Set<never>();

/** key → count, for "does at least one exist" questions that must survive duplicates. */
export class CountIndex {
  private readonly map = new Map<string, number>();

  add(key: string): void {
    this.map.set(key, (this.map.get(key) ?? 0) + 1);
  }

  remove(key: string): void {
    const n = (this.map.get(key) ?? 0) - 1;
    if (n <= 0) this.map.delete(key);
    else this.map.set(key, n);
  }

  has(key: string): boolean {
    return this.map.has(key);
  }

  clear(): void {
    this.map.clear();
  }
}

/**
 * key → one owner. Two records may briefly claim the same key (a pod IP reused before
 * the old pod's delete arrives): the latest claim wins, and releasing checks the owner
 * so the old record's delete does not erase the new owner's entry. Earlier claimants
 * are remembered so that, when the owner goes, the key falls back to one of them.
 */
export class OwnerIndex {
  /**
   * A key's claimants, oldest first; the usual single one as a plain string: a
   * one-element array costs ~50 B more per key, ~5 MB for the pod IPs and VIPs of a
   * 100k-workload registry (bench/ztunnel-registry-memory.js).
   */
  private readonly claims = new Map<string, string | string[]>();

  claim(key: string, owner: string): void {
    const held = this.claims.get(key);
    if (held === owner) return;
    if (held === undefined) {
      this.claims.set(key, owner);
    } else if (typeof held === 'string') {
      this.claims.set(key, [held, owner]);
    } else {
      const i = held.indexOf(owner);
      if (i !== -1) held.splice(i, 1);
      held.push(owner);
    }
  }

  release(key: string, owner: string): void {
    const held = this.claims.get(key);
    if (held === undefined) return;
    if (typeof held === 'string') {
      if (held === owner) this.claims.delete(key);
      return;
    }
    const i = held.indexOf(owner);
    if (i !== -1) held.splice(i, 1);
    if (held.length === 1) this.claims.set(key, held[0]!);
    else if (held.length === 0) this.claims.delete(key);
  }

  /** The latest claimant still holding the key. */
  get(key: string): string | undefined {
    const held = this.claims.get(key);
    return typeof held === 'string' ? held : held?.[held.length - 1];
  }

  clear(): void {
    this.claims.clear();
  }
}

/**
 * Records of one kind (MeshState's store, shared) kept in step with an index of their
 * keys by namespace, so a per-namespace lookup does not scan the whole kind.
 */
export class NamespacedStore<R extends { namespace: string }> {
  private readonly byNs = new SetIndex();

  constructor(private readonly records: Map<string, R>) {}

  put(key: string, r: R): void {
    this.delete(key);
    this.records.set(key, r);
    this.byNs.add(r.namespace, key);
  }

  delete(key: string): void {
    const old = this.records.get(key);
    if (!old) return;
    this.byNs.remove(old.namespace, key);
    this.records.delete(key);
  }

  /** The records of namespace `ns`, in no particular order. */
  in(ns: string): R[] {
    const out: R[] = [];
    for (const key of this.byNs.get(ns)) {
      const r = this.records.get(key);
      if (r) out.push(r);
    }
    return out;
  }

  /** Drops the index (MeshState clears the records). */
  clear(): void {
    this.byNs.clear();
  }
}

/** Plain code-unit order (not locale), for sorting names stably. */
export function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
