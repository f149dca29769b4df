/**
 * The waypoint's per-Service state made from one section of a Service's TrafficPolicy
 * (an outlier detector, a bulkhead, a balancer, an admission gate): one state per
 * Service, made on first use, made afresh only when the section changes (not the same
 * object and, unless `same` says otherwise, not the same JSON: an edit of another
 * section keeps it), dropped by prune() when the policy loses the section or goes, so
 * the table is bounded by the policies' targets.
 *
 * Kept as namespace → name → entry: two Map lookups and no key string per request.
 */

/** One Service's state and the section it was made from (the latest equal one seen). */
export interface PerServiceEntry<S, T> {
  readonly namespace: string;
  readonly name: string;
  section: S;
  readonly state: T;
}

export interface PerServiceOptions<S, T> {
  /** The state of Service `namespace/name` under `section`. */
  make(namespace: string, name: string, section: S): T;
  /** Whether two distinct section objects count as the same (default: same JSON). */
  same?(a: S, b: S): boolean;
  /** Told of a state replaced or pruned (close its timers, drop its metric series). */
  drop?(state: T, namespace: string, name: string): void;
}

export class PerService<S, T> {
  private readonly byNamespace = new Map<string, Map<string, PerServiceEntry<S, T>>>();
  private readonly same: (a: S, b: S) => boolean;

  constructor(private readonly opts: PerServiceOptions<S, T>) {
    this.same = opts.same ?? sameJson;
  }

  /** The state of Service `namespace/name` under `section` (the section in force now). */
  get(namespace: string, name: string, section: S): T {
    const had = this.byNamespace.get(namespace)?.get(name);
    if (had && (had.section === section || this.same(had.section, section))) {
      had.section = section;
      return had.state;
    }
    if (had) this.remove(had);
    const state = this.opts.make(namespace, name, section);
    // Looked up again: make() may have pruned the table.
    let names = this.byNamespace.get(namespace);
    if (!names) this.byNamespace.set(namespace, (names = new Map()));
    names.set(name, { namespace, name, section, state });
    return state;
  }

  /** Drops the states whose Service's section is now absent or not the same (call on policy changes). */
  prune(sectionOf: (namespace: string, name: string) => S | undefined): void {
    for (const names of this.byNamespace.values()) {
      for (const e of names.values()) {
        const now = sectionOf(e.namespace, e.name);
        if (now === undefined || (now !== e.section && !this.same(now, e.section))) this.remove(e);
      }
    }
  }

  /** Every Service's entry (metrics, admin views). */
  *entries(): Iterable<PerServiceEntry<S, T>> {
    for (const names of this.byNamespace.values()) yield* names.values();
  }

  /** Drops every state. */
  clear(): void {
    for (const e of [...this.entries()]) this.remove(e);
  }

  /** Services with state. */
  get size(): number {
    let n = 0;
    for (const names of this.byNamespace.values()) n += names.size;
    return n;
  }

  private remove(e: PerServiceEntry<S, T>): void {
    const names = this.byNamespace.get(e.namespace);
    if (names?.get(e.name) !== e) return;
    names.delete(e.name);
    if (names.size === 0) this.byNamespace.delete(e.namespace);
    this.opts.drop?.(e.state, e.namespace, e.name);
  }
}

function sameJson<S>(a: S, b: S): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}
