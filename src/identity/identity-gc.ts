/**
 * Garbage collection of cluster identities, run by one agent at a time: the
 * one holding the coordination.k8s.io/v1 Lease `meshd-identity-gc` (as
 * Cilium's operator runs identitygc under its leader election).
 *
 * Leadership: src/k8s/lease.ts (LeaseElector) — each `retryMs` the Lease is
 * created, renewed or taken over once its holder lapsed; stop() gives it up
 * so another agent takes over at its next try; an agent that dies holds it
 * until it lapses.
 *
 * Sweep (leader only, every `intervalMs`):
 * - a MeshdIdentity whose status.references has no entry newer than
 *   `graceMs` and that is itself older than `graceMs` is deleted, with the
 *   resourceVersion seen as precondition, so an agent that confirmed it in
 *   the meantime wins (409) and it stays;
 * - a MeshdIdentityKey older than `graceMs` whose identity is gone, or names
 *   another key, is deleted the same way.
 *
 *   const gc = new IdentityGC({ client, holder: nodeName, namespace: 'kube-system', graceMs: 15 * 60_000 });
 *   gc.start(); … gc.isLeader(); … await gc.stop();
 */
import { KubeApiError, type KubeClient } from '../k8s/client.js';
import { isKubeStatus, LeaseElector } from '../k8s/lease.js';
import { itemsOf } from '../k8s/list.js';
import type { Logger } from '../util/log.js';
import { IDENTITIES_PATH, IDENTITY_KEYS_PATH, IdentityKeyObjectSchema, IdentityObjectSchema, type IdentityObject } from './kube-allocator.js';

export const IDENTITY_GC_LEASE = 'meshd-identity-gc';

export interface IdentityGCOptions {
  client: KubeClient;
  /** This agent's name in the Lease's holderIdentity (the node name). */
  holder: string;
  /** Namespace of the Lease (config key identityGC.leaseNamespace). */
  namespace: string;
  leaseName?: string;
  /** A holder that has not renewed for this long has lost the Lease. */
  leaseDurationMs?: number;
  /** How often the Lease is tried or renewed. */
  retryMs?: number;
  /** How long an identity may go unreferenced before it is deleted (config key identityGC.gracePeriod). */
  graceMs?: number;
  /** How often the leader sweeps. */
  intervalMs?: number;
  log?: Logger;
  now?: () => number;
}

export interface SweepResult {
  identities: number[];
  keys: string[];
}

const isStatus = isKubeStatus;

export class IdentityGC {
  private readonly lease: LeaseElector;
  private sweepTimer: NodeJS.Timeout | null = null;
  private sweepChain: Promise<void> = Promise.resolve();
  private stopped = false;
  /** Everything this instance deleted, for status and tests. */
  readonly deleted: SweepResult = { identities: [], keys: [] };

  constructor(private readonly o: IdentityGCOptions) {
    this.lease = new LeaseElector({
      client: o.client,
      holder: o.holder,
      namespace: o.namespace,
      name: o.leaseName ?? IDENTITY_GC_LEASE,
      ...(o.leaseDurationMs !== undefined ? { leaseDurationMs: o.leaseDurationMs } : {}),
      ...(o.retryMs !== undefined ? { retryMs: o.retryMs } : {}),
      ...(o.log ? { log: o.log } : {}),
      ...(o.now ? { now: o.now } : {}),
    });
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  private get leader(): boolean {
    return this.lease.isLeader();
  }

  isLeader(): boolean {
    return this.lease.isLeader();
  }

  /** Called when this instance gains or loses the Lease. */
  onLeadership(listener: (leader: boolean) => void): () => void {
    return this.lease.onLeadership(listener);
  }

  start(): void {
    if (this.sweepTimer || this.stopped) return;
    // The Lease renews on its own timer: a long sweep must not delay the renewals, or the Lease lapses while its holder works.
    this.lease.start();
    this.sweepTimer = setInterval(() => {
      this.sweepChain = this.sweepChain.then(() => this.sweep()).then(
        () => undefined,
        (e: unknown) => this.o.log?.warn('identity GC step failed', { code: e instanceof KubeApiError ? e.code : undefined, error: String(e) }),
      );
    }, this.o.intervalMs ?? 60_000);
  }

  /** Stops electing and sweeping; gives the Lease up when held (unless `release: false`, which behaves like a crash). Idempotent. */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await this.sweepChain;
    await this.lease.stop(opts);
  }

  /** One election step (see LeaseElector.tryLease). */
  tryLease(): Promise<boolean> {
    return this.lease.tryLease();
  }

  /** Deletes what has been unreferenced for the grace period; does nothing unless this instance holds the Lease. */
  async sweep(): Promise<SweepResult> {
    const out: SweepResult = { identities: [], keys: [] };
    if (!this.leader || this.stopped) return out;
    const now = this.now();
    const grace = this.o.graceMs ?? 15 * 60_000;
    const old = (ts: string | undefined) => ts !== undefined && Date.parse(ts) + grace < now;
    const identities = itemsOf(IdentityObjectSchema, await this.o.client.getJson(IDENTITIES_PATH), IDENTITIES_PATH);
    const keys = itemsOf(IdentityKeyObjectSchema, await this.o.client.getJson(IDENTITY_KEYS_PATH), IDENTITY_KEYS_PATH);
    const live = new Map<string, IdentityObject>();
    for (const obj of identities) {
      const refs = Object.values(obj.status?.references ?? {});
      if (!old(obj.metadata.creationTimestamp) || refs.some((t) => !old(t))) {
        live.set(obj.metadata.name, obj);
        continue;
      }
      if (!this.leader) break; // lost the Lease mid-sweep
      if (await this.deleteIfUnchanged(IDENTITIES_PATH, obj.metadata.name, obj.metadata.resourceVersion)) {
        out.identities.push(Number(obj.metadata.name));
        this.deleted.identities.push(Number(obj.metadata.name));
      } else {
        live.set(obj.metadata.name, obj);
      }
    }
    for (const key of keys) {
      const target = live.get(String(key.spec.identity));
      if (target?.spec.key === key.metadata.name || !old(key.metadata.creationTimestamp) || !this.leader) continue;
      if (await this.deleteIfUnchanged(IDENTITY_KEYS_PATH, key.metadata.name, key.metadata.resourceVersion)) {
        out.keys.push(key.metadata.name);
        this.deleted.keys.push(key.metadata.name);
      }
    }
    if (out.identities.length > 0 || out.keys.length > 0) this.o.log?.info('identities collected', { identities: out.identities, keys: out.keys.length });
    return out;
  }

  /** DELETE with a resourceVersion precondition: false when the object changed (someone referenced it) or is gone. */
  private async deleteIfUnchanged(collection: string, name: string, resourceVersion: string | undefined): Promise<boolean> {
    try {
      await this.o.client.send('DELETE', `${collection}/${name}`, { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { resourceVersion } });
      return true;
    } catch (e) {
      if (isStatus(e, 404, 409)) return false;
      throw e;
    }
  }
}
