import type { Command } from '../cli/command';
import { createLogger } from '../lib/log';
import { optionsHelp } from '../lib/options';
import { runComponent } from '../lib/run-component';
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
    return runComponent(app, logger, 'waypoint');
  },
};

export default command;
