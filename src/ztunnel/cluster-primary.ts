/**
 * `weft ztunnel --workers N` (N > 1): the primary process. It forks N workers (each a
 * whole ztunnel, cluster-worker.ts) that share the node's listening sockets through
 * Node's `cluster` module: the primary holds the sockets and, with the default
 * round-robin policy, accepts each connection and hands it to the next worker
 * (NODE_CLUSTER_SCHED_POLICY=none lets the workers accept themselves).
 *
 * The primary moves no traffic. It serves:
 *  - readiness (15021): ready only while all N workers run and each says it is ready
 *    (asked at each probe, so a worker that died or lost its certificates shows at once);
 *  - metrics (15020): every worker's series and its own, combined into one scrape
 *    (prom-client's cluster aggregation: counters and histograms summed, so Istio's
 *    series stay whole; a gauge that is one fact per node says so where it is defined,
 *    with its `aggregator`, and is not multiplied; a worker that exits leaves its
 *    counters in the sums, cluster-metrics.ts).
 * A worker that exits while the primary is not stopping is logged and forked again
 * after a backoff (lib/backoff.ts; reset once a worker lived a minute). Stopping asks
 * every worker to stop (IPC), which drains as a single ztunnel does, and waits for them.
 */
import cluster, { type Worker } from 'node:cluster';
import type { Server } from 'node:http';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { backoffDelay } from '../lib/backoff';
import { closeServer, json, listenTcp, serve, type Handler } from '../lib/http-endpoints';
import type { Logger } from '../lib/log';
import type { RunnableApp } from '../lib/run-component';
import { shutdownStep, StopOnce } from '../lib/shutdown-step';
import { registerBuildInfo } from '../telemetry/build-info';
import { TAP_PATH, TRACES_PATH } from '../telemetry/types';
import { type WorkerAnswer, type WorkerStop, type WorkerHello } from './cluster-worker';
import { WorkerQuestions } from './cluster-questions';
import { NodeScrape, type SeriesJson } from './cluster-metrics';
import { probeHost, type ZtunnelConfig } from './config';
import { WORKER_INDEX_ENV } from './workers';

/** A worker that does not answer within this is counted as not ready / fails the scrape. */
const ASK_TIMEOUT_MS = 2000;
/** A worker that lived this long starts its restart backoff from the beginning again. */
const STABLE_AFTER_MS = 60_000;
const RESTART_BACKOFF = { initialMs: 500, maxMs: 30_000 } as const;

export class ZtunnelPrimary implements RunnableApp {
  readonly metrics = new Registry();
  private readonly workers = new Map<number, Worker>();
  private readonly failures = new Map<number, { count: number }>();
  private readonly restartTimers = new Set<NodeJS.Timeout>();
  private readonly questions = new WorkerQuestions(ASK_TIMEOUT_MS);
  private servers: Server[] = [];
  private readonly stopper = new StopOnce(() => this.shutdown(), () => this.signalAll('SIGKILL'));
  private readonly restarts: Counter;
  private readonly scrapes = new NodeScrape();
  /** Workers that said hello: they take a stop message (one still loading takes SIGTERM). */
  private readonly listening = new WeakSet<Worker>();
  private readonly onMessage = (w: Worker, msg: WorkerAnswer | WorkerHello) => {
    if (msg?.weft === 'hello') this.listening.add(w);
    if (msg?.weft !== 'answer') return;
    this.questions.answered(msg);
  };

  constructor(readonly config: ZtunnelConfig, readonly logger: Logger) {
    collectDefaultMetrics({ register: this.metrics });
    registerBuildInfo(this.metrics, 'ztunnel');
    const self = this;
    new Gauge({
      name: 'weft_ztunnel_workers', help: 'ztunnel worker processes running (--workers asks for this many)', registers: [this.metrics],
      collect() { this.set(self.workers.size); },
    });
    this.restarts = new Counter({ name: 'weft_ztunnel_worker_restarts_total', help: 'ztunnel workers that exited unasked and were started again', registers: [this.metrics] });
  }

  async start(): Promise<void> {
    const { config } = this;
    const host = probeHost(config);
    cluster.on('message', this.onMessage);
    await this.serve(serve({ '/healthz/ready': this.readiness }, this.logger), host, config.readinessPort);
    await this.serve(serve({ '/metrics': this.scrape, '/stats/prometheus': this.scrape, [TRACES_PATH]: this.traces, [TAP_PATH]: this.tap }, this.logger), host, config.metricsPort);
    for (let i = 0; i < config.workers; i++) this.fork(i);
    this.logger.info({ workers: config.workers, schedulingPolicy: cluster.schedulingPolicy === cluster.SCHED_RR ? 'rr' : 'none' }, 'ztunnel primary started');
  }

  stop(): Promise<void> {
    return this.stopper.stop();
  }

  private fork(index: number): void {
    const worker = cluster.fork({ [WORKER_INDEX_ENV]: String(index) });
    const started = Date.now();
    this.workers.set(index, worker);
    worker.on('exit', (code, signal) => {
      if (this.workers.get(index) === worker) this.workers.delete(index);
      this.scrapes.retire(index);
      if (this.stopper.stopping) {
        this.logger.info({ worker: index, pid: worker.process.pid, code, signal }, 'a ztunnel worker stopped');
        return;
      }
      const failures = this.failures.get(index) ?? { count: 0 };
      failures.count = Date.now() - started >= STABLE_AFTER_MS ? 1 : failures.count + 1;
      this.failures.set(index, failures);
      const delayMs = backoffDelay(failures.count, RESTART_BACKOFF);
      this.restarts.inc();
      this.logger.error({ worker: index, pid: worker.process.pid, code, signal, failures: failures.count, restartInMs: delayMs },
        'a ztunnel worker exited; starting it again');
      const timer = setTimeout(() => {
        this.restartTimers.delete(timer);
        if (!this.stopper.stopping) this.fork(index);
      }, delayMs);
      this.restartTimers.add(timer);
    });
  }

  /** Ready: not stopping, all workers running, each ready. */
  async ready(): Promise<boolean> {
    if (this.stopper.stopping || this.workers.size < this.config.workers) return false;
    const answers = await Promise.all([...this.workers.values()].map((w) => this.questions.ask(w, 'status')));
    return !this.stopper.stopping && answers.every((a) => (a as { ready?: boolean } | undefined)?.ready === true);
  }

  private readonly readiness: Handler = async (_req, _url, res) => {
    const ready = await this.ready();
    res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' });
    res.end(ready ? 'ready\n' : 'not ready\n');
  };

  /** One scrape of the node: every worker's series and the primary's, combined; 503 when a worker does not answer (a partial sum would look like a counter reset). */
  private readonly scrape: Handler = async (_req, _url, res) => {
    const workers = [...this.workers];
    const answers = await Promise.all(workers.map(([, w]) => this.questions.ask(w, 'metrics')));
    if (answers.some((a) => a === undefined)) {
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end(`a ztunnel worker did not answer (it exited, or said nothing within ${ASK_TIMEOUT_MS} ms); the primary restarts a worker that exited: scrape again\n`);
      return;
    }
    const own = await this.metrics.getMetricsAsJSON() as SeriesJson;
    // A worker that answered and exited since is already retired (its previous answer): not counted twice.
    const byIndex = new Map<number, SeriesJson>();
    workers.forEach(([index, w], i) => { if (this.workers.get(index) === w) byIndex.set(index, answers[i] as SeriesJson); });
    const combined = this.scrapes.combine(byIndex, own);
    const body = await combined.metrics();
    res.writeHead(200, { 'content-type': combined.contentType });
    res.end(body);
  };

  /** `weft traces` on this node: every worker's spans (the CLI merges and stitches them); 503 when one does not answer. */
  private readonly traces: Handler = async (_req, url, res) => {
    const answers = await Promise.all([...this.workers.values()].map((w) => this.questions.ask(w, 'traces', url.search)));
    if (answers.some((a) => !Array.isArray(a))) {
      json(res, 503, { error: `a ztunnel worker did not answer (it exited, or said nothing within ${ASK_TIMEOUT_MS} ms); the primary restarts a worker that exited: ask again` });
      return;
    }
    json(res, 200, (answers as unknown[][]).flat());
  };

  /** The live tap is one process's stream (telemetry/tap-hub.ts), not relayed from the workers yet: `weft tap` shows why. */
  private readonly tap: Handler = (_req, _url, res) => {
    const n = this.config.workers;
    json(res, 501, { error: `this ztunnel runs ${n} worker processes (--workers ${n}) and their live tap is not relayed; run it with --workers 1 to tap it (weft traces works with workers)` });
  };

  private async serve(server: Server, host: string, port: number): Promise<void> {
    await listenTcp(server, host, port);
    this.servers.push(server);
  }

  private signalAll(signal: NodeJS.Signals): void {
    for (const w of this.workers.values()) w.process.kill(signal);
  }

  /** The first stop: asked over IPC (cluster-worker.ts WorkerStop says why), SIGTERM to a worker whose channel is gone. */
  private askAllToStop(): void {
    const stop: WorkerStop = { weft: 'stop' };
    const signalled: number[] = [];
    for (const [index, w] of this.workers) {
      if (!w.isConnected() || !this.listening.has(w)) {
        signalled.push(index);
        w.process.kill('SIGTERM');
      } else w.send(stop, (err: Error | null) => { if (err) w.process.kill('SIGTERM'); });
    }
    this.logger.info({ workers: [...this.workers.keys()], signalled }, 'asking the ztunnel workers to stop');
  }

  /** Asks every worker to stop (each drains for --drain-timeout), then waits; SIGKILL for one that outlives twice that. A second stop kills them (a worker ignores signals from outside once stopping). */
  private async shutdown(): Promise<void> {
    const step = shutdownStep(this.logger);
    for (const timer of this.restartTimers) clearTimeout(timer);
    this.restartTimers.clear();
    const running = [...this.workers.values()].filter((w) => w.process.exitCode === null && w.process.signalCode === null);
    const exited = running.map((w) => new Promise<void>((resolve) => w.once('exit', () => resolve())));
    this.askAllToStop();
    await step('waiting for the workers to drain', async () => {
      const grace = setTimeout(() => {
        this.logger.warn({ workers: [...this.workers.keys()] }, 'ztunnel workers still running after the drain; killing them');
        this.signalAll('SIGKILL');
      }, 2 * this.config.drainTimeout + 5000);
      await Promise.all(exited);
      clearTimeout(grace);
    });
    cluster.off('message', this.onMessage);
    for (const s of this.servers) await step('closing an HTTP server', () => closeServer(s));
    this.logger.info('ztunnel primary stopped');
  }
}
