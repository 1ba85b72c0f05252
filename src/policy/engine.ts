/**
 * The policy engine: the one place verdicts are computed. It holds the
 * world (namespaces, endpoints, nodes, services, the DNS cache) and the
 * policies, and keeps one EndpointPolicy per local endpoint up to date.
 *
 * Pipeline: api documents (api/) → rules (rule.ts) → repository
 * (repository.ts, rules indexed by selector) → selector cache
 * (selector-cache.ts, one evaluation per distinct selector) → per-identity
 * policy (resolve.ts, shared by the endpoints of an identity) → per-endpoint
 * entries (named ports resolved here) → map writer and proxy translator.
 *
 * Incremental: every mutation only marks what it affects (identities whose
 * selecting rules or whose peers' selectors changed; endpoints that changed);
 * flush() recomputes exactly those and returns the EndpointPolicies whose
 * content changed. `stats` counts the work done, for tests and benchmarks.
 *
 *   const engine = new PolicyEngine();
 *   engine.upsertEndpoint({ namespace: 'default', name: 'web', labels: { app: 'web' }, ips: ['10.0.1.10'] });
 *   engine.upsertPolicy(loadedDocument);
 *   for (const ep of engine.flush()) writer.apply(ep);
 *
 * Not thread-safe and synchronous: callers serialise mutations (the agent's
 * event loop does).
 */
import { LocalIdentityAllocator } from '../identity/allocator.js';
import type { Identity, IdentityAllocator } from '../identity/allocator.js';
import { cidrIdentityLabels, formatPrefix, parsePrefix, prefixContains } from '../identity/cidr.js';
import type { Prefix } from '../identity/cidr.js';
import { LabelSet, podLabels } from '../identity/labels.js';
import type { Label } from '../identity/labels.js';
import { ReservedIdentity } from '../identity/reserved.js';
import type { ReservedName } from '../identity/reserved.js';
import { policyKey } from './api/loader.js';
import type { PolicyDocument } from './api/schema.js';
import { MemoryDnsCache } from './dns-cache.js';
import type { DnsCache } from './dns-cache.js';
import { matchDnsSelector } from './l7-match.js';
import { materialise, resolveIdentityPolicy } from './resolve.js';
import type { EnforcementMode, IdentityPolicy, NamedPort } from './resolve.js';
import { translatePolicy, usesServices } from './rule.js';
import type { ServiceInfo } from './rule.js';
import { isWildcard } from './selector.js';
import type { FqdnSelector } from './selector.js';
import type { SelectorEntry } from './selector-cache.js';
import { SelectorCache } from './selector-cache.js';
import { addTo, PolicyRepository, removeFrom } from './repository.js';
import { Proto } from './types.js';
import type { EndpointPolicy, IpcacheEntry, ProtoNumber } from './types.js';

export interface EndpointInput {
  namespace: string;
  name: string;
  labels?: Record<string, string>;
  ips?: string[];
  /** Named container ports. */
  ports?: Array<{ name: string; port: number; protocol?: 'TCP' | 'UDP' | 'SCTP' }>;
  serviceAccount?: string;
  /** Runs on this node (gets an EndpointPolicy). Default true. */
  local?: boolean;
}

export interface NodeInput {
  name: string;
  labels?: Record<string, string>;
  ips?: string[];
  /** The node this agent runs on: its identity is `host` and it gets a host EndpointPolicy. */
  local?: boolean;
}

export interface ServiceInput extends ServiceInfo {
  clusterIPs?: string[];
  ports?: Array<{ port: number; protocol?: 'TCP' | 'UDP' | 'SCTP'; targetPort?: number | string; name?: string }>;
}

export interface EngineOptions {
  allocator?: IdentityAllocator;
  dns?: DnsCache;
  /** Agent setting policyEnforcementMode (default "default"). */
  mode?: EnforcementMode;
  /**
   * Agent setting allow-localhost: "auto" (default; means "always" under Kubernetes, as Cilium) and
   * "always" let the local host reach local endpoints under default deny; "policy" requires a rule.
   */
  allowLocalhost?: 'auto' | 'always' | 'policy';
}

export interface EngineStats {
  /** Endpoints whose policy was recomputed (materialised) by flush(). */
  recomputedEndpoints: number;
  /** Identity policies recomputed by flush(). */
  recomputedIdentities: number;
}

interface EndpointState {
  id: string;
  input: EndpointInput | undefined; // undefined for the host endpoint
  identity: Identity;
  ips: string[];
  namedPorts: Map<string, NamedPort[]>;
  local: boolean;
  host: boolean;
  policy?: EndpointPolicy;
  fingerprint?: string;
}


const PROTO_OF: Record<string, ProtoNumber> = { TCP: Proto.TCP, UDP: Proto.UDP, SCTP: Proto.SCTP };

export class PolicyEngine {
  readonly allocator: IdentityAllocator;
  readonly dns: DnsCache;
  readonly stats: EngineStats = { recomputedEndpoints: 0, recomputedIdentities: 0 };
  private mode: EnforcementMode;
  private readonly allowLocalhost: boolean;
  private readonly cache: SelectorCache;

  private readonly namespaces = new Map<string, Record<string, string>>();
  private readonly endpoints = new Map<string, EndpointState>();
  private readonly nodes = new Map<string, { input: NodeInput; identity: Identity }>();
  private readonly services = new Map<string, ServiceInput>();
  /** Policy documents by key (kept to re-translate when Services change). */
  private readonly policies = new Map<string, PolicyDocument>();
  private readonly repo: PolicyRepository;

  /** Local endpoints by identity. */
  private readonly localByIdentity = new Map<number, Set<string>>();
  /** All endpoints by identity (named-port lookups for egress). */
  private readonly allByIdentity = new Map<number, Set<string>>();
  private readonly identityPolicies = new Map<number, IdentityPolicy>();
  private readonly dirtyIdentities = new Set<number>();
  private readonly dirtyEndpoints = new Set<string>();

  /** DNS-learned IPs: ip → names, and the identity held for each IP. */
  private readonly ipNames = new Map<string, Set<string>>();
  private readonly dnsIdentity = new Map<string, number>();
  private readonly nameIps = new Map<string, Set<string>>();
  private hostEndpointId: string | undefined;
  /** Address → endpoint id / node name. */
  private readonly endpointIps = new Map<string, string>();
  private readonly nodeIps = new Map<string, string>();
  /** Addresses carrying a reserved identity (kube-apiserver, health, ingress, …). */
  private readonly reservedIps = new Map<string, number>();

  constructor(opts: EngineOptions = {}) {
    this.allocator = opts.allocator ?? new LocalIdentityAllocator();
    this.dns = opts.dns ?? new MemoryDnsCache();
    this.mode = opts.mode ?? 'default';
    this.allowLocalhost = (opts.allowLocalhost ?? 'auto') !== 'policy';
    this.cache = new SelectorCache({
      identities: () => this.allocator.all(),
      fqdnMatches: (sel, ident) => this.fqdnMatches(sel, ident),
    });
    this.allocator.subscribe(({ kind, identity }) => {
      const changed = kind === 'added' ? this.cache.identityAdded(identity) : this.cache.identityRemoved(identity);
      this.selectorsChanged(changed);
      if (kind === 'removed') this.identityPolicies.delete(identity.id);
    });
    this.repo = new PolicyRepository(this.cache, this.allocator);
    this.dns.subscribe((names) => this.dnsChanged(names));
    for (const name of this.dns.names()) this.dnsChanged([name]);
  }

  get selectorCache(): SelectorCache {
    return this.cache;
  }

  // ---- configuration -------------------------------------------------------------------------

  setEnforcementMode(mode: EnforcementMode): void {
    if (mode === this.mode) return;
    this.mode = mode;
    for (const id of this.localByIdentity.keys()) this.dirtyIdentities.add(id);
  }

  get enforcementMode(): EnforcementMode {
    return this.mode;
  }

  // ---- world ---------------------------------------------------------------------------------

  upsertNamespace(name: string, labels: Record<string, string> = {}): void {
    this.namespaces.set(name, { 'kubernetes.io/metadata.name': name, ...labels });
    for (const ep of [...this.endpoints.values()]) {
      if (ep.input && ep.input.namespace === name) this.upsertEndpoint(ep.input);
    }
  }

  upsertEndpoint(input: EndpointInput): void {
    const id = `${input.namespace}/${input.name}`;
    const nsLabels = this.namespaces.get(input.namespace) ?? { 'kubernetes.io/metadata.name': input.namespace };
    const labelOpts: Parameters<typeof podLabels>[0] = { namespace: input.namespace, namespaceLabels: nsLabels };
    if (input.labels) labelOpts.labels = input.labels;
    if (input.serviceAccount !== undefined) labelOpts.serviceAccount = input.serviceAccount;
    const identity = this.allocator.allocate(podLabels(labelOpts));
    const prev = this.endpoints.get(id);
    const namedPorts = new Map<string, NamedPort[]>();
    for (const p of input.ports ?? []) {
      const list = namedPorts.get(p.name) ?? [];
      list.push({ port: p.port, protocol: PROTO_OF[p.protocol ?? 'TCP'] ?? Proto.TCP });
      namedPorts.set(p.name, list);
    }
    const state: EndpointState = {
      id,
      input,
      identity,
      ips: [...(input.ips ?? [])],
      namedPorts,
      local: input.local ?? true,
      host: false,
    };
    if (prev) {
      state.policy = prev.policy;
      state.fingerprint = prev.fingerprint;
      this.unindex(prev);
    }
    this.endpoints.set(id, state);
    this.index(state);
    if (prev) this.allocator.release(prev.identity.id);
    this.dirtyEndpoints.add(id);
    const portsChanged = !prev || JSON.stringify(prev.input?.ports ?? []) !== JSON.stringify(input.ports ?? []) || prev.identity.id !== identity.id;
    if (portsChanged) this.namedPortsChanged(identity.id, prev?.identity.id);
  }

  removeEndpoint(id: string): void {
    const prev = this.endpoints.get(id);
    if (!prev || prev.host) return;
    this.unindex(prev);
    this.endpoints.delete(id);
    this.dirtyEndpoints.delete(id);
    if (prev.namedPorts.size > 0) this.namedPortsChanged(prev.identity.id, undefined);
    this.allocator.release(prev.identity.id);
  }

  upsertNode(input: NodeInput): void {
    const k8s = Object.entries(input.labels ?? {}).map(([key, value]): Label => ({ source: 'k8s', key, value }));
    const prev = this.nodes.get(input.name);
    let identity: Identity;
    if (input.local) {
      const same = prev?.input.local === true && JSON.stringify(prev.input.labels ?? {}) === JSON.stringify(input.labels ?? {});
      // Relabelling `host` re-evaluates every selector against it: only when the labels really changed.
      identity = same && prev ? prev.identity : this.allocator.setReservedLabels('host', k8s);
      const id = `node:${input.name}`;
      const hostState: EndpointState = { id, input: undefined, identity, ips: [...(input.ips ?? [])], namedPorts: new Map(), local: true, host: true };
      const had = this.endpoints.get(id);
      if (had) {
        hostState.policy = had.policy;
        hostState.fingerprint = had.fingerprint;
        this.unindex(had);
      }
      this.endpoints.set(id, hostState);
      this.index(hostState);
      this.hostEndpointId = id;
      this.dirtyEndpoints.add(id);
      this.dirtyIdentities.add(identity.id);
    } else {
      identity = this.allocator.allocate(LabelSet.from([{ source: 'reserved', key: 'remote-node', value: '' }, ...k8s]));
    }
    this.nodes.set(input.name, { input, identity });
    for (const ip of prev?.input.ips ?? []) if (this.nodeIps.get(ip) === input.name) this.nodeIps.delete(ip);
    for (const ip of input.ips ?? []) this.nodeIps.set(ip, input.name);
    if (prev && !prev.input.local) this.allocator.release(prev.identity.id);
  }

  removeNode(name: string): void {
    const prev = this.nodes.get(name);
    if (!prev) return;
    this.nodes.delete(name);
    for (const ip of prev.input.ips ?? []) if (this.nodeIps.get(ip) === name) this.nodeIps.delete(ip);
    if (prev.input.local) {
      const id = `node:${name}`;
      const had = this.endpoints.get(id);
      if (had) this.unindex(had);
      this.endpoints.delete(id);
      this.dirtyEndpoints.delete(id);
      if (this.hostEndpointId === id) this.hostEndpointId = undefined;
      this.allocator.setReservedLabels('host', []);
    } else {
      this.allocator.release(prev.identity.id);
    }
  }

  /**
   * Addresses of a reserved identity, e.g. the kube-apiserver endpoints, the health endpoints or the
   * ingress proxy's address. Replaces the previous list for that name.
   */
  setReservedAddresses(name: ReservedName, ips: readonly string[]): void {
    const id = ReservedIdentity[name];
    for (const [ip, owner] of [...this.reservedIps]) if (owner === id) this.reservedIps.delete(ip);
    for (const ip of ips) this.reservedIps.set(ip, id);
  }

  upsertService(svc: ServiceInput): void {
    this.services.set(`${svc.namespace}/${svc.name}`, svc);
    for (const doc of [...this.policies.values()]) if (usesServices(doc)) this.upsertPolicy(doc);
  }

  removeService(namespace: string, name: string): void {
    if (!this.services.delete(`${namespace}/${name}`)) return;
    for (const doc of [...this.policies.values()]) if (usesServices(doc)) this.upsertPolicy(doc);
  }

  serviceList(): ServiceInput[] {
    return [...this.services.values()];
  }

  // ---- policies ------------------------------------------------------------------------------

  /** Adds or replaces a validated policy document (see api/loader.ts). */
  upsertPolicy(doc: PolicyDocument): void {
    const key = policyKey(doc);
    this.policies.set(key, doc);
    const rules = translatePolicy(doc, { services: () => this.services.values() });
    for (const id of this.repo.replace(key, rules)) this.dirtyIdentities.add(id);
  }

  removePolicy(key: string): boolean {
    if (!this.policies.delete(key)) return false;
    for (const id of this.repo.replace(key, [])) this.dirtyIdentities.add(id);
    return true;
  }

  policyKeys(): string[] {
    return [...this.policies.keys()];
  }

  // ---- change propagation --------------------------------------------------------------------

  private selectorsChanged(changed: SelectorEntry[]): void {
    this.repo.dependentsOf(changed, this.dirtyIdentities);
  }

  private namedPortsChanged(identity: number, prevIdentity: number | undefined): void {
    this.repo.namedPortDependents(prevIdentity === undefined ? [identity] : [identity, prevIdentity], this.dirtyIdentities);
  }

  private dnsChanged(names: string[]): void {
    for (const name of names) {
      const ips = new Set(this.dns.lookup(name));
      const before = this.nameIps.get(name) ?? new Set<string>();
      if (ips.size > 0) this.nameIps.set(name, ips);
      else this.nameIps.delete(name);
      for (const ip of before) {
        const set = this.ipNames.get(ip);
        if (set && !ips.has(ip)) {
          set.delete(name);
          if (set.size === 0) {
            this.ipNames.delete(ip);
            const id = this.dnsIdentity.get(ip);
            this.dnsIdentity.delete(ip);
            if (id !== undefined) this.allocator.release(id);
          }
        }
      }
      for (const ip of ips) {
        let set = this.ipNames.get(ip);
        if (!set) {
          set = new Set();
          this.ipNames.set(ip, set);
        }
        set.add(name);
        if (!this.dnsIdentity.has(ip)) {
          const p = parsePrefix(ip);
          if (p) this.dnsIdentity.set(ip, this.allocator.allocate(LabelSet.from(cidrIdentityLabels(p))).id);
        }
      }
    }
    const changed = this.cache.refreshFqdn((sel) => names.some((n) => matchDnsSelector(sel, n)));
    this.selectorsChanged(changed);
  }

  private fqdnMatches(sel: FqdnSelector, identity: Identity): boolean {
    if (identity.scope !== 'local') return false;
    const ip = hostAddress(identity);
    if (ip === undefined) return false;
    const names = this.ipNames.get(ip);
    if (!names) return false;
    for (const n of names) if (matchDnsSelector(sel, n)) return true;
    return false;
  }

  private index(s: EndpointState): void {
    if (!s.host) for (const ip of s.ips) this.endpointIps.set(ip, s.id);
    addTo(this.allByIdentity, s.identity.id, s.id);
    if (s.local) addTo(this.localByIdentity, s.identity.id, s.id);
  }

  private unindex(s: EndpointState): void {
    for (const ip of s.ips) if (this.endpointIps.get(ip) === s.id) this.endpointIps.delete(ip);
    removeFrom(this.allByIdentity, s.identity.id, s.id);
    removeFrom(this.localByIdentity, s.identity.id, s.id);
  }

  // ---- computation ---------------------------------------------------------------------------

  private namedPortsOf(identity: number, name: string): NamedPort[] {
    const ids = identity === 0 ? [...this.allByIdentity.values()].flatMap((s) => [...s]) : [...(this.allByIdentity.get(identity) ?? [])];
    const out = new Map<string, NamedPort>();
    for (const epId of ids) {
      for (const np of this.endpoints.get(epId)?.namedPorts.get(name) ?? []) out.set(`${np.protocol}/${np.port}`, np);
    }
    return [...out.values()];
  }

  private identityPolicy(identity: number): IdentityPolicy {
    let p = this.identityPolicies.get(identity);
    if (!p) {
      this.stats.recomputedIdentities++;
      p = resolveIdentityPolicy(identity, this.repo.rulesSelecting(identity), this.mode, {
        selected: (sel) => {
          if (isWildcard(sel)) return 'any';
          return this.cache.get(sel.key)?.ids ?? new Set<number>();
        },
        namedPortsOf: (id, name) => this.namedPortsOf(id, name),
      }, { host: identity === ReservedIdentity.host, allowLocalhost: this.allowLocalhost });
      this.identityPolicies.set(identity, p);
    }
    return p;
  }

  /**
   * Recomputes what the mutations since the last flush affect. Returns the
   * endpoint policies whose content changed (revision bumped).
   */
  flush(): EndpointPolicy[] {
    for (const id of this.dirtyIdentities) {
      this.identityPolicies.delete(id);
      for (const ep of this.localByIdentity.get(id) ?? []) this.dirtyEndpoints.add(ep);
    }
    this.dirtyIdentities.clear();
    const changed: EndpointPolicy[] = [];
    for (const epId of this.dirtyEndpoints) {
      const ep = this.endpoints.get(epId);
      if (!ep || !ep.local) continue;
      this.stats.recomputedEndpoints++;
      const ip = this.identityPolicy(ep.identity.id);
      const ingress = materialise(ip.ingress, ep.namedPorts);
      const egress = materialise(ip.egress, ep.namedPorts);
      const fingerprint =
        ingress === ip.ingress.entries && egress === ip.egress.entries
          ? `${ep.identity.id}:${ip.fingerprint}`
          : `${ep.identity.id}:${JSON.stringify([ip.ingress.defaultDeny, ingress, ip.egress.defaultDeny, egress])}`;
      if (ep.policy && ep.fingerprint === fingerprint) continue;
      ep.fingerprint = fingerprint;
      ep.policy = {
        endpointId: ep.id,
        identity: ep.identity.id,
        ingress: { defaultDeny: ip.ingress.defaultDeny, entries: ingress, enforcedBy: ip.ingress.enforcedBy },
        egress: { defaultDeny: ip.egress.defaultDeny, entries: egress, enforcedBy: ip.egress.enforcedBy },
        revision: (ep.policy?.revision ?? 0) + 1,
      };
      changed.push(ep.policy);
    }
    this.dirtyEndpoints.clear();
    return changed;
  }

  // ---- queries -------------------------------------------------------------------------------

  /** Current policy of a local endpoint ("namespace/name" or "node:NAME"); flush() first. */
  endpointPolicy(id: string): EndpointPolicy | undefined {
    return this.endpoints.get(id)?.policy;
  }

  endpointPolicies(): EndpointPolicy[] {
    return [...this.endpoints.values()].flatMap((e) => (e.local && e.policy ? [e.policy] : []));
  }

  endpointIdentity(id: string): number | undefined {
    return this.endpoints.get(id)?.identity.id;
  }

  hasEndpoint(id: string): boolean {
    return this.endpoints.has(id);
  }

  isLocalEndpoint(id: string): boolean {
    return this.endpoints.get(id)?.local ?? false;
  }

  endpointByIp(ip: string): string | undefined {
    return this.endpointIps.get(ip);
  }

  nodeIdentity(name: string): { identity: number; local: boolean } | undefined {
    const n = this.nodes.get(name);
    return n ? { identity: n.identity.id, local: n.input.local ?? false } : undefined;
  }

  hostEndpoint(): string | undefined {
    return this.hostEndpointId;
  }

  nodeByIp(ip: string): string | undefined {
    return this.nodeIps.get(ip);
  }

  /** Identity the datapath would see for an address: endpoint, node, longest CIDR identity, else world. */
  identityOfIp(ip: string): number {
    const ep = this.endpointByIp(ip);
    if (ep) return this.endpoints.get(ep)?.identity.id ?? ReservedIdentity.world;
    const node = this.nodeByIp(ip);
    if (node) return this.nodes.get(node)?.identity.id ?? ReservedIdentity.world;
    const reserved = this.reservedIps.get(ip);
    if (reserved !== undefined) return reserved;
    let best: { bits: number; id: number } | undefined;
    for (const ident of this.allocator.all()) {
      if (ident.scope !== 'local') continue;
      const p = identityPrefix(ident);
      if (p && prefixContains(p, ip) && (!best || p.bits > best.bits)) best = { bits: p.bits, id: ident.id };
    }
    return best?.id ?? ReservedIdentity.world;
  }

  /** Prefix → identity for the datapath's ipcache: endpoint and node addresses, CIDR and FQDN identities. */
  ipcache(): IpcacheEntry[] {
    const out = new Map<string, number>();
    for (const ident of this.allocator.all()) {
      if (ident.scope !== 'local') continue;
      const p = identityPrefix(ident);
      if (p) out.set(formatPrefix(p), ident.id);
    }
    for (const [ip, id] of this.reservedIps) out.set(hostPrefix(ip), id);
    for (const n of this.nodes.values()) for (const ip of n.input.ips ?? []) out.set(hostPrefix(ip), n.identity.id);
    for (const ep of this.endpoints.values()) for (const ip of ep.ips) out.set(hostPrefix(ip), ep.identity.id);
    return [...out].map(([prefix, identity]) => ({ prefix, identity })).sort((a, b) => a.prefix.localeCompare(b.prefix));
  }
}

function hostPrefix(ip: string): string {
  const p = parsePrefix(ip);
  return p ? formatPrefix(p) : ip;
}

/** The prefix a CIDR identity stands for: its longest `cidr:` label. */
export function identityPrefix(ident: Identity): Prefix | undefined {
  let best: Prefix | undefined;
  for (const l of ident.labels.labels) {
    if (l.source !== 'cidr') continue;
    const p = parsePrefix(l.key);
    if (p && (!best || p.bits > best.bits)) best = p;
  }
  return best;
}

function hostAddress(ident: Identity): string | undefined {
  const p = identityPrefix(ident);
  if (!p) return undefined;
  return (p.family === 4 && p.bits === 32) || (p.family === 6 && p.bits === 128) ? p.addr : undefined;
}
