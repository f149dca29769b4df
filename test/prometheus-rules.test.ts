/**
 * The shipped Prometheus rules and Grafana dashboard, checked by the real promtool:
 * the rules load (promtool check rules) and compute what they should on synthetic
 * series, alerts included (promtool test rules, test/prometheus/rules-test.yaml); the
 * PrometheusRule manifest carries exactly the same groups; every dashboard panel has
 * queries, each valid PromQL once Grafana's variables are replaced, and reading only
 * series the rules record or the proxies export. Against a real Prometheus scraping
 * the lab: e2e/observability/prometheus.ts.
 */
import t from 'tap';
import YAML from 'yaml';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { run, which } from '../src/lab/run';
import { customDefaults, loadDashboard, queryPanels, substitute } from './helpers/grafana-dashboard';

const ROOT = join(__dirname, '..');
const RULES = join(ROOT, 'daemonset', 'prometheus-rules.yaml');
const OPERATOR_RULE = join(ROOT, 'daemonset', 'prometheus-rule.yaml');
// eslint-disable-next-line @typescript-eslint/no-var-requires
const { prometheusRule } = require('../scripts/prometheus-rule.js') as { prometheusRule(rulesText: string): string };

interface Rule { record?: string; alert?: string; expr: string; labels?: Record<string, string> }
interface RuleGroup { name: string; rules: Rule[] }
const groups = (YAML.parse(readFileSync(RULES, 'utf8')) as { groups: RuleGroup[] }).groups;
const recorded = new Set(groups.flatMap((g) => g.rules.flatMap((r) => (r.record ? [r.record] : []))));

/** Values for the dashboard's variables: "All" for the query variables, the custom ones as the dashboard opens. */
const ALL = { datasource: 'prometheus', namespace: '.*', service: '.*', ...customDefaults(loadDashboard()) };

const promtool = which('promtool');
const dir = mkdtempSync(join(tmpdir(), 'weft-promtool-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

t.test('promtool accepts the rules', { skip: !promtool && 'promtool is not installed (Debian: prometheus)' }, async (t) => {
  const res = await run(promtool!, ['check', 'rules', RULES], { allowFailure: true });
  t.equal(res.code, 0, `promtool check rules: ${res.stdout}${res.stderr}`);
  t.comment(res.stdout.trim().split('\n').pop()!);
  t.ok(recorded.size >= 10, `${recorded.size} recorded series`);
  for (const g of groups) {
    for (const r of g.rules) {
      // level:metric:operations (Prometheus' naming convention for recording rules); a
      // series only joined to its proxy's component, not aggregated, has no operations.
      if (r.record) t.match(r.record, /^[a-z_]+:[a-z0-9_]+(:[a-z0-9_]+)?$/, `${r.record} is level:metric[:operations]`);
    }
  }
});

t.test('the rules compute what they should on synthetic series (promtool test rules)', { skip: !promtool && 'promtool is not installed' }, async (t) => {
  const res = await run(promtool!, ['test', 'rules', join(__dirname, 'prometheus', 'rules-test.yaml')], { allowFailure: true });
  t.equal(res.code, 0, `promtool test rules:\n${res.stdout}${res.stderr}`);
});

t.test('the PrometheusRule manifest is the rules file under spec (regenerate: node scripts/prometheus-rule.js)', async (t) => {
  const text = readFileSync(OPERATOR_RULE, 'utf8');
  t.equal(text, prometheusRule(readFileSync(RULES, 'utf8')), 'daemonset/prometheus-rule.yaml is up to date');
  const manifest = YAML.parse(text) as { apiVersion: string; kind: string; spec: { groups: RuleGroup[] } };
  t.equal(manifest.apiVersion, 'monitoring.coreos.com/v1');
  t.equal(manifest.kind, 'PrometheusRule');
  t.same(manifest.spec.groups, groups);
  if (!promtool) return;
  const file = join(dir, 'operator-groups.yaml');
  writeFileSync(file, YAML.stringify({ groups: manifest.spec.groups }));
  const res = await run(promtool, ['check', 'rules', file], { allowFailure: true });
  t.equal(res.code, 0, `promtool accepts the manifest's groups: ${res.stderr}`);
});

t.test('the Grafana dashboard: well-formed, every panel queries, every query is valid PromQL over known series', async (t) => {
  const d = loadDashboard();
  t.equal(d.uid, 'weft-mesh');
  t.ok(d.schemaVersion >= 36, `schemaVersion ${d.schemaVersion}`);
  const vars = new Map(d.templating.list.map((v) => [v.name, v]));
  t.equal(vars.get('datasource')?.type, 'datasource', 'a datasource variable');
  t.same([...vars.keys()].sort(), Object.keys(ALL).sort(), 'the variables the tests fill in');
  const panels = queryPanels(d);
  t.ok(panels.length >= 10, `${panels.length} panels`);
  const ids = new Set<number>();
  const rules: Rule[] = [];
  for (const p of panels) {
    t.notOk(ids.has(p.id), `panel id ${p.id} is unique`);
    ids.add(p.id);
    t.ok(p.gridPos.x + p.gridPos.w <= 24, `${p.title}: fits the 24-column grid`);
    t.equal(p.datasource?.uid, '${datasource}', `${p.title}: uses the datasource variable`);
    t.ok(p.targets && p.targets.length > 0, `${p.title}: has targets`);
    for (const target of p.targets ?? []) {
      t.ok(target.expr?.trim(), `${p.title} ${target.refId}: has an expr`);
      const expr = substitute(target.expr, ALL);
      rules.push({ record: `dashboard:panel_${p.id}:${target.refId.toLowerCase()}`, expr });
      // Colon names are recorded series: each must be one the rules record.
      for (const m of expr.matchAll(/\b([a-z_]+:[a-z0-9_]+(?::[a-z0-9_]+)?)\b/g)) t.ok(recorded.has(m[1]!), `${p.title}: ${m[1]} is recorded by the rules`);
    }
  }
  if (!promtool) return;
  // promtool parses every query (as a recording rule): a syntax error names its panel.
  const file = join(dir, 'dashboard-queries.yaml');
  writeFileSync(file, YAML.stringify({ groups: [{ name: 'dashboard', rules }] }));
  const res = await run(promtool, ['check', 'rules', file], { allowFailure: true });
  t.equal(res.code, 0, `promtool parses every dashboard query: ${res.stdout}${res.stderr}`);
  t.comment(`${panels.length} panels, ${rules.length} queries`);
});
