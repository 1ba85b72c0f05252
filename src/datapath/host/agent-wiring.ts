/**
 * The agent's side of the host firewall: whether it runs (hostFirewall.enabled),
 * on which devices (`devices`, or the interfaces of the default routes, as
 * nodePort resolves them), in audit mode or not (policyAuditMode).
 *
 *   const fw = await startHostFirewall(config, { pinDir, engine, endpoints });   // null: off (and any previous one removed)
 *   reconciler deps: { hostEndpoint: fw?.endpoint }
 *   status: fw?.datapath.status() ?? null
 *
 * Open it after the EndpointManager (host.o shares its maps) and before the
 * nodeport datapath (it must come first on the devices).
 */
import type { AgentConfig } from '../../agent/config.js';
import type { PolicyEngine } from '../../policy/index.js';
import type { EndpointManager } from '../endpoint/endpoint-manager.js';
import { resolveDevices } from '../nodeport/devices.js';
import { HostEndpoint } from './host-endpoint.js';
import { detachHostFirewall, HostFirewall } from './host-firewall.js';

export interface HostFirewallRuntime {
  datapath: HostFirewall;
  endpoint: HostEndpoint;
}

export async function startHostFirewall(c: AgentConfig, o: { pinDir: string; engine: PolicyEngine; endpoints: EndpointManager }): Promise<HostFirewallRuntime | null> {
  if (!c['hostFirewall.enabled']) {
    // Off: a previous agent's links go; its host endpoint row is pruned with the other unclaimed endpoints.
    detachHostFirewall(o.pinDir);
    return null;
  }
  const devices = await resolveDevices({ names: c.devices });
  const datapath = await HostFirewall.open({ pinDir: o.pinDir, devices, auditMode: c.policyAuditMode });
  return { datapath, endpoint: new HostEndpoint(o.engine, o.endpoints) };
}
