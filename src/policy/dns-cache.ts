/**
 * Name → IPs learned from DNS, the input of toFQDNs. The DNS proxy feeds it
 * with every answer it lets through (observe); `meshd policy trace` fills it
 * from the scenario's `fqdns` (set). The engine subscribes and recomputes only
 * the endpoints whose policy uses an FQDN selector matching a changed name.
 *
 *   const dns = new MemoryDnsCache({ minTtlSeconds: 3600 });
 *   dns.observe('api.github.com', ['140.82.112.5'], 60);   // from a DNS answer
 *   dns.expire();                                          // periodically
 */
import { normaliseDnsName } from './l7-match.js';

export interface DnsCache {
  /** Current IPs of a name (normalised: lowercase, no trailing dot). */
  lookup(name: string): readonly string[];
  /** Every name with at least one IP. */
  names(): Iterable<string>;
  /** Called synchronously with the names whose IP set changed. */
  subscribe(listener: (names: string[]) => void): () => void;
}

export class MemoryDnsCache implements DnsCache {
  /** name → ip → expiry (ms since epoch; Infinity for names set explicitly). */
  private readonly map = new Map<string, Map<string, number>>();
  private readonly listeners = new Set<(names: string[]) => void>();
  private readonly minTtlMs: number;

  /**
   * minTtlSeconds: IPs are kept at least this long whatever the answer's TTL, as Cilium's
   * tofqdns-min-ttl (default 3600 s) does, so short TTLs do not break long connections.
   */
  constructor(opts: { minTtlSeconds?: number } = {}) {
    this.minTtlMs = (opts.minTtlSeconds ?? 3600) * 1000;
  }

  /** Replaces the IPs of a name (empty = forget it); they never expire. Notifies only on a real change. */
  set(name: string, ips: readonly string[]): void {
    const n = normaliseDnsName(name);
    const before = this.ipsOf(n);
    const next = new Map<string, number>();
    for (const ip of ips) next.set(ip, Infinity);
    if (next.size === 0) this.map.delete(n);
    else this.map.set(n, next);
    this.notifyIfChanged(n, before);
  }

  /** Adds the IPs of a DNS answer; each is kept until max(ttl, minTtl) from now (extended, never shortened). */
  observe(name: string, ips: readonly string[], ttlSeconds: number, now: number = Date.now()): void {
    const n = normaliseDnsName(name);
    const before = this.ipsOf(n);
    const entry = this.map.get(n) ?? new Map<string, number>();
    const until = now + Math.max(ttlSeconds * 1000, this.minTtlMs);
    for (const ip of ips) entry.set(ip, Math.max(entry.get(ip) ?? 0, until));
    if (entry.size > 0) this.map.set(n, entry);
    this.notifyIfChanged(n, before);
  }

  /** Drops IPs whose time is up; returns the names that changed (listeners are told once, together). */
  expire(now: number = Date.now()): string[] {
    const changed: string[] = [];
    for (const [n, entry] of this.map) {
      let removed = false;
      for (const [ip, until] of entry) {
        if (until <= now) {
          entry.delete(ip);
          removed = true;
        }
      }
      if (entry.size === 0) this.map.delete(n);
      if (removed) changed.push(n);
    }
    if (changed.length > 0) for (const l of this.listeners) l(changed);
    return changed;
  }

  lookup(name: string): readonly string[] {
    return this.ipsOf(normaliseDnsName(name));
  }

  names(): Iterable<string> {
    return this.map.keys();
  }

  subscribe(listener: (names: string[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private ipsOf(n: string): string[] {
    return [...(this.map.get(n)?.keys() ?? [])].sort();
  }

  private notifyIfChanged(n: string, before: string[]): void {
    const after = this.ipsOf(n);
    if (before.length === after.length && before.every((ip, i) => ip === after[i])) return;
    for (const l of this.listeners) l([n]);
  }
}

/** One learned address of one name, as one endpoint's DNS answers taught it. */
export interface FqdnIp {
  ip: string;
  /** The TTL of the answer that last (re)learned it, in seconds. */
  ttl: number;
  /** When it was last learned and when its time is up (ms since epoch; max(ttl, minTtl) after learning). */
  learnedAt: number;
  expiresAt: number;
  /** `dns`: from an answer the proxy let through; `restored`: from the state file after a restart. */
  source: 'dns' | 'restored';
  /**
   * When the address first entered this name (a node-wide counter). A restarted agent hands the names
   * to the engine in this order, so their addresses get the identity numbers they had before.
   */
  seq: number;
}

export interface FqdnCacheOptions {
  /** dnsProxy.minTtl: an answer's TTL is raised to at least this (seconds; Cilium's default 0 = honour the TTL). */
  minTtlSeconds?: number;
  /** dnsProxy.endpointMaxIpPerHostname: addresses kept per (endpoint, name); the ones that expire first go. */
  maxIpsPerHost?: number;
  /** dnsProxy.idleConnectionGracePeriod: how long an expired address stays before it may go (ms). */
  graceMs?: number;
}

/** The persisted form (see src/dns/fqdn-state.ts): endpoint → name → addresses. */
export type FqdnCacheDump = Record<string, Record<string, FqdnIp[]>>;

/**
 * The toFQDNs cache of a node: per local endpoint, the names its allowed DNS
 * answers resolved and their addresses with TTLs, as Cilium keeps one per
 * endpoint. The engine sees the union over endpoints (DnsCache); listeners
 * hear only about names whose union changed, so a repeated answer costs no
 * recomputation. An address whose time is up stays while `inUse` says a
 * connection still uses it, and at least the grace period, then goes.
 *
 *   const c = new FqdnCache({ minTtlSeconds: 0, maxIpsPerHost: 1000 });
 *   c.observe('default/app', 'api.example.com', ['192.0.2.7'], 30);   // true: the name's addresses changed
 *   c.expire(Date.now(), (ip) => conntrackHas(ip));
 */
export class FqdnCache implements DnsCache {
  private readonly byEndpoint = new Map<string, Map<string, Map<string, FqdnIp>>>();
  private readonly listeners = new Set<(names: string[]) => void>();
  private readonly minTtlMs: number;
  private readonly maxIps: number;
  private readonly graceMs: number;
  private seq = 0;

  constructor(opts: FqdnCacheOptions = {}) {
    this.minTtlMs = (opts.minTtlSeconds ?? 0) * 1000;
    this.maxIps = opts.maxIpsPerHost ?? 1000;
    this.graceMs = opts.graceMs ?? 0;
  }

  /**
   * Learns the addresses of one answer for one endpoint. Returns whether the union of the name's
   * addresses changed (then the listeners were told, synchronously).
   */
  observe(endpoint: string, name: string, ips: readonly string[], ttlSeconds: number, now: number = Date.now()): boolean {
    const n = normaliseDnsName(name);
    const expiresAt = now + Math.max(ttlSeconds * 1000, this.minTtlMs);
    const known = this.byEndpoint.get(endpoint)?.get(n);
    if (known && ips.every((ip) => known.has(ip))) {
      // A refresh (the common answer): every address is already this endpoint's, so the union cannot
      // change; the entries are updated in place, without building the union twice.
      for (const ip of ips) {
        const e = known.get(ip);
        if (!e) continue;
        e.ttl = ttlSeconds;
        e.learnedAt = now;
        e.expiresAt = Math.max(e.expiresAt, expiresAt);
        e.source = 'dns';
      }
      return false;
    }
    const before = this.lookup(n);
    let names = this.byEndpoint.get(endpoint);
    if (!names) this.byEndpoint.set(endpoint, (names = new Map()));
    let entry = names.get(n);
    if (!entry) names.set(n, (entry = new Map()));
    for (const ip of ips) {
      const have = entry.get(ip);
      entry.set(ip, { ip, ttl: ttlSeconds, learnedAt: now, expiresAt: Math.max(have?.expiresAt ?? 0, expiresAt), source: 'dns', seq: have?.seq ?? this.seq++ });
    }
    if (entry.size > this.maxIps) {
      const keep = new Set(ips);
      const victims = [...entry.values()].filter((e) => !keep.has(e.ip)).sort((a, b) => a.expiresAt - b.expiresAt);
      for (const v of victims.slice(0, entry.size - this.maxIps)) entry.delete(v.ip);
    }
    if (entry.size === 0) names.delete(n);
    if (names.size === 0) this.byEndpoint.delete(endpoint);
    return this.notifyIfChanged([n], new Map([[n, before]]));
  }

  /**
   * Drops the addresses whose time and grace are up and that no connection uses; returns the names
   * whose union changed (listeners told once, together).
   */
  expire(now: number = Date.now(), inUse: (ip: string) => boolean = () => false): string[] {
    const touched = new Map<string, string[]>();
    for (const [ep, names] of this.byEndpoint) {
      for (const [n, entry] of names) {
        for (const [ip, e] of entry) {
          if (e.expiresAt + this.graceMs > now || inUse(ip)) continue;
          if (!touched.has(n)) touched.set(n, this.lookup(n));
          entry.delete(ip);
        }
        if (entry.size === 0) names.delete(n);
      }
      if (names.size === 0) this.byEndpoint.delete(ep);
    }
    const changed = [...touched.keys()].filter((n) => !sameList(touched.get(n) ?? [], this.lookup(n)));
    if (changed.length > 0) for (const l of this.listeners) l(changed);
    return changed;
  }

  /**
   * Removes entries by hand (`meshd fqdn cache flush`): those of `endpoint` (every endpoint when
   * absent) whose name `name` accepts (every name when absent). An address a connection still uses is
   * not removed but made to expire now, so the expiry sweep takes it once no connection uses it (as
   * Cilium's `fqdn cache clean` leaves live connections to its zombie collection). Returns what was
   * removed; listeners hear of the names whose union changed.
   */
  flush(filter: { endpoint?: string; name?: (name: string) => boolean }, inUse: (ip: string) => boolean = () => false, now: number = Date.now()): Array<{ endpoint: string; name: string; ips: string[] }> {
    const removed: Array<{ endpoint: string; name: string; ips: string[] }> = [];
    const before = new Map<string, string[]>();
    for (const [ep, names] of this.byEndpoint) {
      if (filter.endpoint !== undefined && ep !== filter.endpoint) continue;
      for (const [n, entry] of names) {
        if (filter.name && !filter.name(n)) continue;
        if (!before.has(n)) before.set(n, this.lookup(n));
        const ips: string[] = [];
        for (const [ip, e] of entry) {
          if (inUse(ip)) {
            e.expiresAt = Math.min(e.expiresAt, now);
            continue;
          }
          entry.delete(ip);
          ips.push(ip);
        }
        if (entry.size === 0) names.delete(n);
        if (ips.length > 0) removed.push({ endpoint: ep, name: n, ips: ips.sort() });
      }
      if (names.size === 0) this.byEndpoint.delete(ep);
    }
    this.notifyIfChanged([...before.keys()], before);
    return removed;
  }

  /** Forgets an endpoint's names (the endpoint is gone). */
  removeEndpoint(endpoint: string): string[] {
    const names = this.byEndpoint.get(endpoint);
    if (!names) return [];
    const before = new Map([...names.keys()].map((n) => [n, this.lookup(n)]));
    this.byEndpoint.delete(endpoint);
    const changed = [...before.keys()].filter((n) => !sameList(before.get(n) ?? [], this.lookup(n)));
    if (changed.length > 0) for (const l of this.listeners) l(changed);
    return changed;
  }

  /** Per endpoint and name, the addresses with TTL and expiry (`meshd fqdn cache list`). */
  list(endpoint?: string): Array<{ endpoint: string; name: string; ips: FqdnIp[] }> {
    const out: Array<{ endpoint: string; name: string; ips: FqdnIp[] }> = [];
    for (const [ep, names] of this.byEndpoint) {
      if (endpoint !== undefined && ep !== endpoint) continue;
      for (const [name, entry] of names) out.push({ endpoint: ep, name, ips: [...entry.values()].sort((a, b) => a.ip.localeCompare(b.ip)) });
    }
    return out.sort((a, b) => a.endpoint.localeCompare(b.endpoint) || a.name.localeCompare(b.name));
  }

  dump(): FqdnCacheDump {
    const out: FqdnCacheDump = {};
    for (const [ep, names] of this.byEndpoint) {
      const rec: Record<string, FqdnIp[]> = {};
      for (const [n, entry] of names) rec[n] = [...entry.values()];
      out[ep] = rec;
    }
    return out;
  }

  /** Loads a dump (before anything subscribes, or listeners hear every name); entries become `restored`. */
  restore(d: FqdnCacheDump): void {
    const before = new Map<string, string[]>();
    for (const names of Object.values(d)) for (const n of Object.keys(names)) before.set(normaliseDnsName(n), this.lookup(n));
    for (const [ep, names] of Object.entries(d)) {
      let m = this.byEndpoint.get(ep);
      if (!m) this.byEndpoint.set(ep, (m = new Map()));
      for (const [name, ips] of Object.entries(names)) {
        const n = normaliseDnsName(name);
        let entry = m.get(n);
        if (!entry) m.set(n, (entry = new Map()));
        for (const e of ips) {
          entry.set(e.ip, { ...e, source: 'restored' });
          this.seq = Math.max(this.seq, e.seq + 1);
        }
      }
    }
    this.notifyIfChanged([...this.names()].filter((n) => before.has(n)), before);
  }

  lookup(name: string): string[] {
    const n = normaliseDnsName(name);
    const out = new Set<string>();
    for (const names of this.byEndpoint.values()) for (const ip of names.get(n)?.keys() ?? []) out.add(ip);
    return [...out].sort();
  }

  /** Every name, in the order their first address was learned (see FqdnIp.seq). */
  names(): Iterable<string> {
    const first = new Map<string, number>();
    for (const names of this.byEndpoint.values()) {
      for (const [n, entry] of names) for (const e of entry.values()) first.set(n, Math.min(first.get(n) ?? Infinity, e.seq));
    }
    return [...first].sort((a, b) => a[1] - b[1]).map(([n]) => n);
  }

  subscribe(listener: (names: string[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notifyIfChanged(names: string[], before: ReadonlyMap<string, string[]>): boolean {
    const changed = names.filter((n) => !sameList(before.get(n) ?? [], this.lookup(n)));
    if (changed.length > 0) for (const l of this.listeners) l(changed);
    return changed.length > 0;
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
