/**
 * The agent's side of the CNI endpoint API: meshd-cni registers a pod's
 * interface and addresses on ADD and removes them on DEL. A registration is
 * remembered (endpoint registry, on disk), fed to the engine through the
 * endpoint subscriber, attached to the datapath and reconciled before the
 * call returns, so the pod starts with its policy in force; if any step
 * fails the registration is rolled back and the plugin gets the error.
 */
import { existsSync } from 'node:fs';
import { EndpointRejectedError, type EndpointHandler } from '../cni/endpoint-api-server.js';
import type { Endpoint, EndpointKey, EndpointRegistration } from '../cni/endpoint-api.js';
import type { EndpointManager } from '../datapath/endpoint/endpoint-manager.js';
import type { PolicyEngine } from '../policy/index.js';
import type { Logger } from '../util/log.js';
import { endpointIdOf, type EndpointRegistry } from './endpoint-registry.js';
import type { EndpointSubscriber } from './endpoint-subscriber.js';

const stripLen = (cidr: string): string => cidr.replace(/\/\d+$/, '');

export interface CniEndpointsDeps {
  engine: PolicyEngine;
  endpoints: EndpointManager;
  registry: EndpointRegistry;
  subscriber: EndpointSubscriber;
  log: Logger;
  /** Runs a mutation in the agent's serial queue. */
  serial<T>(fn: () => Promise<T>): Promise<T>;
  /** Writes the engine's result to the kernel and Envoy (Reconciler.reconcile). */
  reconcile(): Promise<void>;
}

export class CniEndpoints {
  constructor(private readonly d: CniEndpointsDeps) {}

  private async attach(e: Endpoint): Promise<void> {
    if (!e.hostInterface) throw new EndpointRejectedError(`${e.containerId}/${e.ifname}: no host interface to attach the datapath to`);
    const id = endpointIdOf(e);
    await this.d.subscriber.syncEndpoint(id);
    const identity = this.d.engine.endpointIdentity(id);
    if (identity === undefined) throw new EndpointRejectedError(`${id}: no identity`);
    await this.d.endpoints.addEndpoint({ endpointId: id, ifname: e.hostInterface, identity, ips: e.ips.map(stripLen) });
  }

  /** Re-registers the endpoints the registry remembers whose interface still exists (agent start). */
  async restore(): Promise<void> {
    for (const e of this.d.registry.all()) {
      if (!e.hostInterface || !existsSync(`/sys/class/net/${e.hostInterface}`)) {
        this.d.log.info('forgetting endpoint whose interface is gone', { endpoint: endpointIdOf(e), ifname: e.hostInterface });
        this.d.registry.delete(e);
        await this.d.subscriber.syncEndpoint(endpointIdOf(e));
        continue;
      }
      await this.attach(e);
    }
  }

  handler(): EndpointHandler {
    const d = this.d;
    return {
      register: (reg: EndpointRegistration) =>
        d.serial(async () => {
          const prev = d.registry.get(reg);
          const e: Endpoint = { ...reg, registeredAt: prev?.registeredAt ?? new Date().toISOString() };
          const id = endpointIdOf(e);
          d.registry.put(e);
          try {
            await this.attach(e);
            await d.reconcile();
          } catch (err) {
            if (prev) d.registry.put(prev);
            else d.registry.delete(reg);
            await d.subscriber.syncEndpoint(id);
            if (err instanceof EndpointRejectedError) throw err;
            throw new EndpointRejectedError(`${id}: ${err instanceof Error ? err.message : String(err)}`);
          }
          d.log.info('endpoint registered', { endpoint: id, identity: d.engine.endpointIdentity(id), ips: e.ips });
          return e;
        }),
      get: async (k: EndpointKey) => d.registry.get(k),
      remove: (k: EndpointKey) =>
        d.serial(async () => {
          const e = d.registry.delete(k);
          if (!e) return false;
          const id = endpointIdOf(e);
          if (d.endpoints.endpoint(id)) d.endpoints.removeEndpoint(id);
          await d.subscriber.syncEndpoint(id);
          if (!d.subscriber.hasPod(id)) await d.engine.removeEndpoint(id);
          await d.reconcile();
          d.log.info('endpoint removed', { endpoint: id });
          return true;
        }),
      list: async () => d.registry.all(),
    };
  }
}
