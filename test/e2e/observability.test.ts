// Every observability view on one lab (one bring-up, to keep the suite short), with the
// demo traffic of helpers/observability-lab.ts: traces stitched across hops, the live
// tap, weft top/stat, weft graph, the dashboard in a real headless Chromium, and the
// Grafana dashboard's queries and recording rules against a real Prometheus scraping
// the lab. Each section is its own file under observability/; figures are printed.
import t from 'tap';
import { labSkipReason } from './helpers/lab';
import { startObservabilityLab } from './helpers/observability-lab';
import * as traces from './observability/traces';
import * as tap from './observability/tap';
import * as top from './observability/top';
import * as graph from './observability/graph';
import * as dashboard from './observability/dashboard';
import * as prometheus from './observability/prometheus';

const skip = labSkipReason();
if (skip) t.plan(0, `lab e2e: ${skip}`);
else {
  t.test('observability on the lab', async (t) => {
    const o = await startObservabilityLab(t);
    await o.traffic({ seconds: 2 });
    const sections = { traces, tap, top, graph, dashboard, prometheus };
    for (const [name, s] of Object.entries(sections)) await t.test(name, (t) => s.section(t, o));
  });
}
