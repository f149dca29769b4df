/**
 * `weft stat`: one reading of the golden signals, per Service and per edge (source
 * workload → destination Service): requests per second, success rate (non-5xx),
 * p50/p95/p99 latency, mTLS, and for L4 traffic connections and bytes per second. Every
 * ztunnel and ready waypoint pod is scraped twice, `--window` apart, on its metrics port
 * (docs/observability.md, "`weft top` and `weft stat`"); no Prometheus needed. A proxy
 * that does not answer is a warning.
 */
import { parse, type OptionSpec } from '../../lib/options';
import { contextOptions, loadContext } from '../context';
import { defineCommand, noPositionals } from '../io';
import { outputOptions, printFrame } from '../output';
import { namespaceOption } from '../registry-command';
import { withRegistry } from '../registry-session';
import { readProxies } from '../mesh-stats';
import { proxyTargets } from '../proxy-targets';
import { edgeRows, noTraffic, section, serviceRows, statReading } from '../golden-tables';

const USAGE = 'weft stat [-n NAMESPACE] [--window 10s] [-o table|json|yaml]';

export const windowOption = {
  flag: 'window', default: 10_000, defaultText: '10s', description: 'time between the two scrapes the rates are computed over',
  parse: parse.duration({ min: 100, max: 600_000 }),
} satisfies OptionSpec<number>;

export default defineCommand({
  usage: USAGE,
  summary: 'golden signals per service and edge: rps, success rate, p50/p95/p99 latency, mTLS',
  description: 'Every ztunnel and ready waypoint pod is scraped twice, --window apart (GET /metrics on its metrics\n'
    + 'port, 15020). Requests come from the waypoints\' istio_requests_total and istio_request_duration_milliseconds\n'
    + '(success = not 5xx; quantiles interpolated in the histogram buckets as Prometheus\' histogram_quantile does);\n'
    + 'traffic without a waypoint shows as L4 edges from the ztunnels\' istio_tcp_* (connections and bytes per\n'
    + 'second). With -n, edges with either end in the namespace. Use `weft top` to watch.',
  specs: {
    ...contextOptions,
    output: outputOptions.output,
    namespace: namespaceOption,
    window: windowOption,
  },
  async run({ values, positionals }, io) {
    noPositionals(positionals, USAGE);
    const ctx = loadContext(values, io.env);
    return withRegistry(ctx, async (session) => {
      const targets = proxyTargets(ctx, await session.load());
      const before = await readProxies(targets);
      await new Promise((r) => setTimeout(r, values.window));
      const reading = statReading(targets, before, await readProxies(targets), values.namespace);
      const text = reading.edges.length === 0 ? `${noTraffic(reading.windowSeconds || values.window / 1000, values.namespace)}\n`
        : `${section('SERVICES', serviceRows(reading.services), '')}\n${section('EDGES', edgeRows(reading.edges), '')}`;
      return printFrame({ text, data: reading, warnings: reading.warnings, exitCode: targets.length > 0 && reading.proxies.length === 0 ? 1 : 0 }, values.output, io);
    });
  },
});
