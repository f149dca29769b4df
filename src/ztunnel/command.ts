import type { Command } from '../cli/command';
import { Counter } from 'prom-client';
import { createLogger } from '../lib/log';
import { guardUnhandledRejections } from '../lib/process-guard';
import { waitForShutdownSignal } from '../lib/signals';
import { optionsHelp } from '../lib/options';
import { ZtunnelApp } from './app';
import { removeCaptureRules } from './capture';
import { loadZtunnelConfig, ztunnelOptions } from './config';

const command: Command = {
  summary: 'run the per-node L4 proxy',
  help: () => [
    'Usage: weft ztunnel --node <name> --address <node ip> [flags]',
    '',
    'Runs in the node\'s network namespace: captures enrolled pods\' TCP (with --capture),',
    'keeping the rules in place when it stops (enrolled traffic fails closed until the next',
    'one starts; `weft ztunnel --cleanup` removes them when uninstalling),',
    'carries it to peer nodes over HBONE (mTLS HTTP/2 CONNECT, port 15008) and serves',
    'admin (15000, localhost), metrics (15020) and readiness (15021).',
    '',
    'Flags:',
    optionsHelp(ztunnelOptions),
  ].join('\n'),
  async run(argv) {
    const config = loadZtunnelConfig(argv);
    const logger = createLogger({ level: config.logLevel, component: 'ztunnel' });
    if (config.cleanup) {
      await removeCaptureRules({ logger });
      logger.info('capture rules removed');
      logger.flush();
      return 0;
    }
    const app = new ZtunnelApp(config, logger);
    // A missed .catch on the data path must not take the node's traffic down with it.
    const rejections = new Counter({
      name: 'weft_ztunnel_unhandled_rejections_total', help: 'Promise rejections nothing handled (each is a bug; the process kept running).',
      registers: [app.metrics],
    });
    const unguard = guardUnhandledRejections({ logger, onRejection: () => rejections.inc() });
    // A signal during start-up (e.g. while Redis is still unreachable) must stop it:
    // stopping first makes a pending start give up, then its outcome is collected.
    const signal = waitForShutdownSignal();
    const started = app.start().then(() => 'started' as const, (err: unknown) => ({ err }));
    const first = await Promise.race([started, signal]);
    if (typeof first === 'object') {
      logger.error({ err: first.err }, 'ztunnel failed to start');
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
