/**
 * Starting and stopping a whole agent process: configuration → source →
 * Agent → local API. Used by `meshd agent`, the demo and the tests.
 *
 *   const node = await runAgent({ config, standaloneDir: 'examples/demo' });   // standalone
 *   const node = await runAgent({ config, kubeconfigPath: 'admin.kubeconfig' }); // Kubernetes
 *   …
 *   await node.stop();   // datapath stays enforcing
 *
 * Without `standaloneDir` the source is the Kubernetes API, found as
 * src/k8s/client.ts resolves it; no configuration found is
 * MESHD_K8S_NO_CONFIG, thrown before anything is started. In Kubernetes
 * mode the agent first registers the policy CRDs (unless skipCRDCreation),
 * and writes its node's entry in each CNP/CCNP's status while it runs.
 */
import { IdentityGC } from '../identity/identity-gc.js';
import { KubeIdentityAllocator } from '../identity/kube-allocator.js';
import { KubeClient, resolveKubeConfig } from '../k8s/client.js';
import { CrdRegistrar, policyCrds, type CrdRegistrarOptions } from '../k8s/crds.js';
import { identityCrds } from '../identity/identity-crds.js';
import { KubeSource, type KubeSourceOptions } from '../k8s/kube-source.js';
import { RESOURCE_KINDS, type ResourceKind } from '../k8s/kinds.js';
import { meshdEndpointCrd } from '../k8s/meshd-endpoint.js';
import { PolicyStatusWriter, type PolicyStatusWriterOptions } from '../k8s/policy-status.js';
import { createLogger, type Logger } from '../util/log.js';
import { Agent, type L7Proxy } from './agent.js';
import { ApiServer } from './api-server.js';
import { EndpointObjects } from './endpoint-objects.js';
import type { AgentConfig } from './config.js';
import { registerRoutes } from './routes.js';
import { StandaloneSource } from './standalone-source.js';
import { nodeCrds } from '../k8s/meshd-node.js';
import { join } from 'node:path';
import { dumpAddresses } from '../../native/index.js';
import { packageVersion } from '../util/paths.js';
import { hostIdentityAddresses } from './host-addresses.js';
import { NodeHousekeeping } from './node-housekeeping.js';
import { NodeObjectWriter } from './node-object.js';
import { PodCidrAllocator } from './pod-cidr.js';
import { lbIpamCrds } from '../lbipam/crds.js';
import { startLoadBalancerServices, type LoadBalancerServices } from '../lbipam/agent-wiring.js';
import { gatewaySecretsPath, gatewaySourceKinds, startGatewayController } from '../gateway/agent-wiring.js';
import type { GatewayController } from '../gateway/controller.js';

export interface RunAgentOptions {
  config: AgentConfig;
  /** Standalone mode: the directory of manifests. Without it the agent reads the Kubernetes API. */
  standaloneDir?: string;
  /** Kubernetes mode: a kubeconfig file; wins over the config key k8sKubeconfigPath, KUBECONFIG and the in-cluster account. */
  kubeconfigPath?: string;
  /** Kubernetes mode: tuning of the source (batching, backoff, CRD re-check). */
  kubeSource?: Omit<KubeSourceOptions, 'client' | 'log'>;
  /** Kubernetes mode: tuning of the policy status writer (coalescing, backoff). */
  policyStatus?: Pick<PolicyStatusWriterOptions, 'coalesceMs' | 'backoff'>;
  /** Kubernetes mode: how long the first CRD registration may hold the start, and its retries. */
  crdRegistration?: Pick<CrdRegistrarOptions, 'firstAttemptMs' | 'backoff' | 'establishTimeoutMs'>;
  env?: NodeJS.ProcessEnv;
  log?: Logger;
  startProxy?: ((cfg: AgentConfig, log: Logger) => Promise<L7Proxy>) | null;
  /** Rescan interval of the manifest directory (the watch catches most edits sooner). */
  rescanMs?: number;
  /** Kubernetes mode: tuning of the pod CIDR retries and the node housekeeping Lease (tests shorten them). */
  nodes?: { podCidrRetryMs?: number; leaseDurationMs?: number; leaseRetryMs?: number };
}

/** Kubernetes mode: the node's pod CIDR, its MeshdNode and the housekeeping of nodes that left. */
export interface NodeTasks {
  podCidr: PodCidrAllocator;
  /** Started once the agent runs. */
  writer: NodeObjectWriter | null;
  housekeeping: NodeHousekeeping;
}

export interface RunningAgent {
  agent: Agent;
  api: ApiServer;
  /** The Kubernetes source (its connection state), null in standalone mode. */
  kube: KubeSource | null;
  /** Cluster-wide identities and their GC (Kubernetes mode with identityAllocationMode=crd), else null. */
  identities: { allocator: KubeIdentityAllocator; gc: IdentityGC } | null;
  /** Writes this node's entries in CNP/CCNP statuses; null in standalone mode. */
  policyStatus: PolicyStatusWriter | null;
  /** Pod CIDR, MeshdNode and node housekeeping; null in standalone mode. */
  nodes: NodeTasks | null;
  /** This node's MeshdEndpoint objects and the other nodes' (ipcache); null in standalone mode. */
  endpointObjects: EndpointObjects | null;
  /** LB IPAM and L2 announcements (src/lbipam, src/l2announce); null in standalone mode. */
  loadBalancers: LoadBalancerServices | null;
  stop(): Promise<void>;
}

/** Kinds only the load-balancer controllers read (through their own reflectors). */
const LOAD_BALANCER_KINDS: ReadonlySet<ResourceKind> = new Set(['CiliumLoadBalancerIPPool', 'CiliumL2AnnouncementPolicy']);

export async function runAgent(o: RunAgentOptions): Promise<RunningAgent> {
  const log = o.log ?? createLogger({ component: 'agent', node: o.config.nodeName }, { format: o.config['log.format'], level: o.config['log.level'] });
  let kube: KubeSource | null = null;
  let policyStatus: PolicyStatusWriter | null = null;
  let crds: CrdRegistrar | null = null;
  let identities: RunningAgent['identities'] = null;
  let nodes: NodeTasks | null = null;
  let kubeClient: KubeClient | null = null;
  let endpointObjects: EndpointObjects | null = null;
  let gatewayController: GatewayController | null = null;
  const c = o.config;
  if (o.standaloneDir === undefined) {
    const resolved = resolveKubeConfig({ kubeconfigPath: o.kubeconfigPath ?? c.k8sKubeconfigPath, serviceHost: c.k8sServiceHost, servicePort: c.k8sServicePort, ...(o.env ? { env: o.env } : {}) });
    log.info('reading the cluster', { server: resolved.server, from: resolved.from });
    const client = new KubeClient(resolved.kubeConfig);
    const k8sLog = log.child({ component: 'k8s' });
    if (!c.skipCRDCreation) {
      // Before the source starts, so its first list finds the kinds served; an unreachable API server does not hold the agent up.
      const wanted = [...policyCrds(), ...(c.identityAllocationMode === 'crd' ? identityCrds() : []), ...nodeCrds(), meshdEndpointCrd(), ...lbIpamCrds()];
      crds = new CrdRegistrar({ crds: wanted, ...o.crdRegistration, kubeConfig: resolved.kubeConfig, log: k8sLog });
      await crds.start();
    }
    // TLS interception's Secrets: only from the secrets namespace unless configured otherwise (as Cilium's agent reads them).
    const kindPaths = { Secret: gatewaySecretsPath(c, c['tls.readSecretsOnlyFromSecretsNamespace'] ? `/api/v1/namespaces/${c['tls.secretsNamespace.name']}/secrets` : '/api/v1/secrets') };
    // LB IPAM and L2 announcements read their pools and policies themselves (src/lbipam, src/l2announce); no
    // subscriber of the agent takes them, so the source does not watch and hold them a second time.
    const kinds = gatewaySourceKinds(c, RESOURCE_KINDS.filter((k) => !LOAD_BALANCER_KINDS.has(k)));
    gatewayController = startGatewayController({ config: c, client, log });
    kube = new KubeSource({ ...o.kubeSource, kinds, kindPaths, client, log: k8sLog });
    endpointObjects = new EndpointObjects({
      client,
      nodeName: c.nodeName,
      checkIdentity: c.identityAllocationMode === 'crd',
      log: k8sLog,
      ...(o.kubeSource?.backoff ? { backoff: o.kubeSource.backoff } : {}),
      ...(o.kubeSource?.missingRecheckMs !== undefined ? { missingRecheckMs: o.kubeSource.missingRecheckMs } : {}),
    });
    policyStatus = new PolicyStatusWriter({ ...o.policyStatus, client, nodeName: c.nodeName, log: k8sLog });
    if (c.identityAllocationMode === 'crd') {
      const grace = c['identityGC.gracePeriod'];
      const idLog = log.child({ component: 'identity' });
      identities = {
        // References are confirmed several times per grace period, so one late heartbeat never loses an identity.
        allocator: new KubeIdentityAllocator({
          client,
          nodeName: c.nodeName,
          heartbeatMs: Math.min(60_000, Math.max(100, Math.floor(grace / 4))),
          log: idLog,
          // The identity watches retry as the resource source does.
          ...(o.kubeSource?.backoff ? { backoff: o.kubeSource.backoff } : {}),
          ...(o.kubeSource?.missingRecheckMs !== undefined ? { missingRecheckMs: o.kubeSource.missingRecheckMs } : {}),
        }),
        gc: new IdentityGC({ client, holder: c.nodeName, namespace: c['identityGC.leaseNamespace'], graceMs: grace, intervalMs: c['identityGC.interval'], log: idLog }),
      };
    }
    kubeClient = client;
    nodes = kubeNodeTasks(o, client, log.child({ component: 'node' }));
  }
  let loadBalancers: LoadBalancerServices | null = null;
  const stopNodes = async () => {
    await gatewayController?.stop();
    await loadBalancers?.stop();
    await nodes?.writer?.stop();
    await nodes?.housekeeping.stop();
    await nodes?.podCidr.stop();
  };
  const stopIdentities = async () => {
    await endpointObjects?.stop();
    if (!identities) return;
    await identities.gc.stop();
    await identities.allocator.stop();
  };
  const source = kube ?? new StandaloneSource({ dir: o.standaloneDir ?? '', rescanMs: o.rescanMs ?? 2_000 });
  const writer = policyStatus;
  let agent: Agent;
  // This node references in the store only the identities its own endpoints use (known once the agent runs).
  let running: Agent | undefined;
  identities?.allocator.setLocalUsers(() => running?.engine.endpointPolicies().map((p) => p.identity));
  try {
    // The identity cache is read before the agent allocates anything, so known label sets keep their numbers.
    if (identities) {
      await identities.allocator.start();
      identities.gc.start();
    }
    // Before the agent installs the CNI configuration: a CIDR another node holds stops the start here (MESHD_IPAM_POD_CIDR_CONFLICT).
    await nodes?.podCidr.start();
    agent = await Agent.start({
      config: c,
      source,
      mode: kube ? 'kubernetes' : 'standalone',
      log,
      startProxy: o.startProxy ?? null,
      ...(identities ? { allocator: identities.allocator } : {}),
      ...(writer ? { onPolicyStatus: (ch) => writer.note(ch) } : {}),
      ...(nodes ? { podCidr: nodes.podCidr } : {}),
      ...(endpointObjects ? { endpointObjects } : {}),
      gatewayController,
    });
    endpointObjects?.startWriting();
    running = agent;
  } catch (e) {
    crds?.stop();
    await writer?.stop();
    await stopIdentities();
    await stopNodes();
    throw e;
  }
  if (nodes && kubeClient) {
    const a = agent;
    nodes.writer = new NodeObjectWriter({
      client: kubeClient,
      nodeName: c.nodeName,
      podCidr: nodes.podCidr,
      intervalMs: c['nodeHeartbeat.interval'],
      facts: () => ({ healthy: a.status().agent.state === 'running', endpoints: a.endpointList().length, agentVersion: packageVersion(), hostAddresses: hostIdentityAddresses(dumpAddresses()) }),
      log: log.child({ component: 'node' }),
    });
    await nodes.writer.start();
    // The housekeeping leader also keeps the policies' cluster-wide Valid condition (Cilium's operator does).
    const statusWriter = policyStatus;
    if (statusWriter) nodes.housekeeping.onLeadership((leader) => statusWriter.setConditionWriter(leader));
    nodes.housekeeping.start();
    loadBalancers = startLoadBalancerServices({ config: c, client: kubeClient, log, ...(o.kubeSource?.backoff ? { backoff: o.kubeSource.backoff } : {}) });
  }
  const api = new ApiServer(agent.socketPath('meshd'), log.child({ component: 'api' }));
  registerRoutes(api, agent);
  try {
    await api.listen();
  } catch (e) {
    crds?.stop();
    await policyStatus?.stop();
    await stopNodes();
    await agent.stop();
    await stopIdentities();
    throw e;
  }
  let stopped = false;
  return {
    agent,
    api,
    kube,
    identities,
    policyStatus,
    nodes,
    endpointObjects,
    loadBalancers,
    async stop() {
      if (stopped) return;
      stopped = true;
      crds?.stop();
      await policyStatus?.stop();
      await stopNodes();
      await api.close();
      await agent.stop();
      await stopIdentities();
    },
  };
}

function kubeNodeTasks(o: RunAgentOptions, client: KubeClient, log: Logger): NodeTasks {
  const c = o.config;
  return {
    podCidr: new PodCidrAllocator({
      client,
      nodeName: c.nodeName,
      mode: c['ipam.mode'],
      explicit: c['ipam.podCIDR'],
      pool: c['ipam.operator.clusterPoolIPv4PodCIDRList'],
      maskSize: c['ipam.operator.clusterPoolIPv4MaskSize'],
      stateFile: join(c.stateDir, 'pod-cidr.json'),
      ...(o.nodes?.podCidrRetryMs !== undefined ? { retryMs: o.nodes.podCidrRetryMs } : {}),
      log,
    }),
    writer: null,
    housekeeping: new NodeHousekeeping({
      client,
      holder: c.nodeName,
      namespace: c['nodeGC.leaseNamespace'],
      graceMs: c['nodeGC.gracePeriod'],
      intervalMs: c['nodeGC.interval'],
      ...(o.nodes?.leaseDurationMs !== undefined ? { leaseDurationMs: o.nodes.leaseDurationMs } : {}),
      ...(o.nodes?.leaseRetryMs !== undefined ? { retryMs: o.nodes.leaseRetryMs } : {}),
      log,
    }),
  };
}
