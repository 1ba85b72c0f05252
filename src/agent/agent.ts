/**
 * `meshd agent`: one process per node that wires the pieces together.
 *
 *   resource source ─► policy engine ─► endpoint manager (eBPF maps)
 *        │                   │      └──► L7 proxy (translator → xDS → Envoy)
 *        └─► service manager (socket LB maps)
 *   meshd-cni ─► endpoint API ─► engine + endpoint manager
 *   CLI ─► local API
 *
 * Order matters in three places:
 * - A policy change first reaches Envoy (new snapshot, waited for its ACK)
 *   and only then the datapath, so the kernel never redirects to a listener
 *   Envoy does not have. A NACK keeps the datapath's previous policy for the
 *   endpoints whose redirects would change, and says so in the status.
 * - On start the agent adopts what is pinned (maps, links), loads the whole
 *   world into the engine, re-registers the endpoints it had, and only then
 *   writes: the first write is a diff against the kernel's content, so a
 *   restart with nothing changed writes nothing.
 * - On stop it leaves programs attached and maps pinned: the kernel keeps
 *   enforcing while the agent is away.
 *
 * All mutations run one at a time through `serial()`.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { EndpointApiServer, EndpointRejectedError, type EndpointHandler } from '../cni/endpoint-api-server.js';
import type { Endpoint, EndpointKey, EndpointRegistration } from '../cni/endpoint-api.js';
import { installCni } from '../cni/installer.js';
import { ensureBpffs } from '../datapath/bpffs.js';
import { EndpointManager } from '../datapath/endpoint/endpoint-manager.js';
import type { FlowRecord } from '../datapath/endpoint/flow-events.js';
import { ServiceManager } from '../datapath/lb/service-manager.js';
import { loadPolicyDocuments, PolicyEngine, policyKey, type EndpointPolicy } from '../policy/index.js';
import { policyMapState, type PolicyMapState } from '../datapath/endpoint/policy-map-state.js';
import type { Direction, L7Kind } from '../policy/types.js';
import type { L7Endpoint, Redirect, TranslateOutput } from '../proxy/translate.js';
import { createLogger, type Logger } from '../util/log.js';
import { packageVersion } from '../util/paths.js';
import type { AgentConfig } from './config.js';
import { EndpointRegistry, endpointIdOf } from './endpoint-registry.js';
import { dumpAddresses, watchAddresses } from '../../native/index.js';
import { watchHostAddresses, type HostAddressWatcher } from './host-addresses.js';
import { NamespaceSchema, NodeSchema, PodSchema, podIps, podNamedPorts, zodProblems, type Pod } from './k8s-objects.js';
import type { ResourceEvent, ResourceSource, SourceProblem } from './resource-source.js';

/** What the agent needs of the L7 proxy (src/proxy/proxy-manager.ts implements it). */
export interface L7Proxy {
  proxyPort(kind: L7Kind, direction: Direction): number;
  apply(input: { endpoints: L7Endpoint[]; identityIps: ReadonlyMap<number, readonly string[]> }): Promise<{
    version: string;
    redirects: Redirect[];
    unsupported: TranslateOutput['unsupported'];
  }>;
  status(): unknown;
  stop(): Promise<void>;
}

export interface AgentOptions {
  config: AgentConfig;
  source: ResourceSource;
  mode: 'standalone' | 'kubernetes';
  log?: Logger;
  /** Starts the node's L7 proxy (null when envoy.enabled=false). */
  startProxy?: ((cfg: AgentConfig, log: Logger) => Promise<L7Proxy>) | null;
}

export interface PolicyStatus {
  key: string;
  origin: string;
  state: 'enforced' | 'rejected';
  problems: Array<{ path: string; message: string }>;
}

const stripLen = (cidr: string) => cidr.split('/')[0] ?? cidr;

export class Agent {
  readonly log: Logger;
  readonly engine: PolicyEngine;
  readonly startedAt = Date.now();
  private endpoints!: EndpointManager;
  private services: ServiceManager | null = null;
  private proxy: L7Proxy | null = null;
  private cniServer: EndpointApiServer | null = null;
  private registry!: EndpointRegistry;
  private readonly pods = new Map<string, Pod>();
  private readonly policyStatus = new Map<string, PolicyStatus>();
  private readonly problems: Array<SourceProblem & { at: string }> = [];
  /** Endpoints whose latest policy is not in the kernel yet (datapath refused it, or the proxy NACKed). */
  private readonly pending = new Map<string, string>();
  private readonly flows: FlowRecord[] = [];
  private flowSub: { close(): void } | null = null;
  private lastProxy: { version: string; error: string | null; at: string } | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private hostAddresses: HostAddressWatcher | null = null;
  private state: 'starting' | 'running' | 'stopping' | 'stopped' = 'starting';

  private constructor(readonly opts: AgentOptions) {
    this.log = opts.log ?? createLogger({ component: 'agent' }, { format: opts.config['log.format'], level: opts.config['log.level'] });
    this.engine = new PolicyEngine({ mode: opts.config.policyEnforcementMode });
  }

  get config(): AgentConfig {
    return this.opts.config;
  }

  get pinDir(): string {
    return join(this.config['bpf.root'], 'meshd');
  }

  socketPath(name: 'meshd' | 'cni'): string {
    return join(this.config.stateDir, `${name}.sock`);
  }

  static async start(opts: AgentOptions): Promise<Agent> {
    const a = new Agent(opts);
    try {
      await a.startInner();
    } catch (e) {
      await a.stop().catch(() => undefined);
      throw e;
    }
    return a;
  }

  private async startInner(): Promise<void> {
    const c = this.config;
    mkdirSync(c.stateDir, { recursive: true, mode: 0o700 });
    await ensureBpffs(c['bpf.root'].startsWith('/sys/fs/bpf') ? '/sys/fs/bpf' : c['bpf.root']);
    mkdirSync(this.pinDir, { recursive: true });
    this.registry = new EndpointRegistry(join(c.stateDir, 'endpoints.json'));
    await this.engine.upsertNode({ name: c.nodeName, local: true, labels: {} });
    // The host's own addresses carry the host identity, Node object or not; kept current from netlink.
    this.hostAddresses = watchHostAddresses({
      source: { dump: dumpAddresses, watch: watchAddresses },
      onChange: (ips) => void this.serial(async () => {
        this.engine.setHostAddresses(ips);
        if (this.state === 'running') await this.reconcile();
      }).catch((e: unknown) => this.log.error('host addresses not applied', { err: e })),
      onError: (e) => this.log.warn('host addresses', { err: e }),
    });
    this.engine.setHostAddresses(this.hostAddresses.current());

    if (this.opts.startProxy && c['envoy.enabled']) {
      this.proxy = await this.opts.startProxy(c, this.log.child({ component: 'proxy' }));
    }
    this.endpoints = await EndpointManager.open({
      pinDir: this.pinDir,
      // The endpoint program shares the socket LB's service maps by pin: size them as the socket LB does.
      maxEntries: { meshd_lb_svc: c['bpf.lbMapMax'], meshd_lb_be: c['bpf.lbMapMax'] },
      config: {
        perPacketLb: c['socketLB.hostNamespaceOnly'],
        verdictSample: c['bpf.events.sampleNewConnections'],
        sockmapShortcut: c['sockops.enabled'],
      },
      proxyPort: this.proxyPortFn(),
    });
    this.flowSub = this.endpoints.onFlowEvents(
      (recs) => {
        this.flows.push(...recs);
        if (this.flows.length > 2000) this.flows.splice(0, this.flows.length - 2000);
      },
      (e) => this.log.warn('flow events', { err: e }),
    );
    if (c.kubeProxyReplacement && c['socketLB.enabled']) {
      this.services = await ServiceManager.open({
        pinDir: this.pinDir,
        cgroupPath: c['cgroup.hostRoot'],
        hostNamespaceOnly: c['socketLB.hostNamespaceOnly'],
        algorithm: c['loadBalancer.algorithm'],
        lbMapMax: c['bpf.lbMapMax'],
      });
    }

    // The world first, without writing: the first write must be a diff against what is pinned.
    await this.opts.source.start({
      onBatch: (events) => this.serial(() => this.applyBatch(events, this.state === 'running')),
      onProblems: (problems) => this.recordProblems(problems),
    });
    await this.serial(async () => {
      await this.restoreEndpoints();
      await this.reconcile();
      this.endpoints.pruneUnclaimed();
    });

    if (c['cni.install']) {
      const r = installCni({ confDir: c['cni.confDir'], binDir: c['cni.binDir'], exclusive: c['cni.exclusive'], podCIDR: c['ipam.podCIDR'], agentSocket: this.socketPath('cni'), stateDir: join(c.stateDir, 'cni') });
      if (r.changed) this.log.info('CNI configuration installed', { actions: r.actions });
    }
    this.cniServer = new EndpointApiServer({ socketPath: this.socketPath('cni'), handler: this.cniHandler() });
    await this.cniServer.start();
    this.state = 'running';
    this.log.info('agent running', { node: c.nodeName, endpoints: this.endpoints.endpoints().length, policies: this.engine.policyKeys().length });
  }

  /** Stops the agent; the datapath stays attached and pinned. Idempotent. */
  async stop(): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping') return;
    this.state = 'stopping';
    await this.opts.source.stop().catch(() => undefined);
    await this.cniServer?.close().catch(() => undefined);
    this.hostAddresses?.close();
    await this.queue.catch(() => undefined);
    this.flowSub?.close();
    await this.proxy?.stop().catch((e: unknown) => this.log.warn('proxy stop', { err: e }));
    this.services?.close();
    this.endpoints?.close();
    this.state = 'stopped';
  }

  /** Runs mutations one at a time. */
  serial<T>(fn: () => Promise<T> | T): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }

  // ---- resources --------------------------------------------------------------------------

  private recordProblems(problems: SourceProblem[]): void {
    for (const p of problems) {
      this.log.error('manifest rejected; its last good version stays in force', { file: p.file, document: p.document, field: p.path, problem: p.message });
      this.problems.push({ ...p, at: new Date().toISOString() });
    }
    if (this.problems.length > 200) this.problems.splice(0, this.problems.length - 200);
  }

  private async applyBatch(events: ResourceEvent[], write: boolean): Promise<void> {
    for (const ev of events) {
      try {
        await this.applyEvent(ev);
      } catch (e) {
        this.recordProblems([{ file: ev.origin, path: '', message: `${ev.key}: ${e instanceof Error ? e.message : String(e)}` }]);
      }
    }
    if (write) await this.reconcile();
  }

  private async applyEvent(ev: ResourceEvent): Promise<void> {
    const { kind, namespace, name } = ev.ref;
    const obj = ev.type === 'upsert' ? ev.object : undefined;
    switch (kind) {
      case 'CiliumNetworkPolicy':
      case 'CiliumClusterwideNetworkPolicy':
      case 'NetworkPolicy': {
        if (!obj) {
          const prev = this.policyStatus.get(ev.key);
          if (prev?.state === 'enforced') await this.engine.removePolicy(prev.key);
          this.policyStatus.delete(ev.key);
          return;
        }
        const r = loadPolicyDocuments([obj], ev.origin);
        const loaded = r.policies[0];
        if (r.problems.length > 0 || !loaded) {
          // Rejected: whatever version was enforced before stays.
          const problems = r.problems.map((p) => ({ path: p.path, message: p.message }));
          this.recordProblems(problems.map((p) => ({ file: ev.origin, path: p.path, message: p.message })));
          const prev = this.policyStatus.get(ev.key);
          this.policyStatus.set(ev.key, { key: prev?.key ?? ev.key, origin: ev.origin, state: prev?.state === 'enforced' ? 'enforced' : 'rejected', problems });
          return;
        }
        await this.engine.upsertPolicy(loaded.document);
        this.policyStatus.set(ev.key, { key: policyKey(loaded.document), origin: ev.origin, state: 'enforced', problems: [] });
        return;
      }
      case 'Namespace': {
        if (!obj) return; // the engine keeps namespace labels of namespaces that still hold pods
        const ns = NamespaceSchema.parse(obj);
        await this.engine.upsertNamespace(ns.metadata.name, ns.metadata.labels);
        return;
      }
      case 'Node': {
        if (name === this.config.nodeName) {
          if (obj) {
            const n = NodeSchema.parse(obj);
            await this.engine.upsertNode({ name, local: true, labels: n.metadata.labels, ips: n.status.addresses.filter((a) => a.type.endsWith('IP')).map((a) => a.address) });
          }
          return;
        }
        if (!obj) {
          await this.engine.removeNode(name);
          return;
        }
        const n = NodeSchema.parse(obj);
        await this.engine.upsertNode({ name, labels: n.metadata.labels, ips: n.status.addresses.filter((a) => a.type.endsWith('IP')).map((a) => a.address) });
        return;
      }
      case 'Pod': {
        const id = `${namespace ?? 'default'}/${name}`;
        if (!obj) {
          this.pods.delete(id);
          if (!this.registry.byEndpointId(id)) await this.engine.removeEndpoint(id);
          else await this.upsertEngineEndpoint(id);
          return;
        }
        const parsed = PodSchema.safeParse(obj);
        if (!parsed.success) throw new Error(zodProblems(parsed.error).map((p) => `${p.path}: ${p.message}`).join('; '));
        this.pods.set(id, parsed.data);
        await this.upsertEngineEndpoint(id);
        return;
      }
      case 'Service': {
        if (!obj) {
          await this.engine.removeService(namespace ?? 'default', name);
          this.services?.deleteService(namespace ?? 'default', name);
          return;
        }
        this.services?.upsertService(obj);
        const spec = (obj.spec ?? {}) as { selector?: Record<string, string>; clusterIPs?: string[]; clusterIP?: string; ports?: Array<{ port: number; protocol?: 'TCP' | 'UDP' | 'SCTP'; targetPort?: number | string; name?: string }> };
        await this.engine.upsertService({
          namespace: namespace ?? 'default',
          name,
          labels: ((obj.metadata as { labels?: Record<string, string> } | undefined)?.labels ?? {}),
          selector: spec.selector ?? {},
          clusterIPs: spec.clusterIPs ?? (spec.clusterIP && spec.clusterIP !== 'None' ? [spec.clusterIP] : []),
          ports: spec.ports ?? [],
        });
        return;
      }
      case 'EndpointSlice': {
        if (!obj) this.services?.deleteEndpointSlice(namespace ?? 'default', name);
        else this.services?.upsertEndpointSlice(obj);
        return;
      }
    }
  }

  /** Feeds the engine one pod: labels from its manifest, addresses from CNI (local) or the manifest. */
  private async upsertEngineEndpoint(id: string): Promise<void> {
    const pod = this.pods.get(id);
    const reg = this.registry.byEndpointId(id);
    const [namespace = 'default', name = id] = id.split('/');
    const ips = reg ? reg.ips.map(stripLen) : pod ? podIps(pod) : [];
    await this.engine.upsertEndpoint({
      namespace,
      name,
      labels: pod?.metadata.labels ?? {},
      ips,
      ports: pod ? podNamedPorts(pod) : [],
      ...(pod?.spec.serviceAccountName ? { serviceAccount: pod.spec.serviceAccountName } : {}),
      local: reg !== undefined,
    });
  }

  // ---- endpoints (meshd-cni) -----------------------------------------------------------------

  private async attachEndpoint(e: Endpoint): Promise<void> {
    if (!e.hostInterface) throw new EndpointRejectedError(`${e.containerId}/${e.ifname}: no host interface to attach the datapath to`);
    const id = endpointIdOf(e);
    await this.upsertEngineEndpoint(id);
    const identity = this.engine.endpointIdentity(id);
    if (identity === undefined) throw new EndpointRejectedError(`${id}: no identity`);
    await this.endpoints.addEndpoint({ endpointId: id, ifname: e.hostInterface, identity, ips: e.ips.map(stripLen) });
  }

  /** Re-registers the endpoints the registry remembers whose interface still exists. */
  private async restoreEndpoints(): Promise<void> {
    for (const e of this.registry.all()) {
      if (!e.hostInterface || !existsSync(`/sys/class/net/${e.hostInterface}`)) {
        this.log.info('forgetting endpoint whose interface is gone', { endpoint: endpointIdOf(e), ifname: e.hostInterface });
        this.registry.delete(e);
        await this.upsertEngineEndpoint(endpointIdOf(e));
        continue;
      }
      await this.attachEndpoint(e);
    }
  }

  private cniHandler(): EndpointHandler {
    return {
      register: (reg: EndpointRegistration) =>
        this.serial(async () => {
          const prev = this.registry.get(reg);
          const e: Endpoint = { ...reg, registeredAt: prev?.registeredAt ?? new Date().toISOString() };
          this.registry.put(e);
          try {
            await this.attachEndpoint(e);
            await this.reconcile();
          } catch (err) {
            if (prev) this.registry.put(prev);
            else this.registry.delete(reg);
            await this.upsertEngineEndpoint(endpointIdOf(e));
            if (err instanceof EndpointRejectedError) throw err;
            throw new EndpointRejectedError(`${endpointIdOf(e)}: ${err instanceof Error ? err.message : String(err)}`);
          }
          this.log.info('endpoint registered', { endpoint: endpointIdOf(e), identity: this.engine.endpointIdentity(endpointIdOf(e)), ips: e.ips });
          return e;
        }),
      get: async (k: EndpointKey) => this.registry.get(k),
      remove: (k: EndpointKey) =>
        this.serial(async () => {
          const e = this.registry.delete(k);
          if (!e) return false;
          const id = endpointIdOf(e);
          if (this.endpoints.endpoint(id)) this.endpoints.removeEndpoint(id);
          await this.upsertEngineEndpoint(id);
          if (!this.pods.has(id)) await this.engine.removeEndpoint(id);
          await this.reconcile();
          this.log.info('endpoint removed', { endpoint: id });
          return true;
        }),
      list: async () => this.registry.all(),
    };
  }

  // ---- reconcile ----------------------------------------------------------------------------

  /**
   * Engine → kernel and Envoy, in the order that never redirects to a
   * listener Envoy lacks and never leaves a redirect without its chain:
   * endpoints whose new policy adds no redirect are written first (a removed
   * redirect leaves the datapath before its chain leaves Envoy), then Envoy
   * gets the new configuration and ACKs it, then the endpoints that add
   * redirects are written. A NACK holds those back (the previous policy stays).
   */
  private async reconcile(): Promise<void> {
    for (const p of this.engine.flush()) {
      this.pending.set(p.endpointId, 'changed');
      for (const e of [...p.ingress.entries, ...p.egress.entries]) {
        if (!e.conflict) continue;
        this.log.error('policy conflict; the port is denied', { endpoint: p.endpointId, identity: e.remoteIdentity, port: e.port, policies: e.derivedFrom, problem: e.conflict });
        this.recordProblems([{ file: '(policy engine)', path: `${p.endpointId} port ${e.port}`, message: e.conflict }]);
      }
    }
    try {
      this.endpoints.syncIpcache(this.engine.ipcache());
    } catch (e) {
      this.log.error('ipcache not updated; the previous one stays', { err: e });
    }
    this.services?.sync();

    const addsRedirect = new Set<string>();
    for (const [id] of this.pending) {
      const policy = this.engine.endpointPolicy(id);
      const state = this.endpoints.endpoint(id);
      if (!policy || !state) continue;
      const have = redirectRows(state.entries);
      if ([...redirectRows(policyMapState(policy, { proxyPort: this.proxyPortFn() }))].some((r) => !have.has(r))) addsRedirect.add(id);
    }
    await this.writePending((id) => !addsRedirect.has(id));

    if (this.proxy) {
      const l7: L7Endpoint[] = [];
      for (const ep of this.endpoints.endpoints()) {
        const policy = this.engine.endpointPolicy(ep.endpointId);
        if (policy) l7.push({ policy, ips: ep.ips });
      }
      try {
        const r = await this.proxy.apply({ endpoints: l7, identityIps: this.identityIps() });
        this.lastProxy = { version: r.version, error: null, at: new Date().toISOString() };
        for (const u of r.unsupported) this.log.warn('L7 rules of this kind are not enforced by the proxy; those flows stay denied', { endpoint: u.endpointId, direction: u.direction, kind: u.kind, policies: u.derivedFrom });
      } catch (e) {
        const why = e instanceof Error ? e.message : String(e);
        this.lastProxy = { version: this.lastProxy?.version ?? '', error: why, at: new Date().toISOString() };
        this.log.error('proxy configuration rejected; previous proxy configuration and redirects stay', { err: e });
        for (const id of addsRedirect) if (this.pending.has(id)) this.pending.set(id, `waiting for the proxy: ${why}`);
        return;
      }
    }
    await this.writePending(() => true);
  }

  /** Writes the pending endpoints that `which` selects; a refusal keeps that endpoint's previous policy. */
  private async writePending(which: (id: string) => boolean): Promise<void> {
    for (const [id] of [...this.pending]) {
      if (!which(id)) continue;
      const policy = this.engine.endpointPolicy(id);
      const state = this.endpoints.endpoint(id);
      if (!policy || !state) {
        this.pending.delete(id);
        continue;
      }
      try {
        if (state.identity !== policy.identity) await this.endpoints.addEndpoint({ endpointId: id, ifname: state.ifname, identity: policy.identity, ips: state.ips });
        this.endpoints.updatePolicy(policy);
        this.pending.delete(id);
      } catch (e) {
        this.pending.set(id, e instanceof Error ? e.message : String(e));
        this.log.error('endpoint policy not written; the previous one stays', { endpoint: id, identity: policy.identity, err: e });
      }
    }
  }

  /** Proxy port per L7 kind and direction; 0 (no listener: the datapath fails closed) without a proxy. */
  private proxyPortFn(): (kind: L7Kind, direction: Direction) => number {
    return (kind, direction) => (this.proxy ? this.proxy.proxyPort(kind, direction) : 0);
  }

  identityIps(): Map<number, string[]> {
    const out = new Map<number, string[]>();
    for (const e of this.engine.ipcache()) {
      const list = out.get(e.identity) ?? [];
      list.push(e.prefix);
      out.set(e.identity, list);
    }
    return out;
  }

  // ---- views for the API ---------------------------------------------------------------------

  status(): Record<string, unknown> {
    const dp = this.endpoints?.endpoints() ?? [];
    return {
      agent: { state: this.state, version: packageVersion(), nodeName: this.config.nodeName, mode: this.opts.mode, uptimeS: Math.round((Date.now() - this.startedAt) / 1000) },
      envoy: this.proxy ? this.proxy.status() : { state: 'disabled' },
      proxy: this.lastProxy,
      datapath: { endpoints: dp.length, ipcacheEntries: this.endpoints?.ipcacheEntries().length ?? 0, pinDir: this.pinDir, pending: Object.fromEntries(this.pending) },
      services: this.services?.status() ?? null,
      counts: {
        endpoints: dp.length,
        policies: [...this.policyStatus.values()].filter((p) => p.state === 'enforced').length,
        rejectedPolicies: [...this.policyStatus.values()].filter((p) => p.state === 'rejected').length,
        identities: [...this.engine.allocator.all()].length,
        problems: this.problems.length,
      },
    };
  }

  endpointList(): Array<Record<string, unknown>> {
    return (this.endpoints?.endpoints() ?? []).map((e) => {
      const p = this.engine.endpointPolicy(e.endpointId);
      return {
        id: e.endpointId,
        identity: e.identity,
        ips: e.ips.map((ip) => ip.replace(/\/(32|128)$/, '')),
        ifname: e.ifname,
        labels: this.pods.get(e.endpointId)?.metadata.labels ?? {},
        ingressEnforcement: p?.ingress.defaultDeny ? 'default-deny' : 'allow-all',
        egressEnforcement: p?.egress.defaultDeny ? 'default-deny' : 'allow-all',
        policyRevision: p?.revision ?? 0,
        pending: this.pending.get(e.endpointId) ?? null,
      };
    });
  }

  policyView(endpoint?: string): Record<string, unknown> {
    const policies = [...this.policyStatus.values()];
    const eps = endpoint ? [this.engine.endpointPolicy(endpoint)].filter((x): x is EndpointPolicy => x !== undefined) : this.engine.endpointPolicies();
    return { policies, endpointPolicies: eps, problems: this.problems };
  }

  kernelPolicy(endpoint: string): { endpoint: string; epId: number; identity: number; policyGen: number; flags: number; entries: PolicyMapState } | undefined {
    const st = this.endpoints.endpoint(endpoint);
    if (!st) return undefined;
    return { endpoint, epId: st.epId, identity: st.identity, policyGen: st.policyGen, flags: st.flags, entries: st.entries };
  }

  recentFlows(): FlowRecord[] {
    return [...this.flows];
  }

  serviceManager(): ServiceManager | null {
    return this.services;
  }

  proxyStatus(): unknown {
    return this.proxy ? this.proxy.status() : { state: 'disabled' };
  }
}

/** The redirect rows of a map state, as comparable strings. */
function redirectRows(state: PolicyMapState): Set<string> {
  const out = new Set<string>();
  for (const [id, e] of state) if (e.value.verdict === 'REDIRECT') out.add(`${id}->${e.value.proxyPort}`);
  return out;
}
