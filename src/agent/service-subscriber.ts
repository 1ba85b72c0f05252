/**
 * Services and EndpointSlices → the policy engine (toServices, service
 * selectors) and the socket LB (frontends and backends in the eBPF maps).
 * The `kubernetes` Service's slices in `default` also name the API server's
 * addresses, which carry the `kube-apiserver` identity (as Cilium learns them).
 */
import type { ServiceManager } from '../datapath/lb/service-manager.js';
import { SERVICE_NAME_LABEL, type EndpointSlice } from '../k8s/endpoint-slice.js';
import { serviceClusterIps } from '../k8s/service.js';
import type { PolicyEngine } from '../policy/index.js';
import type { ResourceEvent, ResourceSubscriber } from './resource-source.js';

/** The Service whose endpoints are the API server's own addresses. */
const API_SERVER_SERVICE = { namespace: 'default', name: 'kubernetes' } as const;

const isApiServerSlice = (s: EndpointSlice): boolean => s.metadata.namespace === API_SERVER_SERVICE.namespace && s.metadata.labels[SERVICE_NAME_LABEL] === API_SERVER_SERVICE.name;

export class ServiceSubscriber implements ResourceSubscriber {
  readonly kinds = ['Service', 'EndpointSlice'] as const;
  /** The API server's slices by name (the `kubernetes` Service's, in `default`). */
  private readonly apiServerSlices = new Map<string, EndpointSlice>();

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
      // A slice can be relabelled away from the Service: it was the API server's if it is in the map.
      const was = this.apiServerSlices.has(o.metadata.name) && o.metadata.namespace === API_SERVER_SERVICE.namespace;
      if (ev.type === 'upsert' && isApiServerSlice(o)) this.apiServerSlices.set(o.metadata.name, o);
      else if (was) this.apiServerSlices.delete(o.metadata.name);
      else return;
      await this.engine.setKubeApiServerAddresses([...this.apiServerSlices.values()].flatMap((sl) => (sl.addressType === 'FQDN' ? [] : sl.endpoints.flatMap((e) => e.addresses))));
    }
  }
}
