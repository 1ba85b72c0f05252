/**
 * How the agent runs LB IPAM and L2 announcements in Kubernetes mode (one
 * call from src/agent/run.ts): the LB IPAM controller on every agent (one
 * allocates at a time, through the Lease `meshd-lb-ipam`), and, with
 * `l2announcements.enabled`, this node's L2 announcer.
 *
 *   const lb = startLoadBalancerServices({ config, client, log });
 *   … await lb.stop();
 */
import type { AgentConfig } from '../agent/config.js';
import type { KubeClient } from '../k8s/client.js';
import { NetlinkHostNet } from '../l2announce/host-net.js';
import { L2Announcer } from '../l2announce/announcer.js';
import type { Logger } from '../util/log.js';
import { LbIpamController } from './controller.js';

export interface LoadBalancerServices {
  lbIpam: LbIpamController;
  l2: L2Announcer | null;
  stop(opts?: { release?: boolean }): Promise<void>;
}

export function startLoadBalancerServices(o: { config: AgentConfig; client: KubeClient; log: Logger; backoff?: { initialMs: number; maxMs: number } }): LoadBalancerServices {
  const c = o.config;
  const namespace = c['nodeGC.leaseNamespace'];
  const lbIpam = new LbIpamController({ client: o.client, holder: c.nodeName, namespace, log: o.log.child({ component: 'lb-ipam' }), ...(o.backoff ? { backoff: o.backoff } : {}) });
  lbIpam.start();
  const l2 = c['l2announcements.enabled']
    ? new L2Announcer({
        client: o.client,
        nodeName: c.nodeName,
        namespace,
        net: new NetlinkHostNet(),
        leaseDurationMs: c['l2announcements.leaseDuration'],
        retryMs: c['l2announcements.leaseRetryPeriod'],
        log: o.log.child({ component: 'l2-announcer' }),
        ...(o.backoff ? { backoff: o.backoff } : {}),
      })
    : null;
  l2?.start();
  return {
    lbIpam,
    l2,
    async stop(opts = {}) {
      await l2?.stop(opts);
      await lbIpam.stop(opts);
    },
  };
}
