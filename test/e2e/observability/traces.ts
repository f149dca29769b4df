/**
 * The traces section of test/e2e/observability.test.ts: after the demo traffic, `weft
 * traces --service demo/echo` shows the request traces stitched across their hops
 * (demo/client → waypoint → frontend → waypoint → echo: the frontend passes the
 * traceparent on, so its call to echo hangs under the waypoint's attempt that reached
 * it), the ztunnels' connection spans are there too (each connection its own trace, as
 * docs/observability.md says: captured TCP carries no trace context), and `-o json`
 * parses as OTLP (resourceSpans, one resource per proxy). The waterfall is printed and
 * kept in the artefacts (traces.txt), the picture docs/observability.md shows.
 */
import type { Test } from 'tap';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ObservabilityLab } from '../helpers/observability-lab';

interface OtlpJson {
  resourceSpans: {
    resource: { attributes: { key: string; value: { stringValue?: string } }[] };
    scopeSpans: { scope: { name: string }; spans: { traceId: string; spanId: string; parentSpanId: string; name: string; kind: number; startTimeUnixNano: string; endTimeUnixNano: string; status: { code: number } }[] }[];
  }[];
}

interface FlatSpan { traceId: string; spanId: string; parentSpanId: string; name: string; kind: number; proxy: string; start: bigint; end: bigint }

function flatten(doc: OtlpJson): FlatSpan[] {
  return doc.resourceSpans.flatMap((rs) => {
    const attr = (k: string) => rs.resource.attributes.find((a) => a.key === k)?.value.stringValue ?? '';
    const proxy = `${attr('weft.proxy.kind')} ${attr('weft.proxy.name')}`;
    return rs.scopeSpans.flatMap((ss) => ss.spans.map((s) => ({
      traceId: s.traceId, spanId: s.spanId, parentSpanId: s.parentSpanId, name: s.name, kind: s.kind, proxy,
      start: BigInt(s.startTimeUnixNano), end: BigInt(s.endTimeUnixNano),
    })));
  });
}

const SERVER = 2;
const CLIENT = 3;

export async function section(t: Test, o: ObservabilityLab): Promise<void> {
  const table = await o.lab.weft(['traces', '--service', 'demo/echo', '--since', '5m', '--limit', '3']);
  t.equal(table.code, 0, 'weft traces exits 0');
  t.equal(table.stderr, '', 'every proxy answered');
  t.comment(`weft traces --service demo/echo --limit 3\n${table.stdout}`);
  mkdirSync(o.artefactDir, { recursive: true });
  writeFileSync(join(o.artefactDir, 'traces.txt'), `$ weft traces --service demo/echo --limit 3\n${table.stdout}`);
  t.match(table.stdout, /^trace [0-9a-f]{32} /m, 'a trace block');
  t.match(table.stdout, /waypoint demo\/waypoint/, 'spans of the waypoint');
  t.match(table.stdout, /│ *█+ *│/, 'bars');

  const json = await o.lab.weft(['traces', '--service', 'demo/echo', '--since', '5m', '--limit', '10000', '-o', 'json']);
  t.equal(json.code, 0, json.stderr);
  const doc = JSON.parse(json.stdout) as OtlpJson;
  t.ok(Array.isArray(doc.resourceSpans) && doc.resourceSpans.length > 0, 'OTLP resourceSpans');
  const services = new Set(doc.resourceSpans.map((rs) => rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue));
  t.ok(services.has('weft-waypoint') && services.has('weft-ztunnel'), `resources of both proxy kinds (${[...services].join(', ')})`);
  const shapeProblems = doc.resourceSpans.flatMap((rs) => rs.scopeSpans[0]!.spans).filter((s) => !/^[0-9a-f]{32}$/.test(s.traceId) || !/^[0-9a-f]{16}$/.test(s.spanId)
    || !/^([0-9a-f]{16})?$/.test(s.parentSpanId) || !/^\d+$/.test(s.startTimeUnixNano) || !/^\d+$/.test(s.endTimeUnixNano) || ![1, 2, 3].includes(s.kind));
  t.same(shapeProblems, [], 'every span in OTLP/JSON shape (hex ids, nanosecond strings, numeric kinds)');

  const spans = flatten(doc);
  const byId = new Map(spans.map((s) => [`${s.traceId}/${s.spanId}`, s]));
  const parentOf = (s: FlatSpan) => (s.parentSpanId ? byId.get(`${s.traceId}/${s.parentSpanId}`) : undefined);
  t.comment(`${spans.length} spans in ${new Set(spans.map((s) => s.traceId)).size} traces touching demo/echo`);

  // The chain: waypoint server (frontend) → its attempt → (frontend app) → waypoint server (echo) → its attempt.
  const echoHops = spans.filter((s) => s.kind === SERVER && s.name.startsWith('GET echo.demo') && parentOf(s)?.name.startsWith('attempt '));
  t.ok(echoHops.length > 0, `${echoHops.length} requests to echo.demo hang under the waypoint attempt that reached frontend`);
  const hop = echoHops[0];
  if (hop) {
    const attempt = parentOf(hop)!;
    const frontend = parentOf(attempt);
    t.equal(attempt.kind, CLIENT, 'the parent is an attempt (client span)');
    t.match(frontend?.name, /^GET frontend\.demo/, 'whose parent is the request to frontend');
    t.ok(frontend!.start <= attempt.start && attempt.start <= hop.start && hop.end <= attempt.end, 'the hop lies inside the attempt, the attempt inside the request');
    const attempts = spans.filter((s) => s.traceId === hop.traceId && s.parentSpanId === hop.spanId);
    t.ok(attempts.length >= 1 && attempts.every((a) => a.kind === CLIENT && a.name.startsWith('attempt ')), 'the echo request has its attempt(s)');
  }

  // The ztunnels' connection spans: each tunnelled connection to demo/echo is a span of its own trace (captured TCP has no context).
  const tunnels = spans.filter((s) => s.proxy.startsWith('ztunnel ') && s.kind === CLIENT);
  t.ok(tunnels.length > 0, `${tunnels.length} outbound connection spans of the client's ztunnel`);
  const wrong = spans.filter((s) => s.parentSpanId && parentOf(s) && parentOf(s)!.start > s.start);
  t.same(wrong, [], 'no span starts before its parent');
}
