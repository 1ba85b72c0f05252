/**
 * The host endpoint in the endpoint datapath. The policy engine computes the
 * host's EndpointPolicy ("node:NAME", from CiliumClusterwideNetworkPolicies
 * with a nodeSelector); this registers that endpoint in the EndpointManager
 * as a pod is registered, on the row bpf/host.c reads (the loopback
 * interface's, Host.EP_KEY) and attaching nothing, so the reconciler writes
 * its policy with the same ordered, all-or-nothing diffs as a pod's.
 *
 *   const host = new HostEndpoint(engine, endpoints);
 *   for (const id of await host.sync()) pending.set(id, 'changed');   // in the reconciler, before the writes
 *   host.remove();                                                    // hostFirewall turned off
 *
 * Blocking bpf() syscalls; run inside the agent's serial queue.
 */
import { native } from '../../../native/index.js';
import type { PolicyEngine } from '../../policy/index.js';
import { Host, Identity } from '../abi.js';
import type { EndpointManager } from '../endpoint/endpoint-manager.js';
import { HostFirewallError } from './host-firewall.js';

const LOOPBACK = 'lo';

export class HostEndpoint {
  constructor(
    private readonly engine: PolicyEngine,
    private readonly endpoints: EndpointManager,
  ) {}

  /**
   * Registers the engine's host endpoint if it is not yet, and removes a host
   * endpoint under another name (the node was renamed). Returns the ids newly
   * registered: their current policy must be written even if it did not change.
   */
  async sync(): Promise<string[]> {
    const id = this.engine.hostEndpoint();
    for (const ep of this.endpoints.endpoints()) if (ep.ifname === LOOPBACK && ep.endpointId !== id) this.endpoints.removeEndpoint(ep.endpointId);
    if (id === undefined || this.endpoints.endpoint(id)) return [];
    if (native.ifNameToIndex(LOOPBACK) !== Host.EP_KEY) {
      throw new HostFirewallError('MESHD_HOSTFW_ATTACH_FAILED', `the loopback interface's index is not ${Host.EP_KEY}: bpf/host.c would not find the host endpoint`);
    }
    await this.endpoints.addEndpoint({ endpointId: id, ifname: LOOPBACK, identity: this.engine.endpointIdentity(id) ?? Identity.HOST, attach: false });
    return [id];
  }

  /** Removes the host endpoint: its row, policy entries and conntrack state. */
  remove(): void {
    for (const ep of this.endpoints.endpoints()) if (ep.ifname === LOOPBACK) this.endpoints.removeEndpoint(ep.endpointId);
  }
}
