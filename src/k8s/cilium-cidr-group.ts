/**
 * CiliumCIDRGroup (cilium.io/v2, and the deprecated v2alpha1 with the same
 * shape), cluster-scoped: a named list of external CIDRs with labels, which
 * policies reference from `fromCIDRSet`/`toCIDRSet` by name
 * (`cidrGroupRef`) or by labels (`cidrGroupSelector`). The engine treats the
 * group's CIDRs as if written inline in each referencing rule and
 * re-translates those rules when a group changes (src/policy/engine.ts).
 *
 *   const r = ciliumCidrGroup.parse(json);
 *   if (r.ok) engine.upsertCidrGroup(cidrGroupInput(r.value));
 */
import { z } from 'zod';
import { parsePrefix } from '../identity/cidr.js';
import { defineKind, labelsSchema, type KindModule } from './kind.js';
import type { ResourceProblem } from './problem.js';

export const CIDR_GROUP_API_VERSIONS = ['cilium.io/v2', 'cilium.io/v2alpha1'] as const;

export const CiliumCidrGroupSchema = z.strictObject({
  apiVersion: z.enum(CIDR_GROUP_API_VERSIONS),
  kind: z.literal('CiliumCIDRGroup'),
  metadata: z.object({ name: z.string().min(1), labels: labelsSchema }),
  spec: z.strictObject({
    /** CIDRs (or single addresses) outside the cluster. */
    externalCIDRs: z.array(z.string()),
  }),
  status: z.unknown().optional(),
});
export type CiliumCidrGroup = z.infer<typeof CiliumCidrGroupSchema>;

function check(g: CiliumCidrGroup): ResourceProblem[] {
  const out: ResourceProblem[] = [];
  g.spec.externalCIDRs.forEach((c, i) => {
    if (!parsePrefix(c)) out.push({ path: ['spec', 'externalCIDRs', i], code: 'INVALID_CIDR', message: `"${c}" is not a valid CIDR` });
  });
  return out;
}

export const ciliumCidrGroup: KindModule<'CiliumCIDRGroup', CiliumCidrGroup> = defineKind({
  kind: 'CiliumCIDRGroup',
  apiVersions: CIDR_GROUP_API_VERSIONS,
  scope: 'cluster',
  schema: CiliumCidrGroupSchema,
  check,
});

/** What the policy engine needs of a group (see PolicyEngine.upsertCidrGroup). */
export interface CidrGroupInput {
  name: string;
  labels: Record<string, string>;
  cidrs: string[];
}

export function cidrGroupInput(g: CiliumCidrGroup): CidrGroupInput {
  return { name: g.metadata.name, labels: { ...g.metadata.labels }, cidrs: [...g.spec.externalCIDRs] };
}
