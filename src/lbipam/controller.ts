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
import { KubeApiError, type Json, type KubeClient } from '../k8s/client.js';
import { ciliumLbIpPool, LB_IP_POOLS_PATH, type CiliumLbIpPool } from '../k8s/cilium-lb-ip-pool.js';
import { isKubeStatus, LeaseElector } from '../k8s/lease.js';
import { parseWith } from '../k8s/problem.js';
import type { Logger } from '../util/log.js';
import { Collection } from './collection.js';
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
  private readonly pools: Collection<CiliumLbIpPool>;
  private readonly services: Collection<LbService>;
  private started = false;
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
    const tuning = { client: o.client, onChange: () => this.schedule(), ...(o.backoff ? { backoff: o.backoff } : {}), ...(o.missingRecheckMs ? { missingRecheckMs: o.missingRecheckMs } : {}), ...(o.log ? { log: o.log } : {}) };
    this.pools = new Collection({ ...tuning, what: 'CiliumLoadBalancerIPPool', path: LB_IP_POOLS_PATH, scope: 'cluster', parse: parsePool });
    this.services = new Collection({ ...tuning, what: 'Service', path: SERVICES_PATH, scope: 'namespaced', parse: (raw) => parseWith(LbServiceSchema, raw) });
    this.lease.onLeadership((leader) => {
      if (leader) this.schedule();
    });
  }

  isLeader(): boolean {
    return this.lease.isLeader();
  }

  start(): void {
    if (this.started || this.stopped) return;
    this.started = true;
    this.pools.start();
    this.services.start();
    this.lease.start();
  }

  /** Stops; gives the Lease up when held (`release: false` behaves like a crash). Idempotent. */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await Promise.all([this.pools.stop(), this.services.stop()]);
    await this.chain;
    await this.lease.stop(opts);
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
    if (this.stopped || !this.lease.isLeader() || !this.pools.synced || !this.services.synced) return;
    const ours = [...this.services.items.values()].filter((s) => isLbIpamService(s) || (s.status?.conditions ?? []).some((c) => c.type === REQUEST_SATISFIED_CONDITION));
    if (this.pools.items.size === 0 && !ours.some((s) => (s.status?.conditions ?? []).some((c) => c.type === REQUEST_SATISFIED_CONDITION))) return;
    this.stats.passes += 1;
    const eligible = ours.filter(isLbIpamService);
    const result = allocate([...this.pools.items.values()].map(poolInput), eligible.map(lbRequest));
    this.last = result;
    const now = new Date((this.o.now ?? Date.now)()).toISOString().replace(/\.\d{3}Z$/, 'Z');
    for (const s of ours) {
      if (this.stopped || !this.lease.isLeader()) return;
      const want = result.services.get(serviceKey(s));
      await this.writeService(s, want, now);
    }
    for (const p of this.pools.items.values()) {
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
      const parsed = LbServiceSchema.safeParse(answer);
      if (parsed.success) this.services.items.set(serviceKey(parsed.data), parsed.data);
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
      const parsed = parsePool(answer);
      if (parsed.ok) this.pools.items.set(parsed.value.metadata.name, parsed.value);
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

/** List items of a custom resource may come without kind and apiVersion. */
const parsePool = (raw: Json) => ciliumLbIpPool.parse(typeof raw === 'object' && raw !== null && !Array.isArray(raw) ? { kind: 'CiliumLoadBalancerIPPool', apiVersion: 'cilium.io/v2', ...raw } : raw);
