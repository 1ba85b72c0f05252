/**
 * The agent's side of nodePort: whether it runs (nodePort.enabled, else
 * kubeProxyReplacement, as Cilium decides; it reads the socket LB's maps, so
 * it needs socketLB.enabled), on which devices, and their addresses as the
 * NodePort frontends the socket LB programs. Attached after the socket LB
 * opened its maps.
 *
 *   const np = await planNodePort(config);               // null: off
 *   ServiceManager.open({ …, nodeIPs: np?.nodeIPs });
 *   const datapath = await np?.open(pinDir);
 */
import type { AgentConfig } from '../../agent/config.js';
import type { Logger } from '../../util/log.js';
import { resolveDevices, type NativeDevice } from './devices.js';
import { NodePortDatapath } from './nodeport.js';

export interface NodePortPlan {
  devices: NativeDevice[];
  nodeIPs: string[];
  open(pinDir: string): Promise<NodePortDatapath>;
}

export function nodePortEnabled(c: AgentConfig): boolean {
  return (c['nodePort.enabled'] ?? c.kubeProxyReplacement) && c['socketLB.enabled'];
}

/** null: off, or no device named and none detected (said in the log: clients outside the node are not served). */
export async function planNodePort(c: AgentConfig, log?: Logger): Promise<NodePortPlan | null> {
  if (!nodePortEnabled(c)) return null;
  const devices = await resolveDevices({ names: c.devices });
  if (devices.length === 0) {
    log?.warn('nodePort: no device carries a default route and none is named in devices; NodePort, external and load-balancer frontends are not served to clients outside the node');
    return null;
  }
  return {
    devices,
    nodeIPs: devices.flatMap((d) => [...d.ipv4, ...d.ipv6]),
    open: (pinDir) => NodePortDatapath.open({ pinDir, devices }),
  };
}
