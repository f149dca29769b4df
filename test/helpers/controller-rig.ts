/**
 * A controller against the API-server stand-in and a registry in a real redis-server
 * (its own key prefix), with its log lines kept for assertions. Everything is torn
 * down with the test.
 */
import type { Test } from 'tap';
import { randomBytes } from 'node:crypto';
import { Controller } from '../../src/controller/controller';
import type { WaypointDeployConfig } from '../../src/controller/waypoint-deploy';
import { KubeClient } from '../../src/k8s/client';
import { createLogger } from '../../src/lib/log';
import { RegistryStore } from '../../src/registry/store';
import { TestApiServer } from './apiserver';

export interface LogLine { level: number; msg: string; [k: string]: unknown }

export interface ControllerRigOptions {
  /** API groups whose CRDs the stand-in does not serve at first (404). */
  missingGroups?: string[];
  waypoints?: WaypointDeployConfig;
  istioRootNamespace?: string;
}

export async function controllerRig(t: Test, redisUrl: string, opts: ControllerRigOptions = {}) {
  const api = await TestApiServer.start();
  t.teardown(() => api.stop());
  for (const g of opts.missingGroups ?? []) api.setGroupInstalled(g, false);
  const client = new KubeClient({ server: api.url });
  t.teardown(() => client.close());
  const store = RegistryStore.connect(redisUrl, { prefix: `weft-${randomBytes(4).toString('hex')}:` });
  t.teardown(() => store.close());
  const logs: LogLine[] = [];
  const logger = createLogger({ level: 'debug', component: 'controller', destination: { write: (s: string) => { logs.push(JSON.parse(s) as LogLine); } } });
  const controller = new Controller({
    client, store, clusterDomain: 'cluster.local', batchMs: 10, informerBackoff: { minMs: 10, maxMs: 100 }, logger,
    ...(opts.waypoints ? { waypoints: opts.waypoints } : {}),
    ...(opts.istioRootNamespace ? { istioRootNamespace: opts.istioRootNamespace } : {}),
  });
  t.teardown(() => controller.stop());
  return { api, client, store, controller, logs };
}
