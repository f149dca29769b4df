/**
 * What every status the controller writes back shares (routes, TrafficPolicies,
 * AuthorizationPolicies): conditions stamped as the API conventions ask, and a merge
 * patch of the /status subresource sent once per object version and wanted status.
 */
import type { KubeClient } from '../k8s/client';
import type { Logger } from '../lib/log';
import { stableStringify } from './stable-json';

/** A condition as it is written: with the object's generation and when it last flipped. */
export type StampedCondition<C> = C & { observedGeneration?: number; lastTransitionTime: string };

/** Now, as Kubernetes writes times (RFC 3339, whole seconds). */
export function statusTime(now: Date = new Date()): string {
  return now.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * `c` with `generation` (when known) and a lastTransitionTime that moves only when the
 * status flips (the previous condition of its type is `prev`), as the API conventions ask.
 */
export function stampCondition<C extends { status: string }>(c: C, prev: { status?: unknown; lastTransitionTime?: unknown } | undefined,
  generation: number | undefined, now: string): StampedCondition<C> {
  const since = prev?.status === c.status && typeof prev.lastTransitionTime === 'string' ? prev.lastTransitionTime : now;
  return { ...c, ...(generation !== undefined ? { observedGeneration: generation } : {}), lastTransitionTime: since };
}

/**
 * Sends status patches, each object's at most once per (resourceVersion, wanted
 * status): the informer may not have delivered the echo of the last write yet. A
 * failure (or a 409 from a concurrent writer) is logged, not thrown: the status is a
 * courtesy to the user and must not stall the registry; the next event tries again.
 */
export class StatusPatches {
  private sent = new Map<string, string>();

  constructor(private readonly client: KubeClient, private readonly logger: Logger, private readonly what: string) {}

  /** Whether `key`'s `want` was already sent for `resourceVersion` (nothing to do). */
  sentAlready(key: string, resourceVersion: string | undefined, want: unknown): boolean {
    return this.sent.get(key) === tag(resourceVersion, want);
  }

  /** Merge-patches `path` with `status` (and the object's resourceVersion), remembering `want` on success. */
  async send(key: string, path: string, resourceVersion: string | undefined, status: unknown, want: unknown): Promise<void> {
    try {
      await this.client.patch(path, { metadata: { resourceVersion }, status }, 'merge');
      this.sent.set(key, tag(resourceVersion, want));
    } catch (err) {
      this.logger.warn({ err: (err as Error).message, object: key }, `could not set the ${this.what} status`);
    }
  }

  /** Forgets objects that are gone. */
  keepOnly(has: (key: string) => boolean): void {
    for (const key of this.sent.keys()) if (!has(key)) this.sent.delete(key);
  }
}

function tag(resourceVersion: string | undefined, want: unknown): string {
  return `${resourceVersion}|${stableStringify(want)}`;
}
