/**
 * The TrafficPolicy status the controller writes (pure): per target Service and overall,
 * written only when it changed, lastTransitionTime kept unless the status flips.
 */
import t from 'tap';
import { desiredTrafficPolicyStatus, nextTrafficPolicyStatus, trafficPolicyRecord, type TrafficPolicyOutcome } from '../src/controller/traffic-policy';

const obj = (name: string, targets: string[], o: { ts?: string; generation?: number; status?: unknown; spec?: Record<string, unknown> } = {}) => ({
  apiVersion: 'networking.weft.io/v1alpha1', kind: 'TrafficPolicy',
  metadata: { name, namespace: 'demo', creationTimestamp: o.ts ?? '2026-11-30T12:00:00Z', generation: o.generation ?? 1, resourceVersion: '5' },
  spec: o.spec ?? { targetRefs: targets.map((n) => ({ kind: 'Service', name: n })) },
  ...(o.status ? { status: o.status } : {}),
});

function outcomes(...objs: ReturnType<typeof obj>[]): Map<string, TrafficPolicyOutcome> {
  return new Map(objs.map((x) => [`demo/${x.metadata.name}`, { obj: x as never, result: trafficPolicyRecord(x as never) }]));
}

t.test('per target and overall: Accepted, TargetNotFound, Conflicted; Invalid names the field', async (t) => {
  const exists = (_ns: string, n: string) => n !== 'gone';
  const st = desiredTrafficPolicyStatus(outcomes(
    obj('old', ['echo', 'gone'], { ts: '2026-11-30T10:00:00Z' }),
    obj('new', ['echo', 'api']),
    obj('bad', ['echo'], { spec: { targetRefs: [{ kind: 'Service', name: 'echo' }], retry: 'x' } }),
  ), exists);
  const view = (k: string) => st.get(`demo/${k}`)!.ancestors.map((a) => `${a.ancestorRef.name}=${a.conditions[0]!.reason}`);
  t.same(view('old'), ['echo=Accepted', 'gone=TargetNotFound']);
  t.same(view('new'), ['echo=Conflicted', 'api=Accepted']);
  t.same(view('bad'), ['echo=Invalid'], 'the readable targets of an invalid object');
  t.match(st.get('demo/bad')!.conditions[0], { status: 'False', reason: 'Invalid', message: /spec\.retry must be an object.*no valid version/ });
  t.match(st.get('demo/new')!.conditions[0], { status: 'False', reason: 'Conflicted', message: /not in force for Service demo\/echo/ });
  t.same(st.get('demo/old')!.ancestors[0]!.ancestorRef, { group: '', kind: 'Service', namespace: 'demo', name: 'echo' });
});

t.test('written only when changed; lastTransitionTime moves only on a flip', async (t) => {
  const exists = () => true;
  const o1 = obj('p', ['echo']);
  const want = desiredTrafficPolicyStatus(outcomes(o1), exists).get('demo/p')!;
  const first = nextTrafficPolicyStatus(o1 as never, want, '2026-11-30T12:00:01Z') as { conditions: { lastTransitionTime: string; observedGeneration: number }[] };
  t.match(first.conditions[0], { status: 'True', reason: 'Accepted', observedGeneration: 1, lastTransitionTime: '2026-11-30T12:00:01Z' });
  const o2 = obj('p', ['echo'], { status: first });
  t.equal(nextTrafficPolicyStatus(o2 as never, want, '2026-11-30T12:00:05Z'), undefined, 'same status: nothing to write');
  // A new generation with the same verdict: observedGeneration moves, the transition time does not.
  const o3 = obj('p', ['echo'], { status: first, generation: 2 });
  const third = nextTrafficPolicyStatus(o3 as never, want, '2026-11-30T12:00:09Z') as typeof first;
  t.match(third.conditions[0], { observedGeneration: 2, lastTransitionTime: '2026-11-30T12:00:01Z' });
  // A flip: the time moves.
  const notFound = desiredTrafficPolicyStatus(outcomes(o3), () => false).get('demo/p')!;
  const fourth = nextTrafficPolicyStatus(obj('p', ['echo'], { status: third, generation: 2 }) as never, notFound, '2026-11-30T12:00:20Z') as typeof first;
  t.match(fourth.conditions[0], { status: 'False', reason: 'TargetNotFound', lastTransitionTime: '2026-11-30T12:00:20Z' });
});
