/**
 * The shipped Grafana dashboard (daemonset/grafana-dashboard.json) as the tests read it:
 * its panels' queries with Grafana's variables replaced by values, as Grafana would
 * before sending them to Prometheus. The fast test (prometheus-rules.test.ts) checks
 * them with promtool; the lab test (e2e/observability/prometheus.ts) runs them against
 * a real Prometheus scraping the lab.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export const DASHBOARD_FILE = join(__dirname, '..', '..', 'daemonset', 'grafana-dashboard.json');

export interface DashboardTarget { refId: string; expr: string; legendFormat?: string; datasource?: { type?: string; uid?: string } }
export interface DashboardPanel {
  id: number;
  type: string;
  title: string;
  datasource?: { type?: string; uid?: string };
  gridPos: { h: number; w: number; x: number; y: number };
  targets?: DashboardTarget[];
  panels?: DashboardPanel[];
}
export interface DashboardVariable { type: string; name: string; query?: unknown; allValue?: string; includeAll?: boolean }
export interface Dashboard {
  title: string;
  uid: string;
  schemaVersion: number;
  templating: { list: DashboardVariable[] };
  panels: DashboardPanel[];
}

export function loadDashboard(file = DASHBOARD_FILE): Dashboard {
  return JSON.parse(readFileSync(file, 'utf8')) as Dashboard;
}

/** Every panel that queries (rows' nested panels included), in dashboard order. */
export function queryPanels(d: Dashboard): DashboardPanel[] {
  const out: DashboardPanel[] = [];
  const visit = (ps: DashboardPanel[]) => {
    for (const p of ps) {
      if (p.type === 'row') visit(p.panels ?? []);
      else out.push(p);
    }
  };
  visit(d.panels);
  return out;
}

/**
 * `expr` with Grafana's variables replaced: `$name`, `${name}` and `[[name]]` from
 * `values`, and the interval macros by `interval` (Grafana computes them from the
 * scrape interval and the panel's width; a fixed one is what a test can use). An
 * unknown variable throws, so a renamed variable cannot pass unnoticed.
 */
export function substitute(expr: string, values: Record<string, string>, interval = '15s'): string {
  const macros: Record<string, string> = { __rate_interval: interval, __interval: interval, __range: interval };
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]/g, (_m, a?: string, b?: string, c?: string) => {
    const name = (a ?? b ?? c)!;
    const v = macros[name] ?? values[name];
    if (v === undefined) throw new Error(`dashboard query uses $${name}, which the test gave no value: ${expr}`);
    return v;
  });
}

/**
 * A query variable's `label_values([selector,] label)` (Grafana's Prometheus variable
 * query) as the label and series selector Prometheus' label-values API takes.
 */
export function labelValuesQuery(v: DashboardVariable): { label: string; match?: string } {
  const q = typeof v.query === 'string' ? v.query : (v.query as { query?: string } | undefined)?.query;
  const m = /^label_values\(\s*(?:(.+?)\s*,\s*)?(\w+)\s*\)$/.exec(q ?? '');
  if (!m) throw new Error(`variable ${v.name}: not a label_values() query: ${String(q)}`);
  return m[1] ? { label: m[2]!, match: m[1] } : { label: m[2]! };
}

/** The values of the dashboard's custom variables as it opens (their `current`). */
export function customDefaults(d: Dashboard): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of d.templating.list) {
    const current = (v as DashboardVariable & { current?: { value?: string | string[] } }).current?.value;
    if (v.type === 'custom' && typeof current === 'string') out[v.name] = current;
  }
  return out;
}
