import { Counter } from 'prom-client';
import type { Command } from '../cli/command';
import { createLogger } from '../lib/log';
import { optionsHelp } from '../lib/options';
import { guardUnhandledRejections } from '../lib/process-guard';
import { waitForShutdownSignal } from '../lib/signals';
import { WaypointApp } from './app';
import { loadWaypointConfig, waypointOptions } from './options';

/** `weft waypoint run`: the waypoint process (the lab starts it in a pod netns; a cluster in the Deployment the controller makes). */
const command: Command = {
  summary: 'run a namespace\'s waypoint (L7 proxy)',
  help: () => [
    'Usage: weft waypoint run --name <gateway> --namespace <ns> --address <pod ip> --trust-anchor-file <pem> --identity-token-file <file> [flags]',
    '',
    'Serves HBONE on <pod ip>:15008 for the Services bound to this waypoint (weft.io/use-waypoint),',
    'applies their HTTPRoutes/GRPCRoutes and sends each request on to an endpoint over HBONE with',
    'the waypoint\'s own identity. Metrics on 15020, readiness on 15021, admin on 127.0.0.1:15000.',
    '',
    'Flags:',
    optionsHelp(waypointOptions),
  ].join('\n'),
  async run(argv) {
    const config = loadWaypointConfig(argv);
    const logger = createLogger({ level: config.logLevel, component: 'waypoint' });
    const app = new WaypointApp(config, logger);
    const rejections = new Counter({
      name: 'weft_waypoint_unhandled_rejections_total', help: 'Promise rejections nothing handled (each is a bug; the process kept running).',
      registers: [app.metrics],
    });
    const unguard = guardUnhandledRejections({ logger, onRejection: () => rejections.inc() });
    const signal = waitForShutdownSignal();
    const started = app.start().then(() => 'started' as const, (err: unknown) => ({ err }));
    const first = await Promise.race([started, signal]);
    if (typeof first === 'object') {
      logger.error({ err: first.err }, 'waypoint failed to start');
      await app.stop();
      throw first.err;
    }
    if (first !== 'started') {
      logger.info({ signal: first }, 'shutting down during start-up');
      await app.stop();
      await started;
      return 0;
    }
    logger.info({ signal: await signal }, 'shutting down');
    await app.stop();
    unguard();
    logger.flush();
    return 0;
  },
};

export default command;
