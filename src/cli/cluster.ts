/**
 * The CLI's side of a cluster: the operator's kubeconfig credentials, used for what
 * `kubectl` would do. Nodes are the ztunnel DaemonSet's pods (one per node), and the
 * namespace enrolment label is patched on the Namespace object, where the controller
 * reads it from; writing Redis directly would be undone by the controller.
 */
import { WeftError } from '../lib/errors';
import { KubeClient, k8sStatus, type KubeObject } from '../k8s/client';
import type { AdminRequestOptions } from './admin-client';
import type { CliContext, ClusterTarget, ContextNode } from './context';

export const ADMIN_PORT_NAME = 'http-admin';
export const DEFAULT_ADMIN_PORT = 15000;

interface PodObject extends KubeObject {
  spec?: { nodeName?: string; containers?: { ports?: { name?: string; containerPort: number }[] }[] };
  status?: { phase?: string; podIP?: string; hostIP?: string };
}

export class ClusterSession {
  readonly client: KubeClient;

  constructor(readonly ctx: CliContext, readonly target: ClusterTarget) {
    this.client = new KubeClient(target.config);
  }

  /** How to ask the ztunnels' admin views through the pod proxy: this client and the admin token. */
  get adminOptions(): AdminRequestOptions {
    return { kube: this.client, ...(this.target.adminToken ? { token: this.target.adminToken } : {}) };
  }

  static open(ctx: CliContext): ClusterSession {
    if (!ctx.cluster) {
      throw new WeftError('WEFT_CONTEXT_MISSING', `context ${ctx.source} is not a cluster; pass --kubeconfig FILE to use a cluster`);
    }
    return new ClusterSession(ctx, ctx.cluster);
  }

  /**
   * One node per ztunnel pod. A pod that cannot be asked (pending, no IP) is still a
   * node, so it shows as not answering instead of silently missing.
   */
  async ztunnelNodes(): Promise<ContextNode[]> {
    const { namespace, ztunnelSelector } = this.target;
    let pods: PodObject[];
    try {
      pods = (await this.client.list<PodObject>(`/api/v1/namespaces/${namespace}/pods`, { labelSelector: ztunnelSelector, timeoutMs: 10_000 })).items;
    } catch (err) {
      throw this.refusal(err, `list the ztunnel pods (${ztunnelSelector}) in namespace ${namespace}`);
    }
    if (pods.length === 0) {
      throw new WeftError('WEFT_CONTEXT_MISSING',
        `no ztunnel pods (${ztunnelSelector}) in namespace ${namespace} of ${this.target.source}; is Weft installed (kubectl apply -k daemonset/)?`);
    }
    return pods.map((pod): ContextNode => {
      const name = pod.metadata.name ?? '?';
      const node: ContextNode = { name: pod.spec?.nodeName ?? `(unscheduled ${name})` };
      if (pod.status?.hostIP) node.address = pod.status.hostIP;
      const phase = pod.status?.phase ?? 'Unknown';
      const unavailable = phase !== 'Running' ? `ztunnel pod ${namespace}/${name} is ${phase}; see kubectl -n ${namespace} describe pod ${name}`
        : !pod.status?.podIP ? `ztunnel pod ${namespace}/${name} has no IP yet` : undefined;
      node.admin = { podProxy: { namespace, pod: name, port: adminPort(pod), ...(unavailable ? { unavailable } : {}) } };
      return node;
    }).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async namespaceLabels(name: string): Promise<Record<string, string>> {
    try {
      const ns = await this.client.get(`/api/v1/namespaces/${encodeURIComponent(name)}`);
      return ns.metadata.labels ?? {};
    } catch (err) {
      if (k8sStatus(err) === 404) {
        throw new WeftError('WEFT_REGISTRY_NOT_FOUND', `namespace "${name}" does not exist in ${this.target.source}; check the name with kubectl get namespaces`,
          { details: { kind: 'namespace', key: name } });
      }
      throw this.refusal(err, `read namespace ${name}`);
    }
  }

  /** Sets (value) or removes (undefined) one label with a JSON merge patch, leaving the others alone. */
  async setNamespaceLabel(name: string, label: string, value: string | undefined): Promise<Record<string, string>> {
    try {
      const ns = await this.client.patch(`/api/v1/namespaces/${encodeURIComponent(name)}`,
        { metadata: { labels: { [label]: value ?? null } } }, 'merge');
      return ns.metadata.labels ?? {};
    } catch (err) {
      throw this.refusal(err, `label namespace ${name}`);
    }
  }

  close(): void {
    this.client.close();
  }

  /** API errors in the operator's terms: what was refused, and which role grants it. */
  refusal(err: unknown, what: string): WeftError {
    const status = k8sStatus(err);
    const msg = err instanceof Error ? err.message : String(err);
    if (status === 401 || status === 403) {
      return new WeftError('WEFT_K8S_FORBIDDEN',
        `the API server of ${this.target.source} does not let you ${what} (HTTP ${status}); bind the weft-operator ClusterRole and Role (daemonset/rbac.yaml) to your user, or use another --kube-context`,
        { cause: err, details: { status } });
    }
    if (err instanceof WeftError) return err;
    return new WeftError('WEFT_K8S_REQUEST_FAILED', `cannot ${what}: ${msg}`, { cause: err });
  }
}

/** The admin port the pod declares (named http-admin), else 15000. */
function adminPort(pod: PodObject): number {
  for (const c of pod.spec?.containers ?? []) {
    for (const p of c.ports ?? []) if (p.name === ADMIN_PORT_NAME) return p.containerPort;
  }
  return DEFAULT_ADMIN_PORT;
}

/** Runs `fn` with a cluster session when the context is a cluster (else undefined), and always closes it. */
export async function withCluster<T>(ctx: CliContext, fn: (cluster: ClusterSession | undefined) => Promise<T>): Promise<T> {
  const cluster = ctx.cluster ? ClusterSession.open(ctx) : undefined;
  try {
    return await fn(cluster);
  } finally {
    cluster?.close();
  }
}

/** The nodes to ask: the context's (lab), or the ztunnel pods listed now (cluster). */
export function contextNodes(ctx: CliContext, cluster: ClusterSession | undefined): Promise<ContextNode[]> {
  return cluster ? cluster.ztunnelNodes() : Promise.resolve(ctx.nodes);
}
