/**
 * Leader election on a coordination.k8s.io/v1 Lease, for the cluster-wide
 * housekeeping tasks one agent at a time runs (identity GC, node GC), as
 * Cilium's operator runs them under its leader election.
 *
 * Every `retryMs` the elector creates the Lease if missing (without reading
 * first while it has not seen it), renews it while
 * it holds it, and takes it over when its holder has not renewed it for
 * leaseDurationSeconds (as seen from here). Every write carries the
 * resourceVersion it read, so two agents taking over at once end with one
 * holder (the other gets 409). stop() gives the Lease up so another agent
 * takes over at its next try; an agent that dies holds it until it lapses.
 *
 *   const lease = new LeaseElector({ client, holder: nodeName, namespace: 'kube-system', name: 'meshd-node-gc' });
 *   lease.onLeadership((leader) => …);
 *   lease.start(); … lease.isLeader(); … await lease.stop();
 */
import { z } from 'zod';
import { KubeApiError, type Json, type KubeClient } from './client.js';
import type { Logger } from '../util/log.js';

export interface LeaseElectorOptions {
  client: KubeClient;
  /** This agent's name in the Lease's holderIdentity (the node name). */
  holder: string;
  namespace: string;
  name: string;
  /** A holder that has not renewed for this long has lost the Lease (default 15 s). */
  leaseDurationMs?: number;
  /** How often the Lease is tried or renewed (default 2 s). */
  retryMs?: number;
  log?: Logger;
  now?: () => number;
}

const LeaseSchema = z.object({
  metadata: z.object({ resourceVersion: z.string().optional() }),
  spec: z
    .object({
      holderIdentity: z.string().nullish(),
      leaseDurationSeconds: z.number().int().nullish(),
      renewTime: z.string().nullish(),
      acquireTime: z.string().nullish(),
      leaseTransitions: z.number().int().nullish(),
    })
    .default({}),
});
type Lease = z.infer<typeof LeaseSchema>;

export const isKubeStatus = (e: unknown, ...status: number[]): boolean => e instanceof KubeApiError && e.status !== undefined && status.includes(e.status);

/** metav1.MicroTime wants six fractional digits. */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class LeaseElector {
  private leader = false;
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly listeners = new Set<(leader: boolean) => void>();
  /** The other holder's record as last seen, and when (this agent's clock) it was first seen. */
  private observed: { record: string; at: number } | undefined;
  /** Whether the Lease was there when last looked at; until it has been seen, a try creates it first (no read). */
  private exists = false;

  constructor(private readonly o: LeaseElectorOptions) {}

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.o.namespace}/leases/${this.o.name}`;
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  isLeader(): boolean {
    return this.leader;
  }

  isStopped(): boolean {
    return this.stopped;
  }

  /** Called when this instance gains or loses the Lease. */
  onLeadership(listener: (leader: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    if (this.timer || this.stopped) return;
    const run = () => {
      this.chain = this.chain.then(() => this.tryLease()).then(
        () => undefined,
        (e: unknown) => this.o.log?.warn(`lease ${this.o.name}: step failed`, { code: e instanceof KubeApiError ? e.code : undefined, error: String(e) }),
      );
    };
    run();
    this.timer = setInterval(run, this.o.retryMs ?? 2_000);
  }

  /** Resolves when the step under way (the first one right after start()) is done; never rejects. */
  settled(): Promise<void> {
    return this.chain;
  }

  /** Stops electing; gives the Lease up when held (unless `release: false`, which behaves like a crash). Idempotent. */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.chain;
    if (this.leader && opts.release !== false) {
      try {
        const lease = await this.read();
        if (lease?.spec.holderIdentity === this.o.holder) {
          await this.o.client.send('PUT', this.path, this.body(lease, { holderIdentity: '', renewTime: null, leaseDurationSeconds: 1 }));
        }
      } catch (e) {
        this.o.log?.warn(`giving up the lease ${this.o.name} failed; it lapses instead`, { error: String(e) });
      }
    }
    this.setLeader(false);
  }

  private setLeader(v: boolean): void {
    if (v === this.leader) return;
    this.leader = v;
    this.o.log?.info(v ? `holding the lease ${this.o.name}` : `no longer holding the lease ${this.o.name}`, { holder: this.o.holder });
    for (const l of this.listeners) l(v);
  }

  private async read(): Promise<Lease | undefined> {
    try {
      const r = LeaseSchema.safeParse(await this.o.client.getJson(this.path));
      if (!r.success) throw new KubeApiError('MESHD_K8S_BAD_RESPONSE', `${this.path}: not a Lease`);
      this.exists = true;
      return r.data;
    } catch (e) {
      if (isKubeStatus(e, 404)) {
        this.exists = false;
        return undefined;
      }
      throw e;
    }
  }

  private body(prev: Lease | undefined, spec: Record<string, unknown>): Json {
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.o.name, namespace: this.o.namespace, ...(prev?.metadata.resourceVersion ? { resourceVersion: prev.metadata.resourceVersion } : {}) },
      spec: { ...prev?.spec, ...spec },
    };
  }

  /** One election step: create, renew or take over the Lease; anything refused means not leading. */
  async tryLease(): Promise<boolean> {
    if (this.stopped) return false;
    const now = this.now();
    const durationS = Math.max(1, Math.round((this.o.leaseDurationMs ?? 15_000) / 1_000));
    try {
      // A Lease not seen yet is created at once, without reading first (a new Service's Lease is one round trip,
      // not two); one that exists answers 409 AlreadyExists and is read as usual.
      let lease = this.exists ? await this.read() : undefined;
      if (!lease) {
        try {
          await this.o.client.send('POST', `/apis/coordination.k8s.io/v1/namespaces/${this.o.namespace}/leases`, this.body(undefined, { holderIdentity: this.o.holder, leaseDurationSeconds: durationS, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 }));
          this.exists = true;
          this.setLeader(true);
          return true;
        } catch (e) {
          if (!isKubeStatus(e, 409)) throw e;
          lease = await this.read();
          if (!lease) throw e; // created and deleted since: another try later
        }
      }
      const s = lease.spec;
      const mine = s.holderIdentity === this.o.holder;
      // As client-go does: a holder has lapsed when its record has not changed for a lease duration on *this*
      // agent's clock, so clock skew between nodes cannot make a live holder look expired.
      const record = `${s.holderIdentity ?? ''}|${s.renewTime ?? ''}`;
      if (this.observed?.record !== record) this.observed = { record, at: now };
      const lapsed = !s.holderIdentity || now - this.observed.at > (s.leaseDurationSeconds ?? durationS) * 1_000;
      if (!mine && !lapsed) {
        this.setLeader(false);
        return false;
      }
      const takeover = mine ? {} : { acquireTime: microTime(now), leaseTransitions: (s.leaseTransitions ?? 0) + 1 };
      await this.o.client.send('PUT', this.path, this.body(lease, { holderIdentity: this.o.holder, leaseDurationSeconds: durationS, renewTime: microTime(now), ...takeover }));
      this.setLeader(true);
      return true;
    } catch (e) {
      // 409: another agent wrote the Lease first. Anything else: we cannot prove we still hold it, so we do not act as leader.
      this.setLeader(false);
      if (!isKubeStatus(e, 409)) throw e;
      return false;
    }
  }
}
