/**
 * `meshd agent`: one process per node. This module holds the lifecycle and
 * the wiring; each concern lives in its own module:
 *
 *   resource source ─► policy-subscriber   ─► policy engine ─► reconciler ─► endpoint manager (eBPF maps)
 *   (typed events)  ─► service-subscriber  ─►      │                     └──► L7 proxy (translator → xDS → Envoy)
 *                   └► endpoint-subscriber ─►      │          └─► service manager (socket LB maps)
 *   meshd-cni ─► endpoint API ─► cni-endpoints ─► engine + endpoint manager
 *   CLI ─► local API ─► the views below
 *
 * Order matters in three places:
 * - A policy change first reaches Envoy (new snapshot, waited for its ACK)
 *   and only then the datapath, so the kernel never redirects to a listener
 *   Envoy does not have; see reconciler.ts.
 * - On start the agent adopts what is pinned (maps, links), loads the whole
 *   world into the engine, re-registers the endpoints it had, and only then
 *   writes: the first write is a diff against the kernel's content, so a
 *   restart with nothing changed writes nothing.
 * - On stop it leaves programs attached and maps pinned: the kernel keeps
 *   enforcing while the agent is away.
 *
 * All mutations run one at a time through `serial()`.
 */
import type { z } from 'zod';
import type { EndpointSummary } from '../api/endpoint.js';
import type { PolicyViewResponse } from '../api/policy.js';
import type { ProxyResponse } from '../api/proxy.js';
import type { StatusResponse } from '../api/status.js';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { EndpointApiServer } from '../cni/endpoint-api-server.js';
import { installCni } from '../cni/installer.js';
import { ensureBpffs } from '../datapath/bpffs.js';
import { EndpointManager } from '../datapath/endpoint/endpoint-manager.js';
import type { FlowRecord } from '../datapath/endpoint/flow-events.js';
import type { PolicyMapState } from '../datapath/endpoint/policy-map-state.js';
import { ServiceManager } from '../datapath/lb/service-manager.js';
import { planNodePort } from '../datapath/nodeport/agent-wiring.js';
import type { NodePortDatapath } from '../datapath/nodeport/nodeport.js';
import { startHostFirewall, type HostFirewallRuntime } from '../datapath/host/agent-wiring.js';
import { formatPath } from '../k8s/problem.js';
import { Hubble } from '../observe/hubble.js';
import { PolicyEngine, type EndpointPolicy } from '../policy/index.js';
import { MeshdError } from '../util/errors.js';
import { createLogger, type Logger } from '../util/log.js';
import { packageVersion } from '../util/paths.js';
import { CniEndpoints } from './cni-endpoints.js';
import type { AgentConfig } from './config.js';
import type { IdentityAllocator } from '../identity/allocator.js';
import { dumpAddresses, watchAddresses } from '../../native/index.js';
import type { EndpointObjects } from './endpoint-objects.js';
import { EndpointRegistry } from './endpoint-registry.js';
import { CidrGroupSubscriber } from './cidr-group-subscriber.js';
import { SecretSubscriber } from './secret-subscriber.js';
import { EndpointSubscriber } from './endpoint-subscriber.js';
import { PolicySubscriber, type PolicyStatusListener } from './policy-subscriber.js';
import { proxyPorts, Reconciler, type L7Proxy } from './reconciler.js';
import type { ResourceEvent, ResourceKind, ResourceSource, ResourceSubscriber, SourceProblem } from './resource-source.js';
import { ServiceSubscriber } from './service-subscriber.js';
import { watchHostAddresses, type HostAddressWatcher } from './host-addresses.js';
import { staticPodCidr, type PodCidrProvider } from './pod-cidr.js';
import { STANDALONE_POD_CIDR } from './config.js';
import { DnsService, openAgentFqdnCache } from '../dns/dns-service.js';
import { conntrackRemoteIps, dnsProxyPort, withDnsPort } from '../dns/agent-wiring.js';
import type { FqdnCache } from '../policy/dns-cache.js';
import { attachGateway } from '../gateway/agent-wiring.js';
import type { GatewayController } from '../gateway/controller.js';
import type { GatewayService } from '../gateway/gateway-service.js';
import { Routing } from '../datapath/routing/routing.js';
import type { RemoteNodes } from '../datapath/routing/remote-nodes.js';

export type { L7Proxy } from './reconciler.js';
export type { PolicyStatus } from './policy-subscriber.js';

export interface AgentOptions {
  config: AgentConfig;
  source: ResourceSource;
  mode: 'standalone' | 'kubernetes';
  log?: Logger;
  /** Starts the node's L7 proxy (null when envoy.enabled=false). */
  startProxy?: ((cfg: AgentConfig, log: Logger) => Promise<L7Proxy>) | null;
  /** Where identity numbers come from (default: this node only); run.ts passes the cluster-wide one in Kubernetes mode. */
  allocator?: IdentityAllocator;
  /** Hears each policy's state change on this node (Kubernetes mode: the policy status writer). */
  onPolicyStatus?: PolicyStatusListener;
  /** The node's pod CIDR (Kubernetes mode: claimed through the API server, pod-cidr.ts); default ipam.podCIDR. */
  podCidr?: PodCidrProvider;
  /** Kubernetes mode: MeshdEndpoint objects, this node's written and the other nodes' read into the ipcache. */
  endpointObjects?: EndpointObjects;
  /** Kubernetes mode with gatewayAPI.enabled: writes the Gateway API status (src/gateway/controller.ts). */
  gatewayController?: GatewayController | null;
  /** Kubernetes mode: the other nodes (MeshdNode objects), for routes and tunnel endpoints. */
  remoteNodes?: RemoteNodes;
}

/** A problem as the local API lists it (`meshd policy get`). */
interface ProblemRecord {
  file: string;
  document?: number;
  path?: string;
  message: string;
  at: string;
}

export class Agent {
  readonly log: Logger;
  readonly engine: PolicyEngine;
  readonly startedAt = Date.now();
  private endpoints!: EndpointManager;
  private services: ServiceManager | null = null;
  private nodePort: NodePortDatapath | null = null;
  private hostFirewall: HostFirewallRuntime | null = null;
  private proxy: L7Proxy | null = null;
  private cniServer: EndpointApiServer | null = null;
  private reconciler!: Reconciler;
  private endpointSub!: EndpointSubscriber;
  private readonly policySub: PolicySubscriber;
  private readonly subscribers = new Map<ResourceKind, ResourceSubscriber>();
  private readonly problems: ProblemRecord[] = [];
  private readonly flows: FlowRecord[] = [];
  private flowSub: { close(): void } | null = null;
  private hubble: Hubble | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private hostAddresses: HostAddressWatcher | null = null;
  private state: 'starting' | 'running' | 'stopping' | 'stopped' = 'starting';
  readonly podCidr: PodCidrProvider;
  private podCidrSub: (() => void) | null = null;
  private reconcileQueued = false;
  /** toFQDNs: restored from disk before the engine exists (src/dns). */
  readonly fqdn: FqdnCache;
  private dns: DnsService | null = null;
  /** Gateway API on this node's Envoy (gatewayAPI.enabled). */
  gateway: GatewayService | null = null;
  private routing: Routing | null = null;

  private constructor(readonly opts: AgentOptions) {
    this.log = opts.log ?? createLogger({ component: 'agent' }, { format: opts.config['log.format'], level: opts.config['log.level'] });
    this.podCidr = opts.podCidr ?? staticPodCidr(opts.config['ipam.podCIDR'] ?? STANDALONE_POD_CIDR);
    this.fqdn = openAgentFqdnCache(opts.config, this.log);
    this.engine = new PolicyEngine({ mode: opts.config.policyEnforcementMode, dns: this.fqdn, ...(opts.allocator ? { allocator: opts.allocator } : {}) });
    this.policySub = new PolicySubscriber(this.engine, opts.onPolicyStatus);
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
    const registry = new EndpointRegistry(join(c.stateDir, 'endpoints.json'), {
      onCorrupt: (e) => this.log.error('state file corrupt; moved aside, the entries that parse are kept', { code: e.code, file: e.file, movedTo: e.movedTo, problem: e.detail }),
    });
    await this.engine.upsertNode({ name: c.nodeName, local: true, labels: {} });
    // The host's own addresses carry the host identity, Node object or not; kept current from netlink.
    this.hostAddresses = watchHostAddresses({
      source: { dump: dumpAddresses, watch: watchAddresses },
      onChange: (ips) => void this.serial(async () => {
        this.engine.setHostAddresses(ips);
        if (this.state === 'running') await this.reconciler.reconcile();
      }).catch((e: unknown) => this.log.error('host addresses not applied', { err: e })),
      onError: (e) => this.log.warn('host addresses', { err: e }),
    });
    this.engine.setHostAddresses(this.hostAddresses.current());

    if (this.opts.startProxy && c['envoy.enabled']) {
      this.proxy = await this.opts.startProxy(c, this.log.child({ component: 'proxy' }));
      // A late ACK (after an ACK timeout): write what waited for it.
      this.proxy.onAccepted?.(() => {
        if (this.state === 'running') this.serial(() => this.reconciler.reconcile()).catch((e: unknown) => this.log.error('reconcile after a late proxy ACK', { err: e }));
      });
    }
    const dnsPort = dnsProxyPort(c);
    const proxyPort = withDnsPort(proxyPorts(this.proxy), dnsPort);
    this.endpoints = await EndpointManager.open({
      pinDir: this.pinDir,
      // The endpoint program shares the socket LB's service maps by pin: size them as the socket LB does.
      maxEntries: { meshd_lb_svc: c['bpf.lbMapMax'], meshd_lb_be: c['bpf.lbMapMax'] },
      config: {
        perPacketLb: c['socketLB.hostNamespaceOnly'],
        verdictSample: c['bpf.events.sampleNewConnections'],
        sockmapShortcut: c['sockops.enabled'],
        policyAuditMode: c.policyAuditMode,
        tunnel: c.routingMode === 'tunnel',
        hostFirewall: c['hostFirewall.enabled'],
      },
      proxyPort,
    });
    // Routing between nodes (tunnel device, meshd_tunnel, routes): after the endpoint maps are pinned, before any pod is wired.
    this.routing = await Routing.start({ config: c, pinDir: this.pinDir, nodes: this.opts.remoteNodes ?? null, log: this.log.child({ component: 'routing' }) });
    // Observability is not enforcement: without it (protos missing, a port taken) the agent runs on and says why.
    if (c['hubble.enabled']) this.hubble = await this.startHubble().catch((e: unknown) => (this.log.error('flow observability not started', { err: e }), null));
    this.flowSub = this.endpoints.onFlowEvents(
      (recs) => {
        this.flows.push(...recs);
        if (this.flows.length > 2000) this.flows.splice(0, this.flows.length - 2000);
        this.hubble?.addDatapath(recs);
      },
      (e) => {
        this.hubble?.noteUnparsed();
        this.log.warn('flow events', { err: e });
      },
    );
    // Host policies on the native devices: after the endpoint datapath (shared maps), before nodePort (first on the devices).
    this.hostFirewall = await startHostFirewall(c, { pinDir: this.pinDir, engine: this.engine, endpoints: this.endpoints });
    // Clients outside the node (nodePort): the native devices' addresses are NodePort frontends; bpf/nodeport.c reads the socket LB's maps.
    const nodePort = await planNodePort(c, this.log);
    if (c.kubeProxyReplacement && c['socketLB.enabled']) {
      this.services = await ServiceManager.open({
        ...(nodePort ? { nodeIPs: nodePort.nodeIPs } : {}),
        nodeName: c.nodeName,
        pinDir: this.pinDir,
        cgroupPath: c['cgroup.hostRoot'],
        hostNamespaceOnly: c['socketLB.hostNamespaceOnly'],
        algorithm: c['loadBalancer.algorithm'],
        lbMapMax: c['bpf.lbMapMax'],
      });
    }
    this.nodePort = (await nodePort?.open(this.pinDir)) ?? null;
    const secretSub = new SecretSubscriber();
    this.reconciler = new Reconciler({
      engine: this.engine,
      endpoints: this.endpoints,
      services: this.services,
      proxy: this.proxy,
      proxyPort,
      log: this.log,
      onConflict: (p) => this.recordProblem({ file: '(policy engine)', path: `${p.endpoint} port ${p.port}`, message: p.message }),
      secrets: () => secretSub.data(),
      ...(this.hostFirewall ? { hostEndpoint: this.hostFirewall.endpoint } : {}),
    });
    this.endpointSub = new EndpointSubscriber(this.engine, registry, c.nodeName, this.opts.endpointObjects?.remote);
    for (const sub of [this.policySub, new ServiceSubscriber(this.engine, this.services), this.endpointSub, new CidrGroupSubscriber(this.engine), secretSub]) {
      for (const k of sub.kinds) this.subscribers.set(k, sub);
    }
    // Gateway API (src/gateway): its kinds, and the Services, EndpointSlices, Secrets and Namespaces it reads, also feed the Gateway model.
    this.gateway = attachGateway({ config: c, proxy: this.proxy, subscribers: this.subscribers, nodeAddresses: () => this.hostAddresses?.current() ?? [], controller: this.opts.gatewayController ?? null, log: this.log });
    const cni = new CniEndpoints({
      engine: this.engine,
      endpoints: this.endpoints,
      registry,
      subscriber: this.endpointSub,
      log: this.log,
      serial: (fn) => this.serial(fn),
      reconcile: () => this.reconciler.reconcile(),
    });

    // The world first, without writing: the first write must be a diff against what is pinned.
    await this.opts.source.start({
      onBatch: (events) => this.serial(() => this.applyBatch(events, this.state === 'running')),
      onProblems: (problems) => this.sourceProblems(problems),
    });
    // Other nodes' endpoint objects, read in full before the first write like every kind of the source.
    await this.opts.endpointObjects?.attach({
      engine: this.engine,
      registry,
      subscriber: this.endpointSub,
      endpoints: this.endpoints,
      pending: this.reconciler.pending,
      serial: (fn) => this.serial(fn),
      reconcile: async () => {
        if (this.state === 'running') await this.reconciler.reconcile();
      },
    });
    // Identities another node allocated reach selectors outside any mutation: flush them promptly.
    this.engine.onIdentitiesChanged(() => this.reconcileSoon());
    await this.serial(async () => {
      await cni.restore();
      await this.engine.settled(); // restored FQDN addresses have their identities before the first write
      await this.reconciler.reconcile();
      this.endpoints.pruneUnclaimed();
    });
    // Without its DNS proxy the node still runs: redirected DNS flows fail closed in the datapath.
    this.dns = await DnsService.start({
      cfg: c,
      cache: this.fqdn,
      engine: this.engine,
      port: dnsPort,
      apply: () => this.serial(() => this.reconciler.reconcile()),
      inUse: () => conntrackRemoteIps(this.endpoints),
      log: this.log.child({ component: 'dns-proxy' }),
    }).catch((e: unknown) => {
      this.log.error('DNS proxy not started; DNS flows with DNS rules are dropped', { port: dnsPort, err: e });
      return null;
    });
    const dns = this.dns;
    if (dns) this.reconciler.afterReconcile = () => dns.syncPolicy().catch((e: unknown) => this.log.error('DNS proxy policy not updated', { err: e }));

    if (c['cni.install']) {
      this.installCniConfig();
      // A pod CIDR that becomes known (or changes) later is written into the conflist then.
      this.podCidrSub = this.podCidr.onChange(() => {
        if (this.state === 'running' || this.state === 'starting') this.installCniConfig();
      });
    }
    this.cniServer = new EndpointApiServer({ socketPath: this.socketPath('cni'), handler: cni.handler() });
    await this.cniServer.start();
    this.state = 'running';
    this.log.info('agent running', { node: c.nodeName, endpoints: this.endpoints.endpoints().length, policies: this.engine.policyKeys().length });
  }

  /** The conflist with the node's pod CIDR, or, while it is not known, an IPAM section that makes ADD retry. */
  private installCniConfig(): void {
    const c = this.config;
    const p = this.podCidr.current();
    try {
      const r = installCni({ confDir: c['cni.confDir'], binDir: c['cni.binDir'], exclusive: c['cni.exclusive'], runtime: c['cni.hostRuntime'] ? 'host' : 'checkout', ...(p.cidr ? { podCIDR: p.cidr } : { podCIDRPending: p.detail }), ...(this.routing?.cniMtu ? { mtu: this.routing.cniMtu } : {}), agentSocket: this.socketPath('cni'), stateDir: join(c.stateDir, 'cni') });
      if (r.changed) this.log.info('CNI configuration installed', { actions: r.actions, podCIDR: p.cidr });
    } catch (e) {
      if (this.state === 'starting') throw e;
      this.log.error('CNI configuration not updated', { err: e });
    }
  }

  /** Stops the agent; the datapath stays attached and pinned. Idempotent. */
  async stop(): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping') return;
    this.state = 'stopping';
    this.podCidrSub?.();
    await this.opts.source.stop().catch(() => undefined);
    await this.cniServer?.close().catch(() => undefined);
    this.hostAddresses?.close();
    await this.queue.catch(() => undefined);
    this.flowSub?.close();
    await this.dns?.stop().catch((e: unknown) => this.log.warn('DNS proxy stop', { err: e }));
    await this.gateway?.stop();
    await this.hubble?.close().catch((e: unknown) => this.log.warn('hubble stop', { err: e }));
    await this.proxy?.stop().catch((e: unknown) => this.log.warn('proxy stop', { err: e }));
    await this.routing?.stop().catch((e: unknown) => this.log.warn('routing stop', { err: e }));
    this.services?.close();
    this.nodePort?.close();
    this.hostFirewall?.datapath.close();
    this.endpoints?.close();
    this.state = 'stopped';
  }

  /** Flow observability (src/observe): the Hubble observer API, flow and agent metrics; fed by the datapath's events and Envoy's access logs. */
  private async startHubble(): Promise<Hubble> {
    const proxyHealth = () => {
      const p = this.proxy?.status();
      if (!p || !('envoy' in p)) return null;
      const last = this.reconciler?.lastProxy;
      return { up: p.envoy.state === 'ready', ackedVersion: last?.version ?? '', nacked: last?.errorCode === 'MESHD_PROXY_NACKED' };
    };
    const h = await Hubble.start({
      config: this.config,
      engine: this.engine,
      version: packageVersion(),
      epIdOf: (id) => this.endpoints.endpoint(id)?.epId,
      workloadOf: (id) => this.endpointSub?.podWorkload(id),
      agent: {
        status: () => ({ running: this.state === 'running', counts: this.status().counts }),
        proxy: proxyHealth,
        datapath: () => this.endpoints?.metrics() ?? null,
      },
    });
    this.proxy?.onAccessLog?.((rs) => h.addHttp(rs));
    return h;
  }

  /** Runs mutations one at a time. */
  serial<T>(fn: () => Promise<T> | T): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    // Whatever changed may show in this node's endpoint objects (the writer coalesces and diffs).
    if (this.opts.endpointObjects) void this.queue.then(() => this.opts.endpointObjects?.changed());
    return run;
  }

  /** One reconcile soon, however many times it is asked for before it runs. */
  private reconcileSoon(): void {
    if (this.reconcileQueued) return;
    this.reconcileQueued = true;
    this.serial(async () => {
      this.reconcileQueued = false;
      if (this.state === 'running') await this.reconciler.reconcile();
    }).catch((e: unknown) => this.log.error('reconcile after an identity change', { err: e }));
  }

  // ---- resources --------------------------------------------------------------------------

  private recordProblem(p: Omit<ProblemRecord, 'at'>): void {
    this.problems.push({ ...p, at: new Date().toISOString() });
    if (this.problems.length > 200) this.problems.splice(0, this.problems.length - 200);
  }

  private sourceProblems(problems: readonly SourceProblem[]): void {
    for (const p of problems) {
      this.log.error('resource problem; the object\'s last good version stays in force', {
        file: p.origin,
        document: p.document,
        object: p.ref ? `${p.ref.kind}/${p.ref.namespace ? `${p.ref.namespace}/` : ''}${p.ref.name}` : undefined,
        field: p.path.length > 0 ? formatPath(p.path) : undefined,
        code: p.code,
        problem: p.message,
      });
      this.recordProblem({ file: p.origin, ...(p.document === undefined ? {} : { document: p.document }), ...(p.path.length > 0 ? { path: formatPath(p.path) } : {}), message: p.message });
    }
    this.policySub.noteProblems(problems);
  }

  /** Hands each event to the subscriber of its kind; one that fails is reported and the others still apply. */
  private async applyBatch(events: readonly ResourceEvent[], write: boolean): Promise<void> {
    for (const ev of events) {
      try {
        await this.subscribers.get(ev.object.kind)?.apply(ev);
      } catch (e) {
        this.sourceProblems([{ origin: ev.origin, ref: ev.ref, path: [], code: 'APPLY_FAILED', message: `${ev.key}: ${e instanceof Error ? e.message : String(e)}` }]);
      }
    }
    if (write) await this.reconciler.reconcile();
  }

  // ---- views for the API ---------------------------------------------------------------------

  status(): z.input<typeof StatusResponse> {
    const dp = this.endpoints?.endpoints() ?? [];
    const policies = this.policySub.statuses();
    return {
      agent: { state: this.state, version: packageVersion(), nodeName: this.config.nodeName, mode: this.opts.mode, uptimeS: Math.round((Date.now() - this.startedAt) / 1000) },
      envoy: this.proxy ? this.proxy.status() : { state: 'disabled' },
      proxy: this.reconciler?.lastProxy ?? null,
      datapath: { endpoints: dp.length, ipcacheEntries: this.endpoints?.ipcacheEntries().length ?? 0, pinDir: this.pinDir, pending: Object.fromEntries(this.reconciler?.pending ?? []) },
      source: this.opts.source.status(),
      ipam: this.podCidr.current(),
      services: this.services?.status() ?? null,
      nodePort: this.nodePort?.status() ?? null,
      hostFirewall: this.hostFirewall?.datapath.status() ?? null,
      ...(this.opts.endpointObjects ? { endpointObjects: this.opts.endpointObjects.status() } : {}),
      counts: {
        endpoints: dp.length,
        policies: policies.filter((p) => p.state === 'enforced').length,
        rejectedPolicies: policies.filter((p) => p.state === 'rejected').length,
        identities: [...this.engine.allocator.all()].length,
        problems: this.problems.length,
      },
    };
  }

  endpointList(): Array<z.input<typeof EndpointSummary>> {
    return (this.endpoints?.endpoints() ?? []).map((e) => {
      const p = this.engine.endpointPolicy(e.endpointId);
      return {
        id: e.endpointId,
        identity: e.identity,
        ips: e.ips.map((ip) => ip.replace(/\/(32|128)$/, '')),
        ifname: e.ifname,
        labels: this.endpointSub?.podLabels(e.endpointId) ?? {},
        ingressEnforcement: p?.ingress.defaultDeny ? 'default-deny' : 'allow-all',
        egressEnforcement: p?.egress.defaultDeny ? 'default-deny' : 'allow-all',
        policyRevision: p?.revision ?? 0,
        pending: this.reconciler?.pending.get(e.endpointId) ?? null,
      };
    });
  }

  policyView(endpoint?: string): z.input<typeof PolicyViewResponse> {
    const policies = this.policySub.statuses();
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

  dnsService(): DnsService | null {
    return this.dns;
  }

  proxyStatus(): z.input<typeof ProxyResponse> {
    return this.proxy ? this.proxy.status() : { state: 'disabled' };
  }

  /** Planned replacement of the node's Envoys (meshd proxy restart); MESHD_PROXY_DISABLED without a proxy. */
  async restartProxy(): Promise<{ replaced: number; instances: string[] }> {
    if (!this.proxy?.restart) throw new MeshdError('MESHD_PROXY_DISABLED', 'no L7 proxy runs on this node (envoy.enabled=false)', { kind: 'unavailable' });
    return this.proxy.restart();
  }
}
