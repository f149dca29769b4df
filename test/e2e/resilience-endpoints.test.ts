// The resilience demonstrations that change Service demo/echo's endpoints, on one lab
// (one bring-up for both, to keep the suite short; helpers/resilience-lab.ts has the
// topology: demo/echo with four endpoints, echo-4 slow): load balancing (consistent hash,
// round robin vs least request vs peak EWMA) and outlier detection. Each section is its
// own file under resilience/ (they were resilience-hash.test.ts and
// resilience-outlier.test.ts) and leaves the lab as it found it, so the order does not
// matter. The other resilience demonstrations share a lab of their own
// (resilience.test.ts).
import t from 'tap';
import { labSkipReason } from './helpers/lab';
import { startEndpointsLab } from './helpers/resilience-lab';
import * as hash from './resilience/hash';
import * as outlier from './resilience/outlier';

const skip = labSkipReason();
if (skip) t.plan(0, `lab e2e: ${skip}`);
else {
  // The sections were two files with a timeout each (.taprc): together they get more than one.
  t.setTimeout(900_000);
  t.test('resilience on the lab: demo/echo\'s endpoints', async (t) => {
    const r = await startEndpointsLab(t);
    for (const s of [hash, outlier]) await s.section(t, r);
  });
}
