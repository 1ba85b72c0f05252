/**
 * Pods, Namespaces and Nodes → the policy engine. A pod's engine endpoint
 * merges two inputs: its manifest (labels, named ports, service account) and,
 * for pods on this node, its CNI registration (addresses, and "local": it gets
 * an endpoint policy). `syncEndpoint` recomputes it from both whenever either
 * changes; the CNI side calls it too (cni-endpoints.ts).
 *
 * Precedence for one pod ("namespace/name"), first that applies:
 *   1. a CNI registration on this node: local, the registry is authoritative;
 *   2. another node's MeshdEndpoint object (remote-endpoints.ts): its labels,
 *      addresses and named ports, as that node's agent resolved them;
 *   3. the Pod object (the fallback, for nodes without a meshd agent, or
 *      before the object exists).
 * Deleting the object falls back to the Pod; deleting both removes the endpoint.
 */
import type { EndpointRegistry } from './endpoint-registry.js';
import { nodeIps } from '../k8s/node.js';
import { podIps, podNamedPorts, type Pod } from '../k8s/pod.js';
import { podWorkload, type Workload } from '../observe/workload.js';
import type { PolicyEngine } from '../policy/index.js';
import type { RemoteEndpointLookup } from './remote-endpoints.js';
import type { ResourceEvent, ResourceSubscriber } from './resource-source.js';

const stripLen = (cidr: string): string => cidr.replace(/\/\d+$/, '');

export class EndpointSubscriber implements ResourceSubscriber {
  readonly kinds = ['Pod', 'Namespace', 'Node'] as const;
  /** Pod manifests by endpoint id ("namespace/name"). */
  private readonly pods = new Map<string, Pod>();
  private readonly workloads = new WeakMap<Pod, Workload | undefined>();

  constructor(
    private readonly engine: PolicyEngine,
    private readonly registry: EndpointRegistry,
    private readonly nodeName: string,
    private readonly remote?: RemoteEndpointLookup,
  ) {}

  async apply(ev: ResourceEvent): Promise<void> {
    const o = ev.object;
    switch (o.kind) {
      case 'Namespace':
        // On delete the engine keeps the labels of a namespace that still holds pods.
        if (ev.type === 'upsert') await this.engine.upsertNamespace(o.metadata.name, o.metadata.labels);
        return;
      case 'Node': {
        const name = o.metadata.name;
        if (name === this.nodeName) {
          // This node stays known (as `host`) whether or not a Node object describes it.
          if (ev.type === 'upsert') await this.engine.upsertNode({ name, local: true, labels: o.metadata.labels, ips: nodeIps(o) });
          return;
        }
        if (ev.type === 'delete') await this.engine.removeNode(name);
        else await this.engine.upsertNode({ name, labels: o.metadata.labels, ips: nodeIps(o) });
        return;
      }
      case 'Pod': {
        const id = `${o.metadata.namespace}/${o.metadata.name}`;
        if (ev.type === 'delete') {
          this.pods.delete(id);
          await this.syncOrRemove(id);
          return;
        }
        this.pods.set(id, o);
        await this.syncEndpoint(id);
        return;
      }
      default:
        return;
    }
  }

  hasPod(id: string): boolean {
    return this.pods.has(id);
  }

  podLabels(id: string): Record<string, string> {
    return this.pods.get(id)?.metadata.labels ?? {};
  }

  /** The pod's workload (its controlling owner, a ReplicaSet named for its Deployment), for flows. */
  podWorkload(id: string): Workload | undefined {
    const pod = this.pods.get(id);
    if (!pod) return undefined;
    // Asked per flow: derived once per manifest (an update brings a new Pod object).
    if (!this.workloads.has(pod)) this.workloads.set(pod, podWorkload({ ownerReferences: pod.metadata.ownerReferences, labels: pod.metadata.labels }));
    return this.workloads.get(pod);
  }

  /** The named container ports of a pod's manifest ([] without one). */
  podNamedPorts(id: string): ReturnType<typeof podNamedPorts> {
    const pod = this.pods.get(id);
    return pod ? podNamedPorts(pod) : [];
  }

  /** Syncs a pod that still has a registration, an endpoint object or a manifest; removes it from the engine otherwise. */
  async syncOrRemove(id: string): Promise<void> {
    if (this.registry.byEndpointId(id) || this.remote?.get(id) || this.pods.has(id)) await this.syncEndpoint(id);
    else await this.engine.removeEndpoint(id);
  }

  /** Feeds the engine one pod: labels from its manifest, addresses from CNI (local) or the manifest. */
  async syncEndpoint(id: string): Promise<void> {
    const pod = this.pods.get(id);
    const reg = this.registry.byEndpointId(id);
    const slash = id.indexOf('/');
    const namespace = slash < 0 ? 'default' : id.slice(0, slash);
    const name = slash < 0 ? id : id.slice(slash + 1);
    const obj = reg ? undefined : this.remote?.get(id);
    if (obj) {
      await this.engine.upsertEndpoint({ namespace, name, securityLabels: obj.labels, ips: obj.ips, ports: obj.ports, local: false });
      return;
    }
    await this.engine.upsertEndpoint({
      namespace,
      name,
      labels: pod?.metadata.labels ?? {},
      ips: reg ? reg.ips.map(stripLen) : pod ? podIps(pod) : [],
      ports: pod ? podNamedPorts(pod) : [],
      ...(pod?.spec.serviceAccountName ? { serviceAccount: pod.spec.serviceAccountName } : {}),
      local: reg !== undefined,
    });
  }
}
