/**
 * The lab topology: which nodes, namespaces, pods and services the lab builds. Read
 * from YAML once and validated here, at the edge; everything downstream (the address
 * plan, the network script, the registry records) trusts the frozen result. A bad
 * value names its field (`pods[2].node`), so a user can fix the file without reading
 * code.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { WeftError } from '../lib/errors';
import type { Labels } from '../registry/types';
import { WAYPOINT_FOR_VALUES, type WaypointFor } from '../gateway/types';
import { BEHAVIOUR_KEYS, parseBehaviour, type EchoBehaviour } from './echo-behaviour';
import { DEFAULT_FAILURE_THRESHOLD, ECHO_DEFAULT_PROBE, type ReadinessProbe } from './probe';

/** What a pod runs: the echo app (HTTP 8080, TCP 9000) or nothing (a shell target for `lab exec`). */
export type PodRun = 'echo' | 'none';
export const POD_RUNS: readonly PodRun[] = ['echo', 'none'];

export interface TopologyNode {
  name: string;
  labels: Labels;
}

export interface TopologyNamespace {
  name: string;
  labels: Labels;
}

export interface TopologyPod {
  name: string;
  namespace: string;
  node: string;
  serviceAccount: string;
  labels: Labels;
  run: PodRun;
  /**
   * Checked by the lab's prober on the pod's node (docs/lab.md); its result is the
   * workload's status in the registry. `run: echo` pods get ECHO_DEFAULT_PROBE.
   */
  readinessProbe?: ReadinessProbe;
  /**
   * `run: echo` only: how the app misbehaves (a failing share, a service time, a
   * concurrency limit; src/lab/echo-behaviour.ts), for the resilience demonstrations.
   */
  echo?: EchoBehaviour;
}

export interface TopologyServicePort {
  name?: string;
  port: number;
  targetPort: number;
  /**
   * Optional NodePort (30000-32767): TCP to any node address on it goes to an endpoint
   * on that same node (kube-proxy's externalTrafficPolicy: Local), which is how a
   * NodePort reaches a pod without passing the capture rules.
   */
  nodePort?: number;
}

export interface TopologyService {
  name: string;
  namespace: string;
  selector: Labels;
  ports: TopologyServicePort[];
  /** Fixed VIP inside 198.18.128.0/24; absent: allocated in order. */
  vip?: string;
}

/**
 * A waypoint (the namespace's L7 proxy) the lab runs in its own pod network namespace
 * on `node`, never enrolled itself. `weft waypoint add` creates the same thing live.
 */
export interface TopologyWaypoint {
  name: string;
  namespace: string;
  node: string;
  /** Its identity's service account; default its name (as Istio's waypoints). */
  serviceAccount: string;
  /** What it serves (`weft.io/waypoint-for`); default `service`. */
  for?: WaypointFor;
}

export interface Topology {
  /** Port of the lab's redis-server (on 198.18.0.1 and 127.0.0.1). */
  redisPort: number;
  /**
   * Dual stack: nodes and pods also get ULA IPv6 addresses (fd00:7eff::/48, only inside
   * the lab's node and pod namespaces) and every ztunnel captures IPv6 too.
   */
  ipv6: boolean;
  nodes: TopologyNode[];
  namespaces: TopologyNamespace[];
  pods: TopologyPod[];
  services: TopologyService[];
  waypoints: TopologyWaypoint[];
}

export const DEFAULT_REDIS_PORT = 16379;
/** Node N gets 198.18.0.(10+N) and 198.19.N.0/24; keep well inside one octet. */
export const MAX_NODES = 50;
/** Pod k on a node gets .(10+k) of the node's /24. */
export const MAX_PODS_PER_NODE = 240;
export const MAX_SERVICES = 240;

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
// Kubernetes label syntax: optional DNS prefix, then a name of at most 63 characters.
const LABEL_KEY = /^([a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?\/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$/;

class Invalid extends Error {
  constructor(readonly field: string, why: string) {
    super(`${field}: ${why}`);
  }
}

type Obj = Record<string, unknown>;

function object(v: unknown, field: string, allowed: readonly string[]): Obj {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw new Invalid(field || '(top level)', 'expected a mapping');
  for (const key of Object.keys(v)) {
    if (!allowed.includes(key)) throw new Invalid(`${field}${field ? '.' : ''}${key}`, `unknown field; expected one of ${allowed.join(', ')}`);
  }
  return v as Obj;
}

function array(v: unknown, field: string, opts: { min?: number; max?: number } = {}): unknown[] {
  if (v === undefined) v = [];
  if (!Array.isArray(v)) throw new Invalid(field, 'expected a list');
  if (opts.min !== undefined && v.length < opts.min) throw new Invalid(field, `expected at least ${opts.min} entr${opts.min === 1 ? 'y' : 'ies'}`);
  if (opts.max !== undefined && v.length > opts.max) throw new Invalid(field, `expected at most ${opts.max} entries`);
  return v;
}

function dnsLabel(v: unknown, field: string): string {
  if (typeof v !== 'string' || !DNS_LABEL.test(v)) {
    throw new Invalid(field, `expected a DNS label (lower-case letters, digits and '-', at most 63 characters), got ${JSON.stringify(v)}`);
  }
  return v;
}

function int(v: unknown, field: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new Invalid(field, `expected a whole number from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function labels(v: unknown, field: string): Labels {
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v)) throw new Invalid(field, 'expected a mapping of label keys to values');
  const out: Labels = {};
  for (const [k, raw] of Object.entries(v as Obj)) {
    if (!LABEL_KEY.test(k)) throw new Invalid(`${field}.${k}`, 'expected a label key such as app or weft.io/dataplane-mode');
    // YAML turns `true` and `8080` into non-strings; labels are text, so accept scalars as written.
    const value = typeof raw === 'number' || typeof raw === 'boolean' ? String(raw) : raw;
    if (typeof value !== 'string' || !LABEL_VALUE.test(value)) {
      throw new Invalid(`${field}.${k}`, `expected a label value (letters, digits, '.', '_', '-', at most 63 characters), got ${JSON.stringify(raw)}`);
    }
    out[k] = value;
  }
  return out;
}

/**
 * `readinessProbe: { httpGet: { path, port } | tcpSocket: { port }, periodSeconds,
 * timeoutSeconds, failureThreshold, successThreshold }`, the kubelet's field names.
 */
function readinessProbe(v: unknown, field: string): ReadinessProbe {
  const o = object(v, field, ['httpGet', 'tcpSocket', 'periodSeconds', 'timeoutSeconds', 'failureThreshold', 'successThreshold']);
  if ((o.httpGet === undefined) === (o.tcpSocket === undefined)) throw new Invalid(field, 'expected exactly one of httpGet or tcpSocket');
  let check: ReadinessProbe['check'];
  if (o.httpGet !== undefined) {
    const h = object(o.httpGet, `${field}.httpGet`, ['path', 'port']);
    const path = h.path === undefined ? '/' : h.path;
    if (typeof path !== 'string' || !/^\/[\x21-\x7e]*$/.test(path)) throw new Invalid(`${field}.httpGet.path`, `expected a path starting with / (no spaces), got ${JSON.stringify(h.path)}`);
    check = { kind: 'http', path, port: int(h.port, `${field}.httpGet.port`, 1, 65535) };
  } else {
    const tcp = object(o.tcpSocket, `${field}.tcpSocket`, ['port']);
    check = { kind: 'tcp', port: int(tcp.port, `${field}.tcpSocket.port`, 1, 65535) };
  }
  const periodSeconds = o.periodSeconds === undefined ? 1 : int(o.periodSeconds, `${field}.periodSeconds`, 1, 300);
  const timeoutSeconds = o.timeoutSeconds === undefined ? 1 : int(o.timeoutSeconds, `${field}.timeoutSeconds`, 1, 300);
  // A check outliving its period would overlap the next one.
  if (timeoutSeconds > periodSeconds) throw new Invalid(`${field}.timeoutSeconds`, `must not exceed periodSeconds (${periodSeconds}), got ${timeoutSeconds}`);
  const failureThreshold = o.failureThreshold === undefined ? DEFAULT_FAILURE_THRESHOLD : int(o.failureThreshold, `${field}.failureThreshold`, 1, 100);
  const successThreshold = o.successThreshold === undefined ? 1 : int(o.successThreshold, `${field}.successThreshold`, 1, 100);
  return { check, periodSeconds, timeoutSeconds, failureThreshold, successThreshold };
}

/** `echo: { failStatus, failRatio, serviceTime, concurrency }` (echo-behaviour.ts). */
function echoBehaviour(v: unknown, field: string): EchoBehaviour {
  const o = object(v, field, BEHAVIOUR_KEYS);
  const entries: [string, string][] = [];
  for (const [k, raw] of Object.entries(o)) {
    if (typeof raw !== 'number' && typeof raw !== 'string') throw new Invalid(`${field}.${k}`, `expected a number, got ${JSON.stringify(raw)}`);
    entries.push([k, String(raw)]);
  }
  for (const e of entries) {
    try {
      parseBehaviour([e]);
    } catch (err) {
      throw new Invalid(`${field}.${e[0]}`, (err as Error).message.replace(/^[^:]*: /, ''));
    }
  }
  return parseBehaviour(entries);
}

function unique(seen: Map<string, string>, key: string, field: string, what: string): void {
  const first = seen.get(key);
  if (first !== undefined) throw new Invalid(field, `duplicate ${what} ${JSON.stringify(key)} (already declared at ${first})`);
  seen.set(key, field);
}

const VIP_RE = /^198\.18\.128\.(\d{1,3})$/;

/** Validates a parsed YAML document into a frozen Topology, or throws `Invalid` naming the field. */
function validate(doc: unknown): Topology {
  const top = object(doc ?? {}, '', ['redisPort', 'ipv6', 'nodes', 'namespaces', 'pods', 'services', 'waypoints']);
  const redisPort = top.redisPort === undefined ? DEFAULT_REDIS_PORT : int(top.redisPort, 'redisPort', 1, 65535);
  if (top.ipv6 !== undefined && typeof top.ipv6 !== 'boolean') throw new Invalid('ipv6', `expected true or false, got ${JSON.stringify(top.ipv6)}`);
  const ipv6 = top.ipv6 === true;

  const nodeNames = new Map<string, string>();
  const nodes = array(top.nodes, 'nodes', { min: 1, max: MAX_NODES }).map((raw, i) => {
    const f = `nodes[${i}]`;
    const o = object(raw, f, ['name', 'labels']);
    const name = dnsLabel(o.name, `${f}.name`);
    // Node netns are weft-<name>, pod netns weft-pod-...: keep the two spaces apart.
    if (name.startsWith('pod-')) throw new Invalid(`${f}.name`, 'must not start with "pod-" (reserved for pod network namespaces)');
    unique(nodeNames, name, `${f}.name`, 'node');
    return { name, labels: labels(o.labels, `${f}.labels`) };
  });

  const nsNames = new Map<string, string>();
  const namespaces = array(top.namespaces, 'namespaces').map((raw, i) => {
    const f = `namespaces[${i}]`;
    const o = object(raw, f, ['name', 'labels']);
    const name = dnsLabel(o.name, `${f}.name`);
    unique(nsNames, name, `${f}.name`, 'namespace');
    return { name, labels: labels(o.labels, `${f}.labels`) };
  });

  const podKeys = new Map<string, string>();
  const netnsNames = new Map<string, string>();
  const podsPerNode = new Map<string, number>();
  const pods = array(top.pods, 'pods').map((raw, i) => {
    const f = `pods[${i}]`;
    const o = object(raw, f, ['name', 'namespace', 'node', 'serviceAccount', 'labels', 'run', 'readinessProbe', 'echo']);
    const name = dnsLabel(o.name, `${f}.name`);
    const namespace = dnsLabel(o.namespace, `${f}.namespace`);
    if (!nsNames.has(namespace)) throw new Invalid(`${f}.namespace`, `namespace ${JSON.stringify(namespace)} is not declared under namespaces`);
    const node = dnsLabel(o.node, `${f}.node`);
    if (!nodeNames.has(node)) throw new Invalid(`${f}.node`, `node ${JSON.stringify(node)} is not declared under nodes`);
    const serviceAccount = o.serviceAccount === undefined ? 'default' : dnsLabel(o.serviceAccount, `${f}.serviceAccount`);
    let run: PodRun = 'none';
    if (o.run !== undefined) {
      if (typeof o.run !== 'string' || !(POD_RUNS as readonly string[]).includes(o.run)) {
        throw new Invalid(`${f}.run`, `expected one of ${POD_RUNS.join(', ')}, got ${JSON.stringify(o.run)}`);
      }
      run = o.run as PodRun;
    }
    unique(podKeys, `${namespace}/${name}`, f, 'pod');
    // weft-pod-a-b-c is both a-b/c and a/b-c: refuse the second rather than share a netns.
    unique(netnsNames, podNetnsName(namespace, name), f, 'pod network namespace');
    const count = (podsPerNode.get(node) ?? 0) + 1;
    if (count > MAX_PODS_PER_NODE) throw new Invalid(f, `node ${node} already has ${MAX_PODS_PER_NODE} pods (its /24 is full)`);
    podsPerNode.set(node, count);
    const pod: TopologyPod = { name, namespace, node, serviceAccount, labels: labels(o.labels, `${f}.labels`), run };
    const probe = o.readinessProbe === undefined ? (run === 'echo' ? ECHO_DEFAULT_PROBE : undefined) : readinessProbe(o.readinessProbe, `${f}.readinessProbe`);
    if (probe) pod.readinessProbe = probe;
    if (o.echo !== undefined) {
      if (run !== 'echo') throw new Invalid(`${f}.echo`, 'only a pod with run: echo has an echo behaviour');
      pod.echo = echoBehaviour(o.echo, `${f}.echo`);
    }
    return pod;
  });

  const svcKeys = new Map<string, string>();
  const vips = new Map<string, string>();
  const nodePorts = new Map<string, string>();
  const services = array(top.services, 'services', { max: MAX_SERVICES }).map((raw, i) => {
    const f = `services[${i}]`;
    const o = object(raw, f, ['name', 'namespace', 'selector', 'ports', 'vip']);
    const name = dnsLabel(o.name, `${f}.name`);
    const namespace = dnsLabel(o.namespace, `${f}.namespace`);
    if (!nsNames.has(namespace)) throw new Invalid(`${f}.namespace`, `namespace ${JSON.stringify(namespace)} is not declared under namespaces`);
    unique(svcKeys, `${namespace}/${name}`, f, 'service');
    const selector = labels(o.selector, `${f}.selector`);
    if (Object.keys(selector).length === 0) throw new Invalid(`${f}.selector`, 'expected at least one label (a service without a selector has no endpoints)');
    const portNumbers = new Map<string, string>();
    const ports = array(o.ports, `${f}.ports`, { min: 1 }).map((rawPort, j) => {
      const pf = `${f}.ports[${j}]`;
      const p = object(rawPort, pf, ['name', 'port', 'targetPort', 'nodePort']);
      const port = int(p.port, `${pf}.port`, 1, 65535);
      unique(portNumbers, String(port), `${pf}.port`, 'port');
      const targetPort = p.targetPort === undefined ? port : int(p.targetPort, `${pf}.targetPort`, 1, 65535);
      const out: TopologyServicePort = { port, targetPort };
      if (p.name !== undefined) out.name = dnsLabel(p.name, `${pf}.name`);
      if (p.nodePort !== undefined) {
        out.nodePort = int(p.nodePort, `${pf}.nodePort`, 30000, 32767);
        unique(nodePorts, String(out.nodePort), `${pf}.nodePort`, 'nodePort');
      }
      return out;
    });
    const svc: TopologyService = { name, namespace, selector, ports };
    if (o.vip !== undefined) {
      const m = typeof o.vip === 'string' ? VIP_RE.exec(o.vip) : null;
      if (!m || Number(m[1]) < 1 || Number(m[1]) > 254) {
        throw new Invalid(`${f}.vip`, `expected an address in 198.18.128.0/24 (198.18.128.1 to .254), got ${JSON.stringify(o.vip)}`);
      }
      unique(vips, o.vip as string, `${f}.vip`, 'vip');
      svc.vip = o.vip as string;
    }
    return svc;
  });

  const waypoints = array(top.waypoints, 'waypoints').map((raw, i) => {
    const f = `waypoints[${i}]`;
    const o = object(raw, f, ['name', 'namespace', 'node', 'serviceAccount', 'for']);
    const name = dnsLabel(o.name, `${f}.name`);
    const namespace = dnsLabel(o.namespace, `${f}.namespace`);
    if (!nsNames.has(namespace)) throw new Invalid(`${f}.namespace`, `namespace ${JSON.stringify(namespace)} is not declared under namespaces`);
    const node = dnsLabel(o.node, `${f}.node`);
    if (!nodeNames.has(node)) throw new Invalid(`${f}.node`, `node ${JSON.stringify(node)} is not declared under nodes`);
    const serviceAccount = o.serviceAccount === undefined ? name : dnsLabel(o.serviceAccount, `${f}.serviceAccount`);
    // A waypoint's pod is a workload `<namespace>/<name>` with its own netns: it shares
    // the pods' name spaces (registry uid, netns name, the node's /24).
    unique(podKeys, `${namespace}/${name}`, f, 'pod or waypoint');
    unique(netnsNames, podNetnsName(namespace, name), f, 'pod network namespace');
    const count = (podsPerNode.get(node) ?? 0) + 1;
    if (count > MAX_PODS_PER_NODE) throw new Invalid(f, `node ${node} already has ${MAX_PODS_PER_NODE} pods (its /24 is full)`);
    podsPerNode.set(node, count);
    if (o.for !== undefined && !WAYPOINT_FOR_VALUES.includes(o.for as WaypointFor)) {
      throw new Invalid(`${f}.for`, `must be one of ${WAYPOINT_FOR_VALUES.join(', ')}, got ${JSON.stringify(o.for)}`);
    }
    return { name, namespace, node, serviceAccount, ...(o.for !== undefined ? { for: o.for as WaypointFor } : {}) };
  });

  return deepFreeze({ redisPort, ipv6, nodes, namespaces, pods, services, waypoints });
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object') {
    for (const child of Object.values(v)) deepFreeze(child);
    Object.freeze(v);
  }
  return v;
}

/** Network namespace of a pod. */
export function podNetnsName(namespace: string, name: string): string {
  return `weft-pod-${namespace}-${name}`;
}

/** Network namespace of a node. */
export function nodeNetnsName(node: string): string {
  return `weft-${node}`;
}

function invalid(source: string, err: Invalid): WeftError {
  return new WeftError('WEFT_LAB_TOPOLOGY_INVALID',
    `invalid lab topology ${source}: ${err.message}; fix the file (format: docs/lab.md)`,
    { details: { source, field: err.field } });
}

/** Parses and validates topology YAML text; `source` names the file in errors. */
export function parseTopology(text: string, source = 'topology'): Topology {
  let doc: unknown;
  try {
    doc = parseYaml(text);
  } catch (err) {
    throw new WeftError('WEFT_LAB_TOPOLOGY_INVALID',
      `invalid lab topology ${source}: not valid YAML (${err instanceof Error ? err.message.split('\n')[0] : String(err)}); fix the file (format: docs/lab.md)`,
      { cause: err, details: { source } });
  }
  try {
    return validate(doc);
  } catch (err) {
    if (err instanceof Invalid) throw invalid(source, err);
    throw err;
  }
}

/** Reads and validates a topology file. */
export function loadTopology(file: string): Topology {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new WeftError('WEFT_LAB_TOPOLOGY_INVALID',
      `cannot read lab topology ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}; pass an existing file with --topology`,
      { cause: err, details: { source: file } });
  }
  return parseTopology(text, file);
}
