import type { LevelWithSilent } from 'pino';
import { isValidTrustDomain } from './identity';
import { LOG_LEVELS } from './log';
import { parse, type OptionSpec } from './options';
import { redisOptionSpecs } from '../registry/connection';

/** Settings every component shares; each component spreads these into its own specs. */
export const commonOptions = {
  ...redisOptionSpecs,
  trustDomain: {
    flag: 'trust-domain', env: 'WEFT_TRUST_DOMAIN', default: 'cluster.local',
    description: 'SPIFFE trust domain of the mesh',
    parse: (raw: string) => {
      if (!isValidTrustDomain(raw)) throw new Error('expected a lower-case DNS name such as cluster.local');
      return raw;
    },
  } satisfies OptionSpec<string>,
  logLevel: {
    flag: 'log-level', env: 'WEFT_LOG_LEVEL', default: 'info' as LevelWithSilent,
    description: 'log level', parse: parse.oneOf(LOG_LEVELS),
  } satisfies OptionSpec<LevelWithSilent>,
};
