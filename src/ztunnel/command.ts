import type { Command } from '../cli/command';
import { createLogger } from '../lib/log';
import { optionsHelp } from '../lib/options';
import { ZtunnelApp } from './app';
import { loadZtunnelConfig, ztunnelOptions } from './config';

const command: Command = {
  summary: 'run the per-node L4 proxy',
  help: () => [
    'Usage: weft ztunnel --node <name> --address <node ip> [flags]',
    '',
    'Runs in the node\'s network namespace: captures enrolled pods\' TCP (with --capture),',
    'carries it to peer nodes over HBONE (mTLS HTTP/2 CONNECT, port 15008) and serves',
    'admin (15000, localhost), metrics (15020) and readiness (15021).',
    '',
    'Flags:',
    optionsHelp(ztunnelOptions),
  ].join('\n'),
  async run(argv) {
    const config = loadZtunnelConfig(argv);
    const logger = createLogger({ level: config.logLevel, component: 'ztunnel' });
    const app = new ZtunnelApp(config, logger);
    let stopping: Promise<void> | undefined;
    const stop = (signal: string) => {
      logger.info({ signal }, 'shutting down');
      stopping ??= app.stop();
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    try {
      await app.start();
    } catch (err) {
      logger.error({ err }, 'ztunnel failed to start');
      await app.stop();
      throw err;
    }
    await new Promise<void>((resolve) => {
      const wait = setInterval(() => { if (stopping) { clearInterval(wait); void stopping.then(resolve); } }, 100);
    });
    return 0;
  },
};

export default command;
