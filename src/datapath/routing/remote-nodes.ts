/**
 * The other nodes of the cluster as routing needs them: each node's pod
 * CIDRs and the address its pod traffic is sent to, read from the MeshdNode
 * objects every agent writes (src/agent/node-object.ts) by a list + watch.
 *
 * A node's address is its InternalIP, else its ExternalIP, else the first
 * IPv4 address its agent found on its host (MeshdHostIP) that is not inside
 * ipv4NativeRoutingCIDR (pod addresses are never a node's). A MeshdNode
 * that fails validation, or has no pod CIDR or no address yet, is left out
 * (and logged once per version) while the others keep their routes.
 *
 *   const nodes = new RemoteNodes({ client, nodeName, log });
 *   nodes.start((all) => routing.apply(all));   // every change: the whole set
 *   await nodes.synced; … await nodes.stop();
 */
import type { Json, KubeClient } from '../../k8s/client.js';
import { MESHD_NODES_PATH, parseMeshdNode, type MeshdNode } from '../../k8s/meshd-node.js';
import { Reflector } from '../../k8s/reflector.js';
import { isMeshdError } from '../../util/errors.js';
import type { Logger } from '../../util/log.js';
import { inCidr4, parseIpv4, parseRoutingCidr } from './cidr.js';

export interface RemoteNode {
  name: string;
  /** The address the node's pod traffic goes to (outer destination in tunnel mode, next hop in native mode). */
  ip: string;
  /** IPv4 pod CIDRs, normalised. */
  podCIDRs: string[];
}

export interface RemoteNodesOptions {
  client: KubeClient;
  /** This node: never a remote node. */
  nodeName: string;
  /** Host addresses inside it are not node addresses. */
  nativeRoutingCidr?: string;
  backoff?: { initialMs: number; maxMs: number };
  missingRecheckMs?: number;
  log?: Logger;
}

/** The node's routing facts, or the reason it has none yet. */
export function remoteNodeOf(n: MeshdNode, nativeRoutingCidr?: string): RemoteNode | string {
  const podCIDRs = n.spec.podCIDRs.map((c) => parseRoutingCidr(c)).filter((c): c is string => c !== undefined);
  if (podCIDRs.length === 0) return 'no IPv4 pod CIDR yet';
  const v4 = (type: string) => n.spec.addresses.filter((a) => a.type === type && parseIpv4(a.ip) !== undefined).map((a) => a.ip);
  const host = v4('MeshdHostIP').filter((ip) => !ip.startsWith('127.') && !(nativeRoutingCidr && inCidr4(ip, nativeRoutingCidr)) && !podCIDRs.some((c) => inCidr4(ip, c)));
  const ip = v4('InternalIP')[0] ?? v4('ExternalIP')[0] ?? host[0];
  if (!ip) return 'no IPv4 node address yet';
  return { name: n.metadata.name, ip, podCIDRs };
}

export class RemoteNodes {
  private readonly nodes = new Map<string, RemoteNode>();
  private readonly skipped = new Map<string, string>();
  private readonly reflector: Reflector;
  private onChange: ((nodes: RemoteNode[]) => void) | null = null;
  readonly synced: Promise<void>;
  private markSynced!: () => void;

  constructor(private readonly o: RemoteNodesOptions) {
    this.synced = new Promise((r) => (this.markSynced = r));
    this.reflector = new Reflector(
      { client: o.client, path: MESHD_NODES_PATH, ...(o.backoff ? { backoff: o.backoff } : {}), ...(o.missingRecheckMs !== undefined ? { missingRecheckMs: o.missingRecheckMs } : {}) },
      {
        onList: (items) => {
          this.nodes.clear();
          for (const item of items) this.put(item);
          this.markSynced();
          this.emit();
        },
        onEvent: (type, obj) => {
          if (type === 'DELETED') this.remove(obj);
          else this.put(obj);
          this.emit();
        },
        onMissing: () => {
          this.markSynced();
          this.o.log?.warn('MeshdNode is not served; no routes to other nodes until it is');
        },
        onError: (e) => this.o.log?.warn('MeshdNode watch failed; retrying', { code: e.code, err: e.message }),
        onHealthy: () => undefined,
      },
    );
  }

  start(onChange: (nodes: RemoteNode[]) => void): void {
    this.onChange = onChange;
    this.reflector.start();
  }

  async stop(): Promise<void> {
    this.markSynced();
    await this.reflector.stop();
  }

  all(): RemoteNode[] {
    return [...this.nodes.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  private emit(): void {
    this.onChange?.(this.all());
  }

  private put(obj: Json): void {
    let n: MeshdNode;
    try {
      n = parseMeshdNode(obj);
    } catch (e) {
      if (!isMeshdError(e)) throw e;
      this.o.log?.warn('MeshdNode ignored for routing', { code: e.code, err: e.message });
      return;
    }
    if (n.metadata.name === this.o.nodeName) return;
    const r = remoteNodeOf(n, this.o.nativeRoutingCidr);
    if (typeof r === 'string') {
      this.nodes.delete(n.metadata.name);
      if (this.skipped.get(n.metadata.name) !== r) this.o.log?.info('node not routed yet', { node: n.metadata.name, why: r });
      this.skipped.set(n.metadata.name, r);
      return;
    }
    this.skipped.delete(n.metadata.name);
    this.nodes.set(n.metadata.name, r);
  }

  private remove(obj: Json): void {
    try {
      const n = parseMeshdNode(obj);
      this.nodes.delete(n.metadata.name);
      this.skipped.delete(n.metadata.name);
    } catch (e) {
      if (!isMeshdError(e)) throw e;
    }
  }
}
