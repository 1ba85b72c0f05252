/**
 * Housekeeping of nodes that left the cluster, run by one agent at a time:
 * the holder of the coordination.k8s.io/v1 Lease `meshd-node-gc` (as
 * Cilium's operator collects CiliumNodes of deleted nodes).
 *
 * A node has left when its Node object is gone AND its MeshdNode's last
 * heartbeat is older than the grace period (config nodeGC.gracePeriod). Then,
 * every `intervalMs`, the leader:
 * - deletes its MeshdNode (resourceVersion as precondition: a node that beat
 *   meanwhile wins, 409, and stays);
 * - deletes its MeshdPodCIDR claims, so its pod CIDR goes back to the pool
 *   (a claim of no MeshdNode and no Node, older than the grace period, goes
 *   too: an agent that died before writing its MeshdNode);
 * - removes its key from status.nodes of every CiliumNetworkPolicy and
 *   CiliumClusterwideNetworkPolicy (each agent writes only its own key, so
 *   nobody else would): a key of no Node and no MeshdNode whose lastUpdated
 *   is older than the grace period.
 * Each pass lists the four kinds once and writes only what has to go, so a
 * pass with nothing to do costs four list requests; running it twice
 * deletes nothing twice.
 *
 *   const hk = new NodeHousekeeping({ client, holder: nodeName, namespace: 'kube-system', graceMs: 5 * 60_000, intervalMs: 60_000 });
 *   hk.start(); … hk.isLeader(); … await hk.stop();
 */
import { z } from 'zod';
import { KubeApiError, type Json, type KubeClient } from '../k8s/client.js';
import { isKubeStatus, LeaseElector } from '../k8s/lease.js';
import { itemsOf } from '../k8s/list.js';
import { lastSeen, MESHD_NODES_PATH, MESHD_POD_CIDRS_PATH, MeshdNodeSchema, MeshdPodCidrSchema } from '../k8s/meshd-node.js';
import type { Logger } from '../util/log.js';

export const NODE_GC_LEASE = 'meshd-node-gc';

const POLICY_COLLECTIONS = ['/apis/cilium.io/v2/ciliumnetworkpolicies', '/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies'] as const;

export interface NodeHousekeepingOptions {
  client: KubeClient;
  /** This agent's name in the Lease (the node name). */
  holder: string;
  /** Namespace of the Lease (config key nodeGC.leaseNamespace). */
  namespace: string;
  /** How long a node may go without a heartbeat, its Node object gone, before it is removed (nodeGC.gracePeriod). */
  graceMs: number;
  /** How often the leader looks (nodeGC.interval). */
  intervalMs: number;
  leaseDurationMs?: number;
  retryMs?: number;
  log?: Logger;
  now?: () => number;
}

export interface NodeSweepResult {
  /** MeshdNodes deleted. */
  nodes: string[];
  /** MeshdPodCIDR claims deleted (their CIDRs). */
  cidrs: string[];
  /** Policy status keys removed, as `Kind namespace/name: node`. */
  statusKeys: string[];
}

const NodeName = z.object({ metadata: z.object({ name: z.string() }) });
const PolicyStatusSchema = z.object({
  metadata: z.object({ name: z.string(), namespace: z.string().optional() }),
  status: z.object({ nodes: z.record(z.string(), z.object({ lastUpdated: z.string().optional() }).loose()).optional() }).loose().optional(),
});

export class NodeHousekeeping {
  private readonly lease: LeaseElector;
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  /** Everything this instance removed, for tests. */
  readonly removed: NodeSweepResult = { nodes: [], cidrs: [], statusKeys: [] };

  constructor(private readonly o: NodeHousekeepingOptions) {
    this.lease = new LeaseElector({
      client: o.client,
      holder: o.holder,
      namespace: o.namespace,
      name: NODE_GC_LEASE,
      ...(o.leaseDurationMs !== undefined ? { leaseDurationMs: o.leaseDurationMs } : {}),
      ...(o.retryMs !== undefined ? { retryMs: o.retryMs } : {}),
      ...(o.log ? { log: o.log } : {}),
      ...(o.now ? { now: o.now } : {}),
    });
  }

  isLeader(): boolean {
    return this.lease.isLeader();
  }

  /** Called when this agent gains or loses the housekeeping Lease (it then also writes the policies' Valid condition). */
  onLeadership(listener: (leader: boolean) => void): () => void {
    return this.lease.onLeadership(listener);
  }

  start(): void {
    if (this.timer || this.stopped) return;
    this.lease.start();
    this.timer = setInterval(() => {
      this.chain = this.chain.then(() => this.sweep()).then(
        () => undefined,
        (e: unknown) => this.o.log?.warn('node housekeeping failed; tried again next interval', { code: e instanceof KubeApiError ? e.code : undefined, error: String(e) }),
      );
    }, this.o.intervalMs);
  }

  /** Stops; gives the Lease up when held (`release: false` behaves like a crash). Idempotent. */
  async stop(opts: { release?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.chain;
    await this.lease.stop(opts);
  }

  /** One pass; does nothing unless this instance holds the Lease. */
  async sweep(): Promise<NodeSweepResult> {
    const out: NodeSweepResult = { nodes: [], cidrs: [], statusKeys: [] };
    if (!this.lease.isLeader() || this.stopped) return out;
    const now = (this.o.now ?? Date.now)();
    const stale = (t: number | undefined) => t !== undefined && t + this.o.graceMs < now;
    const c = this.o.client;
    const nodes = new Set(itemsOf(NodeName, await c.getJson('/api/v1/nodes'), '/api/v1/nodes').map((n) => n.metadata.name));
    const meshdNodes = itemsOf(MeshdNodeSchema, await c.getJson(MESHD_NODES_PATH), MESHD_NODES_PATH);
    const claims = itemsOf(MeshdPodCidrSchema, await c.getJson(MESHD_POD_CIDRS_PATH), MESHD_POD_CIDRS_PATH);
    const alive = new Set<string>(nodes);
    for (const mn of meshdNodes) {
      const name = mn.metadata.name;
      if (nodes.has(name) || !stale(lastSeen(mn)) || !this.lease.isLeader()) {
        alive.add(name);
        continue;
      }
      if (await this.deleteIfUnchanged(`${MESHD_NODES_PATH}/${name}`, mn.metadata.resourceVersion)) {
        out.nodes.push(name);
        this.o.log?.info('node left the cluster: MeshdNode removed', { node: name, lastHeartbeat: mn.status?.health?.lastHeartbeat });
      } else {
        alive.add(name);
      }
    }
    for (const claim of claims) {
      if (alive.has(claim.spec.node) || !this.lease.isLeader()) continue;
      const ownerGone = out.nodes.includes(claim.spec.node);
      if (!ownerGone && (meshdNodes.some((m) => m.metadata.name === claim.spec.node) || !stale(Date.parse(claim.metadata.creationTimestamp ?? '')))) continue;
      if (await this.deleteIfUnchanged(`${MESHD_POD_CIDRS_PATH}/${claim.metadata.name}`, claim.metadata.resourceVersion)) out.cidrs.push(claim.spec.cidr);
    }
    for (const collection of POLICY_COLLECTIONS) {
      let list: Json;
      try {
        list = await c.getJson(collection);
      } catch (e) {
        if (isKubeStatus(e, 404)) continue; // the CRD is not installed
        throw e;
      }
      for (const p of itemsOf(PolicyStatusSchema, list, collection)) {
        const gone = Object.entries(p.status?.nodes ?? {}).filter(([node, entry]) => !alive.has(node) && (out.nodes.includes(node) || stale(Date.parse(entry.lastUpdated ?? ''))));
        if (gone.length === 0 || !this.lease.isLeader()) continue;
        const path = `${collection.replace('/apis/cilium.io/v2/', `/apis/cilium.io/v2/${p.metadata.namespace ? `namespaces/${p.metadata.namespace}/` : ''}`)}/${p.metadata.name}/status`;
        try {
          // A merge patch removing only these keys: the live nodes' entries are untouched.
          await c.send('PATCH', path, { status: { nodes: Object.fromEntries(gone.map(([node]) => [node, null])) } });
        } catch (e) {
          if (isKubeStatus(e, 404)) continue; // the policy went meanwhile
          throw e;
        }
        const kind = collection.endsWith('clusterwidenetworkpolicies') ? 'CiliumClusterwideNetworkPolicy' : 'CiliumNetworkPolicy';
        for (const [node] of gone) out.statusKeys.push(`${kind} ${p.metadata.namespace ? `${p.metadata.namespace}/` : ''}${p.metadata.name}: ${node}`);
      }
    }
    this.removed.nodes.push(...out.nodes);
    this.removed.cidrs.push(...out.cidrs);
    this.removed.statusKeys.push(...out.statusKeys);
    if (out.nodes.length + out.cidrs.length + out.statusKeys.length > 0) this.o.log?.info('node housekeeping', { ...out });
    return out;
  }

  /** DELETE with a resourceVersion precondition: false when the object changed or is gone. */
  private async deleteIfUnchanged(path: string, resourceVersion: string | undefined): Promise<boolean> {
    try {
      await this.o.client.send('DELETE', path, { apiVersion: 'v1', kind: 'DeleteOptions', preconditions: { resourceVersion } });
      return true;
    } catch (e) {
      if (isKubeStatus(e, 404, 409)) return false;
      throw e;
    }
  }
}
