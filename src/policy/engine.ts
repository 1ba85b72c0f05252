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
 * Mutations that may allocate or release identities (endpoints, nodes,
 * namespaces, services, policies) are asynchronous, because the identity
 * allocator is (a cluster-wide allocator asks the API server). The engine
 * runs them one at a time in call order, and each applies all of its change
 * or none: a mutation whose allocation is rejected leaves the previous state,
 * so what flush() computes is always a whole version of the world. flush()
 * and every query are synchronous and see only completed mutations.
 *
 *   await engine.upsertEndpoint({ namespace: 'default', name: 'web', labels: { app: 'web' }, ips: ['10.0.1.10'] });
 *   await engine.upsertPolicy(loadedDocument);
 *   for (const ep of engine.flush()) writer.apply(ep);
 */
import { LocalIdentityAllocator } from '../identity/allocator.js';
import type { Identity, IdentityAllocator } from '../identity/allocator.js';
import { cidrIdentityLabels, formatPrefix, parsePrefix, prefixContains } from '../identity/cidr.js';
import type { Prefix } from '../identity/cidr.js';
import { LabelSet, podLabels } from '../identity/labels.js';
import type { Label } from '../identity/labels.js';
import { ReservedIdentity, reservedLabel } from '../identity/reserved.js';
import type { ReservedName } from '../identity/reserved.js';
import { policyKey } from './api/loader.js';
import type { PolicyDocument } from './api/schema.js';
import { MemoryDnsCache } from './dns-cache.js';
import type { DnsCache } from './dns-cache.js';
import { matchDnsSelector } from './l7-match.js';
import { materialise, resolveIdentityPolicy } from './resolve.js';
import type { EnforcementMode, IdentityPolicy, NamedPort } from './resolve.js';
import { translatePolicy, usesCidrGroups, usesServices } from './rule.js';
import type { CidrGroupInfo, Rule, ServiceInfo } from './rule.js';
import { isWildcard } from './selector.js';
import type { FqdnSelector } from './selector.js';
import type { SelectorEntry } from './selector-cache.js';
import { SelectorCache } from './selector-cache.js';
import { addTo, PolicyRepository, removeFrom } from './repository.js';
import type { AllocatedRule } from './repository.js';
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
  /**
   * The complete security labels, when they come ready-made (another node's MeshdEndpoint object)
   * instead of being derived from the pod's labels, namespace and service account.
   */
  securityLabels?: LabelSet;
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
  /**
   * Receives the failure of an update the engine starts by itself (a DNS cache change whose addresses
   * got no identity; the previous FQDN state stays). Without it, the next settled() rejects with it.
   */
  onError?: (err: unknown) => void;
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

/** A node as the engine holds it: `identity` is `host` for the local node, else its `remote-node` identity. */
interface NodeState {
  input: NodeInput;
  identity: Identity;
  /** A remote node's identity with `kube-apiserver` added, for its addresses that are the API server's. */
  apiServer?: Identity;
}

/** A node's Kubernetes labels as identity labels. */
function nodeLabels(input: NodeInput): Label[] {
  return Object.entries(input.labels ?? {}).map(([key, value]): Label => ({ source: 'k8s', key, value }));
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
  private readonly nodes = new Map<string, NodeState>();
  private readonly services = new Map<string, ServiceInput>();
  /** CiliumCIDRGroups by name (policies' cidrGroupRef/cidrGroupSelector). */
  private cidrGroups: ReadonlyMap<string, CidrGroupInfo> = new Map();
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
  /** The local host's own addresses (normalised), which carry the `host` identity. */
  private readonly hostIps = new Set<string>();
  /** The API server's addresses (normalised), which carry `kube-apiserver` (setKubeApiServerAddresses). */
  private apiServerIps: ReadonlySet<string> = new Set();
  /** Mutations run one after another on this chain (see mutate()). */
  private tail: Promise<void> = Promise.resolve();
  private readonly onError: ((err: unknown) => void) | undefined;
  private backgroundError: unknown;
  private readonly identityListeners = new Set<() => void>();
  /**
   * ipcache() is asked for on every reconcile, most of which change no address (a policy edit, a
   * status write): its result is kept until something it is made of changes (touchIpcache()).
   */
  private ipcacheMemo: readonly IpcacheEntry[] | null = null;

  constructor(opts: EngineOptions = {}) {
    this.allocator = opts.allocator ?? new LocalIdentityAllocator();
    this.dns = opts.dns ?? new MemoryDnsCache();
    this.mode = opts.mode ?? 'default';
    this.allowLocalhost = (opts.allowLocalhost ?? 'auto') !== 'policy';
    this.onError = opts.onError;
    this.cache = new SelectorCache({
      identities: () => this.allocator.all(),
      fqdnMatches: (sel, ident) => this.fqdnMatches(sel, ident),
    });
    this.allocator.subscribe(({ kind, identity }) => {
      this.touchIpcache();
      const changed = kind === 'added' ? this.cache.identityAdded(identity) : this.cache.identityRemoved(identity);
      this.selectorsChanged(changed);
      if (kind === 'removed') this.identityPolicies.delete(identity.id);
      // The allocator also learns identities outside any mutation (a cluster allocator's watch sees
      // another node's): whoever flushes must hear of it, or the change waits for an unrelated mutation.
      if (changed.length > 0) for (const l of this.identityListeners) l();
    });
    this.repo = new PolicyRepository(this.cache, this.allocator);
    this.dns.subscribe((names) => this.dnsChanged(names));
    const known = [...this.dns.names()];
    if (known.length > 0) this.dnsChanged(known);
  }

  get selectorCache(): SelectorCache {
    return this.cache;
  }

  /**
   * Calls `fn` (synchronously, inside the allocator's notification) whenever an identity appearing or
   * going changed what some selector selects, so the caller can flush soon; returns the unsubscribe.
   */
  onIdentitiesChanged(fn: () => void): () => void {
    this.identityListeners.add(fn);
    return () => this.identityListeners.delete(fn);
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

  /** Sets a namespace's labels; its endpoints are relabelled (new identities) in the same step. */
  upsertNamespace(name: string, labels: Record<string, string> = {}): Promise<void> {
    return this.mutate(async () => {
      const nsLabels = { 'kubernetes.io/metadata.name': name, ...labels };
      const inputs = [...this.endpoints.values()].flatMap((ep) => (ep.input && ep.input.namespace === name ? [ep.input] : []));
      const allocated = await this.allocateEach(inputs, (input) => endpointLabels(input, nsLabels));
      this.namespaces.set(name, nsLabels);
      for (const [input, identity] of allocated) this.commitEndpoint(input, identity);
    });
  }

  /** Adds or replaces an endpoint. On rejection (no identity) the previous state stays. */
  upsertEndpoint(input: EndpointInput): Promise<void> {
    return this.mutate(async () => {
      const identity = await this.allocator.allocate(endpointLabels(input, this.namespaceLabels(input.namespace)));
      this.commitEndpoint(input, identity);
    });
  }

  removeEndpoint(id: string): Promise<void> {
    return this.mutate(async () => {
      const prev = this.endpoints.get(id);
      if (!prev || prev.host) return;
      this.unindex(prev);
      this.endpoints.delete(id);
      this.touchIpcache();
      this.dirtyEndpoints.delete(id);
      if (prev.namedPorts.size > 0) this.namedPortsChanged(prev.identity.id, undefined);
      this.allocator.release(prev.identity.id);
    });
  }

  /**
   * Adds or replaces a node. The local node's identity is `host` (relabelled with the node's labels);
   * a remote node gets a `remote-node` identity carrying its labels, and its addresses that are the API
   * server's (setKubeApiServerAddresses) one with `kube-apiserver` added. On rejection the previous
   * state stays.
   */
  upsertNode(input: NodeInput): Promise<void> {
    return this.mutate(async () => {
      const prev = this.nodes.get(input.name);
      const allocated = input.local ? undefined : await this.allocateRemoteNode(input, this.apiServerIps);
      // Nothing below awaits: the node's state changes in one step.
      this.nodes.set(input.name, { input, identity: allocated?.identity ?? this.hostIdentity(), ...(allocated?.apiServer ? { apiServer: allocated.apiServer } : {}) });
      this.touchIpcache();
      for (const ip of prev?.input.ips ?? []) if (this.nodeIps.get(ip) === input.name) this.nodeIps.delete(ip);
      for (const ip of input.ips ?? []) this.nodeIps.set(ip, input.name);
      if (input.local || prev?.input.local) this.relabelHost();
      if (prev && !prev.input.local) this.releaseNode(prev);
    });
  }

  /** Removes a node. Removing the local node keeps the host addresses learned from the host itself. */
  removeNode(name: string): Promise<void> {
    return this.mutate(async () => {
      const prev = this.nodes.get(name);
      if (!prev) return;
      this.nodes.delete(name);
      this.touchIpcache();
      for (const ip of prev.input.ips ?? []) if (this.nodeIps.get(ip) === name) this.nodeIps.delete(ip);
      if (prev.input.local) {
        const id = `node:${name}`;
        const had = this.endpoints.get(id);
        if (had) this.unindex(had);
        this.endpoints.delete(id);
        this.dirtyEndpoints.delete(id);
        if (this.hostEndpointId === id) this.hostEndpointId = undefined;
        this.relabelHost();
      } else {
        this.releaseNode(prev);
      }
    });
  }

  /**
   * The API server's addresses (the `kubernetes` Service's endpoints in `default`). As in Cilium, an
   * address of no node carries the reserved `kube-apiserver` identity; one of a remote node carries that
   * node's labels with both `remote-node` and `kube-apiserver`; when one is the local host's, `host`
   * gets the `kube-apiserver` label. Replaces the previous list; on rejection (no identity for a node)
   * the previous list stays.
   */
  setKubeApiServerAddresses(ips: readonly string[]): Promise<void> {
    return this.mutate(async () => {
      const next = new Set(ips.map((ip) => parsePrefix(ip)?.addr ?? ip));
      const fresh = new Map<string, Identity | undefined>();
      try {
        for (const [name, n] of this.nodes) if (!n.input.local) fresh.set(name, (await this.allocateRemoteNode(n.input, next, false))?.apiServer);
      } catch (e) {
        for (const ident of fresh.values()) if (ident) this.allocator.release(ident.id);
        throw e;
      }
      // Nothing below awaits.
      this.apiServerIps = next;
      this.touchIpcache();
      for (const [name, apiServer] of fresh) {
        const n = this.nodes.get(name);
        if (!n) continue;
        if (n.apiServer) this.allocator.release(n.apiServer.id);
        if (apiServer) n.apiServer = apiServer;
        else delete n.apiServer;
      }
      this.relabelHost();
    });
  }

  /** The addresses set by setKubeApiServerAddresses (normalised), sorted. */
  kubeApiServerAddresses(): string[] {
    return [...this.apiServerIps].sort();
  }

  /**
   * A remote node's identities: `remote-node` with its labels and, when one of its addresses is in
   * `apiServerIps`, the same with `kube-apiserver` (`base: false` allocates only that one). A rejected
   * allocation holds no reference.
   */
  private async allocateRemoteNode(input: NodeInput, apiServerIps: ReadonlySet<string>, base = true): Promise<{ identity?: Identity; apiServer?: Identity }> {
    const k8s = nodeLabels(input);
    const identity = base ? await this.allocator.allocate(LabelSet.from([reservedLabel('remote-node'), ...k8s])) : undefined;
    if (!(input.ips ?? []).some((ip) => apiServerIps.has(parsePrefix(ip)?.addr ?? ip))) return identity ? { identity } : {};
    try {
      const apiServer = await this.allocator.allocate(LabelSet.from([reservedLabel('remote-node'), reservedLabel('kube-apiserver'), ...k8s]));
      return identity ? { identity, apiServer } : { apiServer };
    } catch (e) {
      if (identity) this.allocator.release(identity.id);
      throw e;
    }
  }

  private releaseNode(n: NodeState): void {
    this.allocator.release(n.identity.id);
    if (n.apiServer) this.allocator.release(n.apiServer.id);
  }

  /** The identity `host` has now. */
  private hostIdentity(): Identity {
    const ident = this.allocator.get(ReservedIdentity.host);
    if (!ident) throw new Error('the allocator lost the host identity');
    return ident;
  }

  /**
   * Sets `host`'s labels from what they are made of: the local node's labels, and `kube-apiserver` when
   * one of the API server's addresses is the host's (its own or its Node's). Relabelling re-evaluates every
   * selector against `host`: only when the labels really change. Keeps the local node's host endpoint on
   * the current identity.
   */
  private relabelHost(): void {
    const local = [...this.nodes.values()].find((n) => n.input.local);
    const k8s = local ? nodeLabels(local.input) : [];
    const own = [...this.hostIps, ...(local?.input.ips ?? []).map((ip) => parsePrefix(ip)?.addr ?? ip)];
    const labels = own.some((ip) => this.apiServerIps.has(ip)) ? [...k8s, reservedLabel('kube-apiserver')] : k8s;
    const want = LabelSet.from([reservedLabel('host'), ...labels]);
    let identity = this.hostIdentity();
    if (identity.labels.key !== want.key) identity = this.allocator.setReservedLabels('host', labels);
    if (!local) return;
    local.identity = identity;
    const id = `node:${local.input.name}`;
    const ep = this.endpoints.get(id);
    if (!ep || ep.identity !== identity || JSON.stringify(ep.ips) !== JSON.stringify(local.input.ips ?? [])) this.commitHostEndpoint(id, identity, local.input.ips ?? []);
  }

  /**
   * The addresses the local host owns, as its network stack reports them (see agent/host-addresses.ts).
   * They carry the `host` identity whether or not a Node object names the local node; the local Node's
   * own addresses are added to them, and removing that Node leaves these in place. Replaces the
   * previous list. Allocates nothing, so it applies at once.
   */
  setHostAddresses(ips: readonly string[]): void {
    this.touchIpcache();
    this.hostIps.clear();
    for (const ip of ips) {
      const p = parsePrefix(ip);
      if (p) this.hostIps.add(p.addr);
    }
    // An API server address may have become (or stopped being) the host's own.
    this.relabelHost();
  }

  /** The addresses set by setHostAddresses (normalised), sorted. */
  hostAddresses(): string[] {
    return [...this.hostIps].sort();
  }

  /** Whether an address is one of the host's own (setHostAddresses). */
  isHostAddress(ip: string): boolean {
    return this.hostIps.has(parsePrefix(ip)?.addr ?? ip);
  }

  /**
   * Addresses of a reserved identity, e.g. the kube-apiserver endpoints, the health endpoints or the
   * ingress proxy's address. Replaces the previous list for that name.
   */
  setReservedAddresses(name: ReservedName, ips: readonly string[]): void {
    const id = ReservedIdentity[name];
    this.touchIpcache();
    for (const [ip, owner] of [...this.reservedIps]) if (owner === id) this.reservedIps.delete(ip);
    for (const ip of ips) this.reservedIps.set(ip, id);
  }

  /** Adds or replaces a Service; policies selecting Services are re-translated in the same step. */
  upsertService(svc: ServiceInput): Promise<void> {
    return this.mutate(async () => {
      const services = new Map(this.services).set(`${svc.namespace}/${svc.name}`, svc);
      const commit = await this.preparePolicies([...this.policies.values()].filter(usesServices), services);
      this.services.set(`${svc.namespace}/${svc.name}`, svc);
      commit();
    });
  }

  removeService(namespace: string, name: string): Promise<void> {
    return this.mutate(async () => {
      const key = `${namespace}/${name}`;
      if (!this.services.has(key)) return;
      const services = new Map(this.services);
      services.delete(key);
      const commit = await this.preparePolicies([...this.policies.values()].filter(usesServices), services);
      this.services.delete(key);
      commit();
    });
  }

  serviceList(): ServiceInput[] {
    return [...this.services.values()];
  }

  /**
   * The identities of the endpoints a selector-based Service selects, for a cluster IP of it: what a
   * query to the VIP reaches (the DNS proxy judges such a query as the datapath did, by the backend).
   */
  serviceBackendIdentities(ip: string): number[] {
    const out = new Set<number>();
    for (const svc of this.services.values()) {
      const sel = Object.entries(svc.selector ?? {});
      if (!svc.clusterIPs?.includes(ip) || sel.length === 0) continue;
      for (const ep of this.endpoints.values()) {
        if (ep.input?.namespace === svc.namespace && sel.every(([k, v]) => ep.input?.labels?.[k] === v)) out.add(ep.identity.id);
      }
    }
    return [...out];
  }

  /**
   * Adds or replaces a CiliumCIDRGroup; the policies naming groups are re-translated in the same step
   * (their CIDRs behave as if written inline). On rejection (no CIDR identity) the previous state stays.
   */
  upsertCidrGroup(group: CidrGroupInfo): Promise<void> {
    return this.mutate(async () => {
      const groups = new Map(this.cidrGroups).set(group.name, { name: group.name, labels: { ...group.labels }, cidrs: [...group.cidrs] });
      const commit = await this.preparePolicies([...this.policies.values()].filter(usesCidrGroups), this.services, groups);
      this.cidrGroups = groups;
      commit();
    });
  }

  removeCidrGroup(name: string): Promise<void> {
    return this.mutate(async () => {
      if (!this.cidrGroups.has(name)) return;
      const groups = new Map(this.cidrGroups);
      groups.delete(name);
      const commit = await this.preparePolicies([...this.policies.values()].filter(usesCidrGroups), this.services, groups);
      this.cidrGroups = groups;
      commit();
    });
  }

  // ---- policies ------------------------------------------------------------------------------

  /**
   * Adds or replaces a validated policy document (see api/loader.ts). On rejection (a CIDR identity
   * could not be allocated) the previous version of the policy stays in force.
   */
  upsertPolicy(doc: PolicyDocument): Promise<void> {
    return this.mutate(async () => (await this.preparePolicies([doc], this.services))());
  }

  removePolicy(key: string): Promise<boolean> {
    return this.mutate(async () => {
      if (!this.policies.delete(key)) return false;
      for (const id of this.repo.replace(key, [])) this.dirtyIdentities.add(id);
      this.dropUnselected();
      return true;
    });
  }

  policyKeys(): string[] {
    return [...this.policies.keys()];
  }

  /**
   * Resolves once every mutation started so far (including those the DNS cache triggers) has been
   * applied. Rejects with the first failure of a DNS-triggered update when no `onError` was given.
   */
  async settled(): Promise<void> {
    await this.tail;
    const e = this.backgroundError;
    this.backgroundError = undefined;
    if (e !== undefined) throw e;
  }

  // ---- mutation steps ------------------------------------------------------------------------

  /**
   * Runs mutations one at a time, in call order. A mutation awaits only before it changes anything
   * (allocation), then applies its changes without awaiting, so a rejected allocation leaves the
   * previous state and a caller never sees half of a change.
   */
  private mutate<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn);
    this.tail = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }

  /** Allocates one identity per item, in order; all or none (those taken are released on failure). */
  private async allocateEach<T>(items: readonly T[], labels: (item: T) => LabelSet): Promise<Array<[T, Identity]>> {
    const out: Array<[T, Identity]> = [];
    try {
      for (const item of items) out.push([item, await this.allocator.allocate(labels(item))]);
    } catch (e) {
      for (const [, ident] of out) this.allocator.release(ident.id);
      throw e;
    }
    return out;
  }

  private namespaceLabels(namespace: string): Record<string, string> {
    return this.namespaces.get(namespace) ?? { 'kubernetes.io/metadata.name': namespace };
  }

  /**
   * Translates the documents and allocates what their rules need; resolves to the (synchronous) step
   * that installs them, which the caller runs together with its own changes.
   */
  private async preparePolicies(docs: readonly PolicyDocument[], services: ReadonlyMap<string, ServiceInput>, groups = this.cidrGroups): Promise<() => void> {
    const ctx = { services: () => services.values(), cidrGroups: () => groups };
    const translated = docs.map((doc) => ({ key: policyKey(doc), doc, rules: translatePolicy(doc, ctx) }));
    const allocated: AllocatedRule[][] = [];
    let dns: () => void;
    try {
      for (const t of translated) allocated.push(await this.repo.allocate(t.rules));
      dns = await this.prepareDns(this.newlySelected(translated.flatMap((t) => t.rules)), () => true);
    } catch (e) {
      for (const a of allocated) this.repo.discard(a);
      throw e;
    }
    return () => {
      translated.forEach((t, i) => {
        this.policies.set(t.key, t.doc);
        for (const id of this.repo.replace(t.key, allocated[i] ?? [])) this.dirtyIdentities.add(id);
      });
      // Names the new selectors match get their identities; names no selector matches any more give theirs back.
      dns();
      this.dropUnselected();
    };
  }

  private commitEndpoint(input: EndpointInput, identity: Identity): void {
    const id = `${input.namespace}/${input.name}`;
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
    this.install(state);
    if (prev) this.allocator.release(prev.identity.id);
    const portsChanged = !prev || JSON.stringify(prev.input?.ports ?? []) !== JSON.stringify(input.ports ?? []) || prev.identity.id !== identity.id;
    if (portsChanged) this.namedPortsChanged(identity.id, prev?.identity.id);
  }

  private commitHostEndpoint(id: string, identity: Identity, ips: readonly string[]): void {
    this.install({ id, input: undefined, identity, ips: [...ips], namedPorts: new Map(), local: true, host: true });
    this.hostEndpointId = id;
    this.dirtyIdentities.add(identity.id);
  }

  /** Puts an endpoint's new state in place of its previous one (keeping the last computed policy) and marks it dirty. */
  private install(state: EndpointState): void {
    const prev = this.endpoints.get(state.id);
    if (prev) {
      state.policy = prev.policy;
      state.fingerprint = prev.fingerprint;
      this.unindex(prev);
    }
    this.endpoints.set(state.id, state);
    this.touchIpcache();
    this.index(state);
    this.dirtyEndpoints.add(state.id);
  }

  // ---- change propagation --------------------------------------------------------------------

  private selectorsChanged(changed: SelectorEntry[]): void {
    this.repo.dependentsOf(changed, this.dirtyIdentities);
  }

  private namedPortsChanged(identity: number, prevIdentity: number | undefined): void {
    this.repo.namedPortDependents(prevIdentity === undefined ? [identity] : [identity, prevIdentity], this.dirtyIdentities);
  }

  /** Queues a DNS cache change; its failure goes to `onError` (or the next settled()). */
  private dnsChanged(names: string[]): void {
    this.mutate(() => this.applyDns(names)).catch((e: unknown) => {
      if (this.onError) this.onError(e);
      else this.backgroundError ??= e;
    });
  }

  /**
   * Whether some toFQDNs selector in force matches the name. As in Cilium, only the addresses of such
   * names get identities (and ipcache entries); the cache keeps every allowed answer, so a selector
   * added later finds the names learned before it.
   */
  selectsName(name: string): boolean {
    for (const sel of this.cache.fqdnSelectors()) if (matchDnsSelector(sel, name)) return true;
    return false;
  }

  /**
   * The names of the DNS cache that these rules' toFQDNs selectors match and that hold no identities
   * yet: a policy that starts selecting them allocates their addresses' identities before it is
   * installed (all or none), so it never enforces half of what it selects.
   */
  private newlySelected(rules: readonly Rule[]): string[] {
    const sels: FqdnSelector[] = [];
    for (const r of rules) for (const peers of [r.egress, r.egressDeny]) for (const p of peers) for (const s of p.selectors) if (s.kind === 'fqdn') sels.push(s);
    if (sels.length === 0) return [];
    const out: string[] = [];
    for (const n of this.dns.names()) if (!this.nameIps.has(n) && sels.some((sel) => matchDnsSelector(sel, n))) out.push(n);
    return out;
  }

  /** After selectors went away: names no selector matches any more give their identities back (nothing to allocate). */
  private dropUnselected(): void {
    const gone = [...this.nameIps.keys()].filter((n) => !this.selectsName(n));
    if (gone.length > 0) this.commitDns(gone.map((n) => [n, new Set<string>()]), []);
  }

  /**
   * Gives every address the DNS cache now has for these names a CIDR identity (all or none) when some
   * toFQDNs selector matches the name (none otherwise), then re-evaluates FQDN selectors.
   */
  private async applyDns(names: string[]): Promise<void> {
    (await this.prepareDns(names, (n) => this.selectsName(n)))();
  }

  /**
   * Allocates the identities of the addresses of `names` that `selected` accepts (the others get none);
   * resolves to the synchronous step that installs them.
   */
  private async prepareDns(names: readonly string[], selected: (name: string) => boolean): Promise<() => void> {
    if (names.length === 0) return () => undefined;
    const next = names.map((name): [string, Set<string>] => [name, new Set(selected(name) ? this.dns.lookup(name) : [])]);
    const fresh = new Map<string, Prefix>();
    for (const [, ips] of next) {
      for (const ip of ips) {
        const p = this.dnsIdentity.has(ip) ? undefined : parsePrefix(ip);
        if (p) fresh.set(ip, p);
      }
    }
    const allocated = await this.allocateEach([...fresh], ([, p]) => LabelSet.from(cidrIdentityLabels(p)));
    return () => this.commitDns(next, allocated.map(([[ip], ident]) => [ip, ident.id]));
  }

  private commitDns(next: ReadonlyArray<[string, Set<string>]>, allocated: ReadonlyArray<[string, number]>): void {
    for (const [ip, id] of allocated) this.dnsIdentity.set(ip, id);
    const names = next.map(([n]) => n);
    for (const [name, ips] of next) {
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
        if (!this.dnsIdentity.has(ip)) continue;
        let set = this.ipNames.get(ip);
        if (!set) {
          set = new Set();
          this.ipNames.set(ip, set);
        }
        set.add(name);
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

  /** Every endpoint address (not the host's) and its endpoint, as endpointByIp() answers. */
  endpointAddresses(): ReadonlyMap<string, string> {
    return this.endpointIps;
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
    if (node) return this.nodeIdentityOfIp(this.nodes.get(node), ip)?.id ?? ReservedIdentity.world;
    if (this.isHostAddress(ip)) return ReservedIdentity.host;
    if (this.apiServerIps.has(parsePrefix(ip)?.addr ?? ip)) return ReservedIdentity['kube-apiserver'];
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

  /**
   * Prefix → identity for the datapath's ipcache: endpoint and node addresses, the host's own addresses,
   * CIDR and FQDN identities. A more specific owner wins: endpoint over node over host address over the API
   * server's over reserved.
   */
  ipcache(): readonly IpcacheEntry[] {
    if (this.ipcacheMemo) return this.ipcacheMemo;
    const out = new Map<string, number>();
    for (const ident of this.allocator.all()) {
      if (ident.scope !== 'local') continue;
      const p = identityPrefix(ident);
      if (p) out.set(formatPrefix(p), ident.id);
    }
    for (const [ip, id] of this.reservedIps) out.set(hostPrefix(ip), id);
    for (const ip of this.apiServerIps) out.set(hostPrefix(ip), ReservedIdentity['kube-apiserver']);
    for (const ip of this.hostIps) out.set(hostPrefix(ip), ReservedIdentity.host);
    for (const n of this.nodes.values()) for (const ip of n.input.ips ?? []) out.set(hostPrefix(ip), this.nodeIdentityOfIp(n, ip)?.id ?? n.identity.id);
    for (const ep of this.endpoints.values()) for (const ip of ep.ips) out.set(hostPrefix(ip), ep.identity.id);
    const entries = [...out].map(([prefix, identity]) => Object.freeze({ prefix, identity })).sort((a, b) => a.prefix.localeCompare(b.prefix));
    this.ipcacheMemo = Object.freeze(entries);
    return this.ipcacheMemo;
  }

  /** A node's identity for one of its addresses: with `kube-apiserver` when the API server has it. */
  private nodeIdentityOfIp(n: NodeState | undefined, ip: string): Identity | undefined {
    if (n?.apiServer && this.apiServerIps.has(parsePrefix(ip)?.addr ?? ip)) return n.apiServer;
    return n?.identity;
  }

  /** Something ipcache() is made of changed: the next call computes it again. */
  private touchIpcache(): void {
    this.ipcacheMemo = null;
  }
}

/** hostPrefix() per address string: parsing dominated ipcache() with thousands of endpoints. Bounded. */
const hostPrefixOf = new Map<string, string>();
const HOST_PREFIX_MEMO_MAX = 1 << 17;

function hostPrefix(ip: string): string {
  const known = hostPrefixOf.get(ip);
  if (known !== undefined) return known;
  const p = parsePrefix(ip);
  const out = p ? formatPrefix(p) : ip;
  if (hostPrefixOf.size >= HOST_PREFIX_MEMO_MAX) hostPrefixOf.clear();
  hostPrefixOf.set(ip, out);
  return out;
}

/** identityPrefix() per identity: identities are immutable, and parsing the labels dominated FQDN updates. */
const prefixOf = new WeakMap<Identity, Prefix | null>();

/** The prefix a CIDR identity stands for: its longest `cidr:` label. */
export function identityPrefix(ident: Identity): Prefix | undefined {
  const known = prefixOf.get(ident);
  if (known !== undefined) return known ?? undefined;
  const p = longestCidrLabel(ident);
  prefixOf.set(ident, p ?? null);
  return p;
}

function longestCidrLabel(ident: Identity): Prefix | undefined {
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

/** Security labels of an endpoint: its pod labels plus those Cilium derives (namespace and its labels, service account). */
function endpointLabels(input: EndpointInput, namespaceLabels: Record<string, string>): LabelSet {
  if (input.securityLabels) return input.securityLabels;
  const opts: Parameters<typeof podLabels>[0] = { namespace: input.namespace, namespaceLabels };
  if (input.labels) opts.labels = input.labels;
  if (input.serviceAccount !== undefined) opts.serviceAccount = input.serviceAccount;
  return podLabels(opts);
}
