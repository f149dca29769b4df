/**
 * The prometheus section of test/e2e/observability.test.ts: a real Prometheus (root
 * namespace, loopback) scrapes every ztunnel and the demo waypoint on 15020 each
 * second and evaluates the shipped rules (daemonset/prometheus-rules.yaml) each second;
 * after demo traffic, the shipped Grafana dashboard's variable queries list the demo
 * namespace and its services, and every panel's queries, with the variables set to
 * demo values, return data. Prints panel → series counts (docs/observability.md shows
 * them). Fast checks of the same files without the lab: test/prometheus-rules.test.ts.
 */
import type { Test } from 'tap';
import { join } from 'node:path';
import type { ObservabilityLab } from '../helpers/observability-lab';
import { prometheusSkipReason, startPrometheus, type PrometheusServer } from '../helpers/prometheus';
import { customDefaults, labelValuesQuery, loadDashboard, queryPanels, substitute, type Dashboard } from '../../helpers/grafana-dashboard';
import { formatTable } from '../../../src/cli/output';
import { waitFor } from '../../helpers/wait';

const RULES = join(__dirname, '..', '..', '..', 'daemonset', 'prometheus-rules.yaml');

interface PanelResult { title: string; counts: number[] }

async function runPanels(prom: PrometheusServer, d: Dashboard, values: Record<string, string>): Promise<PanelResult[]> {
  const out: PanelResult[] = [];
  for (const p of queryPanels(d)) {
    const counts: number[] = [];
    for (const target of p.targets ?? []) counts.push((await prom.query(substitute(target.expr, values))).length);
    out.push({ title: p.title, counts });
  }
  return out;
}

export async function section(t: Test, o: ObservabilityLab): Promise<void> {
  const skip = prometheusSkipReason();
  if (skip) {
    await t.skip(skip, () => undefined);
    return;
  }
  const prom = await startPrometheus(t, {
    jobs: [
      { job: 'weft-ztunnel', targets: Object.values(o.nodes).map((a) => `${a}:15020`), path: '/stats/prometheus' },
      { job: 'weft-waypoint', targets: [`${o.waypointIp}:15020`], path: '/stats/prometheus' },
    ],
    ruleFiles: [RULES],
  });
  t.comment(`prometheus pid ${prom.pid} at ${prom.url}, scraping ${Object.keys(o.nodes).length} ztunnels and the waypoint every 1 s`);
  let targets = await prom.targets();
  await waitFor('prometheus scraped every ztunnel and the waypoint', async () => {
    targets = await prom.targets();
    return targets.length > 0 && targets.every((x) => x.health === 'up');
  }, { timeoutMs: 20_000, intervalMs: 500 }).catch((err: Error) => {
    throw new Error(`${err.message}: ${targets.map((x) => `${x.scrapeUrl} ${x.health} ${x.lastError}`).join('; ')}`);
  });
  t.equal(targets.length, Object.keys(o.nodes).length + 1, `${targets.length} targets up`);

  const started = Date.now();
  const loads = await o.traffic({ seconds: 5 });
  t.comment(`demo traffic: ${loads.map((l) => `${l.requests} requests ${JSON.stringify(l.statuses)}`).join(', ')} in ${Date.now() - started} ms`);

  const d = loadDashboard();
  // The variables as Grafana fills them: its label_values() queries, the demo values picked.
  const values: Record<string, string> = { datasource: 'prometheus', ...customDefaults(d) };
  const pick: Record<string, (vs: string[]) => string | undefined> = {
    namespace: (vs) => vs.find((v) => v === 'demo'),
    service: (vs) => vs.find((v) => v.startsWith('echo.demo')),
  };
  for (const v of d.templating.list.filter((x) => x.type === 'query')) {
    const q = labelValuesQuery(v);
    const listed = await prom.labelValues(q.label, q.match && substitute(q.match, values));
    const chosen = pick[v.name]?.(listed);
    t.ok(chosen, `$${v.name} lists ${chosen} (of ${listed.join(', ')})`);
    values[v.name] = chosen ?? '.*';
  }

  let results: PanelResult[] = [];
  await waitFor('every dashboard panel returns data', async () => {
    results = await runPanels(prom, d, values);
    return results.every((r) => r.counts.some((n) => n > 0));
  }, { timeoutMs: 30_000, intervalMs: 1000 }).catch(() => { /* the per-panel assertions below say which */ });
  for (const r of results) t.ok(r.counts.some((n) => n > 0), `${r.title}: ${r.counts.join(' + ')} series`);
  if (results.some((r) => r.counts.every((n) => n === 0))) {
    // What the proxies did report, to see which label the empty panels' filters missed.
    for (const m of ['istio_requests_total', 'istio_tcp_connections_opened_total']) {
      const series = await prom.query(`count by (reporter, source_workload, source_workload_namespace, destination_workload, destination_workload_namespace, destination_service) (${m})`);
      t.comment(`${m}:\n${series.map((s) => JSON.stringify(s.metric)).join('\n')}`);
    }
  }
  t.comment(`dashboard panels with namespace=${values.namespace} service=${values.service}:\n${formatTable({
    headers: ['PANEL', 'SERIES', 'PER QUERY'],
    rows: results.map((r) => [r.title, r.counts.reduce((a, b) => a + b, 0), r.counts.join(' / ')]),
  })}`);

  // Every rule evaluates without error (a join matching many-to-many would fail here).
  const rules = await prom.rules();
  const bad = rules.filter((r) => r.health !== 'ok');
  t.same(bad.map((r) => `${r.name}: ${r.lastError ?? r.health}`), [], `${rules.length} rules evaluate cleanly`);
  const figures = await Promise.all([
    prom.query(`service:istio_requests_success:ratio_rate1m{destination_service="${values.service}"}`),
    prom.query(`service_quantile:istio_request_duration_milliseconds:histogram_quantile{destination_service="${values.service}"}`),
    prom.query(`sum(service:istio_requests:rate1m{destination_service="${values.service}"})`),
  ]);
  t.comment(`${values.service}: ${Number(figures[2][0]?.value[1]).toFixed(1)} req/s, success ${figures[0].map((s) => s.value[1]).join(', ')}, ` +
    figures[1].map((s) => `p${s.metric.quantile} ${Number(s.value[1]).toFixed(2)} ms`).join(', '));
}
