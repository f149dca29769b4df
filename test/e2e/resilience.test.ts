// Every resilience demonstration that fits one topology, on one lab (one bring-up instead
// of one per demonstration, to keep the suite short): helpers/resilience-lab.ts has the
// topology; each section is its own file under resilience/ (they were separate lab tests
// before: resilience-<name>.test.ts, and waypoint-path.test.ts, the waypoint data path on
// the same topology) and prints its figures for docs/resilience.md. Each section leaves
// the lab as it found it (its routes, policies and echo behaviours undone, namespace demo
// bound to demo/waypoint, both waypoints caught up), so the order does not matter.
// Outlier detection and load balancing change Service demo/echo's endpoints: they have
// their own lab (resilience-endpoints.test.ts).
import t from 'tap';
import { labSkipReason } from './helpers/lab';
import { startResilienceLab } from './helpers/resilience-lab';
import * as admission from './resilience/admission';
import * as authz from './resilience/authz';
import * as canary from './resilience/canary';
import * as chain from './resilience/chain';
import * as pool from './resilience/pool';
import * as retry from './resilience/retry';
import * as waypointPath from './resilience/waypoint-path';

const skip = labSkipReason();
if (skip) t.plan(0, `lab e2e: ${skip}`);
else {
  // The sections were seven files with a timeout each (.taprc): together they get more than one.
  t.setTimeout(1200_000);
  t.test('resilience on the lab', async (t) => {
    const r = await startResilienceLab(t);
    // Admission last: its rate-limit and shedding figures are the most sensitive to a busy
    // machine, and the seconds just after a bring-up are the lab's busiest.
    for (const s of [authz, canary, chain, pool, retry, waypointPath, admission]) await s.section(t, r);
  });
}
