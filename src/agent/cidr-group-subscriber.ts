/**
 * CiliumCIDRGroups → the policy engine. A group changes what the policies
 * that name it (cidrGroupRef, cidrGroupSelector) select; the engine
 * re-translates exactly those in the same step.
 */
import { cidrGroupInput } from '../k8s/cilium-cidr-group.js';
import type { PolicyEngine } from '../policy/index.js';
import type { ResourceEvent, ResourceSubscriber } from './resource-source.js';

export class CidrGroupSubscriber implements ResourceSubscriber {
  readonly kinds = ['CiliumCIDRGroup'] as const;

  constructor(private readonly engine: PolicyEngine) {}

  async apply(ev: ResourceEvent): Promise<void> {
    const o = ev.object;
    if (o.kind !== 'CiliumCIDRGroup') return;
    if (ev.type === 'delete') await this.engine.removeCidrGroup(o.metadata.name);
    else await this.engine.upsertCidrGroup(cidrGroupInput(o));
  }
}
