// Metric series stay bounded under workload churn (issue 13, "metric series bounded"):
// 10,000 distinct workloads come, talk once and leave through the real ztunnel and
// waypoint metrics following a real MeshState, 50 in the registry at a time. The
// series count follows the live workloads, not every workload that ever lived.
import t from 'tap';
import { churn, churnRig, type ChurnProxy } from '../src/bench/metric-churn';

const TOTAL = 10_000;
const WINDOW = 50;

for (const proxy of ['ztunnel', 'waypoint'] as ChurnProxy[]) {
  t.test(`${proxy}: ${TOTAL} workloads through, ${WINDOW} at a time: the series stay bounded by the live ones`, async (t) => {
    const rig = churnRig(proxy);
    t.teardown(() => rig.close());
    // Series per workload, measured once the first is in.
    rig.add(0);
    rig.exchange(0);
    const perWorkload = await rig.series();
    t.ok(perWorkload > 0, `one exchange makes series (${perWorkload})`);
    rig.remove(0);
    t.equal(await rig.series(), 0, 'a workload that left takes its series along');
    let most = 0;
    await churn(rig, TOTAL, WINDOW, async (done) => {
      if (done % 1000 === 0) most = Math.max(most, await rig.series());
    });
    t.ok(most <= WINDOW * perWorkload, `at most the live workloads' series during the churn (${most} ≤ ${WINDOW} × ${perWorkload})`);
    t.equal(await rig.series(), WINDOW * perWorkload, 'at the end, exactly the live workloads\' series');
    for (let i = TOTAL - WINDOW; i < TOTAL; i++) rig.remove(i);
    t.equal(await rig.series(), 0, 'none once every workload left');
    t.comment(`${proxy}: ${perWorkload} series per workload; at most ${most} while ${TOTAL} workloads churned ${WINDOW} at a time`);
  });
}
