/**
 * CiliumNetworkPolicy (cilium.io/v2). The field schema lives with the other
 * policy schemas (src/policy/api/schema.ts); this module is the one place it
 * is parsed, schema then the semantic checks of src/policy/api/validate.ts.
 */
import { ciliumNetworkPolicy as CiliumNetworkPolicySchema, type CiliumNetworkPolicySpec } from '../policy/api/schema.js';
import { validateDocument } from '../policy/api/validate.js';
import type { KindModule } from './kind.js';
import { parseWith } from './problem.js';

export type CiliumNetworkPolicy = CiliumNetworkPolicySpec;

export const ciliumNetworkPolicy: KindModule<'CiliumNetworkPolicy', CiliumNetworkPolicy> = {
  kind: 'CiliumNetworkPolicy',
  apiVersions: ['cilium.io/v2'],
  scope: 'namespaced',
  schema: CiliumNetworkPolicySchema,
  parse: (input) => parseWith(CiliumNetworkPolicySchema, input, (doc) => validateDocument({ kind: 'CiliumNetworkPolicy', doc })),
};
