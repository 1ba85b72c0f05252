/**
 * LB IPAM's allocation, as one pure function of the pools and the Services:
 * which addresses each Service gets, its condition, and each pool's status.
 * The controller (controller.ts) runs it on every change and writes the
 * difference; nothing is remembered between runs but what the Services'
 * status already holds, so a restarted (or newly elected) controller adopts
 * the allocations as they are instead of reshuffling them.
 *
 *   const r = allocate(pools.map(poolInput), services.map(lbRequest));
 *   r.services.get('default/web');   // { ingress: ['10.0.10.0'], condition: { status: 'True', reason: 'satisfied', … } }
 *   r.pools.get('blue');             // { total: 256n, used: 1, conflict: undefined }
 *
 * Order decides every contest, as in Cilium: pools by creation (a pool that
 * overlaps an older one is conflicting and allocates nothing), Services by
 * creation (an older Service keeps an address a newer one asks for). Within
 * that order, addresses a Service already has are kept before any Service
 * gets a new one.
 */
import type { CiliumLbIpPool } from '../k8s/cilium-lb-ip-pool.js';
import { bigintToIp, blockRange, ipToBigint, rangeContains, rangeSize, rangesOverlap, type Family, type IpRange, type IpValue } from './ip-range.js';
import { matchSelector, type LabelSelectorSpec } from './label-selector.js';
import type { LbRequest } from './lb-service.js';

export interface PoolInput {
  name: string;
  createdAt: string;
  generation: number | undefined;
  disabled: boolean;
  selector: LabelSelectorSpec | undefined;
  ranges: IpRange[];
}

export function poolInput(p: CiliumLbIpPool): PoolInput {
  const allowFirstLast = p.spec.allowFirstLastIPs !== 'No';
  return {
    name: p.metadata.name,
    createdAt: p.metadata.creationTimestamp ?? '',
    generation: p.metadata.generation,
    disabled: p.spec.disabled ?? false,
    selector: p.spec.serviceSelector,
    // The kind's parse refused bad blocks, so every block is a range here.
    ranges: (p.spec.blocks ?? []).flatMap((b) => {
      const r = blockRange(b, { allowFirstLast });
      return typeof r === 'string' ? [] : [r];
    }),
  };
}

/** Reasons of the Service condition, as Cilium's operator names them. */
export type ServiceReason = 'satisfied' | 'no_pool' | 'out_of_ips' | 'pool_selector_mismatch' | 'already_allocated' | 'invalid_request';

export interface ServiceOutcome {
  ingress: string[];
  satisfied: boolean;
  reason: ServiceReason;
  message: string;
}

export interface PoolOutcome {
  total: bigint;
  used: number;
  conflict: { reason: 'cidr_overlap'; message: string } | undefined;
}

export interface AllocationResult {
  services: Map<string, ServiceOutcome>;
  pools: Map<string, PoolOutcome>;
}

interface Holder {
  req: LbRequest;
  pool: PoolInput;
}

const byAge = <T>(created: (x: T) => string, name: (x: T) => string) => (a: T, b: T): number => created(a).localeCompare(created(b)) || name(a).localeCompare(name(b));
const ipKey = (v: IpValue): string => `${v.family}:${v.value}`;

/** Two Services may hold the same address: the same sharing key, each allowing the other's namespace, no port in common. */
function canShare(a: LbRequest, b: LbRequest): boolean {
  if (!a.sharingKey || a.sharingKey !== b.sharingKey) return false;
  const allows = (x: LbRequest, ns: string) => x.shareWith.includes('*') || x.shareWith.includes(ns);
  if (a.namespace !== b.namespace && !(allows(a, b.namespace) && allows(b, a.namespace))) return false;
  return !a.ports.some((p) => b.ports.includes(p));
}

export function allocate(poolsIn: readonly PoolInput[], servicesIn: readonly LbRequest[]): AllocationResult {
  const pools = [...poolsIn].sort(byAge((p) => p.createdAt, (p) => p.name));
  const poolOut = new Map<string, PoolOutcome>();
  const live: PoolInput[] = [];
  for (const p of pools) {
    let conflict: PoolOutcome['conflict'];
    for (const q of live) {
      for (const r of p.ranges) {
        const other = q.ranges.find((o) => rangesOverlap(o, r));
        if (other && !conflict) conflict = { reason: 'cidr_overlap', message: `Pool conflicts since CIDR '${r.text}' overlaps CIDR '${other.text}' from IP Pool '${q.name}'` };
      }
    }
    poolOut.set(p.name, { total: p.ranges.reduce((n, r) => n + rangeSize(r), 0n), used: 0, conflict });
    if (!conflict) live.push(p);
  }
  const holders = new Map<string, Holder[]>();
  const services = [...servicesIn].sort(byAge((s) => s.createdAt, (s) => s.key));
  const got = new Map<string, IpValue[]>(services.map((s) => [s.key, []]));

  const poolOf = (ip: IpValue, s: LbRequest, o: { enabledOnly: boolean }): PoolInput | undefined =>
    live.find((p) => (!o.enabledOnly || !p.disabled) && matchSelector(p.selector, s.labels) && p.ranges.some((r) => rangeContains(r, ip)));
  const free = (ip: IpValue, s: LbRequest): boolean => (holders.get(ipKey(ip)) ?? []).every((h) => canShare(h.req, s));
  const take = (ip: IpValue, s: LbRequest, pool: PoolInput) => {
    const k = ipKey(ip);
    holders.set(k, [...(holders.get(k) ?? []), { req: s, pool }]);
    got.get(s.key)?.push(ip);
  };

  // 1. Adopt what the Services already hold and may keep.
  for (const s of services) {
    for (const text of s.current) {
      const ip = ipToBigint(text);
      if (!ip) continue;
      const mine = got.get(s.key) ?? [];
      if (s.requested.length > 0 ? !s.requested.includes(text) : !s.families.includes(ip.family) || mine.some((m) => m.family === ip.family)) continue;
      const pool = poolOf(ip, s, { enabledOnly: false });
      if (pool && free(ip, s) && !mine.some((m) => ipKey(m) === ipKey(ip))) take(ip, s, pool);
    }
  }

  // 2. Give each Service what it still lacks.
  const out = new Map<string, ServiceOutcome>();
  for (const s of services) {
    const mine = got.get(s.key) ?? [];
    let failure: { reason: ServiceReason; message: string } | undefined;
    if (s.invalid.length > 0) failure = { reason: 'invalid_request', message: `Requested IPs are not IP addresses: ${s.invalid.join(', ')}` };
    else if (s.requested.length > 0) {
      for (const text of s.requested) {
        const ip = ipToBigint(text);
        if (!ip || mine.some((m) => ipKey(m) === ipKey(ip))) continue;
        const pool = poolOf(ip, s, { enabledOnly: true });
        if (!pool) {
          const anyPool = live.some((p) => !p.disabled && p.ranges.some((r) => rangeContains(r, ip)));
          failure ??= anyPool
            ? { reason: 'pool_selector_mismatch', message: `The pool of requested IP ${text} does not select this service` }
            : { reason: 'no_pool', message: `No enabled CiliumLoadBalancerIPPool contains requested IP ${text}` };
        } else if (!free(ip, s)) {
          failure ??= { reason: 'already_allocated', message: `Requested IP ${text} is already allocated to ${(holders.get(ipKey(ip)) ?? []).map((h) => h.req.key).join(', ')}` };
        } else take(ip, s, pool);
      }
    } else {
      for (const family of s.families) {
        if (mine.some((m) => m.family === family)) continue;
        const r = s.sharingKey ? shared(family, s) : undefined;
        if (r) {
          take(r.ip, s, r.pool);
          continue;
        }
        const fresh = nextFree(family, s);
        if (fresh) take(fresh.ip, s, fresh.pool);
        else if (s.requireAll || s.families.every((f) => !mine.some((m) => m.family === f))) {
          const matching = live.some((p) => !p.disabled && matchSelector(p.selector, s.labels) && p.ranges.some((x) => x.family === family));
          failure ??= matching
            ? { reason: 'out_of_ips', message: `All enabled CiliumLoadBalancerIPPools that match this service ran out of allocatable IPv${family} addresses` }
            : { reason: 'no_pool', message: `There are no enabled CiliumLoadBalancerIPPools with IPv${family} addresses that match this service` };
        }
      }
      // PreferDualStack: one family is enough.
      if (!s.requireAll && mine.length > 0) failure = undefined;
    }
    out.set(s.key, { ingress: mine.map((m) => bigintToIp(m.family, m.value)), satisfied: !failure, reason: failure?.reason ?? 'satisfied', message: failure?.message ?? '' });
  }
  for (const hs of holders.values()) {
    const p = hs[0] ? poolOut.get(hs[0].pool.name) : undefined;
    if (p) p.used += 1;
  }
  return { services: out, pools: poolOut };

  /** An address of the Service's sharing group it may share (its pool still selects the Service). */
  function shared(family: Family, s: LbRequest): { ip: IpValue; pool: PoolInput } | undefined {
    for (const [k, hs] of holders) {
      if (!k.startsWith(`${family}:`) || !hs.every((h) => canShare(h.req, s))) continue;
      const ip: IpValue = { family, value: BigInt(k.slice(2)) };
      const pool = poolOf(ip, s, { enabledOnly: true });
      if (pool) return { ip, pool };
    }
    return undefined;
  }

  /** The lowest unheld address of the first enabled pool (by age) that selects the Service and has one. */
  function nextFree(family: Family, s: LbRequest): { ip: IpValue; pool: PoolInput } | undefined {
    for (const pool of live) {
      if (pool.disabled || !matchSelector(pool.selector, s.labels)) continue;
      for (const r of pool.ranges) {
        if (r.family !== family) continue;
        for (let v = r.first; v <= r.last; v++) {
          const ip = { family, value: v };
          if (!holders.has(ipKey(ip))) return { ip, pool };
        }
      }
    }
    return undefined;
  }
}
