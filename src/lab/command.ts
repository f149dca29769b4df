/**
 * `weft lab <up|down|status|exec|request|tcp>`: the local multi-node lab. The work
 * lives in up.ts, down.ts, status.ts; this file parses flags and prints.
 */
import { spawn } from 'node:child_process';
import { delimiter } from 'node:path';
import type { Command } from '../cli/command';
import { WeftError } from '../lib/errors';
import { optionsHelp, parse, parseOptions } from '../lib/options';
import { CLIENT_HELP, requestMain, tcpMain } from './client';
import { requestsMain } from './client-batch';
import { LOAD_HELP, loadMain } from './client-load';
import { wsMain } from './client-ws';
import { contextPath } from './context';
import { labDown } from './down';
import { echoMain } from './echo';
import { proberMain } from './prober';
import { startApp, stopApp } from './app-ctl';
import { defaultLabDir, defaultTopologyFile, labLayout } from './paths';
import { checkRoot } from './preflight';
import { requireState } from './state';
import { formatStatus, labStatus } from './status';
import { labUp } from './up';
import { startWaypoint, stopWaypoint } from './waypoint-ctl';
import { startZtunnel, stopZtunnel } from './ztunnel-ctl';

const commonSpecs = {
  labDir: { flag: 'lab-dir', env: 'WEFT_LAB_DIR', default: '', defaultText: '<repo>/.weft-lab', description: 'where the lab keeps its state and logs', parse: parse.string() },
  context: { flag: 'context', env: 'WEFT_CONTEXT', default: '', defaultText: '~/.weft/context.json', description: 'context file written for the weft CLI', parse: parse.string() },
};

const upSpecs = {
  ...commonSpecs,
  topology: { flag: 'topology', env: 'WEFT_LAB_TOPOLOGY', default: '', defaultText: 'scripts/lab.yaml', description: 'topology file (format: docs/lab.md)', parse: parse.string() },
  redisPort: { flag: 'redis-port', env: 'WEFT_LAB_REDIS_PORT', default: 0, defaultText: "the topology's redisPort (16379)", description: "port of the lab's Redis", parse: parse.int({ min: 1, max: 65535 }) },
  keepOnFailure: { flag: 'keep-on-failure', boolean: true, default: false, description: 'leave a failed lab in place for inspection', parse: parse.bool() },
  redisSentinel: {
    flag: 'redis-sentinel', env: 'WEFT_LAB_REDIS_SENTINEL', boolean: true, default: false,
    description: 'run the registry as a primary, two replicas and three Sentinels (ports redisPort+1..+5), to show a failover', parse: parse.bool(),
  },
};

const statusSpecs = {
  ...commonSpecs,
  json: { flag: 'json', boolean: true, default: false, description: 'print JSON', parse: parse.bool() },
};

function dirs(values: { labDir: string; context: string }): { labDir: string; contextFile: string } {
  return {
    labDir: values.labDir ? defaultLabDir({ WEFT_LAB_DIR: values.labDir }) : defaultLabDir({}),
    contextFile: values.context || contextPath({}),
  };
}

const out = (line: string) => process.stdout.write(line + '\n');

async function up(argv: string[]): Promise<number> {
  const { values, positionals } = parseOptions(upSpecs, argv);
  if (positionals.length > 0) throw new WeftError('WEFT_USAGE', `lab up takes no arguments (got ${positionals.join(' ')}); see weft lab --help`);
  const d = dirs(values);
  // Processes are detached and every resource is recorded, so an interrupted up is
  // cleaned by the next down (or up); say so rather than exit silently.
  const interrupted = () => {
    process.stderr.write('\nlab up interrupted: the lab is partly up; `scripts/lab down` (or `up` again) removes it\n');
    process.exit(130);
  };
  process.once('SIGINT', interrupted);
  const result = await labUp({
    ...d,
    topologyFile: values.topology || defaultTopologyFile(),
    ...(values.redisPort ? { redisPort: values.redisPort } : {}),
    keepOnFailure: values.keepOnFailure,
    redisSentinel: values.redisSentinel,
    progress: out,
  }).finally(() => process.off('SIGINT', interrupted));
  out('');
  out(`Try:  scripts/lab exec demo/client -- weft lab request http://echo.demo/`);
  out(`      scripts/lab exec legacy/client -- weft lab tcp echo.legacy:9000 --bytes 100000`);
  out(`      scripts/lab app stop demo/echo-1     (its probe fails: weft services shows 1 endpoint; app start brings it back)`);
  out(`      scripts/lab status`);
  if (!result.ztunnels) out('(ztunnels were not started: mesh pods use the kube-proxy emulation like the others)');
  return 0;
}

async function down(argv: string[]): Promise<number> {
  const { values, positionals } = parseOptions(commonSpecs, argv);
  if (positionals.length > 0) throw new WeftError('WEFT_USAGE', `lab down takes no arguments (got ${positionals.join(' ')})`);
  checkRoot();
  await labDown({ ...dirs(values), progress: out });
  return 0;
}

async function status(argv: string[]): Promise<number> {
  const { values } = parseOptions(statusSpecs, argv);
  const s = await labStatus(dirs(values).labDir);
  out(values.json ? JSON.stringify(s, null, 2) : formatStatus(s));
  return s.healthy ? 0 : 1;
}

/** `exec <ns>/<pod>|<node> [--] CMD ...`: stdio inherited, exit status passed through. */
async function exec(argv: string[]): Promise<number> {
  const sep = argv.indexOf('--');
  let flags: string[];
  let target: string | undefined;
  let cmd: string[];
  if (sep !== -1) {
    const left = parseOptions(commonSpecs, argv.slice(0, sep));
    flags = argv.slice(0, sep);
    target = left.positionals[0];
    if (left.positionals.length > 1) throw new WeftError('WEFT_USAGE', 'lab exec takes one target before --: exec <namespace>/<pod> -- CMD ...');
    cmd = argv.slice(sep + 1);
  } else {
    const i = argv.findIndex((a) => !a.startsWith('--'));
    flags = i === -1 ? argv : argv.slice(0, i);
    target = i === -1 ? undefined : argv[i];
    cmd = i === -1 ? [] : argv.slice(i + 1);
  }
  const { values } = parseOptions(commonSpecs, flags);
  if (!target || cmd.length === 0) throw new WeftError('WEFT_USAGE', 'usage: weft lab exec <namespace>/<pod>|<node> -- CMD [ARGS...]');
  checkRoot();
  const { labDir } = dirs(values);
  const state = requireState(labDir);
  // Waypoint pods are pods too: `exec demo/waypoint -- ss -ltn` shows its listeners.
  const pod = [...state.plan.pods, ...(state.waypoints ?? [])].find((p) => p.uid === target);
  const node = state.plan.nodes.find((n) => n.name === target);
  if (!pod && !node) {
    throw new WeftError('WEFT_USAGE',
      `no pod or node ${JSON.stringify(target)} in the lab; pods: ${state.plan.pods.map((p) => p.uid).join(', ')}; nodes: ${state.plan.nodes.map((n) => n.name).join(', ')}`);
  }
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATH: `${labLayout(labDir).binDir}${delimiter}${process.env.PATH ?? ''}`,
    WEFT_NODE: pod ? pod.node : node!.name,
  };
  if (pod) Object.assign(env, { WEFT_POD: pod.name, WEFT_NAMESPACE: pod.namespace });
  const netns = pod ? pod.netns : node!.netns;
  return new Promise<number>((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', netns, ...cmd], { stdio: 'inherit', env });
    // The terminal signals the whole foreground group; let the child decide and report.
    const ignore = () => {};
    process.on('SIGINT', ignore);
    process.on('SIGTERM', ignore);
    child.once('error', (e) => reject(new WeftError('WEFT_COMMAND_FAILED', `cannot run ip netns exec: ${e.message}; install iproute2`, { cause: e })));
    child.once('exit', (code, signal) => {
      process.off('SIGINT', ignore);
      process.off('SIGTERM', ignore);
      const signals: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGKILL: 9, SIGPIPE: 13, SIGTERM: 15 };
      resolve(code ?? 128 + (signal ? signals[signal] ?? 1 : 1));
    });
  });
}

const ztunnelSpecs = {
  ...commonSpecs,
  signal: {
    flag: 'signal', default: 'SIGTERM' as 'SIGTERM' | 'SIGKILL', description: 'how stop and restart end the running ztunnel: SIGTERM (graceful, a rolling update) or SIGKILL (a crash)',
    parse: parse.oneOf(['SIGTERM', 'SIGKILL'] as const),
  },
};

/** `waypoint <ns>/<name> stop|start|restart [--signal SIGKILL]`: a waypoint's rolling update or crash, on demand. */
async function waypoint(argv: string[]): Promise<number> {
  const usage = 'usage: weft lab waypoint <namespace>/<name> stop|start|restart [--signal SIGTERM|SIGKILL]';
  const { values, positionals } = parseOptions(ztunnelSpecs, argv);
  const [ref, action, ...extra] = positionals;
  const m = ref === undefined ? null : /^([^/]+)\/([^/]+)$/.exec(ref);
  if (!m || !action || !['stop', 'start', 'restart'].includes(action) || extra.length > 0) throw new WeftError('WEFT_USAGE', usage);
  checkRoot();
  const { labDir } = dirs(values);
  const namespace = m[1]!;
  const name = m[2]!;
  if (action !== 'start') {
    const pid = await stopWaypoint(labDir, namespace, name, values.signal);
    out(pid === undefined ? `waypoint ${ref} was not running; its pod is marked Unhealthy`
      : `waypoint ${ref} (pid ${pid}) stopped with ${values.signal}; its pod is marked Unhealthy: traffic bound to it is refused`);
  }
  if (action !== 'stop') out(`waypoint ${ref} started (pid ${await startWaypoint(labDir, namespace, name)}) and ready`);
  return 0;
}

/** `app stop|start <ns>/<pod>`: one pod's app down or up again, to show failover. */
async function app(argv: string[]): Promise<number> {
  const usage = 'usage: weft lab app stop|start <namespace>/<pod> [--signal SIGTERM|SIGKILL]';
  const { values, positionals } = parseOptions(ztunnelSpecs, argv);
  const [action, ref, ...extra] = positionals;
  if (!ref || !action || !['stop', 'start'].includes(action) || extra.length > 0 || !/^[^/]+\/[^/]+$/.test(ref)) throw new WeftError('WEFT_USAGE', usage);
  checkRoot();
  const { labDir } = dirs(values);
  if (action === 'stop') {
    const r = await stopApp(labDir, ref, values.signal);
    out(r.pid === undefined ? `app of ${ref} was not running` : `app of ${ref} (pid ${r.pid}) stopped with ${values.signal}`);
    if (r.probed) out(`its readiness probe fails from now on: the prober marks ${ref} Unhealthy within ${r.periodSeconds! * r.failureThreshold!} s (weft workloads shows it)`);
  } else {
    const r = await startApp(labDir, ref);
    out(`app of ${ref} started (pid ${r.pid}) and listening${r.probed ? `; the prober marks it Healthy within ${r.periodSeconds! * r.successThreshold!} s` : ''}`);
  }
  return 0;
}

/** `ztunnel <node> stop|start|restart [--signal SIGKILL]`: a rolling update or a crash, on demand. */
async function ztunnel(argv: string[]): Promise<number> {
  const { values, positionals } = parseOptions(ztunnelSpecs, argv);
  const [node, action, ...extra] = positionals;
  if (!node || !action || !['stop', 'start', 'restart'].includes(action) || extra.length > 0) {
    throw new WeftError('WEFT_USAGE', 'usage: weft lab ztunnel <node> stop|start|restart [--signal SIGTERM|SIGKILL]');
  }
  checkRoot();
  const { labDir } = dirs(values);
  if (action !== 'start') {
    const pid = await stopZtunnel(labDir, node, values.signal);
    out(pid === undefined ? `ztunnel of ${node} was not running` : `ztunnel of ${node} (pid ${pid}) stopped with ${values.signal}; its capture rules stay: enrolled traffic fails closed`);
  }
  if (action !== 'stop') out(`ztunnel of ${node} started (pid ${await startZtunnel(labDir, node)}) and ready`);
  return 0;
}

function help(): string {
  return `Usage: weft lab <command> [flags]   (scripts/lab <command> from the repo)

The local lab: a multi-node cluster made of Linux network namespaces on this machine,
with Redis, the CA, one ztunnel per node and demo apps. Needs root. Docs: docs/lab.md.

Commands:
  up [--topology FILE]            build the lab (tears down a recorded previous one first)
  down                            remove everything the lab recorded (idempotent, also after a crash)
  status [--json]                 nodes, pods, services, processes and readiness (exit 1 if degraded)
  exec <ns>/<pod>|<node> -- CMD   run CMD in that pod's (or node's) network namespace;
                                  \`weft\` is on PATH there; exit status passed through
  ztunnel <node> stop|start|restart [--signal SIGTERM|SIGKILL]
                                  end a node's ztunnel (graceful or crash) and/or start
                                  it again (fresh join token; waits until ready)
  app stop|start <ns>/<pod> [--signal SIGTERM|SIGKILL]
                                  stop one pod's app (its readiness probe then fails and
                                  the pod leaves its services) or start it again
  waypoint <ns>/<name> stop|start|restart [--signal SIGTERM|SIGKILL]
                                  the same for a waypoint pod's process (its pod is
                                  Unhealthy while stopped; start waits until ready)
  request <url> [flags]           HTTP client for use inside pods (prints the body)
  tcp <host:port> [flags]         byte-exact TCP round trip for use inside pods
  requests [--file F]             many HTTP requests (a JSON array on stdin), answers as JSON
${LOAD_HELP}
  grpc <host:port> [-H 'k: v'] [--count N]
                                  unary calls to the gRPC echo (:7070), answer and trailers as JSON
  ws <url> [--bytes N]            WebSocket round trip to the echo app, byte-exact

Flags of every command:
${optionsHelp(commonSpecs)}

Flags of up:
${optionsHelp({ topology: upSpecs.topology, redisPort: upSpecs.redisPort, redisSentinel: upSpecs.redisSentinel, keepOnFailure: upSpecs.keepOnFailure })}

${CLIENT_HELP}`;
}

const command: Command = {
  summary: 'run the local multi-node lab (up, down, status, exec)',
  help,
  async run(argv: string[]): Promise<number> {
    const [sub, ...rest] = argv;
    switch (sub) {
      case 'up': return up(rest);
      case 'down': return down(rest);
      case 'status': return status(rest);
      case 'exec': return exec(rest);
      case 'ztunnel': return ztunnel(rest);
      case 'waypoint': return waypoint(rest);
      case 'request': return requestMain(rest);
      case 'tcp': return tcpMain(rest);
      case 'requests': return requestsMain(rest);
      case 'load': return loadMain(rest);
      // Loaded on use: the gRPC client library is not worth loading for every other command.
      case 'grpc': return (await import('./client-grpc')).grpcMain(rest);
      case 'ws': return wsMain(rest);
      case 'echo': return echoMain(rest); // hidden: what `run: echo` pods run
      case 'prober': return proberMain(rest); // hidden: what `up` runs in each node (readiness probes)
      case 'app': return app(rest);
      case undefined:
        process.stdout.write(help() + '\n');
        return 2;
      default:
        throw new WeftError('WEFT_USAGE', `unknown lab command "${sub}"; run weft lab --help`);
    }
  },
};

export default command;
