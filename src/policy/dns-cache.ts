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
