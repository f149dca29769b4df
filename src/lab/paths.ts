/** Where the lab finds the repository and keeps its state. */
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The repository root: this file is src/lab/paths.ts or dist/lab/paths.js. */
export const REPO_ROOT = resolve(__dirname, '..', '..');

export function defaultLabDir(env: NodeJS.ProcessEnv = process.env): string {
  return resolve(env.WEFT_LAB_DIR || join(REPO_ROOT, '.weft-lab'));
}

export function defaultTopologyFile(): string {
  return join(REPO_ROOT, 'scripts', 'lab.yaml');
}

export interface LabLayout {
  labDir: string;
  logs: string;
  redisDir: string;
  caDir: string;
  caRootFile: string;
  binDir: string;
  /** Unix sockets (ztunnel admin APIs). */
  runDir: string;
  networkScript: string;
}

export function labLayout(labDir: string): LabLayout {
  return {
    labDir,
    logs: join(labDir, 'logs'),
    redisDir: join(labDir, 'redis'),
    caDir: join(labDir, 'ca'),
    caRootFile: join(labDir, 'ca', 'root.pem'),
    binDir: join(labDir, 'bin'),
    runDir: join(labDir, 'run'),
    networkScript: join(labDir, 'network-up.sh'),
  };
}

/** The built CLI entry point and component modules. */
export const DIST = {
  main: join(REPO_ROOT, 'dist', 'cli', 'main.js'),
  echo: join(REPO_ROOT, 'dist', 'lab', 'echo.js'),
  client: join(REPO_ROOT, 'dist', 'lab', 'client.js'),
  ca: join(REPO_ROOT, 'dist', 'ca', 'command.js'),
  ztunnel: join(REPO_ROOT, 'dist', 'ztunnel', 'command.js'),
  /** `weft waypoint run`; until it is built the lab makes waypoint pods without a process. */
  waypoint: join(REPO_ROOT, 'dist', 'waypoint', 'command.js'),
};

export function built(file: string): boolean {
  return existsSync(file);
}
