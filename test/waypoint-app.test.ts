// The whole waypoint app (the one `weft waypoint run` starts) against a real
// redis-server registry, real mTLS HBONE from a source as a ztunnel opens it (a pooled
// tunnel presenting the client's certificate, :authority = the Service VIP:port), and
// real HTTP servers as endpoints on loopback addresses, and a real OTLP/gRPC collector
// its --otlp-endpoint exports spans to. Only the CA is replaced by an in-process issuer
// (the CA path is test/ca-identity*.test.ts).
import t from 'tap';
import * as http from 'node:http';
import pino from 'pino';
import { WaypointApp } from '../src/waypoint/app';
import { loadWaypointConfig } from '../src/waypoint/options';
import { HbonePool } from '../src/hbone/pool';
import { IssuerCertSource } from '../src/ztunnel/testing/issuer-certs';
import { RegistryStore } from '../src/registry/store';
import {
  httpRouteRecord, namespaceRecord, serviceRecord, waypointRecord, workloadRecord,
} from '../src/registry/fixtures';
import { USE_WAYPOINT_LABEL } from '../src/registry/types';
import { freePort, redisFixture } from './helpers/redis';
import { waitFor } from './helpers/wait';
import type { SpanRecord } from '../src/telemetry/types';
import { OtlpTestCollector } from './helpers/otlp-collector';

const T = { timeout: 60_000 };
const TD = 'cluster.local';
const CLIENT = `spiffe://${TD}/ns/demo/sa/client`;
const WAYPOINT = `spiffe://${TD}/ns/demo/sa/waypoint`;
const VIP = '10.96.0.10';
const OTHER_VIP = '10.96.0.11';
const CLIENT_IP = '127.0.0.9';

const fx = redisFixture(t);
let certs: IssuerCertSource;
let store: RegistryStore;
let app: WaypointApp;
let pool: HbonePool;
let hbonePort = 0;
let appPort = 0;
let metricsPort = 0;

const echoes: http.Server[] = [];
const collector = new OtlpTestCollector();

/** An HTTP server on `ip:appPort` answering with its name and the path it got. */
async function echo(ip: string, name: string): Promise<void> {
  const server = http.createServer((req, res) => {
    req.resume();
    res.setHeader('x-served-by', name);
    res.end(`${name} ${req.url}`);
  });
  await new Promise<void>((resolve) => server.listen(appPort, ip, resolve));
  echoes.push(server);
}

/** One HTTP/1.1 request through the waypoint, as a source ztunnel would send it: a CONNECT to VIP:80 over HBONE. */
async function get(path: string, vip = VIP, extraHeaders = ''): Promise<{ status: number; body: string; headers: Record<string, string> }> {
  const opened = await pool.open({
    sourceIdentity: CLIENT, destinationIdentity: WAYPOINT,
    nextHop: { host: '127.0.0.1', port: hbonePort }, authority: { ip: vip, port: 80 },
    forwardedFor: { ip: CLIENT_IP, port: 40000 }, counters: { sent: 0, received: 0 },
  });
  const s = opened.stream;
  s.write(Buffer.from(`GET ${path} HTTP/1.1\r\nHost: echo.demo\r\nConnection: close\r\n${extraHeaders}\r\n`));
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve) => {
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => resolve());
    // The waypoint closes its side after `Connection: close`; ours ends then, as a client socket would.
    s.on('end', () => { s.end(); resolve(); });
    s.on('close', () => resolve());
  });
  const text = Buffer.concat(chunks).toString();
  const [head = '', body = ''] = text.split('\r\n\r\n');
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1] ?? 0), body, headers };
}

function svc(name: string, vip: string | undefined, selector: Record<string, string>) {
  return serviceRecord({ namespace: 'demo', name, vips: vip ? [vip] : [], ports: [{ name: 'http', port: 80, targetPort: appPort }], selector });
}

t.before(async () => {
  certs = await IssuerCertSource.create(TD);
  appPort = await freePort();
  metricsPort = await freePort();
  store = RegistryStore.connect(fx.redis.url);
  await store.apply([
    { op: 'put', kind: 'namespace', record: namespaceRecord('demo', { [USE_WAYPOINT_LABEL]: 'waypoint' }) },
    { op: 'put', kind: 'waypoint', record: waypointRecord({ namespace: 'demo', name: 'waypoint' }) },
    { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'client', node: 'n1', addresses: [CLIENT_IP], serviceAccount: 'client' }) },
    { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'echo-v1', node: 'n1', addresses: ['127.0.0.2'], labels: { app: 'echo', version: 'v1' } }) },
    { op: 'put', kind: 'workload', record: workloadRecord({ namespace: 'demo', name: 'echo-v2', node: 'n1', addresses: ['127.0.0.3'], labels: { app: 'echo', version: 'v2' } }) },
    { op: 'put', kind: 'service', record: svc('echo', VIP, { app: 'echo' }) },
    { op: 'put', kind: 'service', record: svc('echo-v1', undefined, { app: 'echo', version: 'v1' }) },
    { op: 'put', kind: 'service', record: svc('echo-v2', undefined, { app: 'echo', version: 'v2' }) },
    // Bound to no waypoint: the waypoint must refuse to serve it.
    { op: 'put', kind: 'service', record: { ...svc('other', OTHER_VIP, { app: 'echo' }), waypoint: 'none' } },
  ]);
  const config = loadWaypointConfig(['--name', 'waypoint', '--namespace', 'demo', '--address', '127.0.0.1', '--redis-url', fx.redis.url,
    '--trust-anchor-file', '/nonexistent', '--identity-token-file', '/nonexistent', '--hbone-port', '0', '--metrics-port', String(metricsPort),
    '--readiness-port', '0', '--admin-port', '0', '--otlp-endpoint', await collector.start()], {});
  await echo('127.0.0.2', 'v1');
  await echo('127.0.0.3', 'v2');
  app = new WaypointApp(config, pino({ level: 'silent' }), { certs });
  await app.start();
  hbonePort = app.hboneAddress()!.port;
  pool = new HbonePool({ certs, logger: pino({ level: 'silent' }) });
});

t.teardown(async () => {
  await pool?.close();
  await app?.stop();
  await collector.stop();
  await store?.close();
  for (const e of echoes) {
    e.close();
    e.closeAllConnections();
  }
});

t.test('ready with its own identity, and a Service without routes is proxied to its endpoints', T, async (t) => {
  t.ok(app.status().ready, 'ready: registry synced, certificate held, listening');
  t.equal(app.status().identity, WAYPOINT);
  const seen = new Set<string>();
  for (let i = 0; i < 6; i++) {
    const r = await get('/plain');
    t.equal(r.status, 200);
    seen.add(r.headers['x-served-by'] ?? '');
  }
  t.same([...seen].sort(), ['v1', 'v2'], 'no route attached: the Service\'s endpoints share the requests');
});

t.test('an HTTPRoute 95/5 canary splits within ±5 % over 500 requests, and applies live', T, async (t) => {
  const route = httpRouteRecord({ namespace: 'demo', name: 'canary' }, 'echo', [{ name: 'echo-v1', port: 80, weight: 95 }, { name: 'echo-v2', port: 80, weight: 5 }]);
  const rev = await store.put('httproute', route);
  await waitFor('the waypoint follows the route', () => app.state.revision >= rev);
  const counts = { v1: 0, v2: 0 } as Record<string, number>;
  for (let i = 0; i < 500; i++) {
    const r = await get(`/req/${i}`);
    counts[r.headers['x-served-by'] ?? 'none'] = (counts[r.headers['x-served-by'] ?? 'none'] ?? 0) + 1;
  }
  t.equal(counts.v1! + counts.v2!, 500, 'every request answered by v1 or v2');
  const share = counts.v2! / 500;
  t.ok(share >= 0 && share <= 0.10, `echo-v2 got ${(share * 100).toFixed(1)} % (goal 5 % ± 5)`);

  // Blue-green: flip to 0/100; weight 0 is exactly no traffic.
  const flip = await store.put('httproute', httpRouteRecord({ namespace: 'demo', name: 'canary' }, 'echo', [{ name: 'echo-v1', port: 80, weight: 0 }, { name: 'echo-v2', port: 80, weight: 100 }]));
  await waitFor('the flip arrives', () => app.state.revision >= flip);
  for (let i = 0; i < 20; i++) t.equal((await get('/after')).headers['x-served-by'], 'v2');
  await store.delete('httproute', 'demo/canary');
});

t.test('matches: an unmatched request gets 404 once a route is attached; a missing backend 500', T, async (t) => {
  const route = httpRouteRecord({ namespace: 'demo', name: 'api' }, 'echo', [{ name: 'echo-v2', port: 80 }]);
  route.spec.rules[0]!.matches = [{ path: { type: 'PathPrefix', value: '/api' }, headers: [], queryParams: [] }];
  route.spec.rules.push({
    matches: [{ path: { type: 'Exact', value: '/gone' }, headers: [], queryParams: [] }], filters: [],
    backendRefs: [{ group: '', kind: 'Service', name: 'missing', port: 80, weight: 1, filters: [] }],
  });
  const rev = await store.put('httproute', route);
  await waitFor('route', () => app.state.revision >= rev);
  const api = await get('/api/x');
  t.equal(api.status, 200);
  t.equal(api.body, 'v2 /api/x');
  t.equal((await get('/apix')).status, 404, 'prefix matching is by whole segments');
  t.equal((await get('/other')).status, 404, 'no rule matches: 404');
  t.equal((await get('/gone')).status, 500, 'a backendRef to a Service that does not exist: 500');
  await store.delete('httproute', 'demo/api');
});

t.test('a Service not bound to this waypoint is refused at CONNECT', T, async (t) => {
  await t.rejects(get('/', OTHER_VIP), { code: 'WEFT_HBONE_UPSTREAM_UNREACHABLE' }, 'the waypoint answers 503: not its Service');
});

t.test('metrics: istio_requests_total with reporter waypoint', T, async (t) => {
  const text = await app.metrics.metrics();
  t.match(text, /istio_requests_total\{reporter="waypoint",[^}]*source_principal="spiffe:\/\/cluster.local\/ns\/demo\/sa\/client"[^}]*response_code="404"/);
  t.match(text, /istio_request_duration_milliseconds_bucket\{/);
});

t.test('tracing: a request its caller sampled has its server and attempt spans on /debug/traces, workloads named from the registry', T, async (t) => {
  const trace = '4bf92f3577b34da6a3ce929d0e0e4736';
  const parent = '00f067aa0ba902b7';
  // The default ratio (0.01) decides only new traces: a caller's sampled flag is followed.
  t.equal((await get('/traced?token=x', VIP, `traceparent: 00-${trace}-${parent}-01\r\n`)).status, 200);
  const read = async (query: string): Promise<SpanRecord[]> => {
    const res = await fetch(`http://127.0.0.1:${metricsPort}/debug/traces?${query}`);
    return await res.json() as SpanRecord[];
  };
  let spans: SpanRecord[] = [];
  await waitFor('the spans', async () => (spans = await read(`trace=${trace}`)).length === 2);
  const server = spans.find((s) => s.kind === 'server');
  const attempt = spans.find((s) => s.kind === 'client');
  t.match(server, {
    traceId: trace, parentSpanId: parent, name: 'GET echo.demo.svc.cluster.local', proxy: 'waypoint demo/waypoint',
    attributes: {
      'url.path': '/traced', 'http.response.status_code': 200, 'weft.destination_service': 'demo/echo', 'weft.source_workload': 'demo/client',
      'weft.source_principal': CLIENT, 'weft.destination_workload': /^demo\/echo-v[12]$/, 'client.address': CLIENT_IP,
    },
  });
  t.match(attempt, { parentSpanId: server?.spanId, attributes: { 'weft.attempt': 1, 'http.response.status_code': 200 } });
  t.equal((await read('service=demo/echo')).filter((s) => s.traceId === trace).length, 2, 'found by the destination Service');
  t.same(await read('service=demo/nothing'), []);
  // The same spans reach the collector --otlp-endpoint names (exported within a second), the waypoint as their resource.
  await waitFor('the spans at the OTLP collector', () => collector.spans.filter((s) => s.traceId === trace).length === 2);
  const exported = collector.spans.filter((s) => s.traceId === trace);
  t.same(exported.map((s) => s.spanId).sort(), spans.map((s) => s.spanId).sort(), 'the spans /debug/traces shows');
  t.match(exported[0]!.resource, { 'service.name': 'weft-waypoint', 'weft.proxy.name': 'demo/waypoint' });
});
