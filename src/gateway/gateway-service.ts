/**
 * The Gateway API on one node: takes the objects the agent's resource
 * source delivers (the Gateway API kinds, and the Services, EndpointSlices,
 * Secrets and Namespaces they refer to), and after each batch of changes
 * runs ingestion → translation, checks the result encodes as Envoy's
 * messages in a consistent snapshot, and has the node's Envoy serve it
 * beside the L7-policy listeners (ProxyManager.applyGateway). The status
 * goes to the controller (controller.ts), which writes it while it holds
 * the Lease.
 *
 *   const gw = new GatewayService({ proxy, nodeAddresses: () => ips, controller, log });
 *   agent routes the kinds of gw.kinds to gw.apply(ev) (besides their own subscribers);
 *   gw.view();   // what is served and the last problem
 *
 * A configuration Envoy still rejects (NACK) leaves the previous one served
 * and shows on every Gateway's Programmed condition.
 */
import { isIP } from 'node:net';
import type { ResourceEvent, ResourceSubscriber } from '../agent/resource-source.js';
import type { EndpointSlice } from '../k8s/endpoint-slice.js';
import type { ResourceKind, ResourceOf } from '../k8s/kinds.js';
import { secretData } from '../k8s/secret.js';
import { describeError, isMeshdError, MeshdError } from '../util/errors.js';
import type { Logger } from '../util/log.js';
import { buildSnapshot, checkConsistency } from '../../xds/index.js';
import type { GatewayController } from './controller.js';
import { ingest } from './ingestion.js';
import { CONTROLLER_NAME, type GatewayModel } from './model.js';
import { withNack } from './status.js';
import { translate, type GatewayResources } from './translate.js';

/** The Gateway API kinds (read only with gatewayAPI.enabled). */
export const GATEWAY_KINDS = ['GatewayClass', 'Gateway', 'HTTPRoute', 'GRPCRoute', 'ReferenceGrant', 'BackendTLSPolicy'] as const satisfies readonly ResourceKind[];
/** Kinds the Gateway model also reads (other subscribers take them too). */
export const GATEWAY_REFERENCED_KINDS = ['Service', 'EndpointSlice', 'Secret', 'Namespace', 'ConfigMap'] as const satisfies readonly ResourceKind[];

export interface GatewayProxy {
  applyGateway(res: GatewayResources): Promise<{ version: string }>;
}

export function isGatewayProxy(p: unknown): p is GatewayProxy {
  return typeof p === 'object' && p !== null && 'applyGateway' in p && typeof p.applyGateway === 'function';
}

export class GatewayConfigError extends MeshdError {
  constructor(message: string, cause?: unknown) {
    super('MESHD_GATEWAY_CONFIG_INVALID', message, { kind: 'invalid', cause });
  }
}

export interface GatewayServiceOptions {
  proxy: GatewayProxy;
  /** The node's addresses (a Gateway's address without LB IPAM). */
  nodeAddresses: () => readonly string[];
  /** Writes status (Kubernetes mode); standalone: none. */
  controller?: Pick<GatewayController, 'publish'> | null;
  log: Logger;
  accessLog?: boolean;
  /** Routes the served Gateways' addresses to this node (local-routes.ts); none: left to the caller. */
  localRoutes?: { sync(addresses: readonly string[]): Promise<void> } | null;
  /** Changes within this long are translated together (default 20 ms). */
  batchMs?: number;
}

type Stored = { [K in (typeof GATEWAY_KINDS)[number] | (typeof GATEWAY_REFERENCED_KINDS)[number]]: Map<string, ResourceOf<K>> };

/** Addresses a Gateway may fall back to: not loopback, not link-local. */
export function usableNodeAddresses(ips: readonly string[]): string[] {
  return ips.map((ip) => ip.replace(/\/\d+$/, '')).filter((ip) => isIP(ip) !== 0 && !ip.startsWith('127.') && ip !== '::1' && !ip.toLowerCase().startsWith('fe80:') && !ip.startsWith('169.254.'));
}

export class GatewayService implements ResourceSubscriber {
  readonly kinds: readonly ResourceKind[] = [...GATEWAY_KINDS, ...GATEWAY_REFERENCED_KINDS];
  private readonly store: Stored = {
    GatewayClass: new Map(),
    Gateway: new Map(),
    HTTPRoute: new Map(),
    GRPCRoute: new Map(),
    ReferenceGrant: new Map(),
    BackendTLSPolicy: new Map(),
    Service: new Map(),
    EndpointSlice: new Map(),
    Secret: new Map(),
    Namespace: new Map(),
    ConfigMap: new Map(),
  };
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  private model: GatewayModel | null = null;
  private served: string | null = null;
  private lastError: { code: string; message: string; at: string } | null = null;

  constructor(private readonly o: GatewayServiceOptions) {}

  apply(ev: ResourceEvent): Promise<void> {
    const o = ev.object;
    const put = <K extends keyof Stored>(m: Stored[K], v: Stored[K] extends Map<string, infer T> ? T : never) => {
      if (ev.type === 'delete') m.delete(ev.key);
      else (m as Map<string, typeof v>).set(ev.key, v);
    };
    switch (o.kind) {
      case 'GatewayClass': put(this.store.GatewayClass, o); break;
      case 'Gateway': put(this.store.Gateway, o); break;
      case 'HTTPRoute': put(this.store.HTTPRoute, o); break;
      case 'GRPCRoute': put(this.store.GRPCRoute, o); break;
      case 'ReferenceGrant': put(this.store.ReferenceGrant, o); break;
      case 'BackendTLSPolicy': put(this.store.BackendTLSPolicy, o); break;
      case 'Service': put(this.store.Service, o); break;
      case 'EndpointSlice': put(this.store.EndpointSlice, o); break;
      case 'Secret': put(this.store.Secret, o); break;
      case 'Namespace': put(this.store.Namespace, o); break;
      case 'ConfigMap': put(this.store.ConfigMap, o); break;
      default: return Promise.resolve();
    }
    this.schedule();
    return Promise.resolve();
  }

  /** Translates again soon (the node's addresses changed, say). */
  changed(): void {
    this.schedule();
  }

  /** Resolves when the changes seen so far have been translated and applied (or failed). */
  async settled(): Promise<void> {
    while (this.timer) await new Promise((r) => setTimeout(r, 5));
    await this.chain;
  }

  view(): { served: string | null; gateways: string[]; lastError: { code: string; message: string; at: string } | null } {
    return { served: this.served, gateways: (this.model?.gateways ?? []).map((g) => g.key), lastError: this.lastError };
  }

  stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    return this.chain;
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.chain = this.chain.then(() => this.sync()).catch((e: unknown) => this.o.log.error('gateway translation failed', { err: e }));
    }, this.o.batchMs ?? 20);
  }

  private async sync(): Promise<void> {
    if (this.stopped) return;
    const s = this.store;
    const slices: EndpointSlice[] = [...s.EndpointSlice.values()];
    const model = ingest({
      controllerName: CONTROLLER_NAME,
      gatewayClasses: [...s.GatewayClass.values()],
      gateways: [...s.Gateway.values()],
      httpRoutes: [...s.HTTPRoute.values()],
      grpcRoutes: [...s.GRPCRoute.values()],
      referenceGrants: [...s.ReferenceGrant.values()],
      services: [...s.Service.values()],
      endpointSlices: slices,
      namespaces: [...s.Namespace.values()],
      backendTlsPolicies: [...s.BackendTLSPolicy.values()],
      configMaps: [...s.ConfigMap.values()],
      secrets: new Map([...s.Secret.values()].map((x) => [`${x.metadata.namespace ?? 'default'}/${x.metadata.name}`, secretData(x)])),
      nodeAddresses: usableNodeAddresses(this.o.nodeAddresses()),
    });
    const own = new Set(usableNodeAddresses(this.o.nodeAddresses()));
    this.model = model;
    const objects = { gatewayClasses: [...s.GatewayClass.values()], gateways: [...s.Gateway.values()], httpRoutes: [...s.HTTPRoute.values()], grpcRoutes: [...s.GRPCRoute.values()], backendTlsPolicies: [...s.BackendTLSPolicy.values()], services: [...s.Service.values()] };
    const res = translate(model, { accessLog: this.o.accessLog ?? false });
    try {
      // Before Envoy sees it: every resource must encode as its message, and every name it refers to must exist.
      try {
        checkConsistency(buildSnapshot({ version: 'check', resources: res }));
      } catch (e) {
        throw new GatewayConfigError(`the translated Gateway configuration is not valid: ${describeError(e)}`, e);
      }
      const r = await this.o.proxy.applyGateway(res);
      this.served = r.version;
      // After Envoy has the listeners: the addresses they bind that are not the node's own are routed here.
      await this.o.localRoutes?.sync([...new Set(model.gateways.flatMap((g) => g.addresses))].filter((a) => !own.has(a)));
      this.lastError = null;
      this.o.controller?.publish(model.status, objects);
    } catch (e) {
      const code = isMeshdError(e) ? e.code : 'MESHD_GATEWAY_APPLY_FAILED';
      this.lastError = { code, message: describeError(e), at: new Date().toISOString() };
      this.o.log.error('gateway configuration not applied; the previous one stays served', { code, err: e });
      this.o.controller?.publish(withNack(model.status, describeError(e)), objects);
    }
  }
}
