/**
 * CiliumL2AnnouncementPolicy (cilium.io/v2alpha1, cluster-scoped): which
 * nodes answer ARP (and IPv6 neighbour solicitations) for which Services'
 * addresses, on which interfaces (src/l2announce). Accepted verbatim as
 * Cilium defines it.
 *
 *   const r = ciliumL2AnnouncementPolicy.parse(json);
 *   if (r.ok) policy(r.value);    // else e.g. { path: ['spec', 'interfaces', 0], code: 'INVALID_REGEX' }
 */
import { z } from 'zod';
import { selectorProblems } from '../lbipam/label-selector.js';
import { serviceSelectorSchema } from './cilium-lb-ip-pool.js';
import { defineKind, labelsSchema, type KindModule } from './kind.js';
import type { ResourceProblem } from './problem.js';

export const L2_POLICY_API_VERSIONS = ['cilium.io/v2alpha1'] as const;
export const L2_POLICIES_PATH = '/apis/cilium.io/v2alpha1/ciliuml2announcementpolicies';

export const CiliumL2AnnouncementPolicySchema = z.object({
  apiVersion: z.enum(L2_POLICY_API_VERSIONS),
  kind: z.literal('CiliumL2AnnouncementPolicy'),
  metadata: z.object({ name: z.string().min(1), labels: labelsSchema, resourceVersion: z.string().optional() }),
  spec: z
    .strictObject({
      /** Nodes that announce; unset: every node. */
      nodeSelector: serviceSelectorSchema.optional(),
      /** Services announced; unset: every Service. */
      serviceSelector: serviceSelectorSchema.optional(),
      /** Announce status.loadBalancer.ingress addresses. */
      loadBalancerIPs: z.boolean().optional(),
      /** Announce spec.externalIPs. */
      externalIPs: z.boolean().optional(),
      /** Regular expressions over interface names; unset: every interface (but loopback). */
      interfaces: z.array(z.string()).optional(),
    })
    .optional(),
  status: z.unknown().optional(),
});
export type CiliumL2AnnouncementPolicy = z.infer<typeof CiliumL2AnnouncementPolicySchema>;

function check(p: CiliumL2AnnouncementPolicy): ResourceProblem[] {
  const out: ResourceProblem[] = [];
  p.spec?.interfaces?.forEach((re, i) => {
    try {
      new RegExp(re);
    } catch {
      out.push({ path: ['spec', 'interfaces', i], code: 'INVALID_REGEX', message: `"${re}" is not a regular expression` });
    }
  });
  for (const sel of ['nodeSelector', 'serviceSelector'] as const) out.push(...selectorProblems(p.spec?.[sel], ['spec', sel]));
  return out;
}

export const ciliumL2AnnouncementPolicy: KindModule<'CiliumL2AnnouncementPolicy', CiliumL2AnnouncementPolicy> = defineKind({
  kind: 'CiliumL2AnnouncementPolicy',
  apiVersions: L2_POLICY_API_VERSIONS,
  scope: 'cluster',
  schema: CiliumL2AnnouncementPolicySchema,
  check,
});
