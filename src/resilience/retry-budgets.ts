/**
 * The retry budgets of one waypoint, one per destination Service (retry-budget.ts),
 * shared by every route and policy retry to that Service. A budget is made on the first
 * retrying request to a Service and made afresh when the budget spec it was built from
 * changes (a new TrafficPolicy record is a new object: compared by identity, so the
 * lookup costs one Map read). Bounded: the least recently used Service is forgotten
 * past `max` (it starts afresh, with its reserve, if it comes back).
 */
import { BoundedMap } from '../lib/bounded-map';
import type { Clock } from '../lib/clock';
import { RetryBudget } from './retry-budget';
import type { RetryBudgetSpec } from './retry-spec';

/** More Services than a waypoint serves; only a bound against unbounded growth. */
export const MAX_RETRY_BUDGETS = 10_000;

export class RetryBudgets {
  private readonly budgets: BoundedMap<string, RetryBudget>;

  constructor(private readonly clock: Pick<Clock, 'now'>, max = MAX_RETRY_BUDGETS) {
    this.budgets = new BoundedMap(max);
  }

  /** The budget of Service `namespace/name` under `spec`. */
  forService(namespace: string, name: string, spec: Readonly<RetryBudgetSpec>): RetryBudget {
    const key = `${namespace}/${name}`;
    let b = this.budgets.get(key);
    if (b === undefined || b.spec !== spec) {
      b = new RetryBudget(spec, this.clock);
      this.budgets.set(key, b);
    }
    return b;
  }

  /** Each Service's budget and the retries it allows now, for the waypoint's admin view. */
  views(): RetryBudgetView[] {
    const out: RetryBudgetView[] = [];
    for (const [key, b] of this.budgets.entries()) {
      const [namespace, name] = key.split('/') as [string, string];
      out.push({ namespace, name, ratio: b.spec.ratio, minRetriesPerSecond: b.spec.minRetriesPerSecond, window: b.spec.window, available: Math.floor(b.available()) });
    }
    return out.sort((a, b) => (a.namespace === b.namespace ? (a.name < b.name ? -1 : 1) : a.namespace < b.namespace ? -1 : 1));
  }
}

/** One Service's retry budget at this waypoint pod. */
export interface RetryBudgetView {
  namespace: string;
  name: string;
  ratio: number;
  minRetriesPerSecond: number;
  window: string;
  /** Retries the budget allows now (negative: retries made above were charged beyond it). */
  available: number;
}
