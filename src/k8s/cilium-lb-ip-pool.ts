/**
 * CiliumLoadBalancerIPPool (cilium.io/v2, and the deprecated v2alpha1 of the
 * same shape), cluster-scoped: the addresses LB IPAM hands to Services of
 * type LoadBalancer (src/lbipam). Accepted verbatim as Cilium defines it, so
 * the pools of a cluster that ran Cilium keep working.
 *
 *   const r = ciliumLbIpPool.parse(json);
 *   if (r.ok) pool(r.value);      // else r.problems: [{ path: ['spec', 'blocks', 1, 'stop'], code: 'INVALID_VALUE', … }]
 */
import { z } from 'zod';
import { blockRange } from '../lbipam/ip-range.js';
import { selectorProblems } from '../lbipam/label-selector.js';
import { endpointSelector } from '../policy/api/schema.js';
import { defineKind, labelsSchema, type KindModule } from './kind.js';
import type { ResourceProblem } from './problem.js';

export const LB_IP_POOL_API_VERSIONS = ['cilium.io/v2', 'cilium.io/v2alpha1'] as const;
export const LB_IP_POOLS_PATH = '/apis/cilium.io/v2/ciliumloadbalancerippools';

/** Kubernetes' label selector, as Cilium's slim LabelSelector (matchLabels, matchExpressions). */
export const serviceSelectorSchema = endpointSelector;

export const LbIpPoolBlockSchema = z.strictObject({
  cidr: z.string().optional(),
  start: z.string().optional(),
  stop: z.string().optional(),
});

/** metadata fields LB IPAM reads: order of creation decides conflicts, generation goes into the status. */
export const poolMetadata = z.object({
  name: z.string().min(1),
  labels: labelsSchema,
  generation: z.number().int().optional(),
  creationTimestamp: z.string().optional(),
  resourceVersion: z.string().optional(),
});

export const CiliumLbIpPoolSchema = z.object({
  apiVersion: z.enum(LB_IP_POOL_API_VERSIONS),
  kind: z.literal('CiliumLoadBalancerIPPool'),
  metadata: poolMetadata,
  spec: z.strictObject({
    serviceSelector: serviceSelectorSchema.optional(),
    /** "Yes" or unset: a CIDR's first and last addresses are allocated too; "No": reserved (ignored for /31, /32, /127, /128). */
    allowFirstLastIPs: z.enum(['Yes', 'No']).optional(),
    blocks: z.array(LbIpPoolBlockSchema).optional(),
    /** No new allocations; existing ones stay. */
    disabled: z.boolean().optional(),
  }),
  status: z.unknown().optional(),
});
export type CiliumLbIpPool = z.infer<typeof CiliumLbIpPoolSchema>;

const BLOCK_MESSAGES = {
  INVALID_CIDR: 'not a CIDR',
  INVALID_ADDRESS: 'not an IP address',
  MIXED_FAMILIES: 'start and stop are of different address families',
  START_AFTER_STOP: 'stop is lower than start',
  EMPTY_BLOCK: 'names no address',
} as const;

function check(p: CiliumLbIpPool): ResourceProblem[] {
  const out: ResourceProblem[] = [];
  p.spec.blocks?.forEach((b, i) => {
    const at = ['spec', 'blocks', i];
    if (b.cidr && (b.start || b.stop)) {
      out.push({ path: at, code: 'INVALID_VALUE', message: 'a block is either a cidr or a start/stop range, not both' });
      return;
    }
    if (!b.cidr && !b.start) {
      out.push({ path: at, code: 'INVALID_VALUE', message: b.stop ? 'stop without start' : 'a block needs cidr or start' });
      return;
    }
    const r = blockRange(b, { allowFirstLast: true });
    if (typeof r === 'string') {
      const field = b.cidr ? 'cidr' : r === 'INVALID_ADDRESS' && b.start && blockRange({ start: b.start }, { allowFirstLast: true }) !== 'INVALID_ADDRESS' ? 'stop' : 'start';
      out.push({ path: [...at, field], code: r === 'INVALID_CIDR' ? 'INVALID_CIDR' : 'INVALID_VALUE', message: BLOCK_MESSAGES[r] });
    }
  });
  out.push(...selectorProblems(p.spec.serviceSelector, ['spec', 'serviceSelector']));
  return out;
}

export const ciliumLbIpPool: KindModule<'CiliumLoadBalancerIPPool', CiliumLbIpPool> = defineKind({
  kind: 'CiliumLoadBalancerIPPool',
  apiVersions: LB_IP_POOL_API_VERSIONS,
  scope: 'cluster',
  schema: CiliumLbIpPoolSchema,
  check,
});
