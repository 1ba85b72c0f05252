/**
 * How the agent runs the Gateway API (gatewayAPI.enabled): one call in
 * agent.ts routes the kinds the model reads to a GatewayService besides
 * their own subscribers and hands it the node's Envoy; in Kubernetes mode
 * run.ts starts the controller (status, per-Gateway Services) and reads
 * the Gateway API kinds and every namespace's Secrets.
 *
 *   const kinds = gatewaySourceKinds(config, RESOURCE_KINDS);                 // run.ts
 *   const controller = startGatewayController({ config, client, log });       // run.ts
 *   this.gateway = attachGateway({ config, proxy, subscribers, nodeAddresses, controller, log });   // agent.ts
 */
import type { AgentConfig } from '../agent/config.js';
import type { ResourceSubscriber } from '../agent/resource-source.js';
import type { KubeClient } from '../k8s/client.js';
import type { ResourceKind } from '../k8s/kinds.js';
import type { Logger } from '../util/log.js';
import { GatewayController } from './controller.js';
import { GATEWAY_KINDS, GatewayService, isGatewayProxy } from './gateway-service.js';
import { LocalRoutes } from './local-routes.js';

/** Kinds only the Gateway API reads (ConfigMaps: BackendTLSPolicy CA bundles). */
const GATEWAY_KIND_SET: ReadonlySet<ResourceKind> = new Set([...GATEWAY_KINDS, 'ConfigMap']);

/** The kinds the resource source reads: the Gateway API's only when enabled. */
export function gatewaySourceKinds(config: AgentConfig, kinds: readonly ResourceKind[]): ResourceKind[] {
  return kinds.filter((k) => config['gatewayAPI.enabled'] || !GATEWAY_KIND_SET.has(k));
}

/** Where Secrets are read from: a Gateway's certificates live in its own namespace (or one a ReferenceGrant opens). */
export function gatewaySecretsPath(config: AgentConfig, otherwise: string): string {
  return config['gatewayAPI.enabled'] ? '/api/v1/secrets' : otherwise;
}

export function startGatewayController(o: { config: AgentConfig; client: KubeClient; log: Logger }): GatewayController | null {
  if (!o.config['gatewayAPI.enabled']) return null;
  const c = new GatewayController({ client: o.client, holder: o.config.nodeName, namespace: o.config['nodeGC.leaseNamespace'], leaseDurationMs: o.config['gatewayAPI.leaseDuration'], log: o.log.child({ component: 'gateway' }) });
  c.start();
  return c;
}

/**
 * Routes the model's kinds to a new GatewayService (each kind's own subscriber still gets its events
 * first) and serves on `proxy`; null when gatewayAPI.enabled is false or there is no Envoy.
 */
export function attachGateway(o: {
  config: AgentConfig;
  proxy: unknown;
  subscribers: Map<ResourceKind, ResourceSubscriber>;
  nodeAddresses: () => readonly string[];
  controller?: GatewayController | null;
  log: Logger;
}): GatewayService | null {
  if (!o.config['gatewayAPI.enabled']) return null;
  const log = o.log.child({ component: 'gateway' });
  if (!isGatewayProxy(o.proxy)) {
    log.warn('gatewayAPI.enabled but no Envoy runs on this node (envoy.enabled=false): Gateways are not served here');
    return null;
  }
  const svc = new GatewayService({ proxy: o.proxy, nodeAddresses: o.nodeAddresses, controller: o.controller ?? null, localRoutes: new LocalRoutes(), log, accessLog: o.config['hubble.enabled'] });
  for (const k of svc.kinds) {
    const own = o.subscribers.get(k);
    o.subscribers.set(k, {
      kinds: [k],
      apply: async (ev) => {
        await own?.apply(ev);
        await svc.apply(ev);
      },
    });
  }
  return svc;
}
