// Fault injection on the lab: TrafficPolicy faults on demo/echo, abort 503 at 50 % and
// delay 200 ms at 10 %, 1,000 requests from demo/client through demo/waypoint: the abort
// share within ±5 % of 50 %, the delay share within ±3 % of 10 % (counted by the
// waypoint's admission metrics; cross-checked by the client's latencies). Figures printed
// for docs/resilience.md.
import t from 'tap';
import { labSkipReason } from './helpers/lab';
import { applyPolicy, load, metric, spread, startAdmissionLab } from './helpers/admission-lab';

const skip = labSkipReason();
if (skip) t.plan(0, `lab e2e: ${skip}`);
else run();

const REQUESTS = 1000;

function run(): void {
  t.test('abort 50 %, delay 200 ms at 10 %, over 1,000 requests', async (t) => {
    const a = await startAdmissionLab(t);
    await applyPolicy(a, `  faults:
    abort: { httpStatus: 503, percentage: 50 }
    delay: { fixedDelay: 200ms, percentage: 10 }
`);
    const r = await load(a, { rate: 200, durationMs: (REQUESTS / 200) * 1000, conns: 32 });
    t.equal(r.requests, REQUESTS);
    t.same(r.errors, {}, 'every request answered');
    const aborted = r.statuses['503'] ?? 0;
    const delays = await metric(a, 'weft_waypoint_admission_total', { destination_service_name: 'echo', action: 'fault_delay' });
    const aborts = await metric(a, 'weft_waypoint_admission_total', { destination_service_name: 'echo', action: 'fault_abort' });
    const all = [...(r.latencies['200'] ?? []), ...(r.latencies['503'] ?? [])];
    const slow = all.filter((ms) => ms >= 200).length;
    t.comment(`aborted ${aborted} of ${REQUESTS} (${(aborted / 10).toFixed(1)} %), delayed ${delays} (${(delays / 10).toFixed(1)} %); client saw ${slow} answers of 200 ms or more`);
    t.comment(`latency: 200 ${spread(r.latencies['200'] ?? [])}; 503 ${spread(r.latencies['503'] ?? [])}`);
    t.same(Object.keys(r.statuses).sort(), ['200', '503']);
    t.equal(aborts, aborted, 'every 503 is an injected abort');
    t.equal(await metric(a, 'istio_requests_total', { destination_service_name: 'echo', response_code: '503', response_flags: 'FI' }), aborted, 'counted with flag FI');
    const di = await metric(a, 'istio_requests_total', { destination_service_name: 'echo', response_code: '200', response_flags: 'DI' });
    t.comment(`forwarded after a delay (200, flag DI): ${di}; the other ${delays - di} delayed requests were then aborted`);
    t.ok(di > 0 && di <= delays, 'forwarded delayed requests counted with flag DI');
    t.ok(Math.abs(aborted / REQUESTS - 0.5) <= 0.05, `abort share ${(aborted / 10).toFixed(1)} % within 50 ± 5 %`);
    t.ok(Math.abs(delays / REQUESTS - 0.1) <= 0.03, `delay share ${(delays / 10).toFixed(1)} % within 10 ± 3 %`);
    t.ok(slow >= delays, 'every delayed request took at least the delay');
  });
}
