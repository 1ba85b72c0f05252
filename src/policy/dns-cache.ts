/**
 * Name → IPs learned from DNS, the input of toFQDNs. The DNS proxy feeds it
 * (later); `meshd policy trace` fills it from the scenario's `fqdns`. The
 * engine subscribes and recomputes only the endpoints whose policy uses an
 * FQDN selector matching a changed name.
 */
import { normaliseDnsName } from './l7-match.js';

export interface DnsCache {
  /** Current IPs of a name (normalised: lowercase, no trailing dot). */
  lookup(name: string): readonly string[];
  /** Every name with at least one IP. */
  names(): Iterable<string>;
  /** Called with the names whose IP set changed. */
  subscribe(listener: (names: string[]) => void): () => void;
}

export class MemoryDnsCache implements DnsCache {
  private readonly map = new Map<string, string[]>();
  private readonly listeners = new Set<(names: string[]) => void>();

  /** Replaces the IPs of a name (empty = forget it). Notifies only on a real change. */
  set(name: string, ips: readonly string[]): void {
    const n = normaliseDnsName(name);
    const next = [...new Set(ips)].sort();
    const prev = this.map.get(n) ?? [];
    if (prev.length === next.length && prev.every((ip, i) => ip === next[i])) return;
    if (next.length === 0) this.map.delete(n);
    else this.map.set(n, next);
    for (const l of this.listeners) l([n]);
  }

  lookup(name: string): readonly string[] {
    return this.map.get(normaliseDnsName(name)) ?? [];
  }

  names(): Iterable<string> {
    return this.map.keys();
  }

  subscribe(listener: (names: string[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
