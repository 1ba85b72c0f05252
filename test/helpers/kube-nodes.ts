/**
 * Several meshd nodes against one real API server, in this process: a
 * kube-apiserver and etcd (kube-cluster.ts) with the meshd CRDs and RBAC
 * installed, and per node an agent in Kubernetes mode (AgentNode: its own
 * node name, pin directory, state directory, cgroup and pod CIDR) running
 * as the `kube-system/meshd` ServiceAccount, plus a TestKubelet that runs
 * the node's pods through its meshd-cni. All nodes' pods are network
 * namespaces on this one host; the host namespace routes to every pod
 * address, so a pod on one node reaches a pod on another as across a flat
 * pod network, and each node's datapath judges the traffic of its own pods.
 *
 *   const { kube, nodes: [a, b] } = await startKubeNodes(t, ['node-a', 'node-b']);
 *   const web = await a.kubelet.runPod('a-web', { labels: { app: 'web' } });
 *   await kube.apply(policy);                            // kubectl apply
 *   await a.status();                                    // `meshd status` of node a, typed
 *
 * Cleanup is registered with `t.after` before anything starts and undoes
 * whatever was made, even after a failure half-way: processes the test
 * registered with `nodes.defer`, then every node's pods (CNI DEL while its
 * agent still runs), then the agents, pins, cgroups and directories, then
 * the cluster. An API server the test left stopped is started again first.
 */
import { mkdirSync } from 'node:fs';
import type { z } from 'zod';
import { apiRoutes } from '../../src/api/index.js';
import type { RunAgentOptions, RunningAgent } from '../../src/agent/run.js';
import { callApi } from '../../src/cli/api-client.js';
import { IpcacheKey, IpcacheValue } from '../../src/datapath/maps.js';
import type { KubeSourceOptions } from '../../src/k8s/kube-source.js';
import { MeshdError } from '../../src/util/errors.js';
import { AgentNode } from './agent-node.js';
import { installMeshd, startKubeCluster, type KubeCluster } from '../../src/devcluster/kube-cluster.js';
import { TestKubelet } from '../../src/devcluster/kubelet.js';

interface After {
  after(fn: () => Promise<void> | void): void;
}

/** Source tuning for tests: short batching, backoff and CRD re-check. */
export const FAST_SOURCE: Omit<KubeSourceOptions, 'client'> = { batchDelayMs: 10, backoff: { initialMs: 100, maxMs: 1_000 }, missingRecheckMs: 300 };

export { eventually, until } from '../../src/devcluster/eventually.js';

export type StatusView = z.output<(typeof apiRoutes.status)['response']>;
export type IdentityView = z.output<(typeof apiRoutes.identities)['response']>['identities'][number];
export type EndpointView = z.output<(typeof apiRoutes.endpoints)['response']>['endpoints'][number];

export class KubeNode {
  readonly kubelet: TestKubelet;

  constructor(
    readonly name: string,
    readonly agent: AgentNode,
    kube: KubeCluster,
  ) {
    this.kubelet = new TestKubelet({ kube, nodeName: name, cniConfDir: agent.config['cni.confDir'], cniBinDir: agent.config['cni.binDir'] });
  }

  /** The running agent; throws when it is stopped. */
  get running(): RunningAgent {
    const r = this.agent.running;
    if (!r) throw new MeshdError('MESHD_KUBE_TEST_AGENT_STOPPED', `the agent of ${this.name} is not running`, { kind: 'conflict' });
    return r;
  }

  private get socket(): string {
    return this.running.agent.socketPath('meshd');
  }

  /** `meshd status` of this node through its local API, validated by the route's schema. */
  status(): Promise<StatusView> {
    return callApi(this.socket, apiRoutes.status);
  }

  /** `meshd identity list` of this node. */
  async identities(): Promise<IdentityView[]> {
    return (await callApi(this.socket, apiRoutes.identities)).identities;
  }

  /** `meshd endpoint list` of this node (its local pods). */
  async endpoints(): Promise<EndpointView[]> {
    return (await callApi(this.socket, apiRoutes.endpoints)).endpoints;
  }

  /**
   * The identity the node's pinned ipcache holds for an IPv4 address's
   * whole-address row (meshd_ipc_host), or undefined when it has none.
   */
  pinnedIdentityOf(ip: string): number | undefined {
    const want = Buffer.from(ip.split('.').map(Number));
    for (const row of this.agent.pinnedRows(['meshd_ipc_host']).meshd_ipc_host ?? []) {
      const [k, v] = row.split('=');
      const key = IpcacheKey.decode(Buffer.from(k ?? '', 'hex'));
      if (key.family === 4 && key.prefixlen === 64 && Buffer.from(key.addr).subarray(0, 4).equals(want)) return IpcacheValue.decode(Buffer.from(v ?? '', 'hex')).identity;
    }
    return undefined;
  }
}

export interface KubeNodes {
  kube: KubeCluster;
  nodes: KubeNode[];
  /** Registers a process or resource to stop first in the cleanup (before pods, agents and cluster). */
  defer(fn: () => Promise<void> | void): void;
  /** Options that start (or restart) an agent in Kubernetes mode against this cluster. */
  agentOptions: Partial<RunAgentOptions>;
}

export { installMeshd } from '../../src/devcluster/kube-cluster.js';

/**
 * One cluster and one agent per name, started side by side. Node i uses
 * AgentNode slot `firstSlot + i` for its pod CIDR, so no two nodes share one.
 */
export async function startKubeNodes(t: After, names: readonly string[], o: { firstSlot?: number; agentOptions?: Partial<RunAgentOptions> } = {}): Promise<KubeNodes> {
  const made: { kube?: KubeCluster; nodes: KubeNode[]; agents: AgentNode[]; deferred: Array<() => Promise<void> | void> } = { nodes: [], agents: [], deferred: [] };
  // Before the cluster's own close (hooks run in the order registered): pods go while the API server and agents still run.
  t.after(async () => {
    for (const fn of made.deferred.reverse()) await Promise.resolve().then(fn).catch(() => undefined); // best effort: namespaces go next anyway
    await made.kube?.startApiServer().catch((e: unknown) => process.stderr.write(`restarting the API server for cleanup: ${String(e)}\n`));
    for (const n of made.nodes) await n.kubelet.cleanup();
    for (const a of made.agents) await a.cleanup();
  });
  const agents = names.map((nodeName, i) => new AgentNode({ nodeName }, (o.firstSlot ?? 2) + i));
  made.agents.push(...agents);
  // cleanup() restarts a stopped agent in standalone mode (from this directory) for CNI DEL.
  for (const a of agents) mkdirSync(a.manifests, { recursive: true });
  const kube = (made.kube = await startKubeCluster({ t }));
  await installMeshd(kube);
  await kube.ensureDefaultServiceAccount('default');
  const sa = await kube.serviceAccountKubeconfig('kube-system', 'meshd');
  const agentOptions: Partial<RunAgentOptions> = {
    standaloneDir: undefined,
    kubeconfigPath: sa.kubeconfigPath,
    kubeSource: FAST_SOURCE,
    policyStatus: { coalesceMs: 20, backoff: { initialMs: 100, maxMs: 1_000 } },
    ...o.agentOptions,
  };
  await Promise.all(agents.map((a) => a.start(agentOptions)));
  made.nodes.push(...agents.map((a, i) => new KubeNode(names[i] ?? '', a, kube)));
  return { kube, nodes: made.nodes, defer: (fn) => void made.deferred.push(fn), agentOptions };
}
