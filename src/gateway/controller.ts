/**
 * The Gateway API duties one agent at a time performs, as the holder of
 * the Lease `meshd-gateway` (as Cilium's operator runs its Gateway
 * controller under leader election):
 * - status: GatewayClass, Gateway (addresses, listeners) and route parent
 *   conditions, written only when they differ from what the object holds,
 *   each as a merge patch carrying the resourceVersion it was computed from;
 * - one LoadBalancer Service per Gateway (`meshd-gateway-<name>`, owned by
 *   the Gateway, one port per listener port), so LB IPAM gives the Gateway
 *   an address; its status is what ingestion reads back as the address.
 *
 * Every agent computes the same model (gateway-service.ts) and hands it
 * here; only the holder writes.
 *
 *   const c = new GatewayController({ client, holder: nodeName, namespace: 'kube-system', log });
 *   c.start(); c.publish(model.status, objects); … await c.stop();
 */
import { z } from 'zod';
import { KubeApiError, type KubeClient } from '../k8s/client.js';
import type { Gateway } from '../k8s/gateway.js';
import { isKubeStatus, LeaseElector } from '../k8s/lease.js';
import { GATEWAY_NAME_LABEL, type Service } from '../k8s/service.js';
import type { Logger } from '../util/log.js';
import { gatewayServiceName } from './ingestion.js';
import { CONTROLLER_NAME, type ModelStatus } from './model.js';
import { statusPatches, type StatusObjects } from './status.js';

export const GATEWAY_LEASE = 'meshd-gateway';
export { GATEWAY_NAME_LABEL };

export interface GatewayControllerOptions {
  client: KubeClient;
  holder: string;
  namespace: string;
  leaseDurationMs?: number;
  retryMs?: number;
  log?: Logger;
}

export interface GatewayControllerStats {
  statusWrites: number;
  serviceWrites: number;
  conflicts: number;
}

const CreatedSchema = z.object({ metadata: z.object({ resourceVersion: z.string().optional() }) });

export class GatewayController {
  private readonly lease: LeaseElector;
  private desired: { status: ModelStatus; objects: StatusObjects & { services: readonly Service[] } } | null = null;
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Patches written, by object, with the resourceVersion they were computed from: not written twice while the watch catches up. */
  private readonly written = new Map<string, string>();
  readonly stats: GatewayControllerStats = { statusWrites: 0, serviceWrites: 0, conflicts: 0 };

  constructor(private readonly o: GatewayControllerOptions) {
    this.lease = new LeaseElector({
      client: o.client,
      holder: o.holder,
      namespace: o.namespace,
      name: GATEWAY_LEASE,
      ...(o.leaseDurationMs !== undefined ? { leaseDurationMs: o.leaseDurationMs } : {}),
      ...(o.retryMs !== undefined ? { retryMs: o.retryMs } : {}),
      ...(o.log ? { log: o.log } : {}),
    });
    this.lease.onLeadership((leader) => {
      if (leader) this.schedule();
    });
  }

  start(): void {
    this.lease.start();
  }

  isLeader(): boolean {
    return this.lease.isLeader();
  }

  /** The latest computed status and the objects it was computed from; written soon if this agent holds the Lease. */
  publish(status: ModelStatus, objects: StatusObjects & { services: readonly Service[] }): void {
    this.desired = { status, objects };
    this.schedule();
  }

  /** Gives the Lease up (another agent takes over at its next try). Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.chain;
    await this.lease.stop();
  }

  private schedule(delayMs = 10): void {
    if (this.stopped || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.chain = this.chain.then(() => this.pass()).catch((e: unknown) => {
        this.o.log?.warn('gateway status pass failed; retried', { code: e instanceof KubeApiError ? e.code : undefined, error: String(e) });
        this.schedule(1000);
      });
    }, delayMs);
  }

  private async pass(): Promise<void> {
    const d = this.desired;
    if (this.stopped || !d || !this.lease.isLeader()) return;
    let again = false;
    for (const gw of d.objects.gateways) {
      if (!d.status.gateways.has(`${gw.metadata.namespace}/${gw.metadata.name}`)) continue;
      again = (await this.ensureService(gw, d.objects.services)) || again;
    }
    const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
    for (const p of statusPatches(d.status, d.objects, CONTROLLER_NAME, now)) {
      if (this.stopped || !this.lease.isLeader()) return;
      const rv = p.body.metadata.resourceVersion ?? '';
      if (rv !== '' && this.written.get(p.object) === rv) continue;
      try {
        await this.o.client.send('PATCH', p.path, p.body);
        this.written.set(p.object, rv);
        this.stats.statusWrites += 1;
      } catch (e) {
        if (!isKubeStatus(e, 404, 409)) throw e;
        // Changed or deleted since it was read: its watch event brings the new version and another publish.
        this.stats.conflicts += 1;
        again = true;
      }
    }
    if (again) this.schedule(200);
  }

  /** The Gateway's LoadBalancer Service, created or brought to the listener ports; true when it must be looked at again. */
  private async ensureService(gw: Gateway, services: readonly Service[]): Promise<boolean> {
    const ns = gw.metadata.namespace;
    const name = gatewayServiceName(gw.metadata.name);
    const ports = [...new Set(gw.spec.listeners.map((l) => l.port))].sort((a, b) => a - b).map((port) => ({ name: `port-${port}`, protocol: 'TCP', port }));
    const have = services.find((s) => s.metadata.namespace === ns && s.metadata.name === name);
    const path = `/api/v1/namespaces/${ns}/services`;
    try {
      if (!have) {
        if (!gw.metadata.uid) return false;
        const body = {
          apiVersion: 'v1',
          kind: 'Service',
          metadata: {
            name,
            namespace: ns,
            labels: { [GATEWAY_NAME_LABEL]: gw.metadata.name },
            ownerReferences: [{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name: gw.metadata.name, uid: gw.metadata.uid, controller: true }],
          },
          spec: { type: 'LoadBalancer', ports },
        };
        CreatedSchema.parse(await this.o.client.send('POST', path, body));
        this.stats.serviceWrites += 1;
        return false;
      }
      const same = have.spec.type === 'LoadBalancer' && have.spec.ports.length === ports.length && ports.every((p, i) => have.spec.ports[i]?.port === p.port);
      if (same) return false;
      await this.o.client.send('PATCH', `${path}/${name}`, { spec: { type: 'LoadBalancer', ports } });
      this.stats.serviceWrites += 1;
      return false;
    } catch (e) {
      if (!isKubeStatus(e, 404, 409)) throw e;
      this.stats.conflicts += 1;
      return true;
    }
  }
}
