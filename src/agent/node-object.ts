/**
 * This node's MeshdNode (src/k8s/meshd-node.ts): written at start and on
 * every heartbeat (config key nodeHeartbeat.interval), and at once when the
 * pod CIDR changes. It carries the pod CIDR and where it came from, the
 * node's addresses (InternalIP/ExternalIP from the Node object when there is
 * one, MeshdHostIP from the host), and in status the health (healthy while
 * the agent runs, the heartbeat time), the agent version and the endpoint
 * count. The leader-elected housekeeping (node-housekeeping.ts) removes a
 * node whose heartbeat went stale and whose Node object is gone.
 *
 * A write is a JSON merge patch of the whole spec and status (only this
 * node's agent writes this object, so there is nothing to merge with); a 404
 * creates it. Failures are logged and retried at the next beat: the
 * datapath never waits for this object.
 *
 *   const w = new NodeObjectWriter({ client, nodeName, podCidr, intervalMs: 30_000, facts: () => ({ … }) });
 *   await w.start();      // first write (a failure is logged, not thrown)
 *   await w.beat();       // one write now
 *   await w.stop();
 */
import { z } from 'zod';
import { KubeApiError, type KubeClient } from '../k8s/client.js';
import { isKubeStatus } from '../k8s/lease.js';
import { MESHD_NODES_PATH, meshdNodeBody, type NodeAddressType } from '../k8s/meshd-node.js';
import type { Logger } from '../util/log.js';
import type { PodCidrProvider } from './pod-cidr.js';

export interface NodeFacts {
  healthy: boolean;
  endpoints: number;
  agentVersion: string;
  /** The host's own addresses (host-addresses.ts). */
  hostAddresses: readonly string[];
}

export interface NodeObjectWriterOptions {
  client: KubeClient;
  nodeName: string;
  podCidr: PodCidrProvider;
  facts: () => NodeFacts;
  intervalMs: number;
  log?: Logger;
  now?: () => number;
}

const NodeAddressesSchema = z.object({
  status: z.object({ addresses: z.array(z.object({ type: z.string(), address: z.string() })).nullish() }).nullish(),
});

export class NodeObjectWriter {
  private timer: NodeJS.Timeout | null = null;
  private chain: Promise<void> = Promise.resolve();
  private stopped = false;
  private unsubscribe: (() => void) | null = null;
  /** Successful writes, for status and tests. */
  writes = 0;
  lastError: string | null = null;

  constructor(private readonly o: NodeObjectWriterOptions) {}

  async start(): Promise<void> {
    this.unsubscribe = this.o.podCidr.onChange(() => void this.beat());
    this.timer = setInterval(() => void this.beat(), this.o.intervalMs);
    await this.beat();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    if (this.timer) clearInterval(this.timer);
    await this.chain;
  }

  /** One write, after any in flight; never throws (a failure is logged and tried again at the next beat). */
  beat(): Promise<void> {
    this.chain = this.chain.then(() => this.write()).catch((e: unknown) => {
      this.lastError = e instanceof Error ? e.message : String(e);
      this.o.log?.warn('MeshdNode not written; retried at the next heartbeat', { code: e instanceof KubeApiError ? e.code : undefined, err: this.lastError });
    });
    return this.chain;
  }

  private async nodeAddresses(): Promise<Array<{ type: NodeAddressType; ip: string }>> {
    try {
      const n = NodeAddressesSchema.safeParse(await this.o.client.getJson(`/api/v1/nodes/${this.o.nodeName}`));
      if (!n.success) return [];
      return (n.data.status?.addresses ?? []).flatMap((a) => (a.type === 'InternalIP' || a.type === 'ExternalIP' ? [{ type: a.type, ip: a.address }] : []));
    } catch (e) {
      if (isKubeStatus(e, 404)) return []; // no Node object: the host's addresses still name the node
      throw e;
    }
  }

  private async write(): Promise<void> {
    if (this.stopped) return;
    const f = this.o.facts();
    await this.o.podCidr.confirm?.();
    const cidr = this.o.podCidr.current();
    const fromNode = await this.nodeAddresses();
    const seen = new Set(fromNode.map((a) => a.ip));
    const addresses = [...fromNode, ...f.hostAddresses.filter((ip) => !seen.has(ip)).map((ip) => ({ type: 'MeshdHostIP' as const, ip }))];
    const body = meshdNodeBody({
      name: this.o.nodeName,
      podCIDRs: cidr.cidr ? [cidr.cidr] : [],
      podCIDRSource: cidr.source === 'config' || cidr.source === null ? undefined : cidr.source,
      addresses,
      healthy: f.healthy,
      lastHeartbeat: new Date((this.o.now ?? Date.now)()).toISOString(),
      agentVersion: f.agentVersion,
      endpoints: f.endpoints,
    });
    const path = `${MESHD_NODES_PATH}/${this.o.nodeName}`;
    try {
      await this.o.client.send('PATCH', path, { spec: body.spec, status: body.status });
    } catch (e) {
      if (!isKubeStatus(e, 404)) throw e;
      try {
        await this.o.client.send('POST', MESHD_NODES_PATH, body);
      } catch (e2) {
        // Created meanwhile (a restart racing its predecessor's last beat): the next beat patches it.
        if (!isKubeStatus(e2, 409)) throw e2;
      }
    }
    this.writes++;
    this.lastError = null;
  }
}
