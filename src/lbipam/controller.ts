/**
 * LB IPAM: gives Services of type LoadBalancer addresses from
 * CiliumLoadBalancerIPPools and writes them into `status.loadBalancer.ingress`,
 * run by one agent at a time — the holder of the Lease `meshd-lb-ipam` (as
 * Cilium's operator runs it under its leader election).
 *
 * Every agent keeps the pools and Services in memory (two reflectors), so a
 * newly elected holder acts at once. The holder recomputes the whole
 * allocation on every change (allocator.ts: a pure function of pools and
 * Services whose only memory is what the Services' status holds) and writes
 * the difference:
 * - a Service's status (addresses and the `cilium.io/IPAMRequestSatisfied`
 *   condition) as a merge patch carrying the resourceVersion it was computed
 *   from, so a Service changed meanwhile is recomputed, never overwritten;
 * - a pool's status conditions (IPsTotal, IPsAvailable, IPsUsed, PoolConflict).
 * Nothing is written while no pool exists and no Service carries the
 * condition: LB IPAM stays dormant in clusters that do not use it, as in
 * Cilium. A pool that does not parse keeps its last good version.
 *
 *   const lb = new LbIpamController({ client, holder: nodeName, namespace: 'kube-system' });
 *   lb.start(); … lb.isLeader(); … await lb.stop();
 */
import { z } from 'zod';
import { KubeApiError, type Json, type KubeClient } from '../k8s/client.js';
import { ciliumLbIpPool, LB_IP_POOLS_PATH, type CiliumLbIpPool } from '../k8s/cilium-lb-ip-pool.js';
import { isKubeStatus, LeaseElector } from '../k8s/lease.js';
import { formatPath } from '../k8s/problem.js';
import { Reflector } from '../k8s/reflector.js';
import type { Logger } from '../util/log.js';
import { allocate, poolInput, type AllocationResult, type PoolOutcome, type ServiceOutcome } from './allocator.js';
import { isLbIpamService, lbRequest, LbServiceSchema, REQUEST_SATISFIED_CONDITION, serviceKey, type Condition, type LbService } from './lb-service.js';

export const LB_IPAM_LEASE = 'meshd-lb-ipam';
const SERVICES_PATH = '/api/v1/services';

export const POOL_CONDITIONS = {
  total: 'cilium.io/IPsTotal',
  available: 'cilium.io/IPsAvailable',
  used: 'cilium.io/IPsUsed',
  conflict: 'cilium.io/PoolConflict',
} as const;

export interface LbIpamControllerOptions {
  client: KubeClient;
  /** This agent's name in the Lease (the node name). */
  holder: string;
  /** Namespace of the Lease. */
  namespace: string;
  leaseDurationMs?: number;
  retryMs?: number;
  /** Changes arriving within this long are allocated together (default 10 ms). */
  batchMs?: number;
  backoff?: { initialMs: number; maxMs: number };
  missingRecheckMs?: number;
  log?: Logger;
  now?: () => number;
}

export interface LbIpamStats {
  /** Allocation passes run as the Lease holder. */
  passes: number;
  serviceWrites: number;
  poolWrites: number;
  /** Writes refused because the object changed meanwhile (recomputed at once). */
  conflicts: number;
}

/** A condition as written, with lastTransitionTime kept when the status did not change. */
function condition(prev: readonly Condition[], c: Omit<Condition, 'lastTransitionTime'>, now: string): Condition {
  const old = prev.find((p) => p.type === c.type);
  return { ...c, lastTransitionTime: old && old.status === c.status && old.lastTransitionTime ? old.lastTransitionTime : now };
}

const sameCondition = (a: Condition | undefined, b: Omit<Condition, 'lastTransitionTime'>): boolean =>
  a !== undefined && a.status === b.status && a.reason === b.reason && a.message === b.message && (b.observedGeneration === undefined || a.observedGeneration === b.observedGeneration);

export class LbIpamController {
  private readonly lease: LeaseElector;
  private readonly reflectors: Reflector[] = [];
  private readonly pools = new Map<string, CiliumLbIpPool>();
  private readonly services = new Map<string, LbService>();
  private readonly synced = { pools: false, services: false };
  /** resourceVersion of each rejected pool version, so each is reported once. */
  private readonly rejected = new Map<string, string>();
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<void> = Promise.resolve();
  private again = false;
  private stopped = false;
  readonly stats: LbIpamStats = { passes: 0, serviceWrites: 0, poolWrites: 0, conflicts: 0 };
  /** The last allocation computed (for status views and tests). */
  last: AllocationResult | null = null;

  constructor(private readonly o: LbIpamControllerOptions) {
    this.lease = new LeaseElector({
      client: o.client,
      holder: o.holder,
      namespace: o.namespace,
      name: LB_IPAM_LEASE,
      ...(o.leaseDurationMs !== undefined ? { leaseDurationMs: o.leaseDurationMs } : {}),
      ...(o.retryMs !== undefined ? { retryMs: o.retryMs } : {}),
      ...(o.log ? { log: o.log } : {}),
      ...(o.now ? { now: o.now } : {}),
    });
    this.lease.onLeadership((leader) => {
      if (leader) this.schedule();
    });
  }

  isLeader(): boolean {
    return this.lease.isLeader();
  }

  start(): void {
    if (this.reflectors.length > 0 || this.stopped) return;
    const tuning = { ...(this.o.backoff ? { backoff: this.o.backoff } : {}), ...(this.o.missingRecheckMs ? { missingRecheckMs: this.o.missingRecheckMs } : {}) };
    const onError = (what: string) => (err: KubeApiError) => this.o.log?.warn(`LB IPAM: reading ${what} failed; retrying`, { code: err.code, status: err.status, error: err.message });
    this.reflectors.push(
      new Reflector(
        { client: this.o.client, path: LB_IP_POOLS_PATH, ...tuning },
        {
          onList: (items) => {
            this.pools.clear();
            for (const i of items) this.upsertPool(i);
            this.synced.pools = true;
            this.schedule();
          },
          onEvent: (type, obj) => {
            if (type === 'DELETED') this.pools.delete(nameOf(obj));
            else this.upsertPool(obj);
            this.schedule();
          },
          // No CRD: no pools (dormant until it appears).
          onMissing: () => {
            this.pools.clear();
            this.synced.pools = true;
            this.schedule();
          },
          onError: onError('pools'),
          onHealthy: () => undefined,
        },
      ),
      new Reflector(
        { client: this.o.client, path: SERVICES_PATH, ...tuning },
        {
          onList: (items) => {
            this.services.clear();
            for (const i of items) this.upsertService(i);
            this.synced.services = true;
            this.schedule();
          },
          onEvent: (type, obj) => {
            if (type === 'DELETED') {
              const r = LbServiceSchema.safeParse(obj);
              if (r.success) this.services.delete(serviceKey(r.data));
            } else this.upsertService(obj);
            this.schedule();
          },
          onMissing: () => undefined,
          onError: onError('services'),
          onHealthy: () => undefined,
        },
      ),
    );
    for (const r of this.reflectors) r.start();
    this.lease.start();
  }

  /** Stops; gives the Lease up when held (`release: false` behaves like a crash). Idempotent. */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.all(this.reflectors.map((r) => r.stop()));
    await this.chain;
    await this.lease.stop(opts);
  }

  private upsertPool(raw: Json): void {
    const r = ciliumLbIpPool.parse(withKind(raw, 'CiliumLoadBalancerIPPool', 'cilium.io/v2'));
    if (r.ok) {
      this.pools.set(r.value.metadata.name, r.value);
      this.rejected.delete(r.value.metadata.name);
      return;
    }
    const name = nameOf(raw);
    const rv = rvOf(raw);
    if (this.rejected.get(name) === rv) return;
    this.rejected.set(name, rv);
    // The last good version (if any) stays in force.
    this.o.log?.error('CiliumLoadBalancerIPPool refused; its last good version stays in force', {
      pool: name,
      problems: r.problems.map((p) => `${formatPath(p.path)}: ${p.message} (${p.code})`),
    });
  }

  private upsertService(raw: Json): void {
    const r = LbServiceSchema.safeParse(raw);
    if (r.success) this.services.set(serviceKey(r.data), r.data);
    else this.o.log?.warn('Service not readable for LB IPAM; left alone', { service: `${nsOf(raw)}/${nameOf(raw)}`, error: r.error.message });
  }

  private schedule(): void {
    if (this.stopped) return;
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.chain = this.chain.then(() => this.pass()).catch((e: unknown) => {
        this.o.log?.warn('LB IPAM pass failed; retried', { code: e instanceof KubeApiError ? e.code : undefined, error: String(e) });
        this.again = true;
      }).then(() => {
        if (this.again) {
          this.again = false;
          setTimeout(() => this.schedule(), 200);
        }
      });
    }, this.o.batchMs ?? 10);
  }

  /** One allocation pass; writes only as the Lease holder, once both collections are read. */
  async pass(): Promise<void> {
    if (this.stopped || !this.lease.isLeader() || !this.synced.pools || !this.synced.services) return;
    const ours = [...this.services.values()].filter((s) => isLbIpamService(s) || (s.status?.conditions ?? []).some((c) => c.type === REQUEST_SATISFIED_CONDITION));
    if (this.pools.size === 0 && !ours.some((s) => (s.status?.conditions ?? []).some((c) => c.type === REQUEST_SATISFIED_CONDITION))) return;
    this.stats.passes += 1;
    const eligible = ours.filter(isLbIpamService);
    const result = allocate([...this.pools.values()].map(poolInput), eligible.map(lbRequest));
    this.last = result;
    const now = new Date((this.o.now ?? Date.now)()).toISOString().replace(/\.\d{3}Z$/, 'Z');
    for (const s of ours) {
      if (this.stopped || !this.lease.isLeader()) return;
      const want = result.services.get(serviceKey(s));
      await this.writeService(s, want, now);
    }
    for (const p of this.pools.values()) {
      if (this.stopped || !this.lease.isLeader()) return;
      const want = result.pools.get(p.metadata.name);
      if (want) await this.writePool(p, want, now);
    }
  }

  /** Writes the Service's addresses and condition when they differ; `want` undefined releases it (no longer ours). */
  private async writeService(s: LbService, want: ServiceOutcome | undefined, now: string): Promise<void> {
    const prev = s.status?.conditions ?? [];
    const others = prev.filter((c) => c.type !== REQUEST_SATISFIED_CONDITION);
    const haveIps = (s.status?.loadBalancer?.ingress ?? []).map((i) => i.ip ?? '');
    const wantIps = want?.ingress ?? [];
    const c = want
      ? { type: REQUEST_SATISFIED_CONDITION, status: want.satisfied ? ('True' as const) : ('False' as const), reason: want.reason, message: want.message, ...(s.metadata.generation !== undefined ? { observedGeneration: s.metadata.generation } : {}) }
      : undefined;
    const mine = prev.find((x) => x.type === REQUEST_SATISFIED_CONDITION);
    const ipsSame = haveIps.length === wantIps.length && haveIps.every((ip, i) => ip === wantIps[i]);
    if (ipsSame && (c ? sameCondition(mine, c) : mine === undefined)) return;
    const conditions = c ? [...others, condition(prev, c, now)] : others;
    const body = {
      metadata: { resourceVersion: s.metadata.resourceVersion },
      status: { loadBalancer: { ingress: wantIps.length > 0 ? wantIps.map((ip) => ({ ip, ipMode: 'VIP' })) : null }, conditions },
    };
    try {
      const answer = await this.o.client.send('PATCH', `/api/v1/namespaces/${s.metadata.namespace}/services/${s.metadata.name}/status`, body);
      this.stats.serviceWrites += 1;
      // What the API server now holds is the base of the next pass (its watch event may come later).
      this.upsertService(answer);
      if (!ipsSame) this.o.log?.info('LB IPAM: service addresses', { service: serviceKey(s), ingress: wantIps, reason: c?.reason ?? 'released' });
    } catch (e) {
      if (!isKubeStatus(e, 404, 409)) throw e;
      // Changed or deleted since it was read: its watch event brings the new version and another pass.
      this.stats.conflicts += 1;
      this.again = true;
    }
  }

  private async writePool(p: CiliumLbIpPool, want: PoolOutcome, now: string): Promise<void> {
    const prev = conditionsOf(p.status);
    const gen = p.metadata.generation !== undefined ? { observedGeneration: p.metadata.generation } : {};
    const counter = (type: string, n: bigint | number) => ({ type, status: 'Unknown' as const, reason: 'noreason', message: String(n), ...gen });
    const wanted = [
      counter(POOL_CONDITIONS.total, want.total),
      counter(POOL_CONDITIONS.available, want.total - BigInt(want.used)),
      counter(POOL_CONDITIONS.used, want.used),
      want.conflict
        ? { type: POOL_CONDITIONS.conflict, status: 'True' as const, reason: want.conflict.reason, message: want.conflict.message, ...gen }
        : { type: POOL_CONDITIONS.conflict, status: 'False' as const, reason: 'resolved', message: '', ...gen },
    ];
    if (wanted.every((w) => sameCondition(prev.find((x) => x.type === w.type), w))) return;
    const conditions = [...prev.filter((x) => !wanted.some((w) => w.type === x.type)), ...wanted.map((w) => condition(prev, w, now))];
    try {
      const answer = await this.o.client.send('PATCH', `${LB_IP_POOLS_PATH}/${p.metadata.name}/status`, { status: { conditions } });
      this.stats.poolWrites += 1;
      this.upsertPool(answer);
    } catch (e) {
      if (!isKubeStatus(e, 404, 409)) throw e;
      this.stats.conflicts += 1;
    }
  }
}

function conditionsOf(status: unknown): Condition[] {
  const r = LbServiceSchema.shape.status.safeParse(status);
  return r.success ? (r.data?.conditions ?? []) : [];
}

const MetaSchema = z.object({ metadata: z.object({ name: z.string(), namespace: z.string(), resourceVersion: z.string() }).partial() });
const metaOf = (raw: Json) => {
  const r = MetaSchema.safeParse(raw);
  return r.success ? r.data.metadata : {};
};
const nameOf = (raw: Json): string => metaOf(raw).name ?? '';
const nsOf = (raw: Json): string => metaOf(raw).namespace ?? '';
const rvOf = (raw: Json): string => metaOf(raw).resourceVersion ?? '';

/** List items of a custom resource may come without kind and apiVersion. */
function withKind(raw: Json, kind: string, apiVersion: string): Json {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  return { kind, apiVersion, ...raw };
}
