/**
 * TrafficPolicy (`networking.weft.io/v1alpha1`): Weft's own resilience policy for a
 * Service, applied by the waypoint that serves it. One section per mechanism, each
 * validated (defaults filled in) by its own module; this file composes them.
 *
 *   apiVersion: networking.weft.io/v1alpha1
 *   kind: TrafficPolicy
 *   metadata: { name: echo-resilience, namespace: demo }
 *   spec:
 *     targetRefs: [{ group: "", kind: Service, name: echo }]
 *     loadBalancer: ...      # balance-spec.ts
 *     connectionPool: ...    # pool-spec.ts
 *     outlierDetection: ...  # outlier-spec.ts
 *     retry: ...             # retry-spec.ts
 *     faults: ...            # fault-spec.ts
 *     rateLimit: ...         # rate-limit-spec.ts
 *     loadShedding: ...      # shedding-spec.ts
 *
 * A section left out means that mechanism's defaults (see docs/resilience.md), not "off":
 * e.g. the retry budget and the cross-hop cap apply to every Service behind a waypoint.
 */
import type { LoadBalancerSpec } from './balance-spec';
import type { ConnectionPoolSpec } from './pool-spec';
import type { OutlierDetectionSpec } from './outlier-spec';
import type { RetrySpec } from './retry-spec';
import type { FaultSpec } from './fault-spec';
import type { RateLimitSpec } from './rate-limit-spec';
import type { LoadSheddingSpec } from './shedding-spec';

export const TRAFFIC_POLICY_GROUP = 'networking.weft.io';
export const TRAFFIC_POLICY_VERSION = 'v1alpha1';
export const TRAFFIC_POLICY_API_VERSION = `${TRAFFIC_POLICY_GROUP}/${TRAFFIC_POLICY_VERSION}`;

/** A Service in the policy's namespace (group "" and kind Service are the only ones accepted). */
export interface TrafficPolicyTargetRef {
  group: '';
  kind: 'Service';
  name: string;
}

/** The validated spec: sections absent from the object are absent here (defaults apply at use). */
export interface TrafficPolicySpec {
  targetRefs: TrafficPolicyTargetRef[];
  loadBalancer?: LoadBalancerSpec;
  connectionPool?: ConnectionPoolSpec;
  outlierDetection?: OutlierDetectionSpec;
  retry?: RetrySpec;
  faults?: FaultSpec;
  rateLimit?: RateLimitSpec;
  loadShedding?: LoadSheddingSpec;
}
