import cluster from 'node:cluster';
import type { Command } from '../cli/command';
import { createLogger } from '../lib/log';
import { runComponent } from '../lib/run-component';
import { optionsHelp } from '../lib/options';
import { removeCaptureRules } from './capture';
import { loadZtunnelConfig, ztunnelOptions } from './config';
import { WORKER_INDEX_ENV } from './workers';

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
    // Loaded on demand: the --workers primary moves no bytes, so it loads none of the data path.
    if (cluster.isWorker) {
      const { runZtunnelWorker } = require('./cluster-worker') as typeof import('./cluster-worker');
      return runZtunnelWorker(config, logger, Number(process.env[WORKER_INDEX_ENV] ?? 0));
    }
    const app = config.workers > 1
      ? new (require('./cluster-primary') as typeof import('./cluster-primary')).ZtunnelPrimary(config, logger)
      : new (require('./app') as typeof import('./app')).ZtunnelApp(config, logger);
    return runComponent(app, logger, 'ztunnel');
  },
};

export default command;
