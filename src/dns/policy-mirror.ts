/**
 * What the DNS proxy's judge needs of the policy engine, carried to the
 * proxy's worker thread by message (proxy-worker.ts): the local endpoints'
 * EndpointPolicy objects, the endpoint addresses, the ipcache (prefix →
 * identity, longest prefix wins, as the datapath looks an address up) and
 * the identities behind each selector-based Service's cluster IPs.
 *
 *   const src = new PolicyMirrorSource(engine);   // main thread
 *   port.postMessage(src.delta());                // after each reconcile; null when nothing changed
 *   const m = new PolicyMirror();                 // worker
 *   m.apply(delta);  new DnsJudge(m).judge(flow);
 *
 * The source sends only what changed since its last delta (a policy object
 * replaced, the ipcache list replaced, an address or a Service moved); `full()`
 * starts over for a new worker. The mirror replaces its world object on every
 * delta, which is what makes DnsJudge recompute its cached flows.
 */
import { type Prefix, parsePrefix, prefixContains } from '../identity/cidr.js';
import type { EndpointPolicy, IpcacheEntry } from '../policy/types.js';
import type { DnsPolicySource } from './dns-policy.js';

export interface PolicyDelta {
  /** All endpoint addresses → endpoint, when any changed. */
  endpointIps?: Array<[string, string]>;
  /** Local endpoints' policies that changed (null: the endpoint has none any more). */
  policies?: Array<[string, EndpointPolicy | null]>;
  /** The whole ipcache, when it changed. */
  ipcache?: IpcacheEntry[];
  /** Cluster IP → its selected backends' identities, when any changed. */
  services?: Array<[string, number[]]>;
}

/** The engine's side of what the mirror needs (PolicyEngine implements it). */
export interface PolicyMirrorEngine {
  endpointAddresses(): ReadonlyMap<string, string>;
  endpointPolicies(): EndpointPolicy[];
  ipcache(): readonly IpcacheEntry[];
  serviceList(): Array<{ clusterIPs?: string[] }>;
  serviceBackendIdentities(ip: string): number[];
}

const sameEntries = <V>(a: ReadonlyArray<[string, V]>, b: ReadonlyArray<[string, V]>, eq: (x: V, y: V) => boolean): boolean =>
  a.length === b.length && a.every(([k, v], i) => b[i]?.[0] === k && eq(v, b[i]?.[1] as V));

export class PolicyMirrorSource {
  private ips: Array<[string, string]> = [];
  private policies = new Map<string, EndpointPolicy>();
  private ipcache: readonly IpcacheEntry[] | null = null;
  private services: Array<[string, number[]]> = [];

  constructor(private readonly engine: PolicyMirrorEngine) {}

  /** Everything, for a mirror that has nothing yet. */
  full(): PolicyDelta {
    this.ips = [];
    this.policies = new Map();
    this.ipcache = null;
    this.services = [];
    return this.delta() ?? {};
  }

  /** What changed since the last delta or full(); null when nothing did. */
  delta(): PolicyDelta | null {
    const d: PolicyDelta = {};
    const ips = [...this.engine.endpointAddresses()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    if (!sameEntries(ips, this.ips, (x, y) => x === y)) d.endpointIps = this.ips = ips;
    const now = new Map(this.engine.endpointPolicies().map((p) => [p.endpointId, p]));
    const changed: Array<[string, EndpointPolicy | null]> = [];
    for (const [id, p] of now) if (this.policies.get(id) !== p) changed.push([id, p]);
    for (const id of this.policies.keys()) if (!now.has(id)) changed.push([id, null]);
    this.policies = now;
    if (changed.length > 0) d.policies = changed;
    const ipcache = this.engine.ipcache();
    if (ipcache !== this.ipcache) d.ipcache = [...(this.ipcache = ipcache)];
    const vips = [...new Set(this.engine.serviceList().flatMap((s) => s.clusterIPs ?? []))].sort();
    const services = vips.map((ip): [string, number[]] => [ip, this.engine.serviceBackendIdentities(ip).sort((a, b) => a - b)]).filter(([, ids]) => ids.length > 0);
    if (!sameEntries(services, this.services, (x, y) => x.length === y.length && x.every((v, i) => y[i] === v))) d.services = this.services = services;
    return Object.keys(d).length > 0 ? d : null;
  }
}

const WORLD = 2;
const MAX_MEMO = 4096;

/** The worker's copy: a DnsPolicySource (plus ipcache() as DnsJudge's change marker). */
export class PolicyMirror implements DnsPolicySource {
  private ips = new Map<string, string>();
  private readonly policies = new Map<string, EndpointPolicy>();
  private prefixes: Array<{ p: Prefix; identity: number }> = [];
  private services = new Map<string, number[]>();
  private world: object = {};
  /** identityOfIp() per address since the last delta (the transparent-leg check asks it per query). */
  private readonly memo = new Map<string, number>();

  apply(d: PolicyDelta): void {
    if (d.endpointIps) this.ips = new Map(d.endpointIps);
    for (const [id, p] of d.policies ?? []) {
      if (p) this.policies.set(id, p);
      else this.policies.delete(id);
    }
    if (d.ipcache) {
      this.prefixes = d.ipcache.flatMap((e) => {
        const p = parsePrefix(e.prefix);
        return p ? [{ p, identity: e.identity }] : [];
      });
    }
    if (d.services) this.services = new Map(d.services);
    this.memo.clear();
    this.world = {};
  }

  endpointByIp(ip: string): string | undefined {
    return this.ips.get(ip);
  }

  endpointPolicy(id: string): EndpointPolicy | undefined {
    return this.policies.get(id);
  }

  /** The longest ipcache prefix holding the address (as the datapath resolves it), else world. */
  identityOfIp(ip: string): number {
    const known = this.memo.get(ip);
    if (known !== undefined) return known;
    let best: { bits: number; id: number } | undefined;
    for (const { p, identity } of this.prefixes) {
      if ((!best || p.bits > best.bits) && prefixContains(p, ip)) best = { bits: p.bits, id: identity };
    }
    const id = best?.id ?? WORLD;
    if (this.memo.size >= MAX_MEMO) this.memo.clear();
    this.memo.set(ip, id);
    return id;
  }

  serviceBackendIdentities(ip: string): number[] {
    return this.services.get(ip) ?? [];
  }

  /** Replaced on every delta: DnsJudge's cached flows are recomputed after any change. */
  ipcache(): unknown {
    return this.world;
  }
}
