// Load shedding on the lab: both demo echo pods serve at most 2 requests at a time, 20 ms
// each (the lab echo's per-pod behaviour), so Service demo/echo handles about 200 req/s;
// 400 req/s are offered open-loop from demo/client for 3 s through demo/waypoint. With
// TrafficPolicy loadShedding (Gradient) the excess is answered 503 (flag SH) at once and
// the accepted requests' p99 stays near the service time; without it, every request is
// accepted and waits in the backends' queues. Figures printed for docs/resilience.md.
import t from 'tap';
import { percentile } from '../../src/bench/stats';
import { labSkipReason } from './helpers/lab';
import { applyPolicy, deletePolicy, load, metric, spread, startAdmissionLab } from './helpers/admission-lab';

const skip = labSkipReason();
if (skip) t.plan(0, `lab e2e: ${skip}`);
else run();

const OFFERED = { rate: 400, durationMs: 3000, conns: 256 };

function run(): void {
  t.test('backend saturated: the adaptive limit keeps accepted p99 bounded while the excess is shed', async (t) => {
    const a = await startAdmissionLab(t, { serviceTime: '20ms', concurrency: 2 });
    await applyPolicy(a, '  loadShedding: { algorithm: Gradient, gradient: { minRttRequests: 20 } }\n');
    const shed = await load(a, OFFERED);
    const limit = await metric(a, 'weft_waypoint_concurrency_limit', { destination_service_name: 'echo' });
    const shedCount = shed.statuses['503'] ?? 0;
    const okWith = shed.latencies['200'] ?? [];
    t.comment(`with loadShedding: ${okWith.length} accepted (${(okWith.length / (shed.elapsedMs / 1000)).toFixed(0)} req/s), ${shedCount} shed; accepted ${spread(okWith)}; shed ${spread(shed.latencies['503'] ?? [])}; concurrency limit at the end ${limit}`);
    t.same(shed.errors, {}, 'every request answered');
    t.same(Object.keys(shed.statuses).sort(), ['200', '503'], 'accepted or shed, nothing else');
    t.ok(shedCount > 0, 'the excess was shed');
    t.equal(await metric(a, 'istio_requests_total', { destination_service_name: 'echo', response_code: '503', response_flags: 'SH' }), shedCount, 'every 503 counted with flag SH');

    const view = await a.lab.weft(['admission']);
    t.equal(view.code, 0, view.stderr);
    t.match(view.stdout, /demo\/echo\s+loadShedding\s+0\s+0\s+0\s+\d+/, 'weft admission shows the Service with its shed count');
    t.comment(`weft admission:\n${view.stdout.trimEnd()}`);

    await deletePolicy(a);
    const plain = await load(a, OFFERED);
    const okWithout = plain.latencies['200'] ?? [];
    const flags: Record<string, number> = {};
    for (const flag of ['-', 'SH', 'UO', 'UH', 'UF', 'UT', 'URX', 'UC']) {
      const n = await metric(a, 'istio_requests_total', { destination_service_name: 'echo', response_code: '503', response_flags: flag });
      if (n > 0) flags[flag] = n;
    }
    t.comment(`without a policy: ${okWithout.length} accepted, statuses ${JSON.stringify(plain.statuses)}; accepted ${spread(okWithout)}; the waypoint's 503s of both phases by flag ${JSON.stringify(flags)}`);
    t.same(plain.errors, {});
    const p99With = percentile(okWith, 99);
    const p99Without = percentile(okWithout, 99);
    t.comment(`accepted p99: ${p99With.toFixed(1)} ms with shedding, ${p99Without.toFixed(1)} ms without (${(p99Without / p99With).toFixed(1)}x)`);
    t.ok(p99With < p99Without, 'shedding keeps the accepted requests\' p99 below the unshed queue\'s');
  });
}
