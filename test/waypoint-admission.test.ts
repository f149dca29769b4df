// Admission at the waypoint (src/waypoint/admission.ts) through the real L7 handler:
// fault aborts (FI) and delays (DI), the local rate limit (429 + retry-after, RL) and
// shedding (503, SH), their gRPC forms (trailers-only grpc-status, read by grpc-js), the
// metrics, and a Service without a TrafficPolicy costing one lookup.
import t, { type Test } from 'tap';
import * as grpc from '@grpc/grpc-js';
import * as http from 'node:http';
import { Registry } from 'prom-client';
import type { TrafficPolicySpec } from '../src/resilience/spec';
import { validateFaults } from '../src/resilience/fault-spec';
import { validateRateLimit } from '../src/resilience/rate-limit-spec';
import { validateRetry } from '../src/resilience/retry-spec';
import { validateLoadShedding } from '../src/resilience/shedding-spec';
import { realClock, type Clock } from '../src/lib/clock';
import { ManualClock } from './helpers/clock';
import { Admission, type TrafficPolicyLookup } from '../src/waypoint/admission';
import { RESPONSE_FLAGS } from '../src/waypoint/metrics';
import { httpUpstream, plan, startWaypoint } from './helpers/waypoint';

const TARGET = [{ group: '' as const, kind: 'Service' as const, name: 'echo' }];

/** A policy lookup holding one spec for demo/echo; counts lookups. */
class Policies implements TrafficPolicyLookup {
  lookups = 0;
  constructor(public spec: TrafficPolicySpec | undefined) {}
  forService(namespace: string, name: string): TrafficPolicySpec | undefined {
    this.lookups++;
    return namespace === 'demo' && name === 'echo' ? this.spec : undefined;
  }
}

function get(port: number, path = '/', headers: http.OutgoingHttpHeaders = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers: { host: 'echo.demo', ...headers }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
  });
}

async function rig(t: Test, spec: Omit<TrafficPolicySpec, 'targetRefs'> | undefined, opts: { random?: () => number; slow?: { until: Promise<void> }; clock?: Clock } = {}) {
  let upstreamHits = 0;
  const up = await httpUpstream(t, (req, res) => {
    upstreamHits++;
    const answer = () => { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('from upstream'); };
    if (opts.slow) void opts.slow.until.then(answer);
    else answer();
  });
  const policies = new Policies(spec ? { targetRefs: TARGET, ...spec } : undefined);
  const metrics = new Registry();
  const admission = new Admission({ policies, clock: opts.clock ?? realClock, metrics, ...(opts.random ? { random: opts.random } : {}) });
  const h = await startWaypoint(t, () => plan(up.port), { admission });
  return { h, policies, metrics, admission, hits: () => upstreamHits };
}

t.test('a Service without a TrafficPolicy: forwarded, one lookup per request, no admission state', async (t) => {
  const r = await rig(t, undefined);
  for (let i = 0; i < 3; i++) t.equal((await get(r.h.port)).status, 200);
  t.equal(r.policies.lookups, 3, 'one lookup per request');
  t.equal([...r.admission.live()].length, 0, 'no gate made');
  t.same(r.h.records.map((x) => x.responseFlag), ['-', '-', '-']);
});

t.test('a policy without admission sections (e.g. only retry) makes no gate either', async (t) => {
  const r = await rig(t, { retry: validateRetry({}, 'spec.retry', 'reject') });
  t.equal((await get(r.h.port)).status, 200);
  t.equal([...r.admission.live()].length, 0);
});

t.test('fault abort: a local answer with flag FI, the upstream never asked', async (t) => {
  const r = await rig(t, { faults: validateFaults({ abort: { httpStatus: 503, percentage: 100 } }, 'f', 'reject') });
  const res = await get(r.h.port);
  t.equal(res.status, 503);
  t.equal(res.body, 'fault filter abort\n');
  t.equal(r.hits(), 0);
  t.match(r.h.records[0], { status: 503, responseFlag: 'FI', attempts: 0 });
  t.match(await r.metrics.getSingleMetricAsString('weft_waypoint_admission_total'),
    /weft_waypoint_admission_total\{destination_service_namespace="demo",destination_service_name="echo",action="fault_abort"\} 1/);
});

t.test('fault abort only for requests matching the headers', async (t) => {
  const r = await rig(t, { faults: validateFaults({ abort: { httpStatus: 418, percentage: 100 }, match: { headers: [{ name: 'x-chaos', value: 'on' }] } }, 'f', 'reject') });
  t.equal((await get(r.h.port)).status, 200);
  t.equal((await get(r.h.port, '/', { 'x-chaos': 'on' })).status, 418);
});

t.test('fault delay: the request waits, then is forwarded with flag DI', async (t) => {
  const r = await rig(t, { faults: validateFaults({ delay: { fixedDelay: '150ms', percentage: 100 } }, 'f', 'reject') });
  const res = await get(r.h.port);
  t.equal(res.status, 200);
  t.equal(res.body, 'from upstream');
  t.match(r.h.records[0], { status: 200, responseFlag: 'DI', attempts: 1 });
  // The delay is the clock's timer: the request's recorded duration includes it (no timing asserted beyond that).
  t.ok(r.h.records[0]!.durationMs >= 150, `duration ${r.h.records[0]!.durationMs} ms includes the delay`);
});

t.test('a client that leaves during a delay is not forwarded', async (t) => {
  const r = await rig(t, { faults: validateFaults({ delay: { fixedDelay: '10s', percentage: 100 } }, 'f', 'reject') });
  const req = http.get({ host: '127.0.0.1', port: r.h.port, path: '/', headers: { host: 'echo.demo' }, agent: false });
  req.on('error', () => {});
  while (r.h.router.seen.length === 0) await new Promise((res) => setTimeout(res, 10));
  req.destroy();
  while (r.h.records.length === 0) await new Promise((res) => setTimeout(res, 10));
  t.match(r.h.records[0], { status: 0, responseFlag: 'DC', attempts: 0 });
  t.equal(r.hits(), 0);
});

t.test('rate limit: 429 with retry-after and flag RL past the burst', async (t) => {
  // The buckets' clock stands still: the refusals and their retry-after do not hang on how fast a loaded CI answers.
  const r = await rig(t, { rateLimit: validateRateLimit({ requestsPerSecond: 0.5, burst: 2 }, 'r', 'reject') }, { clock: new ManualClock() });
  const statuses = [];
  for (let i = 0; i < 4; i++) statuses.push(await get(r.h.port));
  t.same(statuses.map((s) => s.status), [200, 200, 429, 429]);
  t.equal(statuses[2]!.headers['retry-after'], '2', 'one token every 2 s');
  t.match(statuses[2]!.body, /local rate limit of demo\/echo exceeded.*retry after 2s/);
  t.same(r.h.records.map((x) => x.responseFlag), ['-', '-', 'RL', 'RL']);
  t.equal(r.hits(), 2);
  t.match(await r.metrics.getSingleMetricAsString('weft_waypoint_admission_total'), /action="rate_limited"\} 2/);
});

t.test('rate limit per source identity: the harness client has its own bucket', async (t) => {
  const r = await rig(t, { rateLimit: validateRateLimit({ requestsPerSecond: 1, burst: 1, key: 'SourceIdentity' }, 'r', 'reject') }, { clock: new ManualClock() });
  t.equal((await get(r.h.port)).status, 200);
  t.equal((await get(r.h.port)).status, 429);
});

t.test('shedding: beyond the concurrency limit 503 with flag SH at once; slots come back when requests finish', async (t) => {
  let release!: () => void;
  const until = new Promise<void>((res) => { release = res; });
  const r = await rig(t, { loadShedding: validateLoadShedding({ algorithm: 'AIMD', minLimit: 2, maxLimit: 2, aimd: { latencyTarget: '10s' } }, 's', 'reject') }, { slow: { until } });
  const first = [get(r.h.port), get(r.h.port)];
  while (r.hits() < 2) await new Promise((res) => setTimeout(res, 10));
  const shed = await get(r.h.port);
  t.equal(shed.status, 503);
  t.match(shed.body, /demo\/echo is at its adaptive concurrency limit/);
  t.match(await r.metrics.getSingleMetricAsString('weft_waypoint_concurrency_in_flight'), /destination_service_name="echo"\} 2/);
  t.match(await r.metrics.getSingleMetricAsString('weft_waypoint_concurrency_limit'), /destination_service_name="echo"\} 2/);
  release();
  t.same((await Promise.all(first)).map((x) => x.status), [200, 200]);
  t.equal((await get(r.h.port)).status, 200, 'admitted again once the slots are back');
  t.same(r.h.records.map((x) => x.responseFlag).sort(), ['-', '-', '-', 'SH']);
  t.match(await r.metrics.getSingleMetricAsString('weft_waypoint_concurrency_in_flight'), /destination_service_name="echo"\} 0/);
  t.ok(RESPONSE_FLAGS.includes('SH'), 'SH is one of the response flags');
});

t.test('a changed policy gets fresh state; a removed one drops it and its series', async (t) => {
  const r = await rig(t, { rateLimit: validateRateLimit({ requestsPerSecond: 0.1, burst: 1 }, 'r', 'reject') });
  t.equal((await get(r.h.port)).status, 200);
  t.equal((await get(r.h.port)).status, 429);
  r.policies.spec = { targetRefs: TARGET, rateLimit: validateRateLimit({ requestsPerSecond: 0.1, burst: 1 }, 'r', 'reject') };
  t.equal((await get(r.h.port)).status, 200, 'a new spec object: a new, full bucket');
  r.policies.spec = undefined;
  t.equal((await get(r.h.port)).status, 200, 'no policy: no limit');
  t.equal([...r.admission.live()].length, 0, 'the gate is gone');
  t.notMatch(await r.metrics.getSingleMetricAsString('weft_waypoint_admission_total'), /destination_service_name="echo"/, 'and its counter series');
});

/** A grpc-js service with raw-bytes serializers. */
const bytes = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const SERVICE = {
  say: { path: '/test.Echo/Say', requestStream: false, responseStream: false, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize },
} as grpc.ServiceDefinition;

async function grpcRig(t: Test, spec: Omit<TrafficPolicySpec, 'targetRefs'>) {
  const server = new grpc.Server();
  server.addService(SERVICE, { say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from(`hello ${call.request.toString()}`)) });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))));
  t.teardown(() => server.forceShutdown());
  const admission = new Admission({ policies: new Policies({ targetRefs: TARGET, ...spec }), clock: realClock });
  const h = await startWaypoint(t, () => plan(port), { destination: { appProtocol: 'grpc' }, admission });
  const Ctor = grpc.makeGenericClientConstructor(SERVICE, 'Echo');
  const c = new Ctor(`127.0.0.1:${h.port}`, grpc.credentials.createInsecure()) as grpc.Client & Record<string, CallableFunction>;
  t.teardown(() => c.close());
  const say = (m: string) => new Promise<{ err: grpc.ServiceError | null; res?: Buffer }>((resolve) => c.say!(Buffer.from(m), (err: grpc.ServiceError | null, res?: Buffer) => resolve({ err, res })));
  return { h, say };
}

t.test('gRPC: a fault abort with grpcStatus arrives as that status (trailers-only)', async (t) => {
  const { h, say } = await grpcRig(t, { faults: validateFaults({ abort: { grpcStatus: 14, percentage: 100 } }, 'f', 'reject') });
  const r = await say('x');
  t.equal(r.err?.code, grpc.status.UNAVAILABLE);
  t.equal(r.err?.details, 'fault filter abort');
  t.match(h.records[0], { status: 200, grpcStatus: '14', responseFlag: 'FI' });
});

t.test('gRPC: an HTTP abort status is mapped (403 -> PERMISSION_DENIED)', async (t) => {
  const { say } = await grpcRig(t, { faults: validateFaults({ abort: { httpStatus: 403, percentage: 100 } }, 'f', 'reject') });
  t.equal((await say('x')).err?.code, grpc.status.PERMISSION_DENIED);
});

t.test('gRPC: rate limited is RESOURCE_EXHAUSTED with retry pushback', async (t) => {
  const { h, say } = await grpcRig(t, { rateLimit: validateRateLimit({ requestsPerSecond: 0.5, burst: 1 }, 'r', 'reject') });
  t.equal((await say('a')).res?.toString(), 'hello a');
  const r = await say('b');
  t.equal(r.err?.code, grpc.status.RESOURCE_EXHAUSTED);
  t.match(r.err?.details, /local rate limit of demo\/echo exceeded/);
  t.match(h.records[1], { grpcStatus: '8', responseFlag: 'RL' });
});

t.test('a gRPC answer to a plain HTTP client: the matching HTTP status', async (t) => {
  const r = await rig(t, { faults: validateFaults({ abort: { grpcStatus: 8, percentage: 100 } }, 'f', 'reject') });
  t.equal((await get(r.h.port)).status, 429);
});
