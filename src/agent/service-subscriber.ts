/**
 * Services and EndpointSlices → the policy engine (toServices, service
 * selectors) and the socket LB (frontends and backends in the eBPF maps).
 */
import type { ServiceManager } from '../datapath/lb/service-manager.js';
import { serviceClusterIps } from '../k8s/service.js';
import type { PolicyEngine } from '../policy/index.js';
import type { ResourceEvent, ResourceSubscriber } from './resource-source.js';

export class ServiceSubscriber implements ResourceSubscriber {
  readonly kinds = ['Service', 'EndpointSlice'] as const;

  /** `services` is null when the socket LB is off (kubeProxyReplacement / socketLB.enabled). */
  constructor(
    private readonly engine: PolicyEngine,
    private readonly services: ServiceManager | null,
  ) {}

  async apply(ev: ResourceEvent): Promise<void> {
    const o = ev.object;
    if (o.kind === 'Service') {
      const { namespace, name } = o.metadata;
      if (ev.type === 'delete') {
        await this.engine.removeService(namespace, name);
        this.services?.deleteService(namespace, name);
        return;
      }
      this.services?.upsertService(o);
      await this.engine.upsertService({
        namespace,
        name,
        labels: o.metadata.labels,
        selector: o.spec.selector ?? {},
        clusterIPs: serviceClusterIps(o),
        ports: o.spec.ports,
      });
      return;
    }
    if (o.kind === 'EndpointSlice') {
      if (ev.type === 'delete') this.services?.deleteEndpointSlice(o.metadata.namespace, o.metadata.name);
      else this.services?.upsertEndpointSlice(o);
    }
  }
}
