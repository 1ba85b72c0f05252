/**
 * Garbage collection of cluster identities, run by one agent at a time: the
 * one holding the coordination.k8s.io/v1 Lease `meshd-identity-gc` (as
 * Cilium's operator runs identitygc under its leader election).
 *
 * Leadership: every agent runs an elector that, each `retryMs`, creates the
 * Lease if missing, renews it while it holds it, and takes it over when its
 * holder has not renewed it for leaseDurationSeconds (as seen from here). Every write carries the
 * resourceVersion it read, so two agents taking over at once end with one
 * holder (the other gets 409). stop() gives the Lease up so another agent
 * takes over at its next try; an agent that dies holds it until it lapses.
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
import { z } from 'zod';
import { KubeApiError, type Json, type KubeClient } from '../k8s/client.js';
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

const ListSchema = z.object({ items: z.array(z.unknown()).nullish() });

/** The items of a list that fit the schema (a malformed one is skipped, as the allocator's cache skips it). */
function itemsOf<T>(schema: z.ZodType<T>, list: Json, what: string): T[] {
  const l = ListSchema.safeParse(list);
  if (!l.success) throw new KubeApiError('MESHD_K8S_BAD_RESPONSE', `${what}: not a list`);
  return (l.data.items ?? []).flatMap((i) => {
    const r = schema.safeParse(i);
    return r.success ? [r.data] : [];
  });
}

const isStatus = (e: unknown, ...status: number[]): boolean => e instanceof KubeApiError && e.status !== undefined && status.includes(e.status);

/** metav1.MicroTime wants six fractional digits. */
function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

export class IdentityGC {
  private leader = false;
  private leaseTimer: NodeJS.Timeout | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private leaseChain: Promise<void> = Promise.resolve();
  private sweepChain: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly listeners = new Set<(leader: boolean) => void>();
  /** The other holder's record as last seen, and when (this agent's clock) it was first seen. */
  private observed: { record: string; at: number } | undefined;
  /** Everything this instance deleted, for status and tests. */
  readonly deleted: SweepResult = { identities: [], keys: [] };

  constructor(private readonly o: IdentityGCOptions) {}

  private get leasePath(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.o.namespace}/leases/${this.o.leaseName ?? IDENTITY_GC_LEASE}`;
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  isLeader(): boolean {
    return this.leader;
  }

  /** Called when this instance gains or loses the Lease. */
  onLeadership(listener: (leader: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    if (this.leaseTimer || this.stopped) return;
    // Two chains: a long sweep must not delay the renewals, or the Lease lapses while its holder works.
    const run = (chain: 'leaseChain' | 'sweepChain', fn: () => Promise<unknown>) => {
      this[chain] = this[chain].then(fn).then(
        () => undefined,
        (e: unknown) => this.o.log?.warn('identity GC step failed', { code: e instanceof KubeApiError ? e.code : undefined, error: String(e) }),
      );
    };
    run('leaseChain', () => this.tryLease());
    this.leaseTimer = setInterval(() => run('leaseChain', () => this.tryLease()), this.o.retryMs ?? 2_000);
    this.sweepTimer = setInterval(() => run('sweepChain', () => this.sweep()), this.o.intervalMs ?? 60_000);
  }

  /** Stops electing and sweeping; gives the Lease up when held (unless `release: false`, which behaves like a crash). Idempotent. */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    await Promise.all([this.leaseChain, this.sweepChain]);
    if (this.leader && opts.release !== false) {
      try {
        const lease = await this.readLease();
        if (lease?.spec.holderIdentity === this.o.holder) {
          await this.o.client.send('PUT', this.leasePath, this.leaseBody(lease, { holderIdentity: '', renewTime: null, leaseDurationSeconds: 1 }));
        }
      } catch (e) {
        this.o.log?.warn('giving up the identity GC lease failed; it lapses instead', { error: String(e) });
      }
    }
    this.setLeader(false);
  }

  private setLeader(v: boolean): void {
    if (v === this.leader) return;
    this.leader = v;
    this.o.log?.info(v ? 'holding the identity GC lease' : 'no longer holding the identity GC lease', { holder: this.o.holder });
    for (const l of this.listeners) l(v);
  }

  private async readLease(): Promise<Lease | undefined> {
    try {
      const r = LeaseSchema.safeParse(await this.o.client.getJson(this.leasePath));
      if (!r.success) throw new KubeApiError('MESHD_K8S_BAD_RESPONSE', `${this.leasePath}: not a Lease`);
      return r.data;
    } catch (e) {
      if (isStatus(e, 404)) return undefined;
      throw e;
    }
  }

  private leaseBody(prev: Lease | undefined, spec: Record<string, unknown>): Json {
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.o.leaseName ?? IDENTITY_GC_LEASE, namespace: this.o.namespace, ...(prev?.metadata.resourceVersion ? { resourceVersion: prev.metadata.resourceVersion } : {}) },
      spec: { ...prev?.spec, ...spec },
    };
  }

  /** One election step: create, renew or take over the Lease; anything refused means not leading. */
  async tryLease(): Promise<boolean> {
    if (this.stopped) return false;
    const now = this.now();
    const durationS = Math.max(1, Math.round((this.o.leaseDurationMs ?? 15_000) / 1_000));
    try {
      const lease = await this.readLease();
      if (!lease) {
        await this.o.client.send('POST', `/apis/coordination.k8s.io/v1/namespaces/${this.o.namespace}/leases`, this.leaseBody(undefined, { holderIdentity: this.o.holder, leaseDurationSeconds: durationS, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 }));
        this.setLeader(true);
        return true;
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
      await this.o.client.send('PUT', this.leasePath, this.leaseBody(lease, { holderIdentity: this.o.holder, leaseDurationSeconds: durationS, renewTime: microTime(now), ...takeover }));
      this.setLeader(true);
      return true;
    } catch (e) {
      // 409: another agent wrote the Lease first. Anything else: we cannot prove we still hold it, so we do not act as leader.
      this.setLeader(false);
      if (!isStatus(e, 409)) throw e;
      return false;
    }
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
